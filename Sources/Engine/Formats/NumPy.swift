// NumPy's .npy arrays and .npz archives (a zip of .npy files, stored or deflated), enough for
// pytorch-fid's statistics files (`mu`, `sigma`, float64 or float32, C order). Reading handles what
// np.savez and np.savez_compressed write; writing stores entries uncompressed, as np.savez does.
// Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
import CZlib
import Foundation

/// zlib's inflate over a whole input, for .npz entries (raw deflate), PNG image data (zlib) and gzip files.
enum Zlib {
    enum Format { case raw, zlib, gzip
        var windowBits: Int32 { switch self { case .raw: return -MAX_WBITS; case .zlib: return MAX_WBITS; case .gzip: return 16 + MAX_WBITS } }
    }

    /// The decompressed bytes; with `limit`, stops once that many are out (the stream need not end there).
    static func inflate(_ input: [UInt8], format: Format, limit: Int? = nil, name: String) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, format.windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw ModelError("\(name): zlib initialisation failed")
        }
        defer { inflateEnd(&stream) }
        var input = input, out: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 1 << 20)
        var status: Int32 = Z_OK
        input.withUnsafeMutableBufferPointer { inp in
            stream.next_in = inp.baseAddress; stream.avail_in = uInt(inp.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { c in
                    stream.next_out = c.baseAddress; stream.avail_out = uInt(c.count)
                    status = CZlib.inflate(&stream, Z_NO_FLUSH)
                    out.append(contentsOf: c.prefix(c.count - Int(stream.avail_out)))
                }
            } while status == Z_OK && out.count < (limit ?? .max)
        }
        if let limit, out.count >= limit { return Array(out.prefix(limit)) }
        guard status == Z_STREAM_END else { throw ModelError("\(name): corrupt compressed data (zlib status \(status))") }
        return out
    }

    /// zlib's deflate at level 9 over a whole input (zip entries, PNG data, gzip files).
    static func deflate(_ input: [UInt8], format: Format) -> [UInt8] {
        var stream = z_stream()
        precondition(deflateInit2_(&stream, 9, Z_DEFLATED, format.windowBits, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                                   Int32(MemoryLayout<z_stream>.size)) == Z_OK, "zlib deflateInit2 failed")
        defer { deflateEnd(&stream) }
        var input = input, out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 32)
        let produced: Int = input.withUnsafeMutableBufferPointer { inp in
            out.withUnsafeMutableBufferPointer { o in
                stream.next_in = inp.baseAddress; stream.avail_in = uInt(inp.count)
                stream.next_out = o.baseAddress; stream.avail_out = uInt(o.count)
                precondition(CZlib.deflate(&stream, Z_FINISH) == Z_STREAM_END, "zlib deflate did not finish")
                return o.count - Int(stream.avail_out)
            }
        }
        return Array(out.prefix(produced))
    }
}

/// A float array from a .npy file, as float64, with its shape.
public struct NumPyArray: Equatable, Sendable {
    public var shape: [Int]
    public var values: [Double]
    public init(shape: [Int], values: [Double]) { self.shape = shape; self.values = values }
}

public enum NumPy {
    // MARK: .npy

