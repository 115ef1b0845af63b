// diffusers' UNet2DModel and UNet2DConditionModel on the engine: construction from a configuration
// and weights, a workspace sized once for a batch and image size (the forward pass allocates
// nothing), and the forward pass in diffusers' phases (time, pre-process, down, mid, up,
// post-process). The two classes differ only in their attention layers (spatial attention or
// Transformer2DModel over encoder_hidden_states) and their mid block's attention rescaling.
// Port of diffusers.models.unets.unet_2d.UNet2DModel and unet_2d_condition.UNet2DConditionModel
// (and their Down/Up/Mid blocks), diffusers 0.42.
import Foundation
import GPUKernels

/// Sizes (in floats) of the shared buffers, gathered while the blocks are built.
struct SizePlan {
    var activation = 0, convScratch = 0, attentionScratch = 0, timeProjection = 0, groupNormAffine = 0
    /// Transformer blocks: the widest token projection (QKV or the GEGLU input), the GEGLU output,
    /// and cross-attention's keys and values.
    var tokenWide = 0, tokenGated = 0, contextKV = 0
}

/// Hands weights to the blocks as device buffers, checking names and shapes, and gathers the plan.
final class WeightLoader {
    let store: WeightStore
    let stream: ComputeStream
    let config: UNetConfiguration
    let batch: Int
    /// Tokens of encoder_hidden_states (conditional UNets).
    let contextLength: Int
    var plan = SizePlan()
    /// The layout the blocks keep their activations in (the model's input and output stay NCHW).
    let layout: ActivationLayout
    init(store: WeightStore, stream: ComputeStream, config: UNetConfiguration, batch: Int, contextLength: Int,
         layout: ActivationLayout = .nchw) {
        self.store = store; self.stream = stream; self.config = config; self.batch = batch; self.contextLength = contextLength
        self.layout = layout
    }
    /// Bytes of weights uploaded so far.
    private(set) var uploadedBytes = 0
    func tensor(_ name: String, _ shape: [Int]) throws -> DeviceBuffer<Float> {
        try upload(try store.take(name, shape: shape))
    }
    func upload(_ values: [Float]) throws -> DeviceBuffer<Float> {
        uploadedBytes += 4 * values.count
        return try stream.upload(values)
    }
}

/// Every buffer the forward pass touches, allocated once.
public final class UNetWorkspace {
    public let input: DeviceBuffer<Float>, output: DeviceBuffer<Float>
    public let timesteps: DeviceBuffer<Float>
    let timeSinusoid: DeviceBuffer<Float>, timeHidden: DeviceBuffer<Float>
    let timeEmbedding: DeviceBuffer<Float>, timeSiLU: DeviceBuffer<Float>, timeProjection: DeviceBuffer<Float>
    let tA: DeviceBuffer<Float>, tB: DeviceBuffer<Float>, tC: DeviceBuffer<Float>
    let main: [DeviceBuffer<Float>], concat: DeviceBuffer<Float>
    let convScratch: DeviceBuffer<Float>, attentionScratch: DeviceBuffer<Float>
    /// encoder_hidden_states [N, L, D] of a conditional UNet (one float otherwise).
    public let context: DeviceBuffer<Float>
    let tokenWide: DeviceBuffer<Float>, tokenGated: DeviceBuffer<Float>, contextKV: DeviceBuffer<Float>
    /// SDXL's added conditions: `text_embeds` [N, D] and `time_ids` [N, K] (one float each otherwise),
    /// the time ids' sinusoids [N, K · addition_time_embed_dim] and add_embedding's hidden layer [N, T].
    public let textEmbeds: DeviceBuffer<Float>, timeIDs: DeviceBuffer<Float>
    let addSinusoid: DeviceBuffer<Float>, addHidden: DeviceBuffer<Float>
    /// A UNet2DModel's class labels [N] (as floats: the table's row, or the timestep-embedded value)
    /// and their embedding [N, T] (one float each without a class embedding).
    public let classLabels: DeviceBuffer<Float>
    let classEmbedding: DeviceBuffer<Float>, classIDs: DeviceBuffer<Int32>
    /// The skip stack: conv_in's output, then every down-block layer's and downsampler's output.
    public let skips: [DeviceBuffer<Float>]
    /// Bytes of device memory held.
    public let bytes: Int

