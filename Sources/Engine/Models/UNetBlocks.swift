// The blocks of a diffusers UNet2DModel on the engine's kernels, each holding its device weights:
// ResnetBlock2D, the spatial Attention block, Downsample2D and Upsample2D.
// Port of diffusers.models.resnet.ResnetBlock2D / Downsample2D / Upsample2D and
// diffusers.models.attention_processor.Attention (as UNet2DModel builds it), diffusers 0.42.
import GPUKernels

/// The scratch buffers the blocks below use: a UNet's workspace or an autoencoder's.
protocol BlockWorkspace: AnyObject {
    var tA: DeviceBuffer<Float> { get }
    var tB: DeviceBuffer<Float> { get }
    var tC: DeviceBuffer<Float> { get }
    var convScratch: DeviceBuffer<Float> { get }
    var attentionScratch: DeviceBuffer<Float> { get }
    /// silu(time embedding) [N, timeEmbedDim] and the resnets' projection of it (unused without one).
    var timeSiLU: DeviceBuffer<Float> { get }
    var timeProjection: DeviceBuffer<Float> { get }
}

extension UNetWorkspace: BlockWorkspace {}

/// A convolution with its weights, at the fixed batch and image size of the UNet it belongs to.
public struct ConvLayer {
    public let shape: Conv2dShape
    let weight: DeviceBuffer<Float>
    let bias: DeviceBuffer<Float>
    /// Layouts of its input and output (the loader's unless given).
    let inputLayout: ActivationLayout, outputLayout: ActivationLayout

    init(_ loader: WeightLoader, _ prefix: String, shape: Conv2dShape, input: ActivationLayout? = nil,
         output: ActivationLayout? = nil) throws {
        self.shape = shape
        inputLayout = input ?? loader.layout
        outputLayout = output ?? loader.layout
        weight = try loader.tensor("\(prefix).weight", [shape.outChannels, shape.inChannels, shape.kernelSize, shape.kernelSize])
        bias = try loader.tensor("\(prefix).bias", [shape.outChannels])
        loader.plan.convScratch = max(loader.plan.convScratch, loader.stream.backends.convolutionScratch(shape))
        try loader.stream.prepareConvolution(shape, hasBias: true, inputLayout: inputLayout, outputLayout: outputLayout)
        loader.plan.activation = max(loader.plan.activation, shape.inputCount, shape.outputCount)
    }

    func callAsFunction(_ s: ComputeStream, _ ws: some BlockWorkspace, _ x: DeviceBuffer<Float>, _ y: DeviceBuffer<Float>) throws {
        try s.conv2d(x, weight: weight, bias: bias, output: y, shape: shape, scratch: ws.convScratch,
                     inputLayout: inputLayout, outputLayout: outputLayout)
    }
}

/// GroupNorm's affine parameters and settings.
struct GroupNormLayer {
    let gamma: DeviceBuffer<Float>, beta: DeviceBuffer<Float>
    let channels: Int, groups: Int, eps: Float
    /// Layout of its input and output (the loader's).
    let layout: ActivationLayout

    init(_ loader: WeightLoader, _ prefix: String, channels: Int, groups: Int, eps: Double) throws {
        gamma = try loader.tensor("\(prefix).weight", [channels])
        beta = try loader.tensor("\(prefix).bias", [channels])
        layout = loader.layout
        loader.plan.groupNormAffine = max(loader.plan.groupNormAffine, 2 * loader.batch * channels)
        self.channels = channels; self.groups = groups; self.eps = Float(eps)
    }

    func callAsFunction(_ s: ComputeStream, _ x: DeviceBuffer<Float>, _ y: DeviceBuffer<Float>, batch: Int, spatial: Int, silu: Bool) throws {
        try s.groupNorm(x, output: y, gamma: gamma, beta: beta, batch: batch, channels: channels, spatial: spatial,
                        groups: groups, eps: eps, silu: silu, layout: layout)
    }
}

/// ResnetBlock2D (time_embedding_norm "default"):
/// y = (shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb)))))) / output_scale_factor;
/// without a time embedding (an autoencoder's, temb_channels None) the projection term is absent.
public final class ResnetBlock {
    public let inChannels: Int, outChannels: Int, height: Int, width: Int
    let norm1: GroupNormLayer, conv1: ConvLayer, norm2: GroupNormLayer, conv2: ConvLayer, shortcut: ConvLayer?
    let time: (weight: DeviceBuffer<Float>, bias: DeviceBuffer<Float>)?
    let timeChannels: Int, batch: Int, outputScale: Float

