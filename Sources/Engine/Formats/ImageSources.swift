// Image sets for FID, in model space ([-1, 1], NCHW float32, x/127.5 − 1 for 8-bit pixels as
// diffusers converts): folders of PNG files, tensor files (tensor `sample` [N, C, H, W], as
// `generate --output-tensor` writes), and MNIST-style IDX files (optionally gzipped, as Debian's
// dataset-fashion-mnist ships them).
import Foundation
import GPUKernels

/// Images in model space.
public struct ImageSet: Sendable {
    public var count: Int, channels: Int, height: Int, width: Int
    public var values: [Float]
    public var imageSize: Int { channels * height * width }

    public init(count: Int, channels: Int, height: Int, width: Int, values: [Float]) {
        precondition(values.count == count * channels * height * width, "image set shape mismatch")
        self.count = count; self.channels = channels; self.height = height; self.width = width; self.values = values
    }

    /// Reads a folder of PNGs (sorted by name), a .safetensors file, or an IDX file (.gz or not).
    public static func load(_ path: String, limit: Int? = nil) throws -> ImageSet {
        if let limit, limit < 1 { throw ModelError(argument: "--limit \(limit): the number of images to use must be positive") }
        switch FileKind(path) {
        case .missing(errno: ENOENT): throw ModelError("\(path) does not exist")
        case .missing(let e): throw ModelError("cannot read \(path.count > 200 ? path.prefix(200) + "…" : path): \(String(cString: strerror(e)))")
        case .folder: return try loadPNGFolder(path, limit: limit)
        case .other:
            throw ModelError("\(path) is not a regular file (a FIFO, socket or device): give a folder of PNGs, a .safetensors, IDX or PNG file, or a .npz")
        case .regular: break
        }
        if path.hasSuffix(".safetensors") {
            let file = try SafeTensorsFile(path: path)
            guard let info = file.tensors["sample"], info.shape.count == 4 else {
                throw ModelError("\(path): needs a tensor `sample` [N, C, H, W] in model space")
            }
            var set = ImageSet(count: info.shape[0], channels: info.shape[1], height: info.shape[2], width: info.shape[3],
                               values: try file.floats("sample"))
            if let limit, limit < set.count { set = set.prefix(limit) }
            return set
        }
        if path.contains("idx3-ubyte") || path.hasSuffix(".idx") { return try loadIDX(path, limit: limit) }
        if path.hasSuffix(".png") {
            let (c, h, w, px) = try PNGDecoder.decode(try readFile(path), name: path)
            return ImageSet(count: 1, channels: c, height: h, width: w, values: px)
        }
        // Other names by their first bytes: an IDX image file (magic 0x00000803; gzip's 1F 8B, checked
        // again after unpacking) or a PNG.
        if let head = FileHandle(forReadingAtPath: path).map({ h in defer { try? h.close() }; return [UInt8](h.readData(ofLength: 8)) }) {
            if head.starts(with: [0, 0, 8, 3]) || head.starts(with: [0x1F, 0x8B]) { return try loadIDX(path, limit: limit) }
            if head.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
                let (c, h, w, px) = try PNGDecoder.decode(try readFile(path), name: path)
                return ImageSet(count: 1, channels: c, height: h, width: w, values: px)
            }
        }
        throw ModelError("\(path): not an image folder, .safetensors tensor file, IDX file or .npz statistics")
    }

    /// The first `n` images.
    public func prefix(_ n: Int) -> ImageSet {
        ImageSet(count: n, channels: channels, height: height, width: width, values: Array(values.prefix(n * imageSize)))
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        do { return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw ModelError("cannot read \(path): \(describeFileError(error))")
        }
    }

    static func loadPNGFolder(_ path: String, limit: Int?) throws -> ImageSet {
        let all: [String]
        do { all = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
            throw ModelError("cannot read the folder \(path): \(describeFileError(error))")
        }
        // (Hidden files are skipped: macOS leaves "._name.png" resource forks beside copied images.)
        let names = all.filter { $0.lowercased().hasSuffix(".png") && !$0.hasPrefix(".") }.sorted()
        guard !names.isEmpty else { throw ModelError("\(path): no .png files") }
        var first: (Int, Int, Int)? = nil, values: [Float] = []
        let take = min(names.count, limit ?? .max)
        for name in names.prefix(take) {
            let file = "\(path)/\(name)"
            switch FileKind(file) {
            case .regular: break
            case .missing(let e): throw ModelError("cannot read \(file): \(String(cString: strerror(e)))")
            case .folder, .other: throw ModelError("\(file) is not a regular file (a folder, a FIFO or a device)")
            }
            let (c, h, w, px) = try PNGDecoder.decode(try readFile(file), name: file)
            if let f = first, f != (c, h, w) {
                throw ModelError("\(file) is \(w)×\(h) with \(c) channels; \(names[0]) is \(f.2)×\(f.1) with \(f.0)")
            }
            first = (c, h, w)
            values += px
        }
        return ImageSet(count: take, channels: first!.0, height: first!.1, width: first!.2, values: values)
    }

    /// MNIST's IDX format: magic 0x00000803, then count, rows, columns (big-endian), then uint8 pixels.
    static func loadIDX(_ path: String, limit: Int?) throws -> ImageSet {
        var bytes = try readFile(path)
        if bytes.count >= 2, bytes[0] == 0x1F, bytes[1] == 0x8B { bytes = try gunzip(bytes, name: path) }
        func be32(_ o: Int) -> Int { Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]) }
        guard bytes.count >= 16, be32(0) == 0x0803 else { throw ModelError("\(path): not an IDX image file (magic)") }
        let n = be32(4), h = be32(8), w = be32(12)
        let (size, overflow1) = h.multipliedReportingOverflow(by: w), (pixels, overflow2) = n.multipliedReportingOverflow(by: size)
        guard n > 0, h > 0, w > 0, !overflow1, !overflow2, bytes.count - 16 >= pixels else {
            throw ModelError("\(path): truncated IDX file (\(n) images of \(h)×\(w) pixels in \(bytes.count - 16) bytes)")
        }
        let take = min(n, limit ?? .max)
        let values = bytes[16..<(16 + take * h * w)].map { Float($0) / 127.5 - 1 }
        return ImageSet(count: take, channels: 1, height: h, width: w, values: values)
    }

    /// Labels of an IDX label file (magic 0x00000801), .gz or not.
    public static func loadIDXLabels(_ path: String) throws -> [Int] {
        var bytes = try readFile(path)
        if bytes.count >= 2, bytes[0] == 0x1F, bytes[1] == 0x8B { bytes = try gunzip(bytes, name: path) }
        guard bytes.count >= 8, bytes[0] == 0, bytes[1] == 0, bytes[2] == 8, bytes[3] == 1 else {
            throw ModelError("\(path): not an IDX label file (magic)")
        }
        let n = Int(bytes[4]) << 24 | Int(bytes[5]) << 16 | Int(bytes[6]) << 8 | Int(bytes[7])
        guard bytes.count >= 8 + n else { throw ModelError("\(path): truncated IDX label file") }
        return bytes[8..<(8 + n)].map(Int.init)
    }

    static func gunzip(_ data: [UInt8], name: String) throws -> [UInt8] {
        try Zlib.inflate(data, format: .gzip, name: name)
    }
}

