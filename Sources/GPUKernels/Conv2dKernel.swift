// 2-D convolution (NCHW, float32) as im2col (kernels/conv2d.cl) + GEMM, and linear layers as GEMM.
import COpenCL

/// The geometry of one convolution: PyTorch's Conv2d with explicit (possibly asymmetric) padding.
public struct Conv2dShape: Hashable, Sendable, CustomStringConvertible {
    public var batch: Int
    public var inChannels: Int
    public var height: Int
    public var width: Int
    public var outChannels: Int
    /// Kernel rows and columns (Inception's 1×7, 7×1, 1×3, 3×1 are not square).
    public var kernelHeight: Int, kernelWidth: Int
    public var stride: Int
    public var padTop: Int, padLeft: Int, padBottom: Int, padRight: Int

    /// A square kernel with the same padding on every side (torch.nn.Conv2d's `padding=`).
    public init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int,
                kernelSize: Int, stride: Int = 1, padding: Int = 0) {
        self.init(batch: batch, inChannels: inChannels, height: height, width: width, outChannels: outChannels,
                  kernelSize: kernelSize, stride: stride, padTop: padding, padLeft: padding,
                  padBottom: padding, padRight: padding)
    }

    /// A kernelHeight × kernelWidth kernel with torch.nn.Conv2d's `padding=(padHeight, padWidth)`.
    public init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int,
                kernelHeight: Int, kernelWidth: Int, stride: Int = 1, padHeight: Int = 0, padWidth: Int = 0) {
        self.batch = batch; self.inChannels = inChannels; self.height = height; self.width = width
        self.outChannels = outChannels; self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth
        self.stride = stride
        self.padTop = padHeight; self.padLeft = padWidth; self.padBottom = padHeight; self.padRight = padWidth
    }

    public init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int, kernelSize: Int,
                stride: Int, padTop: Int, padLeft: Int, padBottom: Int, padRight: Int) {
        self.batch = batch; self.inChannels = inChannels; self.height = height; self.width = width
        self.outChannels = outChannels; self.kernelHeight = kernelSize; self.kernelWidth = kernelSize
        self.stride = stride
        self.padTop = padTop; self.padLeft = padLeft; self.padBottom = padBottom; self.padRight = padRight
    }

    /// The side of a square kernel (precondition: square).
    public var kernelSize: Int {
        precondition(kernelHeight == kernelWidth, "kernelSize of a \(kernelHeight)×\(kernelWidth) kernel")
        return kernelHeight
    }
    public var outHeight: Int { (height + padTop + padBottom - kernelHeight) / stride + 1 }
    public var outWidth: Int { (width + padLeft + padRight - kernelWidth) / stride + 1 }
    public var outSpatial: Int { outHeight * outWidth }
    public var patch: Int { inChannels * kernelHeight * kernelWidth }

    public var inputCount: Int { batch * inChannels * height * width }
    public var outputCount: Int { batch * outChannels * outSpatial }
    public var weightCount: Int { outChannels * patch }

    /// A 1×1, stride-1, unpadded convolution multiplies the input directly; others need im2col.
    public var needsIm2col: Bool {
        !(kernelHeight == 1 && kernelWidth == 1 && stride == 1 && padTop == 0 && padLeft == 0 && padBottom == 0 && padRight == 0)
    }

    /// The lowering `conv2d` uses when none is asked for: `wide` (one GEMM over the whole batch)
    /// up to 32×32 outputs, where it measured as fast or faster (`flexiffusion bench kernels
    /// --algorithms`, README); `batched` for larger images, where its scratch is smaller.
    public var preferredAlgorithm: Conv2dAlgorithm {
        needsIm2col && outSpatial <= Conv2dAlgorithm.wideUpToSpatial ? .wide : .batched
    }

    /// Floats of scratch space `conv2d` needs with `algorithm` (default: the preferred one) and, for
    /// `batched`, `chunk` images lowered at a time (default `batchedChunk`).
    public func scratchCount(_ algorithm: Conv2dAlgorithm? = nil, chunk: Int? = nil) -> Int {
        guard needsIm2col else { return 0 }
        switch algorithm ?? preferredAlgorithm {
        case .batched: return (chunk ?? batchedChunk) * patch * outSpatial
        case .wide: return batch * (patch + outChannels) * outSpatial
        case .implicit: return 0
        }
    }

    /// The most floats the `batched` lowering's columns take at once (1 GiB): larger batches are
    /// lowered and multiplied a chunk of images at a time (a VAE decoder at 512×512 and batch 32 would
    /// otherwise need 72 GiB for one buffer, past every GPU's largest allocation).
    public static let batchedScratchLimit = 1 << 28

    /// Images the `batched` lowering takes at a time: as many as fit `batchedScratchLimit`, at least one.
    public var batchedChunk: Int { max(1, min(batch, Self.batchedScratchLimit / max(1, patch * outSpatial))) }
    public var scratchCount: Int { scratchCount() }
    /// Multiply-accumulates of one call.
    public var macs: Int { batch * outChannels * outSpatial * patch }

    public var description: String {
        "\(inChannels)→\(outChannels) k\(kernelHeight == kernelWidth ? "\(kernelHeight)" : "\(kernelHeight)×\(kernelWidth)") s\(stride) \(height)×\(width) batch \(batch)"
    }
}

