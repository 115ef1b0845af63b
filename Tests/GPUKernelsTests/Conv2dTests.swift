// Convolution and linear layers against the CPU reference, on every GEMM path.
import GPUKernels
import Testing
import TestSupport

@Suite struct Conv2dTests {
    static let shapes: [Conv2dShape] = [
        Conv2dShape(batch: 2, inChannels: 5, height: 9, width: 7, outChannels: 6, kernelSize: 3, stride: 1, padding: 1),
        Conv2dShape(batch: 3, inChannels: 4, height: 8, width: 8, outChannels: 7, kernelSize: 3, stride: 2, padding: 1),
        Conv2dShape(batch: 2, inChannels: 3, height: 10, width: 9, outChannels: 4, kernelSize: 3, stride: 1, padding: 0),
        // diffusers' Downsample2D with padding 0 pads (0, 1, 0, 1) before a stride-2 3×3 convolution.
        Conv2dShape(batch: 2, inChannels: 4, height: 8, width: 8, outChannels: 4, kernelSize: 3, stride: 2,
                    padTop: 0, padLeft: 0, padBottom: 1, padRight: 1),
        Conv2dShape(batch: 3, inChannels: 6, height: 5, width: 7, outChannels: 9, kernelSize: 1),
        Conv2dShape(batch: 2, inChannels: 32, height: 16, width: 16, outChannels: 16, kernelSize: 3, stride: 1, padding: 1),
        // Inception-v3's factorised kernels: 1×7 / 7×1 with padding (0, 3) / (3, 0), 1×3 / 3×1.
        Conv2dShape(batch: 2, inChannels: 5, height: 9, width: 8, outChannels: 6, kernelHeight: 1, kernelWidth: 7, padHeight: 0, padWidth: 3),
        Conv2dShape(batch: 2, inChannels: 5, height: 9, width: 8, outChannels: 6, kernelHeight: 7, kernelWidth: 1, padHeight: 3, padWidth: 0),
        Conv2dShape(batch: 3, inChannels: 4, height: 6, width: 7, outChannels: 5, kernelHeight: 3, kernelWidth: 1, padHeight: 1, padWidth: 0),
        Conv2dShape(batch: 1, inChannels: 3, height: 11, width: 11, outChannels: 4, kernelHeight: 1, kernelWidth: 3, stride: 2, padHeight: 0, padWidth: 1),
    ]

    @Test(arguments: gemmPaths(), shapes)
    func conv2dMatchesReference(path: GemmPath, shape sh: Conv2dShape) throws {
        // Every lowering, with both im2col kernels (per element and per row), whatever the device.
        for algorithm in Conv2dAlgorithm.allCases {
            for rowwise in [false, true] {
                try checkConv2d(path: path, shape: sh, algorithm: algorithm, rowwise: rowwise)
            }
        }
        // The batched lowering a chunk of images at a time (two: a ragged last chunk for odd batches).
        if sh.batch > 1 { try checkConv2d(path: path, shape: sh, algorithm: .batched, rowwise: false, chunk: 2) }
    }

    /// Chunks keep the batched lowering's scratch within its limit, at least one image at a time.
    @Test func batchedScratchIsChunked() {
        let vae = Conv2dShape(batch: 32, inChannels: 256, height: 512, width: 512, outChannels: 256, kernelSize: 3, stride: 1, padding: 1)
        #expect(vae.batchedChunk == 1 && vae.scratchCount(.batched) == 256 * 9 * 512 * 512, "one 512×512 image: 2.4 GB, not 72 GiB")
        let unet = Conv2dShape(batch: 64, inChannels: 320, height: 64, width: 64, outChannels: 320, kernelSize: 3, stride: 1, padding: 1)
        #expect(unet.batchedChunk == Conv2dShape.batchedScratchLimit / (320 * 9 * 4096) && unet.scratchCount(.batched) <= Conv2dShape.batchedScratchLimit)
        let small = Self.shapes[0]
        #expect(small.batchedChunk == small.batch && small.scratchCount(.batched) == small.batch * small.patch * small.outSpatial)
    }

    /// oneDNN on the host, where the device is a CPU and libdnnl is installed.
    @Test(arguments: shapes)
    func conv2dThroughOneDNNMatchesReference(shape sh: Conv2dShape) throws {
        guard try testDevice().kind == .cpu else { return }
        #expect(ConvolutionPath.oneDNNAvailable, "libdnnl.so.2 is missing: CI installs libdnnl-dev")
        guard ConvolutionPath.oneDNNAvailable else { return }
        for blocked in [true, false] {
            try checkConv2d(path: .hostBLAS, shape: sh, algorithm: .batched, rowwise: false, convolution: .oneDNN, blocked: blocked)
        }
    }

