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

private func readConfigObject(_ url: URL) throws -> (data: Data, object: [String: Any]) {
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
        throw ModelError("cannot read \(url.path): \(error.localizedDescription)")
    }
    guard let raw = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
        throw ModelError("\(url.path) is not a JSON object")
    }
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