/// How a convolution is lowered to GEMM.
public enum Conv2dAlgorithm: String, CaseIterable, Sendable {
    /// im2col per image into [N, C·k·k, P], then one strided-batched GEMM (weights shared, stride 0)
    /// writing [N, Co, P] directly.
    case batched
    /// im2col into [C·k·k, N·P], one GEMM into [Co, N·P], then a reorder (with the bias) to [N, Co, P].
    case wide
    /// No lowering: kernels/conv2d.cl's conv2d_implicit gathers the patches into local memory tile by
    /// tile (an implicit GEMM, no column buffer; the `implicit-gemm` convolution path).
    case implicit

    /// The largest output size (OH·OW) for which `wide` is preferred.
    public static let wideUpToSpatial = 1024
}

extension ComputeStream {
    /// im2col of x [N, C, H, W] into col [N, C·k·k, OH·OW] (batched) or [C·k·k, N·OH·OW] (wide), one
    /// output element per work-item (coalesced writes on GPUs) or, with `rowwiseIm2col` (the default
    /// on CPU devices, where PoCL spends its time on per-element index arithmetic), one output row.
    /// `images` (default all) of the batch are lowered into col as a batch of their own.
    public func im2col(_ input: DeviceBuffer<Float>, into col: DeviceBuffer<Float>, shape s: Conv2dShape, wide: Bool,
                       images: Range<Int>? = nil) throws {
        let images = images ?? 0..<s.batch
        precondition(images.lowerBound >= 0 && images.upperBound <= s.batch && !images.isEmpty, "im2col images \(images) outside batch \(s.batch)")
        precondition(input.count >= s.inputCount && col.count >= images.count * s.patch * s.outSpatial,
                     "im2col buffers too small for \(s)")
        try launch(backends.rowwiseIm2col ? .im2colRows : .im2col,
                   global: [backends.rowwiseIm2col ? s.outHeight : s.outSpatial, s.patch, images.count], [
            .buffer(input.mem), .int(images.lowerBound), .buffer(col.mem), .int(images.count), .int(s.inChannels), .int(s.height), .int(s.width),
            .int(s.kernelHeight), .int(s.kernelWidth), .int(s.stride), .int(s.padTop), .int(s.padLeft),
            .int(s.outHeight), .int(s.outWidth), .int(wide ? 1 : 0),
        ])
    }

