// FNV-1a, 64-bit: the one content hash for cache keys (compiled programs, teacher features, latency
// tables, model fingerprints). Not cryptographic: keys only name cache entries.
import Foundation

public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}
    public mutating func add<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x100_0000_01b3 }
    }
    public mutating func add(_ text: String) { add(text.utf8) }
    public var hex: String { String(value, radix: 16) }

    /// The hash of `text`'s UTF-8 bytes.
    public static func of(_ text: String) -> UInt64 { var h = FNV1a(); h.add(text); return h.value }
    /// The hash of `text`'s UTF-8 bytes, in hexadecimal.
    public static func hex(_ text: String) -> String { var h = FNV1a(); h.add(text); return h.hex }
}
