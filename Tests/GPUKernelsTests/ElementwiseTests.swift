// Element-wise, layout, group-norm and timestep-embedding kernels against the CPU reference.
import GPUKernels
import Testing
import TestSupport

@Suite struct ElementwiseTests {
    /// On every GEMM path (host-blas adds on the host, split over threads: 40,003 values leave a ragged end).
    @Test(arguments: gemmPaths())
    func siluAddScaleAndChannelBias(path: GemmPath) throws {
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let n = 555
        let a = randomArray(n, &rng, in: -6...6), b = randomArray(n, &rng)
        let da = try s.upload(a), db = try s.upload(b), dy = try s.buffer(n)
        try s.silu(da, output: dy, count: n)
        expectClose(try s.download(dy), a.map(Reference.silu), atol: 1e-6, rtol: 1e-5, "silu", seed: seed)
        try s.addScale(da, db, output: dy, count: n, scale: 1 / 1.4142135)
        expectClose(try s.download(dy), zip(a, b).map { ($0 + $1) * (1 / 1.4142135) }, atol: 1e-6, rtol: 1e-6, "add_scale via \(path)", seed: seed)
        let big = 40_003, x1 = randomArray(big, &rng), x2 = randomArray(big, &rng)
        let d1 = try s.upload(x1), d2 = try s.upload(x2)
        try s.addScale(d1, d2, output: d2, count: big, scale: 0.5)   // into one of its inputs, as the attention residual does
        expectClose(try s.download(d2), zip(x1, x2).map { ($0 + $1) * 0.5 }, atol: 1e-6, rtol: 1e-6, "add_scale in place, \(big) values", seed: seed)
        try s.scale(da, output: dy, count: n, by: -0.75, plus: 0.5)
        expectClose(try s.download(dy), a.map { $0 * -0.75 + 0.5 }, atol: 1e-7, rtol: 1e-7, "scale_shift", seed: seed)
        // In place.
        let dz = try s.upload(a)
        try s.silu(dz, output: dz, count: n)
        expectClose(try s.download(dz), a.map(Reference.silu), atol: 1e-6, rtol: 1e-5, "silu in place", seed: seed)

        // P = 37 (channel-major), P = 1 (rows of a linear layer's output: its own kernels), and one
        // large enough for the host path to split its rows over threads (ragged: 132 rows of 515).
        for (N, C, P) in [(3, 5, 37), (7, 11, 1), (4, 33, 515)] {
            let n = N * C * P
            let a = randomArray(n, &rng)
            let perSample = randomArray(N * C, &rng)
            let dBias = try s.upload(perSample)
            for stride in [0, C] {
                let dx = try s.upload(a)
                try s.addChannelBias(dx, bias: dBias, batch: N, channels: C, spatial: P, biasBatchStride: stride)
                var ref = a
                for i in 0..<n { let c = (i / P) % C, nn = i / (C * P); ref[i] += perSample[nn * stride + c] }
                expectClose(try s.download(dx), ref, atol: 1e-6, rtol: 1e-6, "add_channel_bias P \(P) stride \(stride)", seed: seed)
            }
            let dFill = try s.upload(randomArray(n + 4 + 3, &rng))
            let before = try s.download(dFill)
            try s.fillChannelBias(dFill, offset: 4, bias: dBias, batch: N, channels: C, spatial: P)
            var ref = before
            for i in 0..<n { ref[4 + i] = perSample[(i / P) % C] }
            expectClose(try s.download(dFill), ref, atol: 0, rtol: 0, "fill_channel_bias P \(P) at offset", seed: seed)
        }
    }

