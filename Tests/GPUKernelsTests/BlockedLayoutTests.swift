// The operations a UNet runs between convolutions when it carries oneDNN's layouts (nChw8c, nChw16c,
// NHWC) against the CPU reference in NCHW, arranged into that layout; and oneDNN convolutions whose
// input and output are in them. Host operations: CPU devices only (host-blas).
import GPUKernels
import Testing
import TestSupport

@Suite struct BlockedLayoutTests {
    static let layouts: [ActivationLayout] = [.blocked(8), .blocked(16), .nhwc]

    /// A channel multiple the layout holds (NHWC: 8-float vectors).
    static func unit(_ l: ActivationLayout) -> Int { if case .blocked(let b) = l { return b }; return 8 }

    /// A host-blas stream, or nil where the test device is not a CPU.
    static func hostStream() throws -> ComputeStream? {
        guard try testDevice().kind == .cpu else { return nil }
        return try ComputeStream(device: testDevice(), gemm: .hostBLAS)
    }

    @Test(arguments: layouts)
    func reorderRoundTrips(layout: ActivationLayout) throws {
        guard let s = try Self.hostStream() else { return }
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let B = Self.unit(layout)
        // (The second is large enough for the planes to be split over threads.)
        for (N, C, P) in [(2, 2 * B, 13), (3, 4 * B, 37 * 29)] {
            let x = randomArray(N * C * P, &rng)
            let dx = try s.upload(x), dy = try s.buffer(x.count), dz = try s.buffer(x.count)
            try s.reorder(dx, output: dy, from: .nchw, to: layout, batch: N, channels: C, spatial: P)
            let blocked = try s.download(dy)
            expectClose(blocked, layout.arrange(x, batch: N, channels: C, spatial: P), atol: 0, rtol: 0, "nchw → \(layout) \(N)×\(C)×\(P)", seed: seed)
            // The reference's own inverse, and the device's.
            expectClose(layout.plain(blocked, batch: N, channels: C, spatial: P), x, atol: 0, rtol: 0, "reference round trip", seed: seed)
            try s.reorder(dy, output: dz, from: layout, to: .nchw, batch: N, channels: C, spatial: P)
            expectClose(try s.download(dz), x, atol: 0, rtol: 0, "\(layout) → nchw \(N)×\(C)×\(P)", seed: seed)
        }
    }

    /// Channels per group below, equal to and above the block, not dividing it (3, 12 with B = 8:
    /// units of 24 channels), one group, and positions that are not a multiple of 128 (the float
    /// accumulators' flush), with and without SiLU; into another buffer and in place.
    @Test(arguments: layouts, [(2, 24, 8, 49, true), (3, 48, 4, 300, false), (1, 64, 32, 17, true), (2, 32, 1, 130, true),
                               (2, 96, 8, 64, false)])
    func groupNormMatchesReference(layout: ActivationLayout, dims: (Int, Int, Int, Int, Bool)) throws {
        guard let s = try Self.hostStream() else { return }
        let (N, C, groups, P, silu) = dims
        guard layout.holds(channels: C) else { return }
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        // An offset mean and a wide range, as the NCHW test: a one-pass variance would lose precision.
        let x = randomArray(N * C * P, &rng, in: 2...6)
        let gamma = randomArray(C, &rng, in: 0.5...1.5), beta = randomArray(C, &rng)
        let ref = layout.arrange(Reference.groupNorm(x, n: N, c: C, p: P, groups: groups, eps: 1e-6, gamma: gamma, beta: beta, silu: silu),
                                 batch: N, channels: C, spatial: P)
        let dx = try s.upload(layout.arrange(x, batch: N, channels: C, spatial: P)), dy = try s.buffer(x.count)
        let dg = try s.upload(gamma), db = try s.upload(beta)
        try s.groupNorm(dx, output: dy, gamma: dg, beta: db, batch: N, channels: C, spatial: P, groups: groups, eps: 1e-6,
                        silu: silu, layout: layout)
        expectClose(try s.download(dy), ref, atol: 1e-5, rtol: 1e-4, "group_norm \(N)×\(C)×\(P) g\(groups) silu \(silu) in \(layout)", seed: seed)
        try s.groupNorm(dx, output: dx, gamma: dg, beta: db, batch: N, channels: C, spatial: P, groups: groups, eps: 1e-6,
                        silu: silu, layout: layout)
        expectClose(try s.download(dx), ref, atol: 1e-5, rtol: 1e-4, "group_norm in place in \(layout)", seed: seed)
    }

