// Launchers for kernels/transformer.cl (layout changes, GEGLU) and multi-head attention
// on token-major tensors, as Stable Diffusion's transformer blocks use them. Attention never holds
// the whole score matrix: queries run in chunks whose scores fit a bound (SD 1.5 at 512×512 has
// 4,096 positions; the full QKᵀ of 8 heads × batch 2 would be 1 GiB), each chunk as two
// strided-batched GEMMs (one per head) around kernels/attention.cl's row softmax.
// Port of the math of diffusers' Attention (AttnProcessor2_0) on [N, L, heads·d] tensors.

/// One token-major operand of attention: row `r` of sample `n` starts at `offset + (n·length + r)·ld`,
/// and head `h` is the `headDim` features from `h·headDim` on (so Q, K and V of one fused
/// projection [N, L, 3C] are three operands of one buffer with ld 3C).
public struct TokenOperand {
    public var buffer: DeviceBuffer<Float>
    public var offset: Int
    public var ld: Int
    public init(_ buffer: DeviceBuffer<Float>, offset: Int = 0, ld: Int) {
        self.buffer = buffer; self.offset = offset; self.ld = ld
    }
}

/// Activations of a transformer MLP (transformers' `hidden_act`).
public enum TokenActivation: String, Sendable {
    case quickGELU = "quick_gelu", gelu
}

/// The geometry of one attention call: `batch` samples, `queryLength` queries over `keyLength` keys,
/// `heads` heads of `headDim` features.
public struct TokenAttentionShape: Hashable, Sendable {
    public var batch: Int, queryLength: Int, keyLength: Int, heads: Int, headDim: Int
    public init(batch: Int, queryLength: Int, keyLength: Int, heads: Int, headDim: Int) {
        precondition(batch > 0 && queryLength > 0 && keyLength > 0 && heads > 0 && headDim > 0, "attention sizes must be positive")
        self.batch = batch; self.queryLength = queryLength; self.keyLength = keyLength; self.heads = heads; self.headDim = headDim
    }
    public var channels: Int { heads * headDim }

    /// Floats of score scratch the attention takes by default: 16 Mi (64 MiB).
    public static let defaultScoreLimit = 1 << 24
    /// (A stream's limit is `Backends.attentionScoreLimit`.)
    /// Queries per chunk so that the scores of all heads fit `scoreLimit` floats (at least one query).
    public func chunk(scoreLimit: Int = defaultScoreLimit) -> Int {
        max(1, min(queryLength, scoreLimit / (heads * keyLength)))
    }
    /// Floats of scratch for the scores of one chunk.
    public func scratchCount(scoreLimit: Int = defaultScoreLimit) -> Int { heads * chunk(scoreLimit: scoreLimit) * keyLength }
    /// Multiply-accumulates of the two attention products (the projections are counted by their linears).
    public var macs: Int { 2 * batch * heads * queryLength * keyLength * headDim }
}

/// How token attention runs (`$FLEXIFFUSION_ATTENTION`).
public enum AttentionPath: String, CaseIterable, Sendable {
    /// Queries in chunks: scores through the GEMM path, a row softmax, the product with V.
    case chunked
    /// kernels/attention.cl's fused_attention: an online softmax over key tiles in local memory, no
    /// score matrix (head dims up to `fusedMaxHeadDim`; larger ones run chunked).
    case fused

    /// The process's choice; an unknown value is an error when a stream is made.
    public static let chosen = (try? EngineEnvironment.attention.choice(AttentionPath.self)) ?? .chunked
    public static let fusedMaxHeadDim = 160
    /// Query rows per work-group, and key rows per local-memory tile (kernels/attention.cl's FA_KT).
    static let fusedQueryTile = 32, fusedKeyTile = 32
}

