// Bilinear resizing (pytorch-fid's F.interpolate to 299×299) and channel-range copies (Inception's
// concatenations) against CPU references.
import GPUKernels
import Testing
import TestSupport

@Suite struct ResizeTests {
    /// F.interpolate(mode="bilinear", align_corners=False) with ATen's float32 source index
    /// (dst + 0.5) · in/out − 0.5, clamped at 0, the upper neighbour clamped to the last row/column,
    /// and the blend in float64.
    static func resizeReference(_ x: [Float], offset: Int, n: Int, c: Int, h: Int, w: Int, outChannels: Int,
                                oh: Int, ow: Int, lo: Float, hi: Float) -> [Float] {
        var y = [Float](repeating: 0, count: n * outChannels * oh * ow)
        func source(_ d: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int, Double) {
            let r = max(Float(inSize) / Float(outSize) * (Float(d) + 0.5) - 0.5, 0)
            let i0 = min(Int(r), inSize - 1)
            return (i0, min(i0 + 1, inSize - 1), Double(r - Float(i0)))
        }
        for b in 0..<n { for o in 0..<outChannels { for oy in 0..<oh { for ox in 0..<ow {
            let (y0, y1, ly) = source(oy, h, oh), (x0, x1, lx) = source(ox, w, ow)
            let base = offset + (b * c + o % c) * h * w
            func v(_ yy: Int, _ xx: Int) -> Double { Double(min(max(x[base + yy * w + xx], lo), hi)) }
            let top = (1 - lx) * v(y0, x0) + lx * v(y0, x1), bottom = (1 - lx) * v(y1, x0) + lx * v(y1, x1)
            y[((b * outChannels + o) * oh + oy) * ow + ox] = Float((1 - ly) * top + ly * bottom)
        } } } }
        return y
    }

    /// (batch, channels, height, width, output channels, output height, output width)
    @Test(arguments: [(2, 1, 28, 28, 3, 299, 299), (1, 3, 32, 32, 3, 299, 299), (2, 2, 9, 7, 2, 5, 4),
                      (1, 3, 6, 6, 3, 6, 6), (3, 1, 5, 8, 3, 13, 11)])
    func resizeMatchesReference(_ n: Int, _ c: Int, _ h: Int, _ w: Int, _ co: Int, _ oh: Int, _ ow: Int) throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let offset = 3 * h * w   // images start past the buffer's first elements
        let x = randomArray(offset + n * c * h * w, &rng, in: -1.5...1.5)
        let dx = try s.upload(x)
        let dy = try s.upload(randomArray(n * co * oh * ow, &rng, in: 100...200))
        try s.resizeBilinear(dx, inputOffset: offset, output: dy, batch: n, channels: c, height: h, width: w,
                             outChannels: co, outHeight: oh, outWidth: ow, clampTo: -1...1)
        let ref = Self.resizeReference(x, offset: offset, n: n, c: c, h: h, w: w, outChannels: co, oh: oh, ow: ow, lo: -1, hi: 1)
        // (The kernel's source coordinates are float32: an error of ~1e-7 pixels times a gradient of up
        // to 3 per pixel puts a few outputs in 10⁶ at 2.4e-6 — seen once in CI at atol 2e-6.)
        expectClose(try s.download(dy), ref, atol: 5e-6, rtol: 1e-5, "resize \(h)×\(w)×\(c) → \(oh)×\(ow)×\(co)", seed: seed)
    }

    /// (batch, height, width, output height, output width)
    @Test(arguments: [(2, 16, 16, 28, 28), (1, 64, 48, 28, 28), (3, 5, 9, 7, 4)])
    func lumaResizeMatchesReference(_ n: Int, _ h: Int, _ w: Int, _ oh: Int, _ ow: Int) throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let offset = 2 * h * w
        let x = randomArray(offset + n * 3 * h * w, &rng, in: -1.5...1.5)
        let dy = try s.upload(randomArray(n * oh * ow, &rng, in: 100...200))
        try s.resizeBilinearLuma(try s.upload(x), inputOffset: offset, output: dy, batch: n, height: h, width: w,
                                 outHeight: oh, outWidth: ow, clampTo: -1...1)
        let rgb = Self.resizeReference(x, offset: offset, n: n, c: 3, h: h, w: w, outChannels: 3, oh: oh, ow: ow, lo: -1, hi: 1)
        let p = oh * ow
        let ref = (0..<(n * p)).map { i -> Float in
            let (b, q) = (i / p, i % p)
            return 0.299 * rgb[(b * 3) * p + q] + 0.587 * rgb[(b * 3 + 1) * p + q] + 0.114 * rgb[(b * 3 + 2) * p + q]
        }
        expectClose(try s.download(dy), ref, atol: 5e-6, rtol: 1e-5, "luma resize \(h)×\(w) → \(oh)×\(ow)", seed: seed)
    }

    @Test func copyChannelsBuildsAConcatenation() throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let (n, p) = (3, 17)
        let parts = [5, 2, 7]
        let total = parts.reduce(0, +)
        let xs = parts.map { randomArray(n * $0 * p, &rng) }
        let dy = try s.upload(randomArray(n * total * p, &rng, in: 100...200))
        var offset = 0
        for (x, c) in zip(xs, parts) {
            try s.copyChannels(try s.upload(x), into: dy, batch: n, channels: c, outputChannels: total, offset: offset, spatial: p)
            offset += c
        }
        var ref: [Float] = []
        for b in 0..<n { for (x, c) in zip(xs, parts) { ref += x[(b * c * p)..<((b + 1) * c * p)] } }
        expectClose(try s.download(dy), ref, atol: 0, rtol: 0, "copy_channels concatenation", seed: seed)
    }
}
