// Settings with a fixed set of values (scheduler kinds, prediction types, spacings, …), read from
// files and options by name: a name that maps to no case is an error naming the key and the value,
// never a default.
import Foundation

/// A choice read by its name (the raw value is the name files use).
public protocol NamedChoice: RawRepresentable, CaseIterable, Codable, Hashable, Sendable, CustomStringConvertible where RawValue == String {}

extension NamedChoice {
    public var description: String { rawValue }

    /// Every name, for messages and help: "a, b or c".
    public static var names: String {
        let all = allCases.map(\.rawValue)
        return all.count < 2 ? all.joined() : all.dropLast().joined(separator: ", ") + " or " + all.last!
    }

    /// The case named `text`, else an error naming `key` and the value.
    public init(named text: String, key: String) throws {
        guard let value = Self(rawValue: text) else {
            throw ModelError("\(key) \"\(text)\" is not supported (\(Self.names))")
        }
        self = value
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        let key = decoder.codingPath.map(\.stringValue).joined(separator: ".")
        try self.init(named: text, key: key.isEmpty ? String(describing: Self.self) : key)
    }
}