    /// Allocates the buffers; `weightBytes` already on the device count towards the check that
    /// everything fits the device's memory (an error naming both figures when it does not).
    init(stream s: ComputeStream, config c: UNetConfiguration, batch: Int, height: Int, width: Int,
         contextLength: Int, timeIDs: Int, plan: SizePlan, skipCounts: [Int], weightBytes: Int) throws {
        let added = (c.textTime.map { [batch * $0.textDim(timeIDs: timeIDs), batch * timeIDs, batch * timeIDs * $0.timeDim, batch * c.timeEmbedDim] }
            ?? [0, 0, 0, 0]) + (c.hasClassEmbedding ? [batch, batch * c.timeEmbedDim] : [0, 0])
        let sizes = [batch * c.inChannels * height * width, batch * c.outChannels * height * width, batch,
                     batch * c.timeProjectionDim] + Array(repeating: batch * c.timeEmbedDim, count: 3)
            + [plan.timeProjection] + Array(repeating: plan.activation, count: 6)
            + [plan.convScratch, plan.attentionScratch, batch * contextLength * (c.crossAttention?.dim ?? 0),
               plan.tokenWide, plan.tokenGated, plan.contextKV, plan.groupNormAffine] + added + skipCounts
        bytes = 4 * sizes.map { max(1, $0) }.reduce(0, +)
        let device = s.device
        if UInt64(bytes + weightBytes) > device.globalMemoryBytes {
            throw ModelError("the UNet needs \(formatBytes(UInt64(bytes + weightBytes))) of device memory (weights \(formatBytes(UInt64(weightBytes))), workspace \(formatBytes(UInt64(bytes))) for batch \(batch) at \(height)×\(width)); \(device.name) has \(formatBytes(device.globalMemoryBytes)): use a smaller --batch or size")
        }
        var next = sizes.makeIterator()
        func buf() throws -> DeviceBuffer<Float> { try s.buffer(max(1, next.next()!)) }
        input = try buf(); output = try buf(); timesteps = try buf()
        timeSinusoid = try buf(); timeHidden = try buf(); timeEmbedding = try buf(); timeSiLU = try buf()
        timeProjection = try buf()
        tA = try buf(); tB = try buf(); tC = try buf()
        main = [try buf(), try buf()]
        concat = try buf()
        convScratch = try buf(); attentionScratch = try buf(); context = try buf()
        tokenWide = try buf(); tokenGated = try buf(); contextKV = try buf()
        try s.reserve(.groupNormAffine, count: next.next()!)
        textEmbeds = try buf(); self.timeIDs = try buf(); addSinusoid = try buf(); addHidden = try buf()
        classLabels = try buf(); classEmbedding = try buf()
        classIDs = try DeviceBuffer<Int32>(context: s.context, count: max(1, batch))
        skips = try skipCounts.map { _ in try buf() }
    }
}

/// One resolution level of the down path: `layers` resnets (each followed by attention in an
/// AttnDownBlock2D or a transformer in a CrossAttnDownBlock2D), then a downsampler except at the deepest level.
public final class DownBlock {
    public let resnets: [ResnetBlock]
    let attentions: [any SpatialMixing]
    public let downsample: Downsample?
    /// Indices into the skip stack of each layer's output, then the downsampler's.
    public let skipIndices: [Int]
    init(resnets: [ResnetBlock], attentions: [any SpatialMixing], downsample: Downsample?, skipIndices: [Int]) {
        self.resnets = resnets; self.attentions = attentions; self.downsample = downsample; self.skipIndices = skipIndices
    }
}

/// UNetMidBlock2D (resnet, attention if add_attention, resnet) or UNetMidBlock2DCrossAttn (resnet,
/// transformer, resnet).
public final class MidBlock {
    public let first: ResnetBlock, second: ResnetBlock
    let attention: (any SpatialMixing)?
    init(first: ResnetBlock, attention: (any SpatialMixing)?, second: ResnetBlock) {
        self.first = first; self.attention = attention; self.second = second
    }
}

/// One resolution level of the up path: `layers + 1` resnets, each fed concat(main, skip) and
/// followed by attention in an AttnUpBlock2D or a transformer in a CrossAttnUpBlock2D, then an
/// upsampler except at the last level.
public final class UpBlock {
    public let resnets: [ResnetBlock]
    let attentions: [any SpatialMixing]
    public let upsample: Upsample?
    /// The skip-stack index each resnet concatenates, and that skip's channel count.
    public let skipIndices: [Int], skipChannels: [Int]
    init(resnets: [ResnetBlock], attentions: [any SpatialMixing], upsample: Upsample?, skipIndices: [Int], skipChannels: [Int]) {
        self.resnets = resnets; self.attentions = attentions; self.upsample = upsample
        self.skipIndices = skipIndices; self.skipChannels = skipChannels
    }
}

public final class UNet {
    public let config: UNetConfiguration
    public let batch: Int, height: Int, width: Int
    /// Tokens of encoder_hidden_states a conditional UNet takes (0 for a UNet2DModel).
    public let contextLength: Int
    public let stream: ComputeStream
    public let workspace: UNetWorkspace
    public let downBlocks: [DownBlock]
    public let mid: MidBlock
    public let upBlocks: [UpBlock]
    let timeLinear1: (DeviceBuffer<Float>, DeviceBuffer<Float>), timeLinear2: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    /// SDXL's add_embedding: linear_1's weight split by columns into its text and time-id parts
    /// (one product each, no concatenation), its bias, and linear_2.
    let addEmbedding: (text: DeviceBuffer<Float>, time: DeviceBuffer<Float>, bias: DeviceBuffer<Float>,
                       weight2: DeviceBuffer<Float>, bias2: DeviceBuffer<Float>)?
    /// SDXL's micro-conditioning ids per sample (`time_ids`' width; 0 without an added embedding).
    public let timeIDCount: Int
    /// A UNet2DModel's class embedding: the table [num_class_embeds, T], or class_embed_type timestep's
    /// linear_1 and linear_2 (weight, bias each).
    enum ClassEmbedding {
        case table(DeviceBuffer<Float>)
        case timestep((DeviceBuffer<Float>, DeviceBuffer<Float>), (DeviceBuffer<Float>, DeviceBuffer<Float>))
    }
    let classEmbedding: ClassEmbedding?
    /// The width of `text_embeds` (0 without an added embedding).
    public var textEmbedsDim: Int { config.textTime?.textDim(timeIDs: timeIDCount) ?? 0 }
    let convIn: ConvLayer, normOut: GroupNormLayer, convOut: ConvLayer
    public let parameterCount: Int
    /// Bytes of device memory the weights take.
    public let weightBytes: Int
    /// Multiply-accumulates of one forward pass over the batch (convolutions, linears, attention).
    public let macs: Int
    /// The layout of the activations between conv_in and conv_out, the feature cache's included
    /// (`Backends.activationLayout(channels:)`; UNet2DConditionModels keep NCHW).
    public let layout: ActivationLayout