    @Test(arguments: layouts)
    func channelBiasUpsampleAndConcat(layout: ActivationLayout) throws {
        guard let s = try Self.hostStream() else { return }
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let B = Self.unit(layout)
        for (N, C, H, W) in [(2, B, 3, 5), (3, 3 * B, 17, 33)] {
            let P = H * W
            let x = randomArray(N * C * P, &rng), perSample = randomArray(N * C, &rng)
            let dBias = try s.upload(perSample)
            for stride in [0, C] {
                let dx = try s.upload(layout.arrange(x, batch: N, channels: C, spatial: P))
                try s.addChannelBias(dx, bias: dBias, batch: N, channels: C, spatial: P, biasBatchStride: stride, layout: layout)
                var ref = x
                for i in ref.indices { ref[i] += perSample[i / (C * P) * stride + (i / P) % C] }
                expectClose(try s.download(dx), layout.arrange(ref, batch: N, channels: C, spatial: P), atol: 1e-6, rtol: 1e-6,
                            "add_channel_bias \(N)×\(C)×\(P) stride \(stride) in \(layout)", seed: seed)
            }
            let dx = try s.upload(layout.arrange(x, batch: N, channels: C, spatial: P)), dy = try s.buffer(4 * x.count)
            try s.upsampleNearest2x(dx, output: dy, batch: N, channels: C, height: H, width: W, layout: layout)
            expectClose(try s.download(dy), layout.arrange(Reference.upsampleNearest2x(x, nc: N * C, h: H, w: W), batch: N, channels: C, spatial: 4 * P),
                        atol: 0, rtol: 0, "upsample \(N)×\(C)×\(H)×\(W) in \(layout)", seed: seed)
            let (CA, CB) = (C, 2 * B)
            let b = randomArray(N * CB * P, &rng), dc = try s.buffer(N * (CA + CB) * P)
            try s.concatChannels(try s.upload(layout.arrange(x, batch: N, channels: CA, spatial: P)),
                                 try s.upload(layout.arrange(b, batch: N, channels: CB, spatial: P)),
                                 output: dc, batch: N, channelsA: CA, channelsB: CB, spatial: P, layout: layout)
            expectClose(try s.download(dc), layout.arrange(Reference.concat(x, b, n: N, ca: CA, cb: CB, p: P), batch: N, channels: CA + CB, spatial: P),
                        atol: 0, rtol: 0, "concat \(CA)+\(CB) in \(layout)", seed: seed)
        }
    }

    /// oneDNN convolutions reading and writing any mix of NCHW and blocked activations (a UNet's
    /// conv_in, inner layers, conv_out), in its blocked layouts and on NCHW.
    @Test(arguments: layouts)
    func oneDNNConvolutionsTakeBlockedActivations(layout blocked: ActivationLayout) throws {
        guard try testDevice().kind == .cpu else { return }
        #expect(ConvolutionPath.oneDNNAvailable, "libdnnl.so.2 is missing: CI installs libdnnl-dev")
        guard ConvolutionPath.oneDNNAvailable else { return }
        let s = try ComputeStream(device: testDevice(), gemm: .hostBLAS, convolution: .oneDNN)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let B = Self.unit(blocked)
        let shapes = [
            Conv2dShape(batch: 2, inChannels: 3, height: 9, width: 7, outChannels: 2 * B, kernelSize: 3, stride: 1, padding: 1),
            Conv2dShape(batch: 2, inChannels: 2 * B, height: 8, width: 8, outChannels: B, kernelSize: 3, stride: 2,
                        padTop: 0, padLeft: 0, padBottom: 1, padRight: 1),
            Conv2dShape(batch: 3, inChannels: 3 * B, height: 5, width: 6, outChannels: B, kernelSize: 1),
            Conv2dShape(batch: 2, inChannels: B, height: 6, width: 5, outChannels: 3, kernelSize: 3, stride: 1, padding: 1),
        ]
        for sh in shapes {
            let inLayout: ActivationLayout = blocked.holds(channels: sh.inChannels) ? blocked : .nchw
            let outLayout: ActivationLayout = blocked.holds(channels: sh.outChannels) ? blocked : .nchw
            let x = randomArray(sh.inputCount, &rng), w = randomArray(sh.weightCount, &rng, in: -0.5...0.5), bias = randomArray(sh.outChannels, &rng)
            let ref = Reference.conv2d(x, n: sh.batch, c: sh.inChannels, h: sh.height, w: sh.width, weight: w, bias: bias,
                                       outChannels: sh.outChannels, kh: sh.kernelHeight, kw: sh.kernelWidth, stride: sh.stride,
                                       pad: (sh.padTop, sh.padLeft, sh.padBottom, sh.padRight))
            let dx = try s.upload(inLayout.arrange(x, batch: sh.batch, channels: sh.inChannels, spatial: sh.height * sh.width))
            let dw = try s.upload(w), db = try s.upload(bias), dy = try s.buffer(sh.outputCount)
            for convBlocked in [true, false] {
                s.backends.oneDNNLayout = convBlocked ? .blocked : .plain
                try s.conv2d(dx, weight: dw, bias: db, output: dy, shape: sh, inputLayout: inLayout, outputLayout: outLayout)
                expectClose(try s.download(dy), outLayout.arrange(ref, batch: sh.batch, channels: sh.outChannels, spatial: sh.outSpatial),
                            atol: 1e-4, rtol: 1e-4, "oneDNN \(sh) \(inLayout) → \(outLayout), convolution blocked \(convBlocked)", seed: seed)
            }
        }
    }
}
