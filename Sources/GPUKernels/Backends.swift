import CHostDNN

// Which backend runs each operation on a stream: the one table that decides between the host
// (CPU devices, whose buffers are host memory mapped zero-copy: OpenBLAS, oneDNN, vectorised C)
// and the device (CLBlast, the engine's OpenCL kernels), per device, GEMM path, convolution path
// and precision. The launchers ask it (as ggml's backends answer `supports_op`) instead of
// testing the device kind or the GEMM path themselves; fp16 storage, bf16 on the host and
// tensor-core GEMMs are further rows of it. `flexiffusion devices` prints it.

/// Where an operation runs.
public enum Placement: String, Sendable, CustomStringConvertible {
    case host, device
    public var description: String { rawValue }
}

/// The precision a stream's models compute in (`--precision`). Activations and weights are stored
/// in float32 either way; GroupNorm, softmax and the samplers always run in float32.
public enum Precision: String, CaseIterable, Sendable, CustomStringConvertible {
    case float32 = "fp32"
    /// The host convolutions' inputs and weights rounded to bfloat16 (8 significant bits) and their
    /// products accumulated in float32, as PyTorch's bf16 autocast does on the CPU: about twice the
    /// float32 rate where the CPU computes bf16 natively (`Precision.resolve`).
    case bfloat16 = "bf16"
    public var description: String { rawValue }

    /// Whether this CPU computes bf16 products natively (AVX-512 BF16 or AMX-BF16).
    public static var cpuHasBFloat16: Bool { flex_cpu_has_bf16() != 0 }

    /// The precision a stream with `backends` runs when `requested` is asked for (nil: float32, the
    /// default everywhere, since it matches diffusers to float tolerance), and why it differs where it
    /// does: bf16 needs oneDNN's convolutions on a CPU with native bf16 products, else float32.
    public static func resolve(_ requested: Precision?, for backends: Backends,
                               cpuHasBFloat16: Bool = Precision.cpuHasBFloat16) -> (precision: Precision, note: String?) {
        switch requested ?? .float32 {
        case .float32: return (.float32, nil)
        case .bfloat16:
            if backends.placement(.convolution) != .host {
                return (.float32, "bf16 runs oneDNN's convolutions on a CPU device; here convolutions run as \(backends.implementation(.convolution)): running fp32")
            }
            if !cpuHasBFloat16 {
                return (.float32, "this CPU has neither AVX-512 BF16 nor AMX-BF16, where bf16 would be slower than fp32: running fp32")
            }
            return (.bfloat16, nil)
        }
    }
}

/// The operations whose backend the table decides.
public enum Operation: String, CaseIterable, Sendable, CustomStringConvertible {
    /// Matrix products: linear layers, attention's products, im2col convolutions' GEMMs.
    case gemm
    case convolution
    /// (a + b) · scale: the residual adds.
    case residualAdd = "residual_add"
    /// Per-channel bias fills and adds over spatial positions (those over rows are pointwise).
    case channelBias = "channel_bias"
    case groupNorm = "group_norm"
    case softmax
    case upsample
    case concat
    /// Reorders between NCHW and a blocked layout.
    case reorder
    /// Everything else: activations, scaling, row biases, LayerNorm, im2col, pooling, resizing, the
    /// samplers' updates, the transformer's small kernels.
    case pointwise

    /// Its name in words (`rawValue` is the JSON key).
    public var description: String { rawValue.replacingOccurrences(of: "_", with: " ") }

    /// The memory-bound operations between convolutions, which must run where the activations'
    /// layout can be read (a model carries a blocked layout only when all of them take it).
    public static let betweenConvolutions: [Operation] = [.residualAdd, .channelBias, .groupNorm, .upsample, .concat, .reorder]
}