    /// Loads `folder`'s UNet for inputs of `batch` × in_channels × height × width (and, for a
    /// UNet2DConditionModel, encoder_hidden_states of `contextLength` tokens).
    public convenience init(folder: ModelFolder, stream: ComputeStream, batch: Int, height: Int, width: Int,
                            contextLength: Int = UNet.defaultContextLength, timeIDs: Int = UNet.defaultTimeIDCount) throws {
        let config = try UNetConfiguration.load(from: folder.configURL)
        let file = try SafeTensorsFile(path: folder.weightsURL.path)
        try self.init(config: config, weights: WeightStore(file: file), stream: stream, batch: batch, height: height, width: width,
                      contextLength: contextLength, timeIDs: timeIDs)
    }

    /// CLIP's 77 tokens, as Stable Diffusion's pipelines pad prompts.
    public static let defaultContextLength = 77
    /// SDXL base's micro-conditioning: original size, crop top-left, target size (two values each).
    public static let defaultTimeIDCount = 6

    /// `timeIDs`: the width of `time_ids` a UNet with SDXL's added embedding takes (ignored otherwise);
    /// `text_embeds` then has projection_class_embeddings_input_dim − timeIDs · addition_time_embed_dim values.
    public init(config c: UNetConfiguration, weights: WeightStore, stream: ComputeStream,
                batch: Int, height: Int, width: Int, contextLength: Int = UNet.defaultContextLength,
                timeIDs: Int = UNet.defaultTimeIDCount) throws {
        try c.validate()
        if let a = c.textTime, !(timeIDs >= 1 && a.textDim(timeIDs: timeIDs) >= 1) {
            throw ModelError("\(timeIDs) time ids of \(a.timeDim) values leave no room for text_embeds in projection_class_embeddings_input_dim \(a.inputDim)")
        }
        timeIDCount = c.textTime == nil ? 0 : timeIDs
        guard batch > 0 else { throw ModelError("batch size must be positive, not \(batch)") }
        guard !c.isConditional || contextLength > 0 else {
            throw ModelError("encoder_hidden_states must have at least one token, not \(contextLength)")
        }
        self.contextLength = c.isConditional ? contextLength : 0
        guard height > 0, width > 0, height % c.spatialMultiple == 0, width % c.spatialMultiple == 0 else {
            throw ModelError("input size \(height)×\(width) is not supported: with \(c.levels) levels both sides must be positive multiples of \(c.spatialMultiple)")
        }
        config = c; self.batch = batch; self.height = height; self.width = width; self.stream = stream
        if let floats = weights.file?.floatCount, UInt64(4 * floats) > stream.device.globalMemoryBytes {
            throw ModelError("the UNet's weights take \(formatBytes(UInt64(4 * floats))) as float32; \(stream.device.name) has \(formatBytes(stream.device.globalMemoryBytes)) of memory")
        }
        layout = c.isConditional ? .nchw : stream.backends.activationLayout(channels: c.blockOutChannels)
        let L = WeightLoader(store: weights, stream: stream, config: c, batch: batch, contextLength: self.contextLength, layout: layout)
        /// The attention layer after a resnet: UNet2DModel's spatial attention or a Transformer2DModel.
        func mixer(_ prefix: String, channels: Int, h: Int, w: Int, heads: Int, layers: Int) throws -> any SpatialMixing {
            if c.isConditional {
                return try SpatialTransformer(L, prefix, channels: channels, height: h, width: w, heads: heads, layers: layers)
            }
            return try AttentionBlock(L, prefix, channels: channels, height: h, width: w,
                                      headDim: c.attentionHeadDim ?? channels, groups: c.normNumGroups)
        }
        let T = c.timeEmbedDim, C0 = c.blockOutChannels[0]

        // 1. time
        timeLinear1 = (try L.tensor("time_embedding.linear_1.weight", [T, c.timeProjectionDim]),
                       try L.tensor("time_embedding.linear_1.bias", [T]))
        timeLinear2 = (try L.tensor("time_embedding.linear_2.weight", [T, T]), try L.tensor("time_embedding.linear_2.bias", [T]))
        if let a = c.textTime {
            let D = a.textDim(timeIDs: timeIDs)
            let w1 = try weights.take("add_embedding.linear_1.weight", shape: [T, a.inputDim])
            let rows = (0..<T).map { w1[($0 * a.inputDim)..<(($0 + 1) * a.inputDim)] }
            addEmbedding = (text: try L.upload(rows.flatMap { $0.prefix(D) }), time: try L.upload(rows.flatMap { $0.dropFirst(D) }),
                            bias: try L.tensor("add_embedding.linear_1.bias", [T]),
                            weight2: try L.tensor("add_embedding.linear_2.weight", [T, T]), bias2: try L.tensor("add_embedding.linear_2.bias", [T]))
        } else {
            addEmbedding = nil
        }
        if c.classEmbedType == "timestep" {
            classEmbedding = .timestep((try L.tensor("class_embedding.linear_1.weight", [T, c.timeProjectionDim]), try L.tensor("class_embedding.linear_1.bias", [T])),
                                       (try L.tensor("class_embedding.linear_2.weight", [T, T]), try L.tensor("class_embedding.linear_2.bias", [T])))
        } else if let n = c.numClassEmbeds, c.hasClassEmbedding {
            classEmbedding = .table(try L.tensor("class_embedding.weight", [n, T]))
        } else {
            classEmbedding = nil
        }
        // 2. pre-process
        convIn = try ConvLayer(L, "conv_in", shape: Conv2dShape(batch: batch, inChannels: c.inChannels, height: height,
                                                                 width: width, outChannels: C0, kernelSize: 3, padding: 1),
                               input: .nchw)
        // The skip stack as (channels, height, width), to size its buffers and wire the up path.
        var skips: [(c: Int, h: Int, w: Int)] = [(C0, height, width)]
        // 3. down
        var downs: [DownBlock] = []
        var (h, w, channels) = (height, width, C0)
        for (i, type) in c.downBlockTypes.enumerated() {
            let out = c.blockOutChannels[i]
            var resnets: [ResnetBlock] = [], attentions: [any SpatialMixing] = [], indices: [Int] = []
            for j in 0..<c.layersPerBlock {
                resnets.append(try ResnetBlock(L, "down_blocks.\(i).resnets.\(j)", inChannels: j == 0 ? channels : out,
                                               outChannels: out, height: h, width: w))
                if UNetConfiguration.hasAttention(type) {
                    attentions.append(try mixer("down_blocks.\(i).attentions.\(j)", channels: out, h: h, w: w,
                                                heads: c.crossAttention?.heads[i] ?? 0, layers: c.crossAttention?.layers[i] ?? 0))
                }
                indices.append(skips.count); skips.append((out, h, w))
            }
            channels = out
            var down: Downsample? = nil
            if i < c.levels - 1 {
                let d = try Downsample(L, "down_blocks.\(i).downsamplers.0", channels: out, height: h, width: w, padding: c.downsamplePadding)
                (h, w) = (d.outHeight, d.outWidth)
                indices.append(skips.count); skips.append((out, h, w))
                down = d
            }
            downs.append(DownBlock(resnets: resnets, attentions: attentions, downsample: down, skipIndices: indices))
        }
        downBlocks = downs
        // 4. mid
        let midHeadDim = c.attentionHeadDim ?? channels
        let midFirst = try ResnetBlock(L, "mid_block.resnets.0", inChannels: channels, outChannels: channels, height: h, width: w,
                                       outputScaleFactor: c.midBlockScaleFactor)
        let midAttention: (any SpatialMixing)?
        if let x = c.crossAttention {
            // UNetMidBlock2DCrossAttn: the transformer's output is not rescaled.
            midAttention = try SpatialTransformer(L, "mid_block.attentions.0", channels: channels, height: h, width: w,
                                                  heads: x.heads.last!, layers: x.layers.last!)
        } else {
            midAttention = c.addAttention ? try AttentionBlock(L, "mid_block.attentions.0", channels: channels, height: h, width: w,
                                                               headDim: midHeadDim, groups: c.attnNormNumGroups ?? c.normNumGroups,
                                                               rescaleOutputFactor: c.midBlockScaleFactor) : nil
        }
        mid = MidBlock(
            first: midFirst,
            attention: midAttention,
            second: try ResnetBlock(L, "mid_block.resnets.1", inChannels: channels, outChannels: channels, height: h, width: w,
                                    outputScaleFactor: c.midBlockScaleFactor))
        // 5. up
        var ups: [UpBlock] = []
        var next = skips.count - 1
        for (i, type) in c.upBlockTypes.enumerated() {
            let out = c.blockOutChannels[c.levels - 1 - i]
            var resnets: [ResnetBlock] = [], attentions: [any SpatialMixing] = [], indices: [Int] = [], skipChannels: [Int] = []
            for j in 0...c.layersPerBlock {
                let skip = skips[next]
                precondition(skip.h == h && skip.w == w, "skip \(next) is \(skip.h)×\(skip.w), the up path is at \(h)×\(w)")
                L.plan.activation = max(L.plan.activation, batch * (channels + skip.c) * h * w)
                resnets.append(try ResnetBlock(L, "up_blocks.\(i).resnets.\(j)", inChannels: channels + skip.c,
                                               outChannels: out, height: h, width: w))
                if UNetConfiguration.hasAttention(type) {
                    let level = c.levels - 1 - i
                    attentions.append(try mixer("up_blocks.\(i).attentions.\(j)", channels: out, h: h, w: w,
                                                heads: c.crossAttention?.heads[level] ?? 0, layers: c.crossAttention?.layers[level] ?? 0))
                }
                indices.append(next); skipChannels.append(skip.c); next -= 1
                channels = out
            }
            var up: Upsample? = nil
            if i < c.levels - 1 {
                up = try Upsample(L, "up_blocks.\(i).upsamplers.0", channels: out, height: h, width: w)
                (h, w) = (2 * h, 2 * w)
            }
            ups.append(UpBlock(resnets: resnets, attentions: attentions, upsample: up, skipIndices: indices, skipChannels: skipChannels))
        }
        upBlocks = ups
        // 6. post-process
        normOut = try GroupNormLayer(L, "conv_norm_out", channels: C0, groups: c.normNumGroups, eps: c.normEps)
        convOut = try ConvLayer(L, "conv_out", shape: Conv2dShape(batch: batch, inChannels: C0, height: height, width: width,
                                                                   outChannels: c.outChannels, kernelSize: 3, padding: 1),
                                output: .nchw)
        try weights.checkAllUsed()
        parameterCount = weights.parameterCount
        weightBytes = L.uploadedBytes
        workspace = try UNetWorkspace(stream: stream, config: c, batch: batch, height: height, width: width,
                                      contextLength: self.contextLength, timeIDs: timeIDCount, plan: L.plan,
                                      skipCounts: skips.map { batch * $0.c * $0.h * $0.w },
                                      weightBytes: L.uploadedBytes)
        macs = UNet.countMACs(downBlocks: downs, mid: mid, upBlocks: ups, convs: [convIn, convOut], batch: batch, config: c)
        if c.hasClassEmbedding {
            // (Class 0 until labels are set: the table is never read at rows a buffer's garbage names.)
            try setClassLabels(Array(repeating: 0, count: batch))
        }
    }

