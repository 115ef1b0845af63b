// diffusers' AutoencoderKL on the engine: the decoder (post_quant_conv, conv_in, mid block with
// single-head attention, UpDecoderBlock2Ds, GroupNorm + SiLU, conv_out) that turns Stable Diffusion's
// latents into images, and the encoder (conv_in, DownEncoderBlock2Ds, mid block, conv_out, quant_conv)
// that gives the latent distribution of images — built from the UNet's blocks (resnets without a time
// embedding, eps 1e-6). Port of diffusers.models.autoencoders.autoencoder_kl and .vae (Encoder,
// Decoder, DiagonalGaussianDistribution), diffusers 0.42.
import Foundation
import GPUKernels

/// An AutoencoderKL's config.json: diffusers' keys and defaults; others are errors naming them.
public struct AutoencoderKLConfiguration: Decodable, Equatable, Sendable {
    public var inChannels = 3, outChannels = 3, latentChannels = 4
    public var downBlockTypes = ["DownEncoderBlock2D"], upBlockTypes = ["UpDecoderBlock2D"]
    public var blockOutChannels = [64]
    public var layersPerBlock = 1, normNumGroups = 32
    public var actFn = "silu"
    public var sampleSize: Int? = 32
    /// Latents are divided by it before decoding (after removing `shiftFactor`), as the pipelines do.
    public var scalingFactor = 0.18215
    public var shiftFactor: Double? = nil
    public var useQuantConv = true, usePostQuantConv = true, midBlockAddAttention = true
    /// A VQModel's codebook (`num_vq_embeddings` vectors of `vq_embed_dim`): its decoder quantizes its
    /// input to the nearest codebook vector first (diffusers' VQModel.decode); nil for an AutoencoderKL.
    public var vq: VQSettings?
    public struct VQSettings: Equatable, Sendable { public var embeddings: Int, dim: Int }

    /// Channels the decoder takes: the codebook's width for a VQModel, else latent_channels.
    public var decoderInputChannels: Int { vq?.dim ?? latentChannels }