/// A stream's backends: where each operation runs, and the layouts it takes.
public struct Backends: Sendable, CustomStringConvertible {
    public let deviceKind: DeviceKind
    /// What the models on the stream compute in (`Precision.resolve` chooses; `ComputeStream.withPrecision`
    /// runs a metric's network in float32 on a bf16 stream).
    public var precision: Precision
    public let gemm: GemmPath
    /// How convolutions run (`ComputeStream.backends` refuses a path the device cannot run).
    public var convolution: ConvolutionPath
    /// oneDNN's layouts around its convolutions (`$FLEXIFFUSION_ONEDNN_LAYOUT`; read on the oneDNN path only).
    public var oneDNNLayout: OneDNNLayoutMode
    /// im2col one output row per work-item (the default on CPU devices, where PoCL spends its time
    /// on per-element index arithmetic) rather than one element (coalesced writes on GPUs).
    public var rowwiseIm2col: Bool
    /// The work-group size of reductions (GroupNorm statistics, softmax): the largest power of two
    /// the device allows up to 16 on CPU devices, where PoCL's larger work-groups spent 3× longer in
    /// the softmax of the attention blocks (measured with `bench unet --profile`), else up to 256.
    public let reductionWorkGroupSize: Int
    /// How token attention runs: score chunks through the GEMM path, or the fused kernel
    /// (`$FLEXIFFUSION_ATTENTION`; chunked until the fused one is measured faster on a device).
    public var attention: AttentionPath = AttentionPath.chosen
    /// Floats of attention-score scratch a token attention takes (queries run in chunks that fit):
    /// 16 Mi on CPUs (chunks that stay near the caches), 512 MiB on GPUs (or a quarter of the largest
    /// buffer), where SD 1.5's 4,096-query self-attention then runs in one chunk per sample: eight
    /// 512-query chunks kept CLBlast's head-dim-40 products at ~0.5 TFLOP/s on an H200.
    public let attentionScoreLimit: Int

    public init(device: DeviceInfo, gemm: GemmPath, convolution: ConvolutionPath, precision: Precision = .float32,
                oneDNNLayout: OneDNNLayoutMode = OneDNNLayoutMode.chosen) {
        deviceKind = device.kind; self.precision = precision; self.gemm = gemm; self.convolution = convolution
        self.oneDNNLayout = oneDNNLayout; rowwiseIm2col = device.kind == .cpu
        let cap = device.kind == .cpu ? 16 : 256
        var ls = 1
        while ls * 2 <= min(cap, device.maxWorkGroupSize) { ls *= 2 }
        reductionWorkGroupSize = ls
        let limit = TokenAttentionShape.defaultScoreLimit
        attentionScoreLimit = device.kind == .gpu ? max(limit, min(1 << 27, Int(device.maxAllocationBytes / 16))) : limit
    }

    /// Where `op` runs.
    public func placement(_ op: Operation) -> Placement {
        switch op {
        case .gemm: return gemm == .hostBLAS ? .host : .device
        case .convolution: return convolution == .oneDNN ? .host : .device
        // Where the GEMMs run on the host, so do the memory-bound operations around them, over the
        // mapped buffers (PoCL's kernels for GroupNorm alone took a fifth of the cifar UNet's pass).
        case .residualAdd, .channelBias, .groupNorm, .softmax, .upsample, .concat, .reorder: return placement(.gemm)
        case .pointwise: return .device
        }
    }

    /// Whether `op` takes activations of `channels` channels in `layout`: NCHW everywhere, blocked
    /// layouts (whole blocks) on the host only.
    public func supports(_ op: Operation, layout: ActivationLayout, channels: Int) -> Bool {
        layout == .nchw || (placement(op) == .host && layout.holds(channels: channels))
    }

    /// Whether convolutions run in oneDNN's preferred layouts (their input and output reordered
    /// where the caller's differ), rather than on NCHW.
    public var blockedConvolutions: Bool { convolution == .oneDNN && oneDNNLayout != .plain }