    /// Class labels for a benchmark or a profile, where their values do not change the time: drawn
    /// from `next` within the model's classes; nothing for a UNet without a class embedding.
    public func setBenchmarkClassLabels(_ next: () -> UInt64) throws {
        guard config.hasClassEmbedding else { return }
        let classes = config.classEmbedType == nil ? config.numClassEmbeds ?? 1 : 1000
        try setClassLabels((0..<batch).map { _ in Int(next() % UInt64(classes)) })
    }

    /// Multiply-accumulates of one step of `action` over the batch (a null step: 0).
    public func macs(for action: StepAction) -> Int {
        switch action {
        case .full: return macs
        case .null: return 0
        case .partial(let m):
            return UNet.countMACs(downBlocks: downBlocks, mid: mid, upBlocks: upBlocks, convs: [convIn, convOut],
                                  batch: batch, config: config, branch: m)
        }
    }

    /// MACs of the full pass, or with `branch` of the partial pass at that branch.
    static func countMACs(downBlocks: [DownBlock], mid: MidBlock, upBlocks: [UpBlock], convs: [ConvLayer],
                          batch: Int, config c: UNetConfiguration, branch: Int? = nil) -> Int {
        func resnet(_ r: ResnetBlock) -> Int {
            r.conv1.shape.macs + r.conv2.shape.macs + (r.shortcut?.shape.macs ?? 0) + batch * c.timeEmbedDim * r.outChannels
        }
        let last = branch ?? .max
        var total = convs.map(\.shape.macs).reduce(0, +)
        total += batch * (c.timeProjectionDim * c.timeEmbedDim + c.timeEmbedDim * c.timeEmbedDim)
        if let a = c.textTime { total += batch * (a.inputDim * c.timeEmbedDim + c.timeEmbedDim * c.timeEmbedDim) }
        if c.classEmbedType == "timestep" { total += batch * (c.timeProjectionDim * c.timeEmbedDim + c.timeEmbedDim * c.timeEmbedDim) }
        for d in downBlocks {
            for (j, r) in d.resnets.enumerated() where d.skipIndices[j] <= last {
                total += resnet(r) + (d.attentions.isEmpty ? 0 : d.attentions[j].macs)
            }
            if let ds = d.downsample, d.skipIndices.last! <= last { total += ds.conv.shape.macs }
        }
        if branch == nil { total += resnet(mid.first) + resnet(mid.second) + (mid.attention?.macs ?? 0) }
        // The up path runs from the resnet concatenating skip `branch` (skips are consumed deepest first).
        for u in upBlocks {
            var ran = false
            for (j, r) in u.resnets.enumerated() where u.skipIndices[j] <= last {
                total += resnet(r) + (u.attentions.isEmpty ? 0 : u.attentions[j].macs)
                ran = true
            }
            if ran { total += u.upsample?.conv.shape.macs ?? 0 }
        }
        return total
    }