    public init() {}
    enum CodingKeys: String, CodingKey, CaseIterable {
        case inChannels = "in_channels", outChannels = "out_channels", latentChannels = "latent_channels"
        case downBlockTypes = "down_block_types", upBlockTypes = "up_block_types", blockOutChannels = "block_out_channels"
        case layersPerBlock = "layers_per_block", normNumGroups = "norm_num_groups", actFn = "act_fn", sampleSize = "sample_size"
        case scalingFactor = "scaling_factor", shiftFactor = "shift_factor", useQuantConv = "use_quant_conv"
        case usePostQuantConv = "use_post_quant_conv", midBlockAddAttention = "mid_block_add_attention"
        case forceUpcast = "force_upcast", latentsMean = "latents_mean", latentsStd = "latents_std"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = AutoencoderKLConfiguration()
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
        inChannels = try value(.inChannels, d.inChannels); outChannels = try value(.outChannels, d.outChannels)
        latentChannels = try value(.latentChannels, d.latentChannels)
        downBlockTypes = try value(.downBlockTypes, d.downBlockTypes); upBlockTypes = try value(.upBlockTypes, d.upBlockTypes)
        blockOutChannels = try value(.blockOutChannels, d.blockOutChannels)
        layersPerBlock = try value(.layersPerBlock, d.layersPerBlock); normNumGroups = try value(.normNumGroups, d.normNumGroups)
        actFn = try value(.actFn, d.actFn)
        sampleSize = try c.decodeSampleSize(forKey: .sampleSize) ?? sampleSize
        scalingFactor = try value(.scalingFactor, d.scalingFactor)
        shiftFactor = try c.decodeIfPresent(Double.self, forKey: .shiftFactor)
        useQuantConv = try value(.useQuantConv, d.useQuantConv); usePostQuantConv = try value(.usePostQuantConv, d.usePostQuantConv)
        midBlockAddAttention = try value(.midBlockAddAttention, d.midBlockAddAttention)
        _ = try c.decodeIfPresent(Bool.self, forKey: .forceUpcast)   // the engine computes in float32 anyway
        // (Older configs, SD 1.x's among them, have neither key: check presence before null.)
        for key in [CodingKeys.latentsMean, .latentsStd] where try c.contains(key) && !c.decodeNil(forKey: key) {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "per-channel latent statistics (SDXL/SD3 VAEs) are not supported; only null")
        }
    }

    /// Reads and checks a `vae/config.json` (or an LDM folder's `vqvae/config.json`: a VQModel).
    public static func load(from url: URL) throws -> AutoencoderKLConfiguration {
        if try configClassName(url) == "VQModel" {
            let file: VQModelConfigFile = try decodeConfigJSON(url, knownKeys: VQModelConfigFile.knownKeys)
            let c = try file.configuration(source: url.path)
            try c.validate(source: url.path)
            return c
        }
        if let name = try configClassName(url), name != "AutoencoderKL" {
            throw ModelError("\(url.path): _class_name \(name) is not supported (AutoencoderKL or VQModel)")
        }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        let c: AutoencoderKLConfiguration = try decodeConfigJSON(url, knownKeys: known)
        try c.validate(source: url.path)
        return c
    }

    public func validate(source: String) throws {
        func fail(_ m: String) -> ModelError { ModelError("\(source): \(m)") }
        guard !blockOutChannels.isEmpty, blockOutChannels.allSatisfy({ $0 > 0 && $0 < 1 << 16 }) else {
            throw fail("block_out_channels \(blockOutChannels) must be positive")
        }
        guard downBlockTypes.count == blockOutChannels.count, downBlockTypes.allSatisfy({ $0 == "DownEncoderBlock2D" }) else {
            throw fail("down_block_types \(downBlockTypes) must be \(blockOutChannels.count) × DownEncoderBlock2D")
        }
        guard upBlockTypes.count == blockOutChannels.count, upBlockTypes.allSatisfy({ $0 == "UpDecoderBlock2D" }) else {
            throw fail("up_block_types \(upBlockTypes) must be \(blockOutChannels.count) × UpDecoderBlock2D")
        }
        guard actFn == "silu" else { throw fail("act_fn \(actFn) is not supported (silu)") }
        for (name, v) in [("in_channels", inChannels), ("out_channels", outChannels), ("latent_channels", latentChannels),
                          ("layers_per_block", layersPerBlock), ("norm_num_groups", normNumGroups)] where v <= 0 || v >= 1 << 16 {
            throw fail("\(name) = \(v) must be positive")
        }
        if let bad = blockOutChannels.first(where: { $0 % normNumGroups != 0 }) {
            throw fail("block_out_channels \(bad) is not a multiple of norm_num_groups \(normNumGroups)")
        }
        guard scalingFactor.isFinite && scalingFactor > 0 else { throw fail("scaling_factor \(scalingFactor) must be positive") }
        if let s = shiftFactor, !s.isFinite { throw fail("shift_factor \(s) is not finite") }
    }

    /// Image pixels per latent pixel along each side.
    public var downscale: Int { 1 << (blockOutChannels.count - 1) }
}

/// The buffers an autoencoder's blocks use, allocated once for its batch and image size.
final class AutoencoderWorkspace: BlockWorkspace {
    let tA: DeviceBuffer<Float>, tB: DeviceBuffer<Float>, tC: DeviceBuffer<Float>
    let main: [DeviceBuffer<Float>]
    let convScratch: DeviceBuffer<Float>, attentionScratch: DeviceBuffer<Float>
    let timeSiLU: DeviceBuffer<Float>, timeProjection: DeviceBuffer<Float>
    let input: DeviceBuffer<Float>, output: DeviceBuffer<Float>
    let bytes: Int
    init(stream s: ComputeStream, plan: SizePlan, inputCount: Int, outputCount: Int, weightBytes: Int, what: String) throws {
        let sizes = Array(repeating: plan.activation, count: 5) + [plan.convScratch, plan.attentionScratch, 1, 1, inputCount, outputCount]
        bytes = 4 * (sizes.map { max(1, $0) }.reduce(0, +) + plan.groupNormAffine)
        if UInt64(bytes + weightBytes) > s.device.globalMemoryBytes {
            throw ModelError("the \(what) needs \(formatBytes(UInt64(bytes + weightBytes))) of device memory (weights \(formatBytes(UInt64(weightBytes))), workspace \(formatBytes(UInt64(bytes)))); \(s.device.name) has \(formatBytes(s.device.globalMemoryBytes)): use a smaller batch or size")
        }
        var next = sizes.makeIterator()
        func buf() throws -> DeviceBuffer<Float> { try s.buffer(max(1, next.next()!)) }
        tA = try buf(); tB = try buf(); tC = try buf(); main = [try buf(), try buf()]
        convScratch = try buf(); attentionScratch = try buf(); timeSiLU = try buf(); timeProjection = try buf()
        input = try buf(); output = try buf()
        try s.reserve(.groupNormAffine, count: max(1, plan.groupNormAffine))
    }
}

