// 2-D convolution (NCHW, float32) as im2col (kernels/conv2d.cl) + GEMM, and linear layers as GEMM.
import COpenCL

/// The geometry of one convolution: PyTorch's Conv2d with explicit (possibly asymmetric) padding.
public struct Conv2dShape: Hashable, Sendable, CustomStringConvertible {
    public var batch: Int
    public var inChannels: Int
    public var height: Int
    public var width: Int
    public var outChannels: Int
    public var kernelSize: Int
    public var stride: Int
    public var padTop: Int, padLeft: Int, padBottom: Int, padRight: Int

    /// A square kernel with the same padding on every side (torch.nn.Conv2d's `padding=`).
    public init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int,
                kernelSize: Int, stride: Int = 1, padding: Int = 0) {
        self.init(batch: batch, inChannels: inChannels, height: height, width: width, outChannels: outChannels,
                  kernelSize: kernelSize, stride: stride, padTop: padding, padLeft: padding,
                  padBottom: padding, padRight: padding)
    }

    public init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int, kernelSize: Int,
                stride: Int, padTop: Int, padLeft: Int, padBottom: Int, padRight: Int) {
        self.batch = batch; self.inChannels = inChannels; self.height = height; self.width = width
        self.outChannels = outChannels; self.kernelSize = kernelSize; self.stride = stride
        self.padTop = padTop; self.padLeft = padLeft; self.padBottom = padBottom; self.padRight = padRight
    }

    public var outHeight: Int { (height + padTop + padBottom - kernelSize) / stride + 1 }
    public var outWidth: Int { (width + padLeft + padRight - kernelSize) / stride + 1 }
    var outSpatial: Int { outHeight * outWidth }
    var patch: Int { inChannels * kernelSize * kernelSize }

    public var inputCount: Int { batch * inChannels * height * width }
    public var outputCount: Int { batch * outChannels * outSpatial }
    public var weightCount: Int { outChannels * patch }

    /// A 1×1, stride-1, unpadded convolution multiplies the input directly; others need im2col.
    public var needsIm2col: Bool {
        !(kernelSize == 1 && stride == 1 && padTop == 0 && padLeft == 0 && padBottom == 0 && padRight == 0)
    }
    /// Floats of scratch space `conv2d` needs (0 when no im2col is needed).
    public var scratchCount: Int { needsIm2col ? batch * patch * outSpatial : 0 }
    /// Multiply-accumulates of one call.
    public var macs: Int { batch * outChannels * outSpatial * patch }

    public var description: String {
        "\(inChannels)→\(outChannels) k\(kernelSize) s\(stride) \(height)×\(width) batch \(batch)"
    }
}

extension Stream {
    /// im2col: input [N, C, H, W] → col [N, C·k·k, OH·OW].
    public func im2col(_ input: DeviceBuffer<Float>, _ col: DeviceBuffer<Float>, shape s: Conv2dShape) throws {
        precondition(input.count >= s.inputCount && col.count >= s.scratchCount, "im2col buffers too small for \(s)")
        try launch("conv2d", "im2col", global: [s.outSpatial, s.patch, s.batch], [
            .buffer(input.mem), .buffer(col.mem), .int(s.inChannels), .int(s.height), .int(s.width),
            .int(s.kernelSize), .int(s.kernelSize), .int(s.stride), .int(s.padTop), .int(s.padLeft),
            .int(s.outHeight), .int(s.outWidth),
        ])
    }

    /// y = conv2d(x, weight [Co, Ci, k, k]) + bias [Co]; output [N, Co, OH, OW].
    /// `scratch` holds at least `shape.scratchCount` floats when the shape needs im2col.
    public func conv2d(_ input: DeviceBuffer<Float>, weight: DeviceBuffer<Float>, bias: DeviceBuffer<Float>?,
                       output: DeviceBuffer<Float>, shape s: Conv2dShape, scratch: DeviceBuffer<Float>? = nil) throws {
        precondition(input.count >= s.inputCount, "conv2d input too small for \(s)")
        precondition(weight.count >= s.weightCount, "conv2d weight too small for \(s)")
        precondition(output.count >= s.outputCount, "conv2d output too small for \(s)")
        precondition(output !== input, "conv2d cannot run in place")
        let P = s.outSpatial
        let b: GemmOperand
        if s.needsIm2col {
            guard let scratch, scratch.count >= s.scratchCount else {
                preconditionFailure("conv2d \(s) needs \(s.scratchCount) floats of scratch")
            }
            try im2col(input, scratch, shape: s)
            b = GemmOperand(scratch, ld: P, stride: s.patch * P)
        } else {
            b = GemmOperand(input, ld: P, stride: s.inChannels * P)
        }
        if let bias {
            precondition(bias.count >= s.outChannels, "conv2d bias too small")
            try fillChannelBias(output, bias: bias, batch: s.batch, channels: s.outChannels, spatial: P)
        }
        try gemm.sgemm(queue: queue, m: s.outChannels, n: P, k: s.patch,
                       a: GemmOperand(weight, ld: s.patch, stride: 0), b: b,
                       beta: bias == nil ? 0 : 1, c: GemmOperand(output, ld: P, stride: s.outChannels * P),
                       batch: s.batch)
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
                       beta: bias == nil ? 0 : 1, c: GemmOperand(output, ld: outFeatures))
    }
}
