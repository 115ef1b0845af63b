// The kernels of kernels/*.cl as named handles: one case per `__kernel`, each in the family (the
// file) that holds it. A stream creates all of a family's kernels together when it first launches
// one of them, so a kernel missing from its program is an error at load that names it, not at some
// later launch; KernelListTests checks this list against the sources.

/// One kernels/<family>.cl file.
public enum KernelFamily: String, CaseIterable, Sendable {
    case attention, conv2d, elementwise, groupNorm = "group_norm", layout, pooling, scheduler, statistics
    case timestepEmbedding = "timestep_embedding", transformer

    /// The file's name without .cl (the embedded source's name).
    public var fileName: String { rawValue }

    /// The family's kernels, in the order of this list.
    public var kernels: [Kernel] { Kernel.allCases.filter { $0.family == self } }
}

/// One `__kernel` of kernels/*.cl, by its name in the source.
public enum Kernel: String, CaseIterable, Sendable, CustomStringConvertible {
    // attention.cl
    case softmaxRows = "softmax_rows", fusedAttention = "fused_attention"
    // conv2d.cl
    case im2col, im2colRows = "im2col_rows", unfoldBatch = "unfold_batch", conv2dImplicit = "conv2d_implicit"
    // elementwise.cl
    case silu, relu, clampValues = "clamp_values", addScale = "add_scale", scaleShift = "scale_shift"
    case fillChannelBias = "fill_channel_bias", fillRowBias = "fill_row_bias", addRowBias = "add_row_bias"
    case addChannelBias = "add_channel_bias"
    // group_norm.cl
    case groupNormStats = "group_norm_stats", groupNormApply = "group_norm_apply", layerNormRows = "layer_norm_rows"
    // layout.cl
    case upsampleNearest2x = "upsample_nearest2x", concatChannels = "concat_channels", copyChannels = "copy_channels"
    case resizeBilinear = "resize_bilinear", resizeBilinearLuma = "resize_bilinear_luma"
    // pooling.cl
    case pool2d, meanPoolSpatial = "mean_pool_spatial"
    // scheduler.cl
    case schedulerStep = "scheduler_step", multistepCombine = "multistep_combine", guidanceCombine = "guidance_combine"
    // statistics.cl
    case columnMean = "column_mean", centerColumns = "center_columns"
    // timestep_embedding.cl
    case timestepEmbedding = "timestep_embedding"
    // transformer.cl
    case transposeBatched = "transpose_batched", geglu, gatherRows = "gather_rows", activationInplace = "activation_inplace"
    case causalMask = "causal_mask"

    /// Its name in the source (and in profiles).
    public var name: String { rawValue }
    public var description: String { rawValue }

    public var family: KernelFamily {
        switch self {
        case .softmaxRows, .fusedAttention: return .attention
        case .im2col, .im2colRows, .unfoldBatch, .conv2dImplicit: return .conv2d
        case .silu, .relu, .clampValues, .addScale, .scaleShift, .fillChannelBias, .fillRowBias, .addRowBias, .addChannelBias:
            return .elementwise
        case .groupNormStats, .groupNormApply, .layerNormRows: return .groupNorm
        case .upsampleNearest2x, .concatChannels, .copyChannels, .resizeBilinear, .resizeBilinearLuma: return .layout
        case .pool2d, .meanPoolSpatial: return .pooling
        case .schedulerStep, .multistepCombine, .guidanceCombine: return .scheduler
        case .columnMean, .centerColumns: return .statistics
        case .timestepEmbedding: return .timestepEmbedding
        case .transposeBatched, .geglu, .gatherRows, .activationInplace, .causalMask: return .transformer
        }
    }
}