/// PNG decoding (8-bit grey, grey+alpha, RGB, RGBA; non-interlaced), alpha dropped.
public enum PNGDecoder {
    /// Returns (channels 1 or 3, height, width, pixels in model space, NCHW for one image).
    public static func decode(_ b: [UInt8], name: String) throws -> (Int, Int, Int, [Float]) {
        guard b.count > 8, Array(b[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else {
            throw ModelError("\(name): not a PNG file")
        }
        func be32(_ o: Int) -> Int { Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]) }
        var o = 8, width = 0, height = 0, colorType = 0, idat: [UInt8] = []
        while o + 8 <= b.count {
            let length = be32(o), type = String(decoding: b[(o + 4)..<(o + 8)], as: UTF8.self)
            guard o + 12 + length <= b.count else { throw ModelError("\(name): truncated PNG chunk \(type)") }
            let body = Array(b[(o + 8)..<(o + 8 + length)])
            switch type {
            case "IHDR":
                guard length >= 13 else { throw ModelError("\(name): bad IHDR") }
                width = be32(o + 8); height = be32(o + 12)
                let depth = Int(body[8]); colorType = Int(body[9])
                guard depth == 8, [0, 2, 4, 6].contains(colorType), body[12] == 0 else {
                    throw ModelError("\(name): only 8-bit, non-interlaced grey/RGB(A) PNGs are supported (bit depth \(depth), colour type \(colorType), interlace \(body[12]))")
                }
            case "IDAT": idat += body
            case "IEND": o = b.count
            default: break
            }
            o += 12 + length
        }
        guard width > 0, height > 0, !idat.isEmpty else { throw ModelError("\(name): PNG has no image data") }
        // (Bounded before any size arithmetic: 2^32 − 1 by 2^32 − 1 overflows it.)
        guard width <= 1 << 16, height <= 1 << 16, width * height <= 1 << 28 else {
            throw ModelError("\(name): a \(width)×\(height) PNG is beyond what this reader takes (each side ≤ 65536, ≤ 2^28 pixels)")
        }
        let samples = [0: 1, 2: 3, 4: 2, 6: 4][colorType]!
        let stride = width * samples
        let expected = height * (stride + 1)
        let raw = try Zlib.inflate(idat, format: .zlib, limit: expected, name: name)
        guard raw.count == expected else { throw ModelError("\(name): corrupt PNG image data") }
        // Undo the per-row filters.
        var pixels = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)]
            for x in 0..<stride {
                let v = raw[y * (stride + 1) + 1 + x]
                let left = x >= samples ? Int(pixels[y * stride + x - samples]) : 0
                let up = y > 0 ? Int(pixels[(y - 1) * stride + x]) : 0
                let upLeft = (x >= samples && y > 0) ? Int(pixels[(y - 1) * stride + x - samples]) : 0
                let predictor: Int
                switch filter {
                case 0: predictor = 0
                case 1: predictor = left
                case 2: predictor = up
                case 3: predictor = (left + up) / 2
                case 4:
                    let p = left + up - upLeft, pa = abs(p - left), pb = abs(p - up), pc = abs(p - upLeft)
                    predictor = pa <= pb && pa <= pc ? left : pb <= pc ? up : upLeft
                default: throw ModelError("\(name): bad PNG filter \(filter)")
                }
                pixels[y * stride + x] = UInt8((Int(v) + predictor) & 0xFF)
            }
        }
        let channels = samples >= 3 ? 3 : 1
        var out = [Float](repeating: 0, count: channels * height * width)
        for c in 0..<channels { for p in 0..<(height * width) { out[c * height * width + p] = Float(pixels[p * samples + c]) / 127.5 - 1 } }
        return (channels, height, width, out)
    }
}