    init(_ loader: WeightLoader, _ prefix: String, inChannels: Int, outChannels: Int, height: Int, width: Int,
         outputScaleFactor: Double = 1, timeEmbedding: Bool = true) throws {
        let c = loader.config, b = loader.batch
        self.inChannels = inChannels; self.outChannels = outChannels; self.height = height; self.width = width
        batch = b; timeChannels = c.timeEmbedDim; outputScale = Float(1 / outputScaleFactor)
        norm1 = try GroupNormLayer(loader, "\(prefix).norm1", channels: inChannels, groups: c.normNumGroups, eps: c.normEps)
        conv1 = try ConvLayer(loader, "\(prefix).conv1", shape: Conv2dShape(
            batch: b, inChannels: inChannels, height: height, width: width, outChannels: outChannels, kernelSize: 3, padding: 1))
        time = timeEmbedding ? (try loader.tensor("\(prefix).time_emb_proj.weight", [outChannels, c.timeEmbedDim]),
                                try loader.tensor("\(prefix).time_emb_proj.bias", [outChannels])) : nil
        norm2 = try GroupNormLayer(loader, "\(prefix).norm2", channels: outChannels, groups: c.normNumGroups, eps: c.normEps)
        conv2 = try ConvLayer(loader, "\(prefix).conv2", shape: Conv2dShape(
            batch: b, inChannels: outChannels, height: height, width: width, outChannels: outChannels, kernelSize: 3, padding: 1))
        shortcut = inChannels == outChannels ? nil : try ConvLayer(loader, "\(prefix).conv_shortcut", shape: Conv2dShape(
            batch: b, inChannels: inChannels, height: height, width: width, outChannels: outChannels, kernelSize: 1))
        if timeEmbedding { loader.plan.timeProjection = max(loader.plan.timeProjection, b * outChannels) }
    }

    /// x [N, inChannels, H, W] → y [N, outChannels, H, W]; uses the workspace's tA, tB, tC.
    func forward(_ s: ComputeStream, _ ws: some BlockWorkspace, _ x: DeviceBuffer<Float>, _ y: DeviceBuffer<Float>) throws {
        let P = height * width
        try norm1(s, x, ws.tA, batch: batch, spatial: P, silu: true)
        try conv1(s, ws, ws.tA, ws.tB)
        if let time {
            try s.linear(ws.timeSiLU, weight: time.weight, bias: time.bias, output: ws.timeProjection,
                         batch: batch, inFeatures: timeChannels, outFeatures: outChannels)
            try s.addChannelBias(ws.tB, bias: ws.timeProjection, batch: batch, channels: outChannels, spatial: P,
                                 biasBatchStride: outChannels, layout: norm2.layout)
        }
        try norm2(s, ws.tB, ws.tA, batch: batch, spatial: P, silu: true)
        try conv2(s, ws, ws.tA, ws.tC)   // dropout is the identity at inference
        var residual = x
        if let shortcut {
            try shortcut(s, ws, x, ws.tA)
            residual = ws.tA
        }
        try s.addScale(residual, ws.tC, output: y, count: batch * outChannels * P, scale: outputScale)
    }
}

/// Attention over spatial positions with a residual connection (diffusers' Attention with
/// group_norm, residual_connection=True): x ← (to_out(attn(norm(x))) + x) / rescale_output_factor.
public final class AttentionBlock {
    public let channels: Int, heads: Int
    let norm: GroupNormLayer
    let weights: AttentionWeights
    let shape: AttentionShape
    let outputScale: Float