    /// The layout of oneDNN's convolutions here, when a model may carry it between them: nChw8c,
    /// nChw16c (oneDNN 2's jit kernels) or NHWC (oneDNN 3's brgemm kernels) when convolutions run
    /// blocked and every operation between them runs on the host; else NCHW.
    public var convolutionLayout: ActivationLayout {
        guard blockedConvolutions, Operation.betweenConvolutions.allSatisfy({ placement($0) == .host }) else { return .nchw }
        return ActivationLayout.oneDNNPreferred
    }

    /// The layout a model with these (inner) channel counts keeps its activations in: the blocked
    /// `convolutionLayout` when the layout mode carries it and every count is whole blocks, else NCHW.
    public func activationLayout(channels: [Int]) -> ActivationLayout {
        let l = convolutionLayout
        guard oneDNNLayout == .carried, l != .nchw, channels.allSatisfy({ l.holds(channels: $0) }) else { return .nchw }
        return l
    }

    /// Whether the host GEMMs take bf16 inputs (`precision` bf16, the host path, and a oneDNN with
    /// matrix products; else they stay with OpenBLAS in fp32).
    public var bfloat16GEMMs: Bool { precision == .bfloat16 && placement(.gemm) == .host && Self.hostMatmulAvailable }

    /// Whether the oneDNN opened has matrix products (a build with convolutions and reorders only has none).
    public static var hostMatmulAvailable: Bool { HostMatmul.available }

    /// Whether the host convolutions take bf16 inputs (`precision` bf16 with oneDNN's convolutions).
    public var bfloat16Convolutions: Bool { precision == .bfloat16 && placement(.convolution) == .host }

    /// Floats of scratch a convolution of `shape` needs here (none where oneDNN runs it).
    public func convolutionScratch(_ shape: Conv2dShape) -> Int {
        placement(.convolution) == .host || convolution == .implicitGemm ? 0 : shape.scratchCount
    }

    /// What runs `op`, in words.
    public func implementation(_ op: Operation) -> String {
        switch (op, placement(op)) {
        case (.gemm, .host):
            if bfloat16GEMMs { return "oneDNN matmul on mapped buffers, bf16 inputs, fp32 accumulation" }
            return "OpenBLAS on mapped buffers\(precision == .bfloat16 ? " (fp32: the oneDNN opened has no matrix products)" : "")"
        case (.gemm, .device): return gemm == .clblastTuned ? "CLBlast, tuned Xgemm parameters" : "CLBlast"
        case (.convolution, .host): return "oneDNN\(ConvolutionPath.oneDNNLibrary.map { " \($0.dropFirst("oneDNN ".count))" } ?? ""), \(blockedConvolutions ? "blocked layouts" : "NCHW")\(bfloat16Convolutions ? ", bf16 inputs, fp32 accumulation" : "")"
        case (.convolution, .device):
            if convolution == .implicitGemm { return "implicit GEMM kernel (patches gathered into local memory, no column buffer)" }
            return "im2col (\(rowwiseIm2col ? "a row" : "an element") per work-item) + GEMM"
        case (.softmax, _) where attention == .fused:
            return "fused into the token attention's kernel (no score matrix); \(placement(.softmax) == .host ? "vectorised C" : "OpenCL kernels") for UNet2DModel's attention"
        case (_, .host): return "vectorised C on mapped buffers"
        case (_, .device): return "OpenCL kernels"
        }
    }

    /// The convolution path as benchmarks print it: with the oneDNN library and its layouts.
    public var convolutionSummary: String {
        guard convolution == .oneDNN, let library = ConvolutionPath.oneDNNLibrary else { return convolution.rawValue }
        return "onednn, \(library), \(blockedConvolutions ? "blocked layouts" : "NCHW")\(bfloat16Convolutions ? ", bf16 inputs" : "")"
    }

    public var description: String { "GEMM \(gemm), convolutions \(convolutionSummary), \(precision)" }

    /// The table: each operation, where it runs and by what.
    public var rows: [(operation: Operation, placement: Placement, implementation: String)] {
        Operation.allCases.map { ($0, placement($0), implementation($0)) }
    }
}