    // MARK: The forward pass

    /// Runs the UNet on `sample` [batch, in_channels, H, W] at `timesteps` (one per sample) and
    /// returns the output [batch, out_channels, H, W].
    /// A UNet2DConditionModel also takes `encoderHiddenStates` [batch, contextLength, cross_attention_dim],
    /// and one with SDXL's added embedding `textEmbeds` [batch, D] and `timeIDs` [batch, K]
    /// (diffusers' `added_cond_kwargs`).
    /// A UNet2DModel with a class embedding takes `classLabels` (one per sample).
    public func callAsFunction(_ sample: [Float], timesteps: [Float], encoderHiddenStates: [Float]? = nil,
                               textEmbeds: [Float]? = nil, timeIDs: [Float]? = nil, classLabels: [Int]? = nil) throws -> [Float] {
        if let classLabels { try setClassLabels(classLabels) } else if config.hasClassEmbedding {
            throw ModelError("this UNet2DModel is class-conditional (\(config.classEmbedType.map { "class_embed_type \($0)" } ?? "num_class_embeds \(config.numClassEmbeds!)")): it needs class labels")
        }
        let inCount = batch * config.inChannels * height * width
        guard sample.count == inCount else { throw ModelError("sample has \(sample.count) values, the UNet takes \(inCount)") }
        guard timesteps.count == batch else { throw ModelError("\(timesteps.count) timesteps for a batch of \(batch)") }
        if let states = encoderHiddenStates {
            try setEncoderHiddenStates(states)
        } else if config.isConditional {
            throw ModelError("this UNet2DConditionModel needs encoder_hidden_states [\(batch), \(contextLength), \(config.crossAttention!.dim)]")
        }
        if let textEmbeds, let timeIDs {
            try setAddedConditions(textEmbeds: textEmbeds, timeIDs: timeIDs)
        } else if textEmbeds != nil || timeIDs != nil || config.textTime != nil {
            guard config.textTime != nil else { throw ModelError("text_embeds and time_ids given to a UNet without an added embedding (addition_embed_type), which takes none") }
            throw ModelError("this UNet (addition_embed_type text_time, as SDXL's) needs both text_embeds [\(batch), \(textEmbedsDim)] and time_ids [\(batch), \(timeIDCount)]")
        }
        try workspace.input.write(sample, queue: stream.queue)
        try workspace.timesteps.write(timesteps, queue: stream.queue)
        try forward()
        return try stream.download(workspace.output, count: batch * config.outChannels * height * width)
    }

