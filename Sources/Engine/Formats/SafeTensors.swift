// A safetensors reader (memory-mapped, header validated; F32, F16 and BF16 read as Float) and writer.
// Format: https://github.com/huggingface/safetensors — u64 little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
import Foundation

/// A problem with a model or tensor file, named for the user.
public enum SafeTensorsDType: String, Sendable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL

    public var size: Int {
        switch self {
        case .F64, .I64, .U64: return 8
        case .F32, .I32, .U32: return 4
        case .F16, .BF16, .I16, .U16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }
}

public struct TensorInfo: Sendable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range within the data section.
    public let begin: Int, end: Int
    public var count: Int { shape.reduce(1, *) }
}

/// A read-only, memory-mapped safetensors file whose header has been validated.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    private let base: UnsafeRawPointer
    private let length: Int
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        // (O_NONBLOCK: a FIFO given as the file would block the open until a writer came.)
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw ModelError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ModelError("cannot stat \(path)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw ModelError("\(path) is \((st.st_mode & S_IFMT) == S_IFDIR ? "a folder" : "not a regular file (a FIFO, socket or device)"), not a safetensors file")
        }
        length = Int(st.st_size)
        guard length >= 8 else { throw ModelError("\(path): not a safetensors file (\(length) bytes, shorter than its 8-byte header length)") }
        guard let p = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw ModelError("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
        do {
            (tensors, metadata, dataStart) = try Self.parseHeader(base, length: length, path: path)
        } catch {
            munmap(UnsafeMutableRawPointer(mutating: base), length)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), length) }

    private static func parseHeader(_ base: UnsafeRawPointer, length: Int, path: String) throws
        -> ([String: TensorInfo], [String: String], Int) {
        let headerLength = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(length - 8) else {
            throw ModelError("\(path): header length \(headerLength) runs past the end of the file (\(length) bytes); the file is truncated or not safetensors")
        }
        let dataStart = 8 + Int(headerLength)
        let headerData = Data(bytes: base + 8, count: Int(headerLength))
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let dict = json as? [String: Any] else {
            throw ModelError("\(path): the header is not a JSON object")
        }
        var tensors: [String: TensorInfo] = [:]
        var metadata: [String: String] = [:]
        let dataLength = length - dataStart
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw ModelError("\(path): __metadata__ is not an object") }
                for (k, v) in m { metadata[k] = "\(v)" }
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtypeName = entry["dtype"] as? String,
                  let shapeAny = entry["shape"] as? [Any],
                  let offsetsAny = entry["data_offsets"] as? [Any], offsetsAny.count == 2 else {
                throw ModelError("\(path): tensor '\(name)' lacks dtype, shape or data_offsets")
            }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw ModelError("\(path): tensor '\(name)' has unknown dtype \(dtypeName)")
            }
            // (Whole non-negative numbers only: 1.5 or -3 is a corrupt header, not 1 or a trap.)
            func whole(_ v: Any) -> Int? {
                guard let n = v as? NSNumber else { return nil }
                let d = n.doubleValue
                return d >= 0 && d < 9.0e15 && d == d.rounded() ? Int(d) : nil
            }
            let shape = try shapeAny.map { v -> Int in
                guard let n = whole(v) else { throw ModelError("\(path): tensor '\(name)' has a bad shape \(shapeAny)") }
                return n
            }
            let offsets = try offsetsAny.map { v -> Int in
                guard let n = whole(v) else { throw ModelError("\(path): tensor '\(name)' has bad data_offsets \(offsetsAny)") }
                return n
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end, end <= dataLength else {
                throw ModelError("\(path): tensor '\(name)' occupies bytes \(begin)..<\(end) of a \(dataLength)-byte data section; the file is truncated or corrupt")
            }
            var expected = dtype.size, overflow = false
            for n in shape where !overflow { (expected, overflow) = expected.multipliedReportingOverflow(by: n) }
            guard !overflow, end - begin == expected else {
                throw ModelError("\(path): tensor '\(name)' has \(end - begin) bytes but shape \(shape) of \(dtype) needs \(overflow ? "more than 2^63" : "\(expected)")")
            }
            tensors[name] = TensorInfo(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
        }
        // Tensors may not share bytes.
        let ordered = tensors.values.filter { $0.end > $0.begin }.sorted { $0.begin < $1.begin }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.begin < a.end {
            throw ModelError("\(path): tensors '\(a.name)' and '\(b.name)' overlap (bytes \(a.begin)..<\(a.end) and \(b.begin)..<\(b.end)); the file is corrupt")
        }
        return (tensors, metadata, dataStart)
    }

    public var names: [String] { tensors.keys.sorted() }
    /// Elements of all tensors together (what they take as float32, divided by 4).
    public var floatCount: Int { tensors.values.map { $0.shape.reduce(1, *) }.reduce(0, +) }

    /// The tensor's values as Float (F32, F16 and BF16).
    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensors[name] else { throw ModelError("\(path): no tensor '\(name)' (has: \(names.prefix(8).joined(separator: ", "))\(names.count > 8 ? ", …" : ""))") }
        let p = base + dataStart + t.begin
        let n = t.count
        switch t.dtype {
        case .F32:
            return (0..<n).map { Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        case .F16:
            return (0..<n).map { Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)))) }
        case .BF16:
            return (0..<n).map { Float(bitPattern: UInt32(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) << 16) }
        default:
            throw ModelError("\(path): tensor '\(name)' is \(t.dtype); only F32, F16 and BF16 are read")
        }
    }
}

/// Writes F32 tensors as a safetensors file, atomically (a temporary file renamed into place).
/// One float32 tensor written to a safetensors file a piece at a time (its shape known up front), as
/// `generate --output-tensor` writes batches; atomic as `writeAtomically`: `finish()` puts it in place.
public final class SafeTensorsStreamWriter {
    public let name: String, shape: [Int]
    private let file: AtomicFile
    private var written = 0
    private let count: Int

    public init(path: String, name: String, shape: [Int]) throws {
        self.name = name; self.shape = shape
        count = shape.reduce(1, *)
        file = try AtomicFile(path)
        var json = try JSONSerialization.data(withJSONObject: [name: ["dtype": "F32", "shape": shape, "data_offsets": [0, 4 * count]]],
                                              options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad so the data starts 8-byte aligned
        var head = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { head.append(contentsOf: $0) }
        head.append(json)
        try file.write(head)
    }

    /// The next values, in order.
    public func append(_ values: ArraySlice<Float>) throws {
        precondition(written + values.count <= count, "tensor \(name): more than the \(count) values of \(shape)")
        var data = Data(capacity: 4 * values.count)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        try file.write(data)
        written += values.count
    }

    /// Puts the file in place once every value was written.
    public func finish() throws {
        precondition(written == count, "tensor \(name): \(written) of \(count) values written")
        try file.commit()
    }
}

public enum SafeTensorsWriter {
    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])], to path: String,
                             metadata: [String: String] = [:]) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for t in tensors {
            precondition(t.shape.reduce(1, *) == t.values.count, "tensor \(t.name): shape \(t.shape) holds \(t.shape.reduce(1, *)) values, not \(t.values.count)")
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.values.count]]
            offset += 4 * t.values.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad so the data starts 8-byte aligned
        var out = Data()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors {
            t.values.withUnsafeBufferPointer { buf in
                for v in buf { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            }
        }
        try writeAtomically(out, to: path)
    }
}