/// One half of an AutoencoderKL at a fixed batch and image size: the decoder (latents → images) or
/// the encoder (images → latent mean and log-variance).
public final class AutoencoderKL {
    public enum Part: String, Sendable { case decoder, encoder }
    public let config: AutoencoderKLConfiguration
    public let part: Part
    public let batch: Int
    /// Image size; latents are height / downscale × width / downscale.
    public let height: Int, width: Int
    public let stream: ComputeStream
    public let parameterCount: Int
    /// Device memory held by weights and workspace.
    public let weightBytes: Int, workspaceBytes: Int

    enum Stage {
        case conv(ConvLayer)
        case resnet(ResnetBlock)
        case attention(AttentionBlock)
        case down(Downsample)
        case up(Upsample)
        /// GroupNorm + SiLU then a convolution (conv_norm_out, conv_act, conv_out).
        case normConv(GroupNormLayer, ConvLayer)
    }
    let stages: [Stage]
    let ws: AutoencoderWorkspace
    var latentHeight: Int { height / config.downscale }
    var latentWidth: Int { width / config.downscale }
    var latentCount: Int { batch * config.latentChannels * latentHeight * latentWidth }
    /// Values the decoder takes: [N, decoderInputChannels, H/f, W/f].
    var decoderInputCount: Int { batch * config.decoderInputChannels * latentHeight * latentWidth }
    /// A VQModel's codebook [num_vq_embeddings, vq_embed_dim] on the host (the decoder's quantizer).
    let codebook: [Float]?
    var imageCount: Int { batch * config.outChannels * height * width }