    /// y = conv2d(x, weight [Co, Ci, k, k]) + bias [Co]; output [N, Co, OH, OW], through the stream's
    /// convolution path. `scratch` holds at least `shape.scratchCount` floats when the shape needs
    /// im2col on the im2col-gemm path (`algorithm` picks the lowering there; `batched` lowers `chunk`
    /// images at a time, default `shape.batchedChunk`, and scratch holds `shape.scratchCount(.batched, chunk:)`).
    /// The input and output are in `inputLayout` and `outputLayout` (blocked ones on the oneDNN path only).
    public func conv2d(_ input: DeviceBuffer<Float>, weight: DeviceBuffer<Float>, bias: DeviceBuffer<Float>?,
                       output: DeviceBuffer<Float>, shape s: Conv2dShape, scratch: DeviceBuffer<Float>? = nil,
                       algorithm: Conv2dAlgorithm? = nil, chunk: Int? = nil,
                       inputLayout: ActivationLayout = .nchw, outputLayout: ActivationLayout = .nchw) throws {
        precondition(input.count >= s.inputCount, "conv2d input too small for \(s)")
        precondition(weight.count >= s.weightCount, "conv2d weight too small for \(s)")
        precondition(output.count >= s.outputCount, "conv2d output too small for \(s)")
        precondition(output !== input, "conv2d cannot run in place")
        if backends.placement(.convolution) == .host {
            return try conv2dOnHost(input, weight: weight, bias: bias, output: output, shape: s,
                                    inputLayout: inputLayout, outputLayout: outputLayout)
        }
        precondition(inputLayout == .nchw && outputLayout == .nchw, "blocked activations need the oneDNN convolution path")
        let P = s.outSpatial
        if algorithm == .implicit || (algorithm == nil && backends.convolution == .implicitGemm) {
            return try conv2dImplicit(input, weight: weight, bias: bias, output: output, shape: s)
        }
        let algorithm = s.needsIm2col ? (algorithm ?? s.preferredAlgorithm) : .batched
        let chunk = max(1, min(s.batch, chunk ?? s.batchedChunk))
        if s.needsIm2col {
            guard let scratch, scratch.count >= s.scratchCount(algorithm, chunk: chunk) else {
                preconditionFailure("conv2d \(s) needs \(s.scratchCount(algorithm, chunk: chunk)) floats of scratch")
            }
        }
        if algorithm == .wide, let scratch {
            let NP = s.batch * P, tmp = s.patch * NP
            try im2col(input, into: scratch, shape: s, wide: true)
            try gemm.sgemm(queue: queue, m: s.outChannels, n: NP, k: s.patch, a: GemmOperand(weight, ld: s.patch),
                           b: GemmOperand(scratch, ld: NP), c: GemmOperand(scratch, offset: tmp, ld: NP))
            let biasBuffer = bias ?? weight  // unread when has_bias is 0
            try launch(.unfoldBatch, global: [P, s.outChannels, s.batch], [
                .buffer(scratch.mem), .int(tmp), .buffer(biasBuffer.mem), .buffer(output.mem), .int(s.batch),
                .int(s.outChannels), .int(P), .int(bias == nil ? 0 : 1),
            ])
            return
        }
        if let bias {
            precondition(bias.count >= s.outChannels, "conv2d bias too small")
            try fillChannelBias(output, bias: bias, batch: s.batch, channels: s.outChannels, spatial: P)
        }
        guard s.needsIm2col, let scratch else {
            return try gemm.sgemm(queue: queue, m: s.outChannels, n: P, k: s.patch,
                                  a: GemmOperand(weight, ld: s.patch, stride: 0), b: GemmOperand(input, ld: P, stride: s.inChannels * P),
                                  beta: bias == nil ? 0 : 1, c: GemmOperand(output, ld: P, stride: s.outChannels * P), batch: s.batch)
        }
        // Images `chunk` at a time: lowered into the scratch, then one strided-batched GEMM into their outputs.
        for first in stride(from: 0, to: s.batch, by: chunk) {
            let images = first..<min(s.batch, first + chunk)
            try im2col(input, into: scratch, shape: s, wide: false, images: images)
            try gemm.sgemm(queue: queue, m: s.outChannels, n: P, k: s.patch,
                           a: GemmOperand(weight, ld: s.patch, stride: 0), b: GemmOperand(scratch, ld: P, stride: s.patch * P),
                           beta: bias == nil ? 0 : 1, c: GemmOperand(output, offset: first * s.outChannels * P, ld: P, stride: s.outChannels * P),
                           batch: images.count)
        }
    }

    /// conv2d as kernels/conv2d.cl's implicit GEMM (no column buffer).
    func conv2dImplicit(_ input: DeviceBuffer<Float>, weight: DeviceBuffer<Float>, bias: DeviceBuffer<Float>?,
                        output: DeviceBuffer<Float>, shape s: Conv2dShape) throws {
        precondition(device.maxWorkGroupSize >= 256, "the implicit-GEMM convolution needs work-groups of 256 (\(device.name) allows \(device.maxWorkGroupSize))")
        if let bias { precondition(bias.count >= s.outChannels, "conv2d bias too small") }
        let columns = s.batch * s.outSpatial
        try launch(.conv2dImplicit, global: [16 * ((columns + 31) / 32), 16 * ((s.outChannels + 31) / 32)], local: [16, 16], [
            .buffer(input.mem), .buffer(weight.mem), .buffer((bias ?? weight).mem), .int(bias == nil ? 0 : 1), .buffer(output.mem),
            .int(s.batch), .int(s.inChannels), .int(s.height), .int(s.width), .int(s.outChannels),
            .int(s.kernelHeight), .int(s.kernelWidth), .int(s.stride), .int(s.padTop), .int(s.padLeft),
            .int(s.outHeight), .int(s.outWidth),
        ])
    }

    /// torch.nn.Linear: y [N, out] = x [N, in] · weightᵀ + bias, weight [out, in].
    public func linear(_ input: DeviceBuffer<Float>, weight: DeviceBuffer<Float>, bias: DeviceBuffer<Float>?,
                       output: DeviceBuffer<Float>, batch: Int, inFeatures: Int, outFeatures: Int) throws {
        precondition(input.count >= batch * inFeatures && weight.count >= inFeatures * outFeatures
                     && output.count >= batch * outFeatures, "linear buffers too small")
        precondition(output !== input, "linear cannot run in place")
        if let bias {
            precondition(bias.count >= outFeatures, "linear bias too small")
            try fillChannelBias(output, bias: bias, batch: batch, channels: outFeatures, spatial: 1)
        }
        try gemm.sgemm(queue: queue, transB: true, m: batch, n: outFeatures, k: inFeatures,
                       a: GemmOperand(input, ld: inFeatures), b: GemmOperand(weight, ld: inFeatures),
                       beta: bias == nil ? 0 : 1, c: GemmOperand(output, ld: outFeatures), bfloat16: backends.bfloat16GEMMs, constant: .b)
    }
}