    /// Uploads encoder_hidden_states [batch, contextLength, cross_attention_dim] for the following forward passes.
    public func setEncoderHiddenStates(_ states: [Float]) throws {
        guard let x = config.crossAttention else {
            throw ModelError("encoder_hidden_states given to a UNet2DModel, which takes none")
        }
        let count = batch * contextLength * x.dim
        guard states.count == count else {
            throw ModelError("encoder_hidden_states has \(states.count) values; this UNet takes [\(batch), \(contextLength), \(x.dim)] = \(count)")
        }
        try workspace.context.write(states, queue: stream.queue)
    }

    /// SDXL's `time_ids` of one image: original size, crop top-left and target size, as
    /// StableDiffusionXLPipeline's `_get_add_time_ids` lists them (sizes as (height, width)).
    public static func timeIDs(originalSize: (Int, Int), cropTopLeft: (Int, Int) = (0, 0), targetSize: (Int, Int)) -> [Float] {
        [originalSize.0, originalSize.1, cropTopLeft.0, cropTopLeft.1, targetSize.0, targetSize.1].map(Float.init)
    }

    /// Added conditions for a benchmark or a profile, where their values do not change the time:
    /// `textEmbeds` as given (random), every image's time ids those of an SDXL run at `pixels`
    /// (height, width); nothing for a UNet without an added embedding.
    public func setBenchmarkAddedConditions(textEmbeds: (Int) -> [Float], pixels: (Int, Int)) throws {
        guard config.textTime != nil else { return }
        let ids = UNet.timeIDs(originalSize: pixels, targetSize: pixels)
        let perImage = ids + Array(repeating: 0, count: max(0, timeIDCount - ids.count))
        try setAddedConditions(textEmbeds: textEmbeds(batch * textEmbedsDim),
                               timeIDs: (0..<batch).flatMap { _ in perImage.prefix(timeIDCount) })
    }

    /// Uploads the class labels of the following forward passes (one per sample; a table's rows
    /// 0..<num_class_embeds, any value ≥ 0 for class_embed_type timestep).
    public func setClassLabels(_ labels: [Int]) throws {
        guard config.hasClassEmbedding else { throw ModelError("class labels given to a UNet without a class embedding (num_class_embeds, class_embed_type), which takes none") }
        guard labels.count == batch else { throw ModelError("\(labels.count) class labels for a batch of \(batch)") }
        if let n = config.numClassEmbeds, config.classEmbedType == nil, let bad = labels.first(where: { !(0..<n).contains($0) }) {
            throw ModelError("class label \(bad) is outside the model's \(n) classes (0…\(n - 1))")
        }
        if let bad = labels.first(where: { $0 < 0 || $0 > 1 << 24 }) { throw ModelError("class label \(bad) is not a class (0…16777216)") }
        try workspace.classIDs.write(labels.map(Int32.init), queue: stream.queue)
        try workspace.classLabels.write(labels.map(Float.init), queue: stream.queue)
    }