    init(_ loader: WeightLoader, _ prefix: String, channels: Int, height: Int, width: Int, headDim: Int,
         groups: Int, rescaleOutputFactor: Double = 1) throws {
        let c = loader.config
        self.channels = channels
        heads = channels / headDim
        norm = try GroupNormLayer(loader, "\(prefix).group_norm", channels: channels, groups: groups, eps: c.normEps)
        func linear(_ name: String) throws -> (DeviceBuffer<Float>, DeviceBuffer<Float>) {
            (try loader.tensor("\(prefix).\(name).weight", [channels, channels]), try loader.tensor("\(prefix).\(name).bias", [channels]))
        }
        let q = try linear("to_q"), k = try linear("to_k"), v = try linear("to_v"), o = try linear("to_out.0")
        weights = AttentionWeights(query: q.0, queryBias: q.1, key: k.0, keyBias: k.1, value: v.0, valueBias: v.1, out: o.0, outBias: o.1)
        shape = AttentionShape(batch: loader.batch, channels: channels, spatial: height * width, heads: heads)
        outputScale = Float(1 / rescaleOutputFactor)
        loader.plan.attentionScratch = max(loader.plan.attentionScratch, shape.scratchCount)
    }

    /// In place on x [N, C, H, W] in the norm's layout; uses the workspace's tA and tB (and tC where
    /// that is not NCHW: the attention itself runs on NCHW, reordered around it).
    func forward(_ s: ComputeStream, _ ws: some BlockWorkspace, _ x: DeviceBuffer<Float>) throws {
        let (N, P, layout) = (shape.batch, shape.spatial, norm.layout)
        try norm(s, x, ws.tA, batch: N, spatial: P, silu: false)
        if layout == .nchw {
            try s.attention(ws.tA, output: ws.tB, weights: weights, shape: shape, scratch: ws.attentionScratch)
            return try s.addScale(ws.tB, x, output: x, count: N * channels * P, scale: outputScale)
        }
        try s.reorder(ws.tA, output: ws.tC, from: layout, to: .nchw, batch: N, channels: channels, spatial: P)
        try s.attention(ws.tC, output: ws.tB, weights: weights, shape: shape, scratch: ws.attentionScratch)
        try s.reorder(ws.tB, output: ws.tC, from: .nchw, to: layout, batch: N, channels: channels, spatial: P)
        try s.addScale(ws.tC, x, output: x, count: N * channels * P, scale: outputScale)
    }
}

/// Downsample2D(use_conv=True): a stride-2 3×3 convolution; with padding 0 the input is first
/// padded by one row and column at the bottom and right (F.pad(x, (0, 1, 0, 1))).
public final class Downsample {
    let conv: ConvLayer
    init(_ loader: WeightLoader, _ prefix: String, channels: Int, height: Int, width: Int, padding: Int) throws {
        let shape = padding == 0
            ? Conv2dShape(batch: loader.batch, inChannels: channels, height: height, width: width, outChannels: channels,
                          kernelSize: 3, stride: 2, padTop: 0, padLeft: 0, padBottom: 1, padRight: 1)
            : Conv2dShape(batch: loader.batch, inChannels: channels, height: height, width: width, outChannels: channels,
                          kernelSize: 3, stride: 2, padding: padding)
        conv = try ConvLayer(loader, "\(prefix).conv", shape: shape)
    }
    public var outHeight: Int { conv.shape.outHeight }
    public var outWidth: Int { conv.shape.outWidth }
    func forward(_ s: ComputeStream, _ ws: some BlockWorkspace, _ x: DeviceBuffer<Float>, _ y: DeviceBuffer<Float>) throws {
        try conv(s, ws, x, y)
    }
}

/// Upsample2D(use_conv=True): nearest-neighbour 2× then a 3×3 convolution.
public final class Upsample {
    let conv: ConvLayer
    let channels: Int, height: Int, width: Int, batch: Int
    init(_ loader: WeightLoader, _ prefix: String, channels: Int, height: Int, width: Int) throws {
        self.channels = channels; self.height = height; self.width = width; batch = loader.batch
        conv = try ConvLayer(loader, "\(prefix).conv", shape: Conv2dShape(
            batch: loader.batch, inChannels: channels, height: 2 * height, width: 2 * width, outChannels: channels,
            kernelSize: 3, padding: 1))
    }
    /// x [N, C, H, W] → y [N, C, 2H, 2W]; uses the workspace's tA.
    func forward(_ s: ComputeStream, _ ws: some BlockWorkspace, _ x: DeviceBuffer<Float>, _ y: DeviceBuffer<Float>) throws {
        try s.upsampleNearest2x(x, output: ws.tA, batch: batch, channels: channels, height: height, width: width, layout: conv.inputLayout)
        try conv(s, ws, ws.tA, y)
    }
}