    /// A `vae` folder (config.json and diffusion_pytorch_model[.variant].safetensors).
    public convenience init(folder: URL, variant: String? = nil, part: Part, stream: ComputeStream,
                            batch: Int, height: Int, width: Int) throws {
        let config = try AutoencoderKLConfiguration.load(from: folder.appendingPathComponent("config.json"))
        let url = try ModelFolder.weights(in: folder, variant: variant)
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: url.path) } catch { throw ModelError("\(url.path): \(error)") }
        try self.init(config: config, weights: WeightStore(file: file), part: part, stream: stream, batch: batch, height: height, width: width)
    }

    public init(config: AutoencoderKLConfiguration, weights store: WeightStore, part: Part, stream: ComputeStream,
                batch: Int, height: Int, width: Int) throws {
        let f = config.downscale
        guard batch > 0, height > 0, width > 0, height % f == 0, width % f == 0 else {
            throw ModelError("the autoencoder needs a positive batch and an image size divisible by \(f) (got batch \(batch), \(height)×\(width))")
        }
        self.config = config; self.part = part; self.batch = batch; self.height = height; self.width = width; self.stream = stream
        // The blocks read GroupNorm settings from a UNet configuration: the autoencoder's groups, eps 1e-6.
        var blockConfig = UNetConfiguration()
        blockConfig.normNumGroups = config.normNumGroups
        blockConfig.normEps = 1e-6
        let L = WeightLoader(store: store, stream: stream, config: blockConfig, batch: batch, contextLength: 0)
        let groups = config.normNumGroups, channels = config.blockOutChannels, N = batch
        func conv(_ name: String, _ cin: Int, _ cout: Int, _ h: Int, _ w: Int, kernel: Int) throws -> ConvLayer {
            try ConvLayer(L, name, shape: Conv2dShape(batch: N, inChannels: cin, height: h, width: w, outChannels: cout,
                                                      kernelSize: kernel, padding: kernel / 2))
        }
        func mid(_ prefix: String, _ c: Int, _ h: Int, _ w: Int) throws -> [Stage] {
            var s: [Stage] = [.resnet(try ResnetBlock(L, "\(prefix).resnets.0", inChannels: c, outChannels: c, height: h, width: w, timeEmbedding: false))]
            if config.midBlockAddAttention {
                s.append(.attention(try AttentionBlock(L, "\(prefix).attentions.0", channels: c, height: h, width: w, headDim: c, groups: groups)))
            }
            s.append(.resnet(try ResnetBlock(L, "\(prefix).resnets.1", inChannels: c, outChannels: c, height: h, width: w, timeEmbedding: false)))
            return s
        }
        var stages: [Stage] = []
        let (lh, lw, lc) = (height / f, width / f, config.latentChannels)
        switch part {
        case .decoder:
            if let vq = config.vq {
                codebook = try store.take("quantize.embedding.weight", shape: [vq.embeddings, vq.dim])
            } else {
                codebook = nil
            }
            if config.usePostQuantConv { stages.append(.conv(try conv("post_quant_conv", config.decoderInputChannels, lc, lh, lw, kernel: 1))) }
            var (h, w, c) = (lh, lw, channels.last!)
            stages.append(.conv(try conv("decoder.conv_in", lc, c, h, w, kernel: 3)))
            stages += try mid("decoder.mid_block", c, h, w)
            for (i, out) in channels.reversed().enumerated() {
                for j in 0...config.layersPerBlock {
                    stages.append(.resnet(try ResnetBlock(L, "decoder.up_blocks.\(i).resnets.\(j)", inChannels: c, outChannels: out,
                                                          height: h, width: w, timeEmbedding: false)))
                    c = out
                }
                if i < channels.count - 1 {
                    stages.append(.up(try Upsample(L, "decoder.up_blocks.\(i).upsamplers.0", channels: c, height: h, width: w)))
                    h *= 2; w *= 2
                }
            }
            stages.append(.normConv(try GroupNormLayer(L, "decoder.conv_norm_out", channels: c, groups: groups, eps: 1e-6),
                                    try conv("decoder.conv_out", c, config.outChannels, h, w, kernel: 3)))
        case .encoder:
            codebook = nil
            if config.vq != nil { throw ModelError("encoding with a VQModel is not supported (only its decoder, as LDMPipeline uses it)") }
            var (h, w, c) = (height, width, channels[0])
            stages.append(.conv(try conv("encoder.conv_in", config.inChannels, c, h, w, kernel: 3)))
            for (i, out) in channels.enumerated() {
                for j in 0..<config.layersPerBlock {
                    stages.append(.resnet(try ResnetBlock(L, "encoder.down_blocks.\(i).resnets.\(j)", inChannels: c, outChannels: out,
                                                          height: h, width: w, timeEmbedding: false)))
                    c = out
                }
                if i < channels.count - 1 {
                    let d = try Downsample(L, "encoder.down_blocks.\(i).downsamplers.0", channels: c, height: h, width: w, padding: 0)
                    stages.append(.down(d))
                    (h, w) = (d.outHeight, d.outWidth)
                }
            }
            stages += try mid("encoder.mid_block", c, h, w)
            stages.append(.normConv(try GroupNormLayer(L, "encoder.conv_norm_out", channels: c, groups: groups, eps: 1e-6),
                                    try conv("encoder.conv_out", c, 2 * lc, h, w, kernel: 3)))
            if config.useQuantConv { stages.append(.conv(try conv("quant_conv", 2 * lc, 2 * lc, lh, lw, kernel: 1))) }
        }
        // The other half's tensors are in the same file: mark them used so that only truly unexpected ones are errors.
        let other = part == .decoder ? ["encoder.", "quant_conv."] : ["decoder.", "post_quant_conv."]
        try store.checkAllUsed(except: other)
        self.stages = stages
        parameterCount = store.parameterCount
        weightBytes = L.uploadedBytes
        let latents = N * max(lc, config.decoderInputChannels) * lh * lw, images = N * max(config.inChannels, config.outChannels) * height * width
        ws = try AutoencoderWorkspace(stream: stream, plan: L.plan, inputCount: part == .decoder ? latents : images,
                                      outputCount: part == .decoder ? images : 2 * latents, weightBytes: weightBytes,
                                      what: "autoencoder's \(part.rawValue)")
        workspaceBytes = ws.bytes
    }

    /// Runs the stages from `ws.input` into `ws.output`, alternating between the two main buffers.
    func run() throws {
        let s = stream
        var cur = ws.input, flip = 0
        for (i, stage) in stages.enumerated() {
            let target = i == stages.count - 1 ? ws.output : ws.main[flip]
            switch stage {
            case .conv(let c): try c(s, ws, cur, target)
            case .resnet(let r): try r.forward(s, ws, cur, target)
            case .attention(let a): try a.forward(s, ws, cur); continue   // in place
            case .down(let d): try d.forward(s, ws, cur, target)
            case .up(let u): try u.forward(s, ws, cur, target)
            case .normConv(let norm, let c):
                try norm(s, cur, ws.tA, batch: batch, spatial: c.shape.height * c.shape.width, silu: true)
                try c(s, ws, ws.tA, target)
            }
            cur = target
            flip ^= 1
        }
    }

    /// `vae.decode(z).sample` for z [N, latent_channels, H/f, W/f] (unscaled: divide a pipeline's latents
    /// by `scaling_factor` first, as `decodeScaled` does). Returns [N, out_channels, H, W], about [-1, 1].
    public func decode(_ latents: [Float]) throws -> [Float] {
        try decodeOnDevice(latents)
        return try stream.download(ws.output, count: imageCount)
    }

    /// `decode`, leaving the images in `output` on the device.
    public func decodeOnDevice(_ latents: [Float]) throws {
        guard part == .decoder else { throw ModelError("this AutoencoderKL was built as the encoder; decoding needs the decoder") }
        guard latents.count == decoderInputCount else {
            throw ModelError("latents have \(latents.count) values; the decoder takes [\(batch), \(config.decoderInputChannels), \(latentHeight), \(latentWidth)] = \(decoderInputCount)")
        }
        try ws.input.write(codebook.map { quantize(latents, codebook: $0) } ?? latents, queue: stream.queue)
        try run()
    }

    /// The decoder's images [batch, out_channels, H, W] after `decodeOnDevice` (the encoder's moments after `encode`).
    public var output: DeviceBuffer<Float> { ws.output }

    /// The pipelines' decoding of their latents: `vae.decode(latents / scaling_factor + shift_factor)`.
    public func decodeScaled(_ latents: [Float]) throws -> [Float] {
        try decodeScaledOnDevice(latents)
        return try stream.download(ws.output, count: imageCount)
    }

    /// `decodeScaled`, leaving the images in `output` on the device.
    public func decodeScaledOnDevice(_ latents: [Float]) throws {
        let scale = Float(1 / config.scalingFactor), shift = Float(config.shiftFactor ?? 0)
        try decodeOnDevice(latents.map { $0 * scale + shift })
    }

    /// `vae.encode(x).latent_dist` for images x [N, in_channels, H, W] in [-1, 1]: its mean and its
    /// log-variance (clamped to [-30, 20] as DiagonalGaussianDistribution does), each [N, latent_channels, H/f, W/f].
    public func encode(_ images: [Float]) throws -> (mean: [Float], logvar: [Float]) {
        guard part == .encoder else { throw ModelError("this AutoencoderKL was built as the decoder; encoding needs the encoder") }
        let count = batch * config.inChannels * height * width
        guard images.count == count else {
            throw ModelError("images have \(images.count) values; the encoder takes [\(batch), \(config.inChannels), \(height), \(width)] = \(count)")
        }
        try ws.input.write(images, queue: stream.queue)
        try run()
        let moments = try stream.download(ws.output, count: 2 * latentCount)
        let per = config.latentChannels * latentHeight * latentWidth
        var mean: [Float] = [], logvar: [Float] = []
        mean.reserveCapacity(latentCount); logvar.reserveCapacity(latentCount)
        for n in 0..<batch {
            mean += moments[(2 * n) * per ..< (2 * n + 1) * per]
            logvar += moments[(2 * n + 1) * per ..< (2 * n + 2) * per].map { min(max($0, -30), 20) }
        }
        return (mean, logvar)
    }
}

