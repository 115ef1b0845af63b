// Reading diffusers-style config.json files: unknown keys and malformed values are errors naming them.
import Foundation

/// A configuration that checks its own values (settings the engine does not implement are refused).
protocol CheckedConfiguration: Decodable {
    func validate(source: String) throws
}

/// The `_class_name` of the config file at `url` (nil when it has none); unreadable or non-object files
/// are errors.
func configClassName(_ url: URL) throws -> String? {
    try readConfigObject(url).object["_class_name"] as? String
}

/// The class a pipeline's model_index.json names for `component` (its `[library, class]` pair), which
/// is the class diffusers' `from_pretrained` builds, whatever the component's own config says; nil
/// when the index has no such pair.
func pipelineComponentClass(index url: URL, component: String) throws -> String? {
    guard let pair = try readConfigObject(url).object[component] as? [Any], pair.count == 2 else { return nil }
    return pair[1] as? String
}

/// A boolean setting of a pipeline's model_index.json (`force_zeros_for_empty_prompt`, …); nil when absent.
func pipelineConfigBool(index url: URL, key: String) throws -> Bool? {
    try readConfigObject(url).object[key] as? Bool
}

private func readConfigObject(_ url: URL) throws -> (data: Data, object: [String: Any]) {
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
        throw ModelError("cannot read \(url.path): \(error.localizedDescription)")
    }
    guard let raw = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
        throw ModelError("\(url.path) is not a JSON object")
    }
    if let key = duplicateJSONKey(in: data) { throw ModelError("\(url.path): the key \"\(key)\" stands twice (readers would disagree on its value)") }
    return (data, raw)
}

/// Reads `url` as `T` after checking that every key (but `_`-prefixed ones) is in `knownKeys` and
/// passes `check` on the raw object, then validates the values.
func loadConfigJSON<T: CheckedConfiguration>(_ url: URL, knownKeys: Set<String>, check: ([String: Any]) throws -> Void = { _ in }) throws -> T {
    let config: T = try decodeConfigJSON(url, knownKeys: knownKeys, check: check)
    try config.validate(source: url.path)
    return config
}

/// Reads `url` as `T` after checking that every key (but `_`-prefixed ones) is in `knownKeys`.
func decodeConfigJSON<T: Decodable>(_ url: URL, knownKeys: Set<String>, check: ([String: Any]) throws -> Void = { _ in }) throws -> T {
    let (data, raw) = try readConfigObject(url)
    for key in raw.keys.sorted() where !key.hasPrefix("_") && !knownKeys.contains(key) {
        throw ModelError("\(url.path): unsupported key \(key) = \(raw[key].map { "\($0)" } ?? "null")")
    }
    try check(raw)
    do { return try decodeJSON(T.self, from: data, object: raw) } catch let e as ModelError { throw ModelError("\(url.path): \(e.message)") } catch {
        throw ModelError("\(url.path): \(describe(error))")
    }
}

extension KeyedDecodingContainer {
    /// diffusers' `sample_size`: a whole number or [height, width] (its first value is kept; it does not
    /// shape the graph); absent or null is nil; anything else is an error naming the key.
    func decodeSampleSize(forKey key: Key) throws -> Int? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let s = try? decode(Int.self, forKey: key) { return s }
        if let s = try? decode([Int].self, forKey: key), let first = s.first { return first }
        throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "not a whole number or [height, width]")
    }
}

/// The first key that stands twice in one JSON object of `data` (as "path.key"), nil when none does.
/// JSON readers disagree on such files (Foundation keeps one value, Python's json the last), so the
/// engine refuses them, and the Python package too. `data` must be valid JSON.
public func duplicateJSONKey(in data: Data) -> String? {
    let b = [UInt8](data)
    var i = 0
    /// Per open container: its keys so far (nil for an array) and the path to it.
    var stack: [(keys: Set<String>?, path: String)] = []
    var pendingKey: String?
    func readString() -> String {
        var bytes: [UInt8] = []
        i += 1
        while i < b.count, b[i] != UInt8(ascii: "\"") {
            if b[i] == UInt8(ascii: "\\"), i + 1 < b.count { bytes.append(b[i]); i += 1 }
            bytes.append(b[i]); i += 1
        }
        i += 1
        // (Escapes are compared as written: "a" and "\u0061" count as two keys here, as they do for JSONSerialization.)
        return String(decoding: bytes, as: UTF8.self)
    }
    while i < b.count {
        let c = b[i]
        switch c {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let path = stack.last.map { p in pendingKey.map { p.path.isEmpty ? $0 : "\(p.path).\($0)" } ?? p.path } ?? ""
            stack.append((c == UInt8(ascii: "{") ? [] : nil, path))
            pendingKey = nil
            i += 1
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            _ = stack.popLast(); pendingKey = nil; i += 1
        case UInt8(ascii: "\""):
            let s = readString()
            // A string is a key when it is followed by a colon inside an object.
            var j = i
            while j < b.count, [0x20, 0x09, 0x0A, 0x0D].contains(b[j]) { j += 1 }
            if j < b.count, b[j] == UInt8(ascii: ":"), var top = stack.last, top.keys != nil {
                if top.keys!.contains(s) { return top.path.isEmpty ? s : "\(top.path).\(s)" }
                top.keys!.insert(s)
                stack[stack.count - 1] = top
                pendingKey = s
                i = j + 1
            }
        case UInt8(ascii: ","):
            pendingKey = nil; i += 1
        default:
            i += 1
        }
    }
    return nil
}