    @Test(arguments: gemmPaths())
    func upsampleAndConcat(path: GemmPath) throws {
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        // (The second is large enough for the host path to split its planes over threads.)
        for (N, C, H, W) in [(2, 3, 5, 7), (2, 41, 17, 33)] {
            let x = randomArray(N * C * H * W, &rng)
            let dx = try s.upload(x), dy = try s.buffer(4 * x.count)
            try s.upsampleNearest2x(dx, output: dy, batch: N, channels: C, height: H, width: W)
            expectClose(try s.download(dy), Reference.upsampleNearest2x(x, nc: N * C, h: H, w: W), atol: 0, rtol: 0, "upsample \(N)×\(C)×\(H)×\(W) via \(path)", seed: seed)
        }
        let (N, C) = (2, 3)

        let (CA, CB, P) = (4, 6, 13)
        let a = randomArray(N * CA * P, &rng), b = randomArray(N * CB * P, &rng)
        let dc = try s.buffer(N * (CA + CB) * P)
        try s.concatChannels(try s.upload(a), try s.upload(b), output: dc, batch: N, channelsA: CA, channelsB: CB, spatial: P)
        expectClose(try s.download(dc), Reference.concat(a, b, n: N, ca: CA, cb: CB, p: P), atol: 0, rtol: 0, "concat", seed: seed)
    }

    /// On every GEMM path: host-blas runs GroupNorm in C on the host (sizes not a multiple of its
    /// 8-float vectors included), the others in the device's kernels. The SiLU range reaches past
    /// where its exp clamps (|x| > 87).
    @Test(arguments: gemmPaths(), [(2, 32, 64, 8, false), (3, 12, 49, 4, true), (1, 64, 1024, 32, true), (2, 6, 5, 6, false),
                                   (1, 4, 300, 2, true)])
    func groupNormMatchesReference(path: GemmPath, dims: (Int, Int, Int, Int, Bool)) throws {
        let (n, c, p, groups, silu) = dims
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        // An offset mean and a wide range: a one-pass variance would lose precision here.
        let x = randomArray(n * c * p, &rng, in: 2...6)
        var gamma = randomArray(c, &rng, in: 0.5...1.5), beta = randomArray(c, &rng)
        // Outputs far beyond ±87: there x·scale and shift are ~400 and cancel to |y| ~ 10, where
        // float32 and PoCL's exp leave ~2e-5 in SiLU's tiny negative tail (atol 1e-4 below).
        if p == 300 { gamma = gamma.map { $0 * 60 } }
        let atol: Float = p == 300 ? 1e-4 : 1e-5
        let ref = Reference.groupNorm(x, n: n, c: c, p: p, groups: groups, eps: 1e-6, gamma: gamma, beta: beta, silu: silu)
        let dx = try s.upload(x), dg = try s.upload(gamma), db = try s.upload(beta), dy = try s.buffer(x.count)
        try s.groupNorm(dx, output: dy, gamma: dg, beta: db, batch: n, channels: c, spatial: p, groups: groups, eps: 1e-6, silu: silu)
        expectClose(try s.download(dy), ref, atol: atol, rtol: 1e-4, "group_norm \(n)×\(c)×\(p) g\(groups) silu \(silu) via \(path)", seed: seed)
        try s.groupNorm(dx, output: dx, gamma: dg, beta: db, batch: n, channels: c, spatial: p, groups: groups, eps: 1e-6, silu: silu)
        expectClose(try s.download(dx), ref, atol: atol, rtol: 1e-4, "group_norm in place via \(path)", seed: seed)
    }

    @Test(arguments: [(128, false, 1.0), (128, true, 0.0), (33, true, 1.0), (64, false, 0.0)])
    func timestepEmbeddingMatchesDiffusers(dim: Int, flip: Bool, shift: Double) throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let t = (0..<6).map { _ in Float(Int.random(in: 0..<1000, using: &rng)) } + [0, 999]
        let dt = try s.upload(t), dy = try s.buffer(t.count * dim)
        try s.timestepEmbedding(dt, output: dy, batch: t.count, dim: dim, flipSinToCos: flip, downscaleFreqShift: Float(shift))
        // Arguments reach ~1000 rad, where one float32 ulp of the argument is ~6e-5.
        expectClose(try s.download(dy), Reference.timestepEmbedding(t, dim: dim, flip: flip, shift: shift),
                    atol: 3e-4, rtol: 0, "timestep embedding dim \(dim) flip \(flip) shift \(shift)", seed: seed)
    }
}