    /// Parses one .npy file (little-endian float32 or float64, C order).
    public static func parseNPY(_ data: Data, name: String) throws -> NumPyArray {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw ModelError("\(name): not a .npy array (bad magic)")
        }
        let major = bytes[6]
        let headerLength: Int, start: Int
        switch major {
        case 1: headerLength = Int(bytes[8]) | Int(bytes[9]) << 8; start = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw ModelError("\(name): truncated .npy header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24; start = 12
        default: throw ModelError("\(name): .npy version \(major) is not supported")
        }
        guard start + headerLength <= bytes.count,
              let header = String(bytes: bytes[start..<(start + headerLength)], encoding: .utf8) else {
            throw ModelError("\(name): truncated .npy header")
        }
        func field(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descrField = field("descr"), let q1 = descrField.firstIndex(of: "'"),
              let q2 = descrField[descrField.index(after: q1)...].firstIndex(of: "'") else {
            throw ModelError("\(name): .npy header has no descr")
        }
        let descr = String(descrField[descrField.index(after: q1)..<q2])
        guard let order = field("fortran_order") else { throw ModelError("\(name): .npy header has no fortran_order") }
        let fortran = order.hasPrefix("True")
        guard let shapeField = field("shape"), let open = shapeField.firstIndex(of: "("), let close = shapeField.firstIndex(of: ")") else {
            throw ModelError("\(name): .npy header has no shape")
        }
        let shape = try shapeField[shapeField.index(after: open)..<close].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .map { s -> Int in guard let v = Int(s), v >= 0 else { throw ModelError("\(name): bad shape \(shapeField)") }; return v }
        guard !fortran || shape.count <= 1 else { throw ModelError("\(name): Fortran-ordered arrays are not supported") }
        let body = start + headerLength
        let size: Int
        switch descr {
        case "<f8", "=f8": size = 8
        case "<f4", "=f4": size = 4
        default: throw ModelError("\(name): dtype \(descr) is not supported (float32 or float64, little-endian)")
        }
        var count = 1, overflow = false
        for n in shape where !overflow { (count, overflow) = count.multipliedReportingOverflow(by: n) }
        let (byteCount, tooMany) = count.multipliedReportingOverflow(by: size)
        guard !overflow, !tooMany, bytes.count - body >= byteCount else {
            throw ModelError("\(name): \(bytes.count - body) bytes of data for shape \(shape) of \(descr)")
        }
        let values: [Double] = bytes.withUnsafeBytes { raw in
            (0..<count).map { i in
                size == 8 ? Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: body + 8 * i, as: UInt64.self)))
                    : Double(Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: body + 4 * i, as: UInt32.self))))
            }
        }
        return NumPyArray(shape: shape, values: values)
    }

    /// A float64 .npy file (version 1.0, C order).
    public static func npy(_ a: NumPyArray) -> Data {
        let shape = a.shape.count == 1 ? "(\(a.shape[0]),)" : "(" + a.shape.map(String.init).joined(separator: ", ") + ")"
        var data = [UInt8]()
        data.reserveCapacity(8 * a.values.count)
        for v in a.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        return Data(npy(descr: "<f8", fortranOrder: "False", shape: shape, data: data))
    }

    /// A version 1.0 .npy file whose header says `descr`, `fortranOrder` and `shape` as written (the
    /// fuzzer writes odd ones), padded as numpy pads it, then `data`.
    static func npy(descr: String, fortranOrder: String, shape: String, data: [UInt8]) -> [UInt8] {
        var header = "{'descr': '\(descr)', 'fortran_order': \(fortranOrder), 'shape': \(shape), }"
        header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        let n = min(header.utf8.count, 0xFFFF)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 0xFF), UInt8(n >> 8)] + Array(header.utf8.prefix(n)) + data
    }

    // MARK: .npz (zip)

    /// The arrays of a .npz archive, by name without ".npy".
    public static func loadNPZ(_ path: String) throws -> [String: NumPyArray] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ModelError("cannot read \(path): \(error.localizedDescription)")
        }
        let b = [UInt8](data)
        func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        // End of central directory: the last "PK\5\6" within the final 64 KiB + 22 bytes.
        guard b.count >= 22, let eocd = stride(from: b.count - 22, through: max(0, b.count - 22 - 65_535), by: -1)
            .first(where: { b[$0] == 0x50 && b[$0 + 1] == 0x4B && b[$0 + 2] == 5 && b[$0 + 3] == 6 }) else {
            throw ModelError("\(path): not a .npz (zip) archive")
        }
        let entries = u16(eocd + 10)
        var offset = u32(eocd + 16)
        var out: [String: NumPyArray] = [:]
        for _ in 0..<entries {
            guard offset + 46 <= b.count, u32(offset) == 0x0201_4B50 else { throw ModelError("\(path): corrupt zip central directory") }
            let method = u16(offset + 10)
            let compressed = u32(offset + 20), size = u32(offset + 24)
            let nameLength = u16(offset + 28), extraLength = u16(offset + 30), commentLength = u16(offset + 32)
            let local = u32(offset + 42)
            guard offset + 46 + nameLength <= b.count else { throw ModelError("\(path): corrupt zip central directory") }
            let name = String(decoding: b[(offset + 46)..<(offset + 46 + nameLength)], as: UTF8.self)
            offset += 46 + nameLength + extraLength + commentLength
            guard compressed != 0xFFFF_FFFF, size != 0xFFFF_FFFF else { throw ModelError("\(path): ZIP64 entries are not supported") }
            guard local + 30 <= b.count, u32(local) == 0x0403_4B50 else { throw ModelError("\(path): corrupt zip entry \(name)") }
            let start = local + 30 + u16(local + 26) + u16(local + 28)
            guard start + compressed <= b.count else { throw ModelError("\(path): entry \(name) is truncated") }
            let raw = Data(b[start..<(start + compressed)])
            let content: Data
            switch method {
            case 0: content = raw
            case 8:
                let out = try Zlib.inflate([UInt8](raw), format: .raw, name: "\(path): \(name)")
                guard out.count == size else { throw ModelError("\(path): \(name): corrupt deflate data (\(out.count) bytes, \(size) expected)") }
                content = Data(out)
            default: throw ModelError("\(path): entry \(name) uses zip compression method \(method) (stored or deflate only)")
            }
            guard name.hasSuffix(".npy") else { continue }
            out[String(name.dropLast(4))] = try parseNPY(content, name: "\(path): \(name)")
        }
        return out
    }

    /// Writes arrays as a .npz archive (entries stored, as np.savez writes them), atomically.
    public static func saveNPZ(_ arrays: [(String, NumPyArray)], to path: String) throws {
        let entries = try arrays.map { name, array -> (String, [UInt8]) in
            let file = npy(array)
            guard file.count < 0xFFFF_FFFF else { throw ModelError("\(name) is too large for a zip entry") }
            return ("\(name).npy", [UInt8](file))
        }
        try writeAtomically(Data(zip(entries, deflate: false)), to: path)
    }

    /// A zip archive of `entries` (name, content): stored, as np.savez writes them, or deflated, as
    /// np.savez_compressed does. Version 2.0, no flags, DOS time/date 1980-01-01 00:00.
    static func zip(_ entries: [(String, [UInt8])], deflate: Bool) -> [UInt8] {
        func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16((v >> 16) & 0xFFFF) }
        var body: [UInt8] = [], directory: [UInt8] = []
        for (name, content) in entries {
            let packed = deflate ? Zlib.deflate(content, format: .raw) : content, nameBytes = Array(name.utf8)
            let crc = content.withUnsafeBufferPointer { Int(crc32(0, $0.baseAddress, uInt($0.count))) }
            let common = le16(20) + le16(0) + le16(deflate ? 8 : 0) + le16(0) + le16(0x21) + le32(crc) + le32(packed.count) + le32(content.count)
                + le16(nameBytes.count) + le16(0)
            let offset = body.count
            body += le32(0x0403_4B50) + common + nameBytes + packed
            directory += le32(0x0201_4B50) + le16(20) + common + le16(0) + le16(0) + le16(0) + le32(0) + le32(offset) + nameBytes
        }
        return body + directory + le32(0x0605_4B50) + le16(0) + le16(0) + le16(entries.count) + le16(entries.count)
            + le32(directory.count) + le32(body.count) + le16(0)
    }
}
