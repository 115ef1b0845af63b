// The one reader and writer of the project's own JSON files (step plans, latency tables, search
// results, shard files): each carries "format" and "version"; a file of another format or version,
// unreadable or malformed, is an error naming the file, what it should be and the field at fault.
// Written pretty, keys sorted, slashes unescaped, atomically.
import Foundation

public protocol VersionedJSONFile: Codable {
    /// The "format" value files of this type carry.
    static var format: String { get }
    /// The "version" this build reads and writes.
    static var version: Int { get }
    /// What the file is, for messages: "step plan", "latency table", ….
    static var kind: String { get }
    /// The oldest version this build still reads (files of older versions are refused).
    static var oldestReadableVersion: Int { get }
    /// Brings a file read from an older readable version to this build's (it is written as this version).
    mutating func migrate()
}

extension VersionedJSONFile {
    public static var oldestReadableVersion: Int { version }
    public mutating func migrate() {}

    /// Reads and checks `url`.
    public static func load(from url: URL) throws -> Self {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelError("cannot read \(kind) \(url.path): \(error.localizedDescription)")
        }
        do { return try decode(data) } catch let e as ModelError { throw ModelError("\(url.path): \(e.message)") }
    }

    /// Decodes and checks one file's bytes (errors without the file's name).
    public static func decode(_ data: Data) throws -> Self {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch { throw ModelError("not a valid \(kind): not valid JSON") }
        guard let raw = object as? [String: Any] else { throw ModelError("not a valid \(kind): not a JSON object") }
        if let key = duplicateJSONKey(in: data) { throw ModelError("not a valid \(kind): the key \"\(key)\" stands twice (readers would disagree on its value)") }
        try checkHeader(raw)
        do {
            var value = try decodeJSON(Self.self, from: data, object: raw)
            value.migrate()
            return value
        } catch let e as ModelError { throw e } catch {
            throw ModelError("not a valid \(kind): \(describe(error))")
        }
    }

    /// Checks "format" and "version" of a decoded JSON object.
    public static func checkHeader(_ raw: [String: Any]) throws {
        let format = raw["format"] as? String
        guard format == Self.format else {
            throw ModelError("not a \(kind): \"format\" is \(format.map { "\"\($0)\"" } ?? "missing"), expected \"\(Self.format)\"")
        }
        guard let version = raw["version"] as? Int else { throw ModelError("\(kind) without a \"version\"") }
        guard (Self.oldestReadableVersion...Self.version).contains(version) else {
            let readable = Self.oldestReadableVersion == Self.version ? "version \(Self.version)" : "versions \(Self.oldestReadableVersion)–\(Self.version)"
            throw ModelError("\(kind) version \(version) is not supported (this build reads \(readable))")
        }
    }

    /// Pretty JSON, keys sorted, slashes unescaped.
    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try e.encode(self)
    }

    /// Writes the file atomically (a temporary file renamed over it).
    public func write(to url: URL) throws { try writeAtomically(jsonData(), to: url.path) }
}

/// `T` from `data`, whose parsed form is `object`. JSONDecoder reports a number that does not fit its
/// field (3.7 or 1e30 where a whole number belongs, −1 where an unsigned one does) as "not valid JSON",
/// naming no key; that error names the field here, found by decoding again with each such number
/// replaced by 0.
func decodeJSON<T: Decodable>(_ type: T.Type, from data: Data, object: Any) throws -> T {
    do { return try JSONDecoder().decode(T.self, from: data) } catch DecodingError.dataCorrupted(let ctx) where ctx.codingPath.isEmpty {
        var suspects: [(path: [Any], value: Double)] = []
        func walk(_ v: Any, _ path: [Any]) {
            if let d = v as? [String: Any] { for (k, x) in d { walk(x, path + [k]) } }
            else if let a = v as? [Any] { for (i, x) in a.enumerated() { walk(x, path + [i]) } }
            else if let n = v as? NSNumber, !(v is Bool) {
                let d = n.doubleValue
                if d != d.rounded() || abs(d) >= 9.2e18 || d < 0 { suspects.append((path, d)) }
            }
        }
        walk(object, [])
        func replacing(_ v: Any, _ path: ArraySlice<Any>) -> Any {
            guard let head = path.first else { return 0 }
            if var d = v as? [String: Any], let k = head as? String { d[k] = replacing(d[k] as Any, path.dropFirst()); return d }
            if var a = v as? [Any], let i = head as? Int { a[i] = replacing(a[i], path.dropFirst()); return a }
            return v
        }
        // Fractional and huge numbers first: negative ones fit most fields.
        for s in suspects.sorted(by: { ($0.value < 0 && $0.value == $0.value.rounded() ? 1 : 0) < ($1.value < 0 && $1.value == $1.value.rounded() ? 1 : 0) }) {
            guard let fixed = try? JSONSerialization.data(withJSONObject: replacing(object, s.path[...])) else { continue }
            do { _ = try JSONDecoder().decode(T.self, from: fixed) } catch DecodingError.dataCorrupted(let c) where c.codingPath.isEmpty { continue } catch {}
            let key = s.path.map { "\($0)" }.joined(separator: ".")
            let takes = s.value < 0 && s.value == s.value.rounded() ? "a number ≥ 0" : abs(s.value) >= 9.2e18 ? "a smaller number" : "a whole number"
            throw ModelError("\(key): \(s.value) does not fit this field (it takes \(takes))")
        }
        throw DecodingError.dataCorrupted(ctx)
    }
}

/// "key.path: what went wrong" for a decoding error.
func describe(_ error: Error) -> String {
    switch error {
    case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx), DecodingError.dataCorrupted(let ctx):
        let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
        return "\(path.isEmpty ? "" : "\(path): ")\(ctx.debugDescription)"
    case DecodingError.keyNotFound(let key, let ctx):
        return "missing \"\((ctx.codingPath + [key]).map(\.stringValue).joined(separator: "."))\""
    case let e as ModelError:
        return e.message
    default:
        return "\(error)"
    }
}
