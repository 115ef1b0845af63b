// Multi-head self-attention over spatial positions, channel-first: Q/K/V projections and the output
// projection are 1×1 convolutions, softmax(QKᵀ/√d)·V runs as two strided-batched GEMMs around
// kernels/attention.cl's row softmax. Port of the math of diffusers' Attention (AttnProcessor2_0)
// as UNet2DModel's attention blocks use it, without the group norm and residual around it.

/// The geometry of one attention call: x [batch, channels, spatial] with `heads` heads.
public struct AttentionShape: Hashable, Sendable {
    public var batch: Int
    public var channels: Int
    public var spatial: Int
    public var heads: Int
    public init(batch: Int, channels: Int, spatial: Int, heads: Int) {
        precondition(heads > 0 && channels % heads == 0, "attention: \(channels) channels do not split into \(heads) heads")
        self.batch = batch; self.channels = channels; self.spatial = spatial; self.heads = heads
    }
    public var headDim: Int { channels / heads }
    var tensorCount: Int { batch * channels * spatial }
    var scoresCount: Int { batch * heads * spatial * spatial }
    /// Floats of scratch `attention` needs: Q, K, V, the head outputs and the scores.
    public var scratchCount: Int { 4 * tensorCount + scoresCount }
    /// Multiply-accumulates: four projections plus the two attention products.
    public var macs: Int { 4 * batch * spatial * channels * channels + 2 * batch * heads * spatial * spatial * headDim }
}

/// The four projections of an attention block, each torch.nn.Linear(channels, channels): weight [C, C], bias [C].
public struct AttentionWeights {
    public var query: DeviceBuffer<Float>, queryBias: DeviceBuffer<Float>
    public var key: DeviceBuffer<Float>, keyBias: DeviceBuffer<Float>
    public var value: DeviceBuffer<Float>, valueBias: DeviceBuffer<Float>
    public var out: DeviceBuffer<Float>, outBias: DeviceBuffer<Float>
    public init(query: DeviceBuffer<Float>, queryBias: DeviceBuffer<Float>, key: DeviceBuffer<Float>, keyBias: DeviceBuffer<Float>,
                value: DeviceBuffer<Float>, valueBias: DeviceBuffer<Float>, out: DeviceBuffer<Float>, outBias: DeviceBuffer<Float>) {
        self.query = query; self.queryBias = queryBias; self.key = key; self.keyBias = keyBias
        self.value = value; self.valueBias = valueBias; self.out = out; self.outBias = outBias
    }
}

extension ComputeStream {
    /// y = to_out(softmax(Q Kᵀ / √d) V) per head, with Q, K, V = to_q/k/v(x), for x, y [N, C, P]
    /// (positions are tokens, channels are features). `scratch` holds `shape.scratchCount` floats.
    public func attention(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, weights w: AttentionWeights,
                          shape s: AttentionShape, scratch: DeviceBuffer<Float>) throws {
        precondition(x.count >= s.tensorCount && y.count >= s.tensorCount, "attention input/output too small")
        precondition(scratch.count >= s.scratchCount, "attention needs \(s.scratchCount) floats of scratch")
        precondition(x !== y, "attention cannot run in place")
        let P = s.spatial, d = s.headDim, t = s.tensorCount
        // Scratch layout: Q, K, V, head outputs (each [N, C, P]), then the scores [N·heads, P, P].
        let q = 0, k = t, v = 2 * t, o = 3 * t, scores = 4 * t
        try project(x, weight: w.query, bias: w.queryBias, into: scratch, offset: q, shape: s)
        try project(x, weight: w.key, bias: w.keyBias, into: scratch, offset: k, shape: s)
        try project(x, weight: w.value, bias: w.valueBias, into: scratch, offset: v, shape: s)
        // Head h of sample n is the contiguous [d, P] block at (n·heads + h)·d·P, a uniform stride.
        let batch = s.batch * s.heads
        try gemm.sgemm(queue: queue, transA: true, m: P, n: P, k: d, alpha: 1 / Float(d).squareRoot(),
                       a: GemmOperand(scratch, offset: q, ld: P, stride: d * P),
                       b: GemmOperand(scratch, offset: k, ld: P, stride: d * P),
                       c: GemmOperand(scratch, offset: scores, ld: P, stride: P * P), batch: batch, bfloat16: backends.bfloat16GEMMs)
        try softmaxRows(scratch, offset: scores, rows: batch * P, cols: P)
        try gemm.sgemm(queue: queue, transB: true, m: d, n: P, k: P,
                       a: GemmOperand(scratch, offset: v, ld: P, stride: d * P),
                       b: GemmOperand(scratch, offset: scores, ld: P, stride: P * P),
                       c: GemmOperand(scratch, offset: o, ld: P, stride: d * P), batch: batch, bfloat16: backends.bfloat16GEMMs)
        try project(scratch, inputOffset: o, weight: w.out, bias: w.outBias, into: y, offset: 0, shape: s)
    }

    /// Token-major projections are 1×1 convolutions in channel-first layout: out[n] = W · x[n] + b,
    /// written at `offset` of `buffer`.
    private func project(_ x: DeviceBuffer<Float>, inputOffset: Int = 0, weight: DeviceBuffer<Float>, bias: DeviceBuffer<Float>,
                         into buffer: DeviceBuffer<Float>, offset: Int, shape s: AttentionShape) throws {
        let C = s.channels, P = s.spatial
        precondition(weight.count >= C * C && bias.count >= C, "attention projection weights too small")
        try fillChannelBias(buffer, offset: offset, bias: bias, batch: s.batch, channels: C, spatial: P)
        try gemm.sgemm(queue: queue, m: C, n: P, k: C, a: GemmOperand(weight, ld: C),
                       b: GemmOperand(x, offset: inputOffset, ld: P, stride: C * P), beta: 1,
                       c: GemmOperand(buffer, offset: offset, ld: P, stride: C * P), batch: s.batch, bfloat16: backends.bfloat16GEMMs, constant: .a)
    }

    /// In-place softmax of each row of the [rows, cols] matrix at `offset` of `s` (on the host, every
    /// core over the mapped buffer, where the backends put it).
    public func softmaxRows(_ s: DeviceBuffer<Float>, offset: Int = 0, rows: Int, cols: Int) throws {
        precondition(s.count >= offset + rows * cols, "softmax buffer too small")
        if backends.placement(.softmax) == .host {
            return try onHost("softmax (host)", [s]) { p in HostSoftmax.softmaxRows(p[0] + offset, rows: rows, cols: cols) }
        }
        let ls = backends.reductionWorkGroupSize
        try launch(.softmaxRows, global: [ls * rows], local: [ls],
                   [.buffer(s.mem), .int(offset), .int(cols), .local(bytes: ls * MemoryLayout<Float>.size)])
    }
}