    /// oneDNN's blocked layouts keep a reordered copy of each weight buffer: a new buffer (an old one
    /// freed, perhaps at the same address) and another shape get their own.
    @Test func oneDNNWeightCopiesFollowTheirBuffers() throws {
        guard try testDevice().kind == .cpu, ConvolutionPath.oneDNNAvailable else { return }
        let s = try ComputeStream(device: testDevice(), gemm: .hostBLAS, convolution: .oneDNN)
        s.backends.oneDNNLayout = .blocked
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        for sh in [Self.shapes[5], Self.shapes[5], Self.shapes[0], Self.shapes[5]] {
            let x = randomArray(sh.inputCount, &rng), w = randomArray(sh.weightCount, &rng, in: -0.5...0.5)
            let dx = try s.upload(x), dw = try s.upload(w), dy = try s.buffer(sh.outputCount)
            for _ in 0..<2 {   // (the second run reads the prepared copy)
                try s.conv2d(dx, weight: dw, bias: nil, output: dy, shape: sh)
                let ref = Reference.conv2d(x, n: sh.batch, c: sh.inChannels, h: sh.height, w: sh.width, weight: w, bias: nil,
                                           outChannels: sh.outChannels, kh: sh.kernelHeight, kw: sh.kernelWidth, stride: sh.stride,
                                           pad: (sh.padTop, sh.padLeft, sh.padBottom, sh.padRight))
                expectClose(try s.download(dy), ref, atol: 1e-4, rtol: 1e-4, "oneDNN blocked \(sh), fresh weights", seed: seed)
            }
        }
    }

    func checkConv2d(path: GemmPath, shape sh: Conv2dShape, algorithm: Conv2dAlgorithm, rowwise: Bool,
                     convolution: ConvolutionPath = .im2colGemm, chunk: Int? = nil, blocked: Bool = true) throws {
        let s = try ComputeStream(device: testDevice(), gemm: path, convolution: convolution)
        s.backends.oneDNNLayout = blocked ? .blocked : .plain
        s.backends.rowwiseIm2col = rowwise
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let x = randomArray(sh.inputCount, &rng)
        let w = randomArray(sh.weightCount, &rng, in: -0.5...0.5)
        let bias = randomArray(sh.outChannels, &rng)
        let dx = try s.upload(x), dw = try s.upload(w), db = try s.upload(bias)
        let count = sh.scratchCount(algorithm, chunk: chunk)
        let scratch = count > 0 ? try s.buffer(count) : nil
        let pad = (sh.padTop, sh.padLeft, sh.padBottom, sh.padRight)
        for withBias in [true, false] {
            // Pre-fill the output with garbage: every element must be written.
            let dy = try s.upload(randomArray(sh.outputCount, &rng, in: 100...200))
            try s.conv2d(dx, weight: dw, bias: withBias ? db : nil, output: dy, shape: sh, scratch: scratch, algorithm: algorithm, chunk: chunk)
            let ref = Reference.conv2d(x, n: sh.batch, c: sh.inChannels, h: sh.height, w: sh.width, weight: w,
                                       bias: withBias ? bias : nil, outChannels: sh.outChannels, kh: sh.kernelHeight, kw: sh.kernelWidth,
                                       stride: sh.stride, pad: pad)
            expectClose(try s.download(dy), ref, atol: 1e-4, rtol: 1e-4,
                        "conv2d \(sh) bias \(withBias) via \(convolution == .oneDNN ? "onednn\(blocked ? " blocked" : "")" : "\(algorithm) rowwise \(rowwise) \(path)\(chunk.map { " chunk \($0)" } ?? "")")", seed: seed)
        }
    }

    @Test(arguments: gemmPaths())
    func linearMatchesReference(path: GemmPath) throws {
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let (n, inF, outF) = (5, 37, 23)
        let x = randomArray(n * inF, &rng), w = randomArray(inF * outF, &rng), b = randomArray(outF, &rng)
        let dx = try s.upload(x), dw = try s.upload(w), db = try s.upload(b)
        for withBias in [true, false] {
            let dy = try s.upload(randomArray(n * outF, &rng, in: 100...200))
            try s.linear(dx, weight: dw, bias: withBias ? db : nil, output: dy, batch: n, inFeatures: inF, outFeatures: outF)
            expectClose(try s.download(dy), Reference.linear(x, batch: n, inF: inF, outF: outF, weight: w, bias: withBias ? b : nil),
                        atol: 1e-4, rtol: 1e-4, "linear bias \(withBias) via \(path)", seed: seed)
        }
    }
}
