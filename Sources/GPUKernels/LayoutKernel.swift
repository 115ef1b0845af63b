// Launchers for kernels/layout.cl: nearest-neighbour 2× upsampling and channel concatenation.
extension ComputeStream {
    /// x [N, C, H, W] → y [N, C, 2H, 2W] (F.interpolate(scale_factor=2, mode="nearest")).
    public func upsampleNearest2x(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>,
                                  batch: Int, channels: Int, height: Int, width: Int) throws {
        let n = batch * channels * height * width
        precondition(x.count >= n && y.count >= 4 * n, "upsample buffers too small")
        precondition(x !== y, "upsample cannot run in place")
        try launch("layout", "upsample_nearest2x", global: [4 * n],
                   [.buffer(x.mem), .buffer(y.mem), .int(batch * channels), .int(height), .int(width)])
    }

    /// torch.cat([a, b], dim=1): a [N, CA, P], b [N, CB, P] → y [N, CA+CB, P].
    public func concatChannels(_ a: DeviceBuffer<Float>, _ b: DeviceBuffer<Float>, output y: DeviceBuffer<Float>,
                               batch: Int, channelsA: Int, channelsB: Int, spatial: Int) throws {
        let total = batch * (channelsA + channelsB) * spatial
        precondition(a.count >= batch * channelsA * spatial && b.count >= batch * channelsB * spatial
                     && y.count >= total, "concat buffers too small")
        precondition(y !== a && y !== b, "concat cannot run in place")
        try launch("layout", "concat_channels", global: [total], [
            .buffer(a.mem), .buffer(b.mem), .buffer(y.mem), .int(batch), .int(channelsA), .int(channelsB), .int(spatial),
        ])
    }
}