extension ComputeStream {
    /// kernels/attention.cl's fused_attention (see `multiHeadAttention`), for head dims up to
    /// `AttentionPath.fusedMaxHeadDim`.
    public func fusedMultiHeadAttention(query q: TokenOperand, key k: TokenOperand, value v: TokenOperand, output o: TokenOperand,
                                        shape s: TokenAttentionShape, scale: Float? = nil, causal: Bool = false) throws {
        let d = s.headDim, C = s.channels
        precondition(d <= AttentionPath.fusedMaxHeadDim, "the fused attention takes head dims up to \(AttentionPath.fusedMaxHeadDim), not \(d)")
        precondition([q.ld, k.ld, v.ld, o.ld].allSatisfy { $0 >= C }, "attention row stride below heads × headDim")
        precondition(q.offset + (s.batch * s.queryLength - 1) * q.ld + C <= q.buffer.count
                     && k.offset + (s.batch * s.keyLength - 1) * k.ld + C <= k.buffer.count
                     && v.offset + (s.batch * s.keyLength - 1) * v.ld + C <= v.buffer.count
                     && o.offset + (s.batch * s.queryLength - 1) * o.ld + C <= o.buffer.count, "attention operands too small")
        let qt = min(AttentionPath.fusedQueryTile, device.maxWorkGroupSize)
        let rows = (s.queryLength + qt - 1) / qt * qt
        try launch(.fusedAttention, global: [rows, s.heads, s.batch], local: [qt, 1, 1], [
            .buffer(q.buffer.mem), .int(q.offset), .int(q.ld), .buffer(k.buffer.mem), .int(k.offset), .int(k.ld),
            .buffer(v.buffer.mem), .int(v.offset), .int(v.ld), .buffer(o.buffer.mem), .int(o.offset), .int(o.ld),
            .int(s.queryLength), .int(s.keyLength), .int(d), .float(scale ?? 1 / Float(d).squareRoot()), .int(causal ? 1 : 0),
            .local(bytes: 2 * AttentionPath.fusedKeyTile * d * MemoryLayout<Float>.size),
        ])
    }

    /// o = softmax(q kᵀ · scale) v per head (`causal`: query i sees keys 0…i only, as CLIP's text encoder), for q [N, Lq, C], k and v [N, Lk, C], o [N, Lq, C]
    /// (C = heads · headDim; each operand with its own row stride); scale defaults to 1/√headDim.
    /// `scratch` holds `shape.scratchCount(scoreLimit:)` floats; queries run `shape.chunk(scoreLimit:)` at a time.
    public func multiHeadAttention(query q: TokenOperand, key k: TokenOperand, value v: TokenOperand, output o: TokenOperand,
                                   shape s: TokenAttentionShape, scale: Float? = nil, scratch: DeviceBuffer<Float>,
                                   scoreLimit: Int = TokenAttentionShape.defaultScoreLimit, causal: Bool = false) throws {
        if backends.attention == .fused && s.headDim <= AttentionPath.fusedMaxHeadDim {
            return try fusedMultiHeadAttention(query: q, key: k, value: v, output: o, shape: s, scale: scale, causal: causal)
        }
        let d = s.headDim, C = s.channels, Lk = s.keyLength, chunk = s.chunk(scoreLimit: scoreLimit)
        precondition(scratch.count >= s.heads * chunk * Lk, "attention needs \(s.heads * chunk * Lk) floats of scratch")
        precondition([q.ld, k.ld, v.ld, o.ld].allSatisfy { $0 >= C }, "attention row stride below heads × headDim")
        precondition(o.buffer !== scratch && q.buffer !== scratch && k.buffer !== scratch && v.buffer !== scratch,
                     "attention scratch must be its own buffer")
        let alpha = scale ?? 1 / Float(d).squareRoot()
        for n in 0..<s.batch {
            var i0 = 0
            while i0 < s.queryLength {
                let rows = min(chunk, s.queryLength - i0)
                // scores[h] = Q_h[i0 ..< i0 + rows] · K_hᵀ · alpha, one GEMM per head (stride d between heads).
                try gemm.sgemm(queue: queue, transB: true, m: rows, n: Lk, k: d, alpha: alpha,
                               a: GemmOperand(q.buffer, offset: q.offset + (n * s.queryLength + i0) * q.ld, ld: q.ld, stride: d),
                               b: GemmOperand(k.buffer, offset: k.offset + n * Lk * k.ld, ld: k.ld, stride: d),
                               c: GemmOperand(scratch, ld: Lk, stride: rows * Lk), batch: s.heads, bfloat16: backends.bfloat16GEMMs)
                if causal {
                    try launch(.causalMask, global: [Lk, s.heads * rows],
                               [.buffer(scratch.mem), .int(rows), .int(Lk), .int(i0)])
                }
                try softmaxRows(scratch, rows: s.heads * rows, cols: Lk)
                try gemm.sgemm(queue: queue, m: rows, n: d, k: Lk,
                               a: GemmOperand(scratch, ld: Lk, stride: rows * Lk),
                               b: GemmOperand(v.buffer, offset: v.offset + n * Lk * v.ld, ld: v.ld, stride: d),
                               c: GemmOperand(o.buffer, offset: o.offset + (n * s.queryLength + i0) * o.ld, ld: o.ld, stride: d),
                               batch: s.heads, bfloat16: backends.bfloat16GEMMs)
                i0 += rows
            }
        }
    }

