// Launchers for kernels/elementwise.cl: SiLU, ReLU, clamp, residual add with scale, scale and
// shift, per-channel bias.

extension ComputeStream {
    /// y = x · sigmoid(x) over `count` elements; y may be x.
    public func silu(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, count: Int) throws {
        precondition(x.count >= count && y.count >= count, "silu buffers too small")
        try launch(.silu, global: [count], [.buffer(x.mem), .buffer(y.mem), .int(count)])
    }

    /// y = max(x, 0) over `count` elements; y may be x.
    public func relu(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, count: Int) throws {
        precondition(x.count >= count && y.count >= count, "relu buffers too small")
        try launch(.relu, global: [count], [.buffer(x.mem), .buffer(y.mem), .int(count)])
    }

    /// y = min(max(x, lo), hi) over `count` elements; y may be x.
    public func clamp(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, count: Int, to range: ClosedRange<Float>) throws {
        precondition(x.count >= count && y.count >= count, "clamp buffers too small")
        try launch(.clampValues, global: [count],
                   [.buffer(x.mem), .buffer(y.mem), .int(count), .float(range.lowerBound), .float(range.upperBound)])
    }

    /// y = (a + b) · scale (diffusers' `(input + hidden) / output_scale_factor`); y may be a or b.
    public func addScale(_ a: DeviceBuffer<Float>, _ b: DeviceBuffer<Float>, output y: DeviceBuffer<Float>,
                         count: Int, scale: Float = 1) throws {
        precondition(a.count >= count && b.count >= count && y.count >= count, "add buffers too small")
        if backends.placement(.residualAdd) == .host {
            // One vectorised pass over the mapped buffers.
            return try onHost("add_scale (host)", [a, b, y]) { p in HostElementwise.addScale(p[0], p[1], p[2], count: count, scale: scale) }
        }
        try launch(.addScale, global: [count],
                   [.buffer(a.mem), .buffer(b.mem), .buffer(y.mem), .int(count), .float(scale)])
    }

    /// y = x · s + b; y may be x.
    public func scale(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, count: Int, by s: Float, plus b: Float = 0) throws {
        precondition(x.count >= count && y.count >= count, "scale buffers too small")
        try launch(.scaleShift, global: [count], [.buffer(x.mem), .buffer(y.mem), .int(count), .float(s), .float(b)])
    }

    /// y[offset + (n, c, p)] = bias[c] for y [N, C, P] starting at element `offset`.
    public func fillChannelBias(_ y: DeviceBuffer<Float>, offset: Int = 0, bias: DeviceBuffer<Float>,
                                batch: Int, channels: Int, spatial: Int) throws {
        precondition(y.count >= offset + batch * channels * spatial && bias.count >= channels, "bias fill buffers too small")
        if spatial == 1 {
            try launch(.fillRowBias, global: [channels, batch],
                       [.buffer(y.mem), .int(offset), .buffer(bias.mem), .int(channels)])
            return
        }
        if backends.placement(.channelBias) == .host {
            return try hostChannelBias(y, offset: offset, bias: bias, batch: batch, channels: channels, spatial: spatial,
                                       batchStride: 0, add: false)
        }
        try launch(.fillChannelBias, global: [spatial, channels, batch],
                   [.buffer(y.mem), .int(offset), .buffer(bias.mem), .int(channels), .int(spatial)])
    }

    /// y[n, c, p] += bias[n · batchStride + c] for y [N, C, P]: batchStride 0 broadcasts one vector,
    /// batchStride C adds one vector per sample (a projected time embedding).
    /// y in `layout` (blocked layouts on the host only).
    public func addChannelBias(_ y: DeviceBuffer<Float>, bias: DeviceBuffer<Float>, batch: Int, channels: Int,
                               spatial: Int, biasBatchStride: Int, layout: ActivationLayout = .nchw) throws {
        precondition(y.count >= batch * channels * spatial, "bias add output too small")
        precondition(bias.count >= (batch - 1) * biasBatchStride + channels, "bias add vector too small")
        if layout != .nchw && spatial > 1 {
            precondition(backends.supports(.channelBias, layout: layout, channels: channels), "bias add in \(layout) needs host operations and whole blocks")
            return try onHost("add_channel_bias (host)", [y, bias]) { p in
                HostElementwise.addChannelBiasBlocked(p[0], p[1], batch: batch, channels: channels, spatial: spatial,
                                                      block: layout.hostBlock(channels: channels), batchStride: biasBatchStride)
            }
        }
        if spatial == 1 {
            try launch(.addRowBias, global: [channels, batch],
                       [.buffer(y.mem), .buffer(bias.mem), .int(channels), .int(biasBatchStride)])
            return
        }
        if backends.placement(.channelBias) == .host {
            return try hostChannelBias(y, offset: 0, bias: bias, batch: batch, channels: channels, spatial: spatial,
                                       batchStride: biasBatchStride, add: true)
        }
        try launch(.addChannelBias, global: [spatial, channels, batch],
                   [.buffer(y.mem), .buffer(bias.mem), .int(channels), .int(spatial), .int(biasBatchStride)])
    }

    /// `fillChannelBias` / `addChannelBias` on the host: one vectorised pass over the mapped buffers.
    private func hostChannelBias(_ y: DeviceBuffer<Float>, offset: Int, bias: DeviceBuffer<Float>, batch: Int, channels: Int, spatial: Int,
                                 batchStride: Int, add: Bool) throws {
        try onHost("\(add ? "add" : "fill")_channel_bias (host)", [y, bias]) { p in
            HostElementwise.channelBias(p[0] + offset, p[1], batch: batch, channels: channels, spatial: spatial, batchStride: batchStride, add: add)
        }
    }
}
