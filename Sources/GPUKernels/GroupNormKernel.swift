// Launchers for kernels/group_norm.cl: torch.nn.GroupNorm with an optional fused SiLU, and torch.nn.LayerNorm over rows.

extension ComputeStream {
    /// y = GroupNorm(x) · gamma + beta over x [N, C, P] in `groups` groups (then SiLU if asked); y may be x.
    /// Both in `layout` (blocked layouts on the host only).
    public func groupNorm(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, gamma: DeviceBuffer<Float>,
                          beta: DeviceBuffer<Float>, batch: Int, channels: Int, spatial: Int, groups: Int,
                          eps: Float, silu: Bool = false, layout: ActivationLayout = .nchw) throws {
        precondition(groups > 0 && channels % groups == 0, "GroupNorm: \(channels) channels do not split into \(groups) groups")
        if layout != .nchw && spatial > 1 {
            precondition(backends.supports(.groupNorm, layout: layout, channels: channels), "GroupNorm in \(layout) needs host operations and whole blocks")
            return try onHost("group norm (host)", [x, y, gamma, beta]) { p in
                HostGroupNorm.groupNormBlocked(p[0], p[1], gamma: p[2], beta: p[3], batch: batch, channels: channels, spatial: spatial,
                                               groups: groups, block: layout.hostBlock(channels: channels), eps: eps, silu: silu)
            }
        }
        precondition(x.count >= batch * channels * spatial && y.count >= batch * channels * spatial, "GroupNorm buffers too small")
        precondition(gamma.count >= channels && beta.count >= channels, "GroupNorm affine parameters too small")
        if backends.placement(.groupNorm) == .host {
            // Vectorised C over mapped buffers (PoCL's two kernels took a fifth of the cifar UNet's pass).
            return try onHost("group norm (host)", [x, y, gamma, beta]) { p in
                HostGroupNorm.groupNorm(p[0], p[1], gamma: p[2], beta: p[3], batch: batch, channels: channels, spatial: spatial,
                                        groups: groups, eps: eps, silu: silu)
            }
        }
        let affine = try scratch(.groupNormAffine, count: 2 * batch * channels)
        let ls = backends.reductionWorkGroupSize
        try launch(.groupNormStats, global: [ls * batch * groups], local: [ls], [
            .buffer(x.mem), .buffer(affine.mem), .buffer(gamma.mem), .buffer(beta.mem),
            .int(channels), .int(spatial), .int(groups), .float(eps),
            .local(bytes: ls * MemoryLayout<Float>.size),
        ])
        try launch(.groupNormApply, global: [spatial, channels, batch], [
            .buffer(x.mem), .buffer(y.mem), .buffer(affine.mem), .int(channels), .int(spatial), .int(silu ? 1 : 0),
        ])
    }

    /// torch.nn.LayerNorm(cols, eps) over each of `rows` rows of x [rows, cols]; y may be x.
    public func layerNorm(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, gamma: DeviceBuffer<Float>, beta: DeviceBuffer<Float>,
                          rows: Int, cols: Int, eps: Float) throws {
        precondition(x.count >= rows * cols && y.count >= rows * cols && gamma.count >= cols && beta.count >= cols,
                     "layer norm buffers too small")
        let ls = backends.reductionWorkGroupSize
        try launch(.layerNormRows, global: [ls * rows], local: [ls], [
            .buffer(x.mem), .buffer(y.mem), .buffer(gamma.mem), .buffer(beta.mem), .int(cols), .float(eps),
            .local(bytes: ls * MemoryLayout<Float>.size),
        ])
    }
}