    /// Uploads SDXL's added conditions for the following forward passes: the pooled text embedding
    /// `textEmbeds` [batch, D] and the micro-conditioning `timeIDs` [batch, K].
    public func setAddedConditions(textEmbeds: [Float], timeIDs: [Float]) throws {
        guard config.textTime != nil else {
            throw ModelError("text_embeds and time_ids given to a UNet without an added embedding (addition_embed_type), which takes none")
        }
        guard textEmbeds.count == batch * textEmbedsDim else {
            throw ModelError("text_embeds has \(textEmbeds.count) values; this UNet takes [\(batch), \(textEmbedsDim)] = \(batch * textEmbedsDim)")
        }
        guard timeIDs.count == batch * timeIDCount else {
            throw ModelError("time_ids has \(timeIDs.count) values; this UNet takes [\(batch), \(timeIDCount)] = \(batch * timeIDCount)")
        }
        try workspace.textEmbeds.write(textEmbeds, queue: stream.queue)
        try workspace.timeIDs.write(timeIDs, queue: stream.queue)
    }

    /// The forward pass on the workspace: `workspace.input` and `workspace.timesteps` → `workspace.output`.
    /// The features entering the up path at each branch in `capturing` are copied into the feature
    /// cache (see `prepareFeatureCache`) for later partial steps.
    public func forward(capturing: Set<Int> = []) throws {
        try embedTime()
        try preProcess()
        for level in downBlocks.indices { try down(level) }
        var current = try middle()
        for level in upBlocks.indices { current = try up(level, from: current, capturing: capturing) }
        try postProcess(current)
    }

    // MARK: Skip branches and the feature cache (see StepPlan.swift for the numbering)

    /// Number of skip branches: the size of the skip stack (conv_in, every down layer and downsampler).
    public var branchCount: Int { workspace.skips.count }

    /// The up-path position (level, resnet) that concatenates skip `branch`.
    public func upPosition(branch m: Int) -> (level: Int, layer: Int) {
        precondition((0..<branchCount).contains(m), "branch \(m) outside 0..<\(branchCount)")
        for (i, u) in upBlocks.enumerated() { if let j = u.skipIndices.firstIndex(of: m) { return (i, j) } }
        preconditionFailure("skip \(m) is not consumed by the up path")
    }

    /// Floats of the feature cached for `branch`: the main-path input of the up resnet at that branch.
    public func cachedFeatureCount(branch m: Int) -> Int {
        let (i, j) = upPosition(branch: m)
        let r = upBlocks[i].resnets[j]
        return batch * (r.inChannels - upBlocks[i].skipChannels[j]) * r.height * r.width
    }

    /// Device buffers of the cached deep features, by branch.
    public private(set) var featureCache: [Int: DeviceBuffer<Float>] = [:]

    /// Allocates cache buffers for `branches` (once, before a sampling loop; existing ones are kept).
    public func prepareFeatureCache(branches: Set<Int>) throws {
        for m in branches.sorted() where featureCache[m] == nil {
            guard (0..<branchCount).contains(m) else {
                throw ModelError("branch \(m) does not exist; the model has branches 0…\(branchCount - 1)")
            }
            featureCache[m] = try stream.buffer(cachedFeatureCount(branch: m))
        }
    }

    /// A partial step: conv_in and the down layers through skip `branch`, then the up path from the
    /// resnet that concatenates that skip, fed with the feature cached at the last full step.
    public func forwardPartial(branch m: Int) throws {
        guard let cached = featureCache[m] else {
            throw ModelError("no cached feature for branch \(m): a full step capturing it must come first")
        }
        try embedTime()
        try preProcess()
        for level in downBlocks.indices {
            guard let first = downBlocks[level].skipIndices.first, first <= m else { break }
            try down(level, through: m)
        }
        let (start, layer) = upPosition(branch: m)
        var current = try up(start, from: cached, startingAt: layer)
        for level in upBlocks.indices where level > start { current = try up(level, from: current) }
        try postProcess(current)
    }