extension AutoencoderKL {
    /// VectorQuantizer's inference: each position's vector [vq_embed_dim] (NCHW) replaced by its nearest
    /// codebook vector in Euclidean distance (the first on ties, as argmin).
    func quantize(_ z: [Float], codebook: [Float]) -> [Float] {
        let d = config.decoderInputChannels, plane = latentHeight * latentWidth, n = codebook.count / d
        var out = z
        for b in 0..<batch {
            let base = b * d * plane
            for p in 0..<plane {
                var best = 0, bestDistance = Float.infinity
                for k in 0..<n {
                    var distance: Float = 0
                    for c in 0..<d { let diff = z[base + c * plane + p] - codebook[k * d + c]; distance += diff * diff }
                    if distance < bestDistance { bestDistance = distance; best = k }
                }
                for c in 0..<d { out[base + c * plane + p] = codebook[best * d + c] }
            }
        }
        return out
    }
}

/// A VQModel's config.json (diffusers' keys and defaults), read as the autoencoder's configuration.
struct VQModelConfigFile: Decodable {
    static let knownKeys: Set<String> = ["in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
                                         "layers_per_block", "act_fn", "latent_channels", "sample_size", "num_vq_embeddings",
                                         "norm_num_groups", "vq_embed_dim", "scaling_factor", "norm_type", "mid_block_add_attention",
                                         "lookup_from_codebook", "force_upcast"]
    var inChannels = 3, outChannels = 3, latentChannels = 3, numVQEmbeddings = 256, normNumGroups = 32, layersPerBlock = 1
    var downBlockTypes = ["DownEncoderBlock2D"], upBlockTypes = ["UpDecoderBlock2D"], blockOutChannels = [64]
    var actFn = "silu", normType = "group"
    var sampleSize: Int? = 32, vqEmbedDim: Int?
    var scalingFactor = 0.18215
    var midBlockAddAttention = true, lookupFromCodebook = false

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", latentChannels = "latent_channels"
        case numVQEmbeddings = "num_vq_embeddings", normNumGroups = "norm_num_groups", layersPerBlock = "layers_per_block"
        case downBlockTypes = "down_block_types", upBlockTypes = "up_block_types", blockOutChannels = "block_out_channels"
        case actFn = "act_fn", normType = "norm_type", sampleSize = "sample_size", vqEmbedDim = "vq_embed_dim"
        case scalingFactor = "scaling_factor", midBlockAddAttention = "mid_block_add_attention", lookupFromCodebook = "lookup_from_codebook"
    }
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ current: inout T) throws { if let v = try c.decodeIfPresent(T.self, forKey: key) { current = v } }
        try value(.inChannels, &inChannels); try value(.outChannels, &outChannels); try value(.latentChannels, &latentChannels)
        try value(.numVQEmbeddings, &numVQEmbeddings); try value(.normNumGroups, &normNumGroups); try value(.layersPerBlock, &layersPerBlock)
        try value(.downBlockTypes, &downBlockTypes); try value(.upBlockTypes, &upBlockTypes); try value(.blockOutChannels, &blockOutChannels)
        try value(.actFn, &actFn); try value(.normType, &normType); try value(.scalingFactor, &scalingFactor)
        try value(.midBlockAddAttention, &midBlockAddAttention); try value(.lookupFromCodebook, &lookupFromCodebook)
        sampleSize = try c.decodeSampleSize(forKey: .sampleSize) ?? sampleSize
        vqEmbedDim = try c.decodeIfPresent(Int.self, forKey: .vqEmbedDim)
    }

    func configuration(source: String) throws -> AutoencoderKLConfiguration {
        guard normType == "group" else { throw ModelError("\(source): unsupported norm_type = \(normType) (only group; spatial norms need the quantized latents in every decoder norm)") }
        guard !lookupFromCodebook else { throw ModelError("\(source): unsupported lookup_from_codebook = true (the decoder quantizes its input)") }
        guard (1...(1 << 20)).contains(numVQEmbeddings) else { throw ModelError("\(source): num_vq_embeddings \(numVQEmbeddings) must be 1…1048576") }
        let dim = vqEmbedDim ?? latentChannels
        guard (1...(1 << 16)).contains(dim) else { throw ModelError("\(source): vq_embed_dim \(dim) must be 1…65536") }
        var a = AutoencoderKLConfiguration()
        a.inChannels = inChannels; a.outChannels = outChannels; a.latentChannels = latentChannels
        a.downBlockTypes = downBlockTypes; a.upBlockTypes = upBlockTypes; a.blockOutChannels = blockOutChannels
        a.layersPerBlock = layersPerBlock; a.normNumGroups = normNumGroups; a.actFn = actFn; a.sampleSize = sampleSize
        a.scalingFactor = scalingFactor; a.midBlockAddAttention = midBlockAddAttention
        a.vq = .init(embeddings: numVQEmbeddings, dim: dim)
        return a
    }
}
