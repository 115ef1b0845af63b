// Launchers for kernels/layout.cl: nearest-neighbour 2× upsampling, channel concatenation, copies
// into a channel range and bilinear resizing.

extension ComputeStream {
    /// x [N, C, H, W] → y [N, C, 2H, 2W] (F.interpolate(scale_factor=2, mode="nearest")), both in
    /// `layout` (blocked layouts on the host only).
    public func upsampleNearest2x(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>,
                                  batch: Int, channels: Int, height: Int, width: Int, layout: ActivationLayout = .nchw) throws {
        let n = batch * channels * height * width
        precondition(x.count >= n && y.count >= 4 * n, "upsample buffers too small")
        precondition(x !== y, "upsample cannot run in place")
        if layout != .nchw {
            let B = layout.hostBlock(channels: channels)
            precondition(backends.supports(.upsample, layout: layout, channels: channels), "upsampling in \(layout) needs host operations and whole blocks")
            return try onHost("upsample_nearest2x (host)", [x, y]) { p in
                HostElementwise.upsampleNearest2xBlocked(p[0], p[1], planes: batch * channels / B, height: height, width: width, block: B)
            }
        }
        if backends.placement(.upsample) == .host {
            // Row copies over the mapped buffers.
            return try onHost("upsample_nearest2x (host)", [x, y]) { p in
                HostElementwise.upsampleNearest2x(p[0], p[1], planes: batch * channels, height: height, width: width)
            }
        }
        try launch(.upsampleNearest2x, global: [4 * n],
                   [.buffer(x.mem), .buffer(y.mem), .int(batch * channels), .int(height), .int(width)])
    }

    /// torch.cat([a, b], dim=1): a [N, CA, P], b [N, CB, P] → y [N, CA+CB, P], all in `layout`. (In
    /// nChw{B}c whole blocks are concatenated, so each sample is the same two copies as in NCHW; NHWC
    /// interleaves them at every position, on the host.)
    public func concatChannels(_ a: DeviceBuffer<Float>, _ b: DeviceBuffer<Float>, output y: DeviceBuffer<Float>,
                               batch: Int, channelsA: Int, channelsB: Int, spatial: Int, layout: ActivationLayout = .nchw) throws {
        precondition(layout.holds(channels: channelsA) && layout.holds(channels: channelsB), "concat in \(layout) needs whole blocks")
        let total = batch * (channelsA + channelsB) * spatial
        precondition(a.count >= batch * channelsA * spatial && b.count >= batch * channelsB * spatial
                     && y.count >= total, "concat buffers too small")
        precondition(y !== a && y !== b, "concat cannot run in place")
        if layout == .nhwc {
            precondition(backends.supports(.concat, layout: layout, channels: channelsA), "concat in NHWC needs host operations")
            return try onHost("concat (host)", [a, b, y]) { p in
                HostElementwise.concatNHWC(p[0], p[1], p[2], positions: batch * spatial, channelsA: channelsA, channelsB: channelsB)
            }
        }
        if backends.placement(.concat) == .host {
            // Two memory copies per sample over the mapped buffers (PoCL's per-element kernel moved ~3 GB/s).
            return try onHost("concat (host)", [a, b, y]) { p in
                HostElementwise.concatChannels(p[0], p[1], p[2], batch: batch, channelsA: channelsA, channelsB: channelsB, spatial: spatial)
            }
        }
        try launch(.concatChannels, global: [total], [
            .buffer(a.mem), .buffer(b.mem), .buffer(y.mem), .int(batch), .int(channelsA), .int(channelsB), .int(spatial),
        ])
    }

    /// x [N, CS, P] into channels offset..<offset+CS of y [N, CD, P]: one operand of torch.cat(dim=1).
    public func copyChannels(_ x: DeviceBuffer<Float>, into y: DeviceBuffer<Float>, batch: Int, channels: Int,
                             outputChannels: Int, offset: Int, spatial: Int) throws {
        precondition(offset >= 0 && offset + channels <= outputChannels, "channel range outside the output")
        precondition(x.count >= batch * channels * spatial && y.count >= batch * outputChannels * spatial,
                     "copyChannels buffers too small")
        precondition(x !== y, "copyChannels cannot run in place")
        try launch(.copyChannels, global: [batch * channels * spatial], [
            .buffer(x.mem), .buffer(y.mem), .int(batch), .int(channels), .int(outputChannels), .int(offset), .int(spatial),
        ])
    }

    /// F.interpolate(clamp(x, range), size: (outHeight, outWidth), mode: "bilinear", align_corners: False)
    /// for x [N, C, H, W] read from element `inputOffset` on, into y [N, outChannels, OH, OW]; output
    /// channel c reads input channel c % C, so a grey image (C = 1) becomes RGB (outChannels = 3).
    public func resizeBilinear(_ x: DeviceBuffer<Float>, inputOffset: Int = 0, output y: DeviceBuffer<Float>,
                               batch: Int, channels: Int, height: Int, width: Int,
                               outChannels: Int, outHeight: Int, outWidth: Int,
                               clampTo range: ClosedRange<Float> = -Float.greatestFiniteMagnitude...Float.greatestFiniteMagnitude) throws {
        precondition(outChannels % channels == 0, "output channels must repeat the input channels")
        precondition(x.count >= inputOffset + batch * channels * height * width
                     && y.count >= batch * outChannels * outHeight * outWidth, "resize buffers too small")
        precondition(x !== y, "resize cannot run in place")
        try launch(.resizeBilinear, global: [batch * outChannels * outHeight * outWidth], [
            .buffer(x.mem), .int(inputOffset), .buffer(y.mem), .int(batch), .int(channels), .int(height), .int(width),
            .int(outChannels), .int(outHeight), .int(outWidth), .float(range.lowerBound), .float(range.upperBound),
        ])
    }

    /// `resizeBilinear` of RGB images x [N, 3, H, W] (from element `inputOffset`) to grey y [N, 1, OH, OW]:
    /// each channel resized, then 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2 luma, as PIL's convert("L")).
    public func resizeBilinearLuma(_ x: DeviceBuffer<Float>, inputOffset: Int = 0, output y: DeviceBuffer<Float>,
                                   batch: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                                   clampTo range: ClosedRange<Float> = -Float.greatestFiniteMagnitude...Float.greatestFiniteMagnitude) throws {
        precondition(x.count >= inputOffset + batch * 3 * height * width && y.count >= batch * outHeight * outWidth, "resize buffers too small")
        precondition(x !== y, "resize cannot run in place")
        try launch(.resizeBilinearLuma, global: [batch * outHeight * outWidth], [
            .buffer(x.mem), .int(inputOffset), .buffer(y.mem), .int(batch), .int(height), .int(width),
            .int(outHeight), .int(outWidth), .float(range.lowerBound), .float(range.upperBound),
        ])
    }
}