    /// y [rows, D] = table[ids[r]] for a table [V, D] (token embeddings); ids must be below V.
    public func gatherRows(_ table: DeviceBuffer<Float>, ids: DeviceBuffer<Int32>, output y: DeviceBuffer<Float>,
                           rows: Int, width D: Int) throws {
        precondition(ids.count >= rows && y.count >= rows * D && table.count >= D, "gather buffers too small")
        try launch(.gatherRows, global: [D, rows], [.buffer(table.mem), .buffer(ids.mem), .buffer(y.mem), .int(D)])
    }

    /// x = act(x) in place for transformers' `quick_gelu` (x·σ(1.702x)) or exact `gelu`.
    public func activation(_ x: DeviceBuffer<Float>, count: Int, _ kind: TokenActivation) throws {
        precondition(x.count >= count, "activation buffer too small")
        try launch(.activationInplace, global: [count],
                   [.buffer(x.mem), .int(count), .int(kind == .quickGELU ? 0 : 1)])
    }

    /// x [N, R, K] → y [N, K, R]: channel-first [N, C, P] to token-major [N, P, C] and back.
    public func transposeBatched(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, batch: Int, rows: Int, cols: Int) throws {
        precondition(x.count >= batch * rows * cols && y.count >= batch * rows * cols, "transpose buffers too small")
        precondition(x !== y, "transpose cannot run in place")
        try launch(.transposeBatched, global: [cols, rows, batch],
                   [.buffer(x.mem), .buffer(y.mem), .int(rows), .int(cols)])
    }

    /// diffusers' GEGLU after its projection: x [rows, 2F] → y [rows, F] = x[:, :F] · gelu(x[:, F:]).
    public func geglu(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, rows: Int, features F: Int) throws {
        precondition(x.count >= rows * 2 * F && y.count >= rows * F, "geglu buffers too small")
        precondition(x !== y, "geglu cannot run in place")
        try launch(.geglu, global: [F, rows], [.buffer(x.mem), .buffer(y.mem), .int(F)])
    }

    /// y[r, :] += x[r, :] · Wᵀ + b for x [rows, in], W [out, in]: a linear layer added onto y (a residual).
    public func linearAccumulate(_ x: DeviceBuffer<Float>, weight: DeviceBuffer<Float>, bias: DeviceBuffer<Float>?,
                                 into y: DeviceBuffer<Float>, rows: Int, inFeatures: Int, outFeatures: Int) throws {
        precondition(x.count >= rows * inFeatures && weight.count >= inFeatures * outFeatures && y.count >= rows * outFeatures,
                     "linear buffers too small")
        precondition(x !== y, "linear cannot run in place")
        if let bias { try addChannelBias(y, bias: bias, batch: rows, channels: outFeatures, spatial: 1, biasBatchStride: 0) }
        try gemm.sgemm(queue: queue, transB: true, m: rows, n: outFeatures, k: inFeatures,
                       a: GemmOperand(x, ld: inFeatures), b: GemmOperand(weight, ld: inFeatures),
                       beta: 1, c: GemmOperand(y, ld: outFeatures), bfloat16: backends.bfloat16GEMMs, constant: .b)
    }
}