    /// 1. time: sinusoidal projection, linear_1, SiLU, linear_2 (plus SDXL's added embedding of
    /// text_embeds and the time ids' sinusoids, through add_embedding), and the SiLU every resnet applies.
    public func embedTime() throws {
        let s = stream, ws = workspace, c = config, T = c.timeEmbedDim
        try s.timestepEmbedding(ws.timesteps, output: ws.timeSinusoid, batch: batch, dim: c.timeProjectionDim,
                                flipSinToCos: c.flipSinToCos, downscaleFreqShift: Float(c.freqShift))
        try s.linear(ws.timeSinusoid, weight: timeLinear1.0, bias: timeLinear1.1, output: ws.timeHidden,
                     batch: batch, inFeatures: c.timeProjectionDim, outFeatures: T)
        try s.silu(ws.timeHidden, output: ws.timeHidden, count: batch * T)
        try s.linear(ws.timeHidden, weight: timeLinear2.0, bias: timeLinear2.1, output: ws.timeEmbedding,
                     batch: batch, inFeatures: T, outFeatures: T)
        if let a = c.textTime, let w = addEmbedding {
            // add_embedding(concat(text_embeds, add_time_proj(time_ids).reshape(N, -1))), added to emb.
            try s.timestepEmbedding(ws.timeIDs, output: ws.addSinusoid, batch: batch * timeIDCount, dim: a.timeDim,
                                    flipSinToCos: c.flipSinToCos, downscaleFreqShift: Float(c.freqShift))
            try s.linear(ws.textEmbeds, weight: w.text, bias: w.bias, output: ws.addHidden, batch: batch, inFeatures: textEmbedsDim, outFeatures: T)
            try s.linearAccumulate(ws.addSinusoid, weight: w.time, bias: nil, into: ws.addHidden, rows: batch,
                                   inFeatures: timeIDCount * a.timeDim, outFeatures: T)
            try s.silu(ws.addHidden, output: ws.addHidden, count: batch * T)
            try s.linearAccumulate(ws.addHidden, weight: w.weight2, bias: w.bias2, into: ws.timeEmbedding, rows: batch, inFeatures: T, outFeatures: T)
        }
        switch classEmbedding {
        case .table(let table)?:
            // emb + class_embedding(class_labels)
            try s.gatherRows(table, ids: ws.classIDs, output: ws.classEmbedding, rows: batch, width: T)
            try s.addScale(ws.timeEmbedding, ws.classEmbedding, output: ws.timeEmbedding, count: batch * T)
        case .timestep(let l1, let l2)?:
            // emb + class_embedding(time_proj(class_labels))
            try s.timestepEmbedding(ws.classLabels, output: ws.timeSinusoid, batch: batch, dim: c.timeProjectionDim,
                                    flipSinToCos: c.flipSinToCos, downscaleFreqShift: Float(c.freqShift))
            try s.linear(ws.timeSinusoid, weight: l1.0, bias: l1.1, output: ws.timeHidden, batch: batch, inFeatures: c.timeProjectionDim, outFeatures: T)
            try s.silu(ws.timeHidden, output: ws.timeHidden, count: batch * T)
            try s.linearAccumulate(ws.timeHidden, weight: l2.0, bias: l2.1, into: ws.timeEmbedding, rows: batch, inFeatures: T, outFeatures: T)
        case nil: break
        }
        try s.silu(ws.timeEmbedding, output: ws.timeSiLU, count: batch * T)
    }

    /// 0 and 2. pre-process: center the input if configured, then conv_in into skip 0.
    public func preProcess() throws {
        if config.centerInputSample {
            try stream.scale(workspace.input, output: workspace.input, count: convIn.shape.inputCount, by: 2, plus: -1)
        }
        try convIn(stream, workspace, workspace.input, workspace.skips[0])
    }

    /// 3. one down level, through skip index `last` (all of it by default); its input is the skip
    /// before its first index.
    public func down(_ level: Int, through last: Int = .max) throws {
        let block = downBlocks[level], ws = workspace
        var current = ws.skips[block.skipIndices[0] - 1]
        for (j, resnet) in block.resnets.enumerated() {
            guard block.skipIndices[j] <= last else { return }
            let out = ws.skips[block.skipIndices[j]]
            try resnet.forward(stream, ws, current, out)
            if !block.attentions.isEmpty { try block.attentions[j].forward(stream, ws, out) }
            current = out
        }
        if let d = block.downsample, block.skipIndices.last! <= last {
            try d.forward(stream, ws, current, ws.skips[block.skipIndices.last!])
        }
    }

    /// 4. mid block, from the last skip; returns the buffer holding its output.
    public func middle() throws -> DeviceBuffer<Float> {
        let ws = workspace
        try mid.first.forward(stream, ws, ws.skips[ws.skips.count - 1], ws.main[0])
        if let a = mid.attention { try a.forward(stream, ws, ws.main[0]) }
        try mid.second.forward(stream, ws, ws.main[0], ws.main[1])
        return ws.main[1]
    }

    /// 5. one up level from `input`, starting at resnet `first`; returns the buffer holding its output.
    /// The main-path input of each resnet whose skip is in `capturing` is copied into the feature cache.
    public func up(_ level: Int, from input: DeviceBuffer<Float>, startingAt first: Int = 0,
                   capturing: Set<Int> = []) throws -> DeviceBuffer<Float> {
        let block = upBlocks[level], ws = workspace
        var current = input
        for (j, resnet) in block.resnets.enumerated() where j >= first {
            let skipChannels = block.skipChannels[j]
            if capturing.contains(block.skipIndices[j]) {
                guard let cache = featureCache[block.skipIndices[j]] else {
                    throw ModelError("branch \(block.skipIndices[j]) has no cache buffer: call prepareFeatureCache first")
                }
                try cache.copy(from: current, count: cache.count, queue: stream.queue)
            }
            try stream.concatChannels(current, ws.skips[block.skipIndices[j]], output: ws.concat, batch: batch,
                                      channelsA: resnet.inChannels - skipChannels, channelsB: skipChannels,
                                      spatial: resnet.height * resnet.width, layout: layout)
            let out = current === ws.main[0] ? ws.main[1] : ws.main[0]
            try resnet.forward(stream, ws, ws.concat, out)
            if !block.attentions.isEmpty { try block.attentions[j].forward(stream, ws, out) }
            current = out
        }
        if let u = block.upsample {
            let out = current === ws.main[0] ? ws.main[1] : ws.main[0]
            try u.forward(stream, ws, current, out)
            current = out
        }
        return current
    }

    /// 6. post-process: GroupNorm, SiLU, conv_out into `workspace.output`.
    public func postProcess(_ input: DeviceBuffer<Float>) throws {
        try normOut(stream, input, workspace.tA, batch: batch, spatial: height * width, silu: true)
        try convOut(stream, workspace, workspace.tA, workspace.output)
    }
}
