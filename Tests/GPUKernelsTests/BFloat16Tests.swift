// `--precision bf16`: oneDNN's convolutions with bf16 inputs and weights and f32 accumulation, on
// CPUs that compute bf16 natively; fp32, with the reason, everywhere else.
import GPUKernels
import Testing
import TestSupport

/// `x` rounded to the nearest bfloat16 (ties to even), as oneDNN's f32 → bf16 reorders round.
func bfloat16Rounded(_ x: Float) -> Float {
    let bits = x.bitPattern
    let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
    return Float(bitPattern: rounded & 0xFFFF_0000)
}

@Suite struct BFloat16Tests {
    @Test func roundingKeepsEightSignificantBits() {
        #expect(bfloat16Rounded(1) == 1 && bfloat16Rounded(-2.5) == -2.5)
        #expect(bfloat16Rounded(1 + 1.0 / 512) == 1, "a tie rounds to even")
        #expect(bfloat16Rounded(1 + 3.0 / 512) == 1 + 4.0 / 512, "a tie rounds to even (upwards)")
        #expect(bfloat16Rounded(1 + 1.0 / 256) == 1 + 1.0 / 128 || bfloat16Rounded(1 + 1.0 / 256) == 1, "within half an ulp")
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<1000 {
            let x = Float.random(in: -100...100, using: &rng)
            #expect(abs(bfloat16Rounded(x) - x) <= abs(x) / 256, "\(x)")
        }
    }

    /// Where bf16 is refused, the stream runs fp32 and says why: a device path, or a CPU without native bf16.
    @Test func precisionFallsBackWithAReason() throws {
        let d = try testDevice()
        let onDevice = Backends(device: d, gemm: .clblast, convolution: .im2colGemm)
        let (p1, n1) = Precision.resolve(.bfloat16, for: onDevice)
        #expect(p1 == .float32 && (n1 ?? "").contains("oneDNN"), "\(n1 ?? "no note")")
        let host = Backends(device: d, gemm: .hostBLAS, convolution: .oneDNN)
        let (p2, n2) = Precision.resolve(.bfloat16, for: host, cpuHasBFloat16: false)
        #expect(p2 == .float32 && (n2 ?? "").contains("AVX-512 BF16"), "\(n2 ?? "no note")")
        let (p3, n3) = Precision.resolve(.bfloat16, for: host, cpuHasBFloat16: true)
        #expect(p3 == .bfloat16 && n3 == nil)
        let (p4, n4) = Precision.resolve(nil, for: host, cpuHasBFloat16: true)
        #expect(p4 == .float32 && n4 == nil, "fp32 is the default: it matches diffusers to float tolerance")
    }

    /// A bf16 convolution equals the f32 reference on bf16-rounded inputs and weights up to the order
    /// of f32 accumulation (1e-4), in oneDNN's blocked layouts and on NCHW; against the unrounded
    /// reference it differs by up to 2⁻⁷ of Σ|x·w| (8 significant bits), so that comparison fails if
    /// the convolution ran in f32. On a CPU without native bf16 the stream stays f32, with its note.
    @Test(arguments: Conv2dTests.shapes)
    func convolutionRoundsItsInputsToBFloat16(shape sh: Conv2dShape) throws {
        guard try testDevice().kind == .cpu else { return }
        #expect(ConvolutionPath.oneDNNAvailable, "oneDNN is missing: CI installs it")
        guard ConvolutionPath.oneDNNAvailable else { return }
        let s = try ComputeStream(device: testDevice(), gemm: .hostBLAS, convolution: .oneDNN)
        let note = s.setPrecision(.bfloat16)
        guard Precision.cpuHasBFloat16 else {
            #expect(s.backends.precision == .float32 && note != nil, "no native bf16 here: the stream must stay fp32 and say so")
            return
        }
        #expect(s.backends.precision == .bfloat16 && note == nil && s.backends.bfloat16Convolutions)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let x = randomArray(sh.inputCount, &rng), w = randomArray(sh.weightCount, &rng, in: -0.5...0.5)
        let bias = randomArray(sh.outChannels, &rng)
        let dx = try s.upload(x), dw = try s.upload(w), db = try s.upload(bias)
        let pad = (sh.padTop, sh.padLeft, sh.padBottom, sh.padRight)
        func reference(_ x: [Float], _ w: [Float]) -> [Float] {
            Reference.conv2d(x, n: sh.batch, c: sh.inChannels, h: sh.height, w: sh.width, weight: w, bias: bias,
                             outChannels: sh.outChannels, kh: sh.kernelHeight, kw: sh.kernelWidth, stride: sh.stride, pad: pad)
        }
        let rounded = reference(x.map(bfloat16Rounded), w.map(bfloat16Rounded)), exact = reference(x, w)
        for layout in [OneDNNLayoutMode.blocked, .plain] {
            s.backends.oneDNNLayout = layout
            let dy = try s.upload(randomArray(sh.outputCount, &rng, in: 100...200))
            try s.conv2d(dx, weight: dw, bias: db, output: dy, shape: sh)
            let got = try s.download(dy)
            expectClose(got, rounded, atol: 1e-4, rtol: 1e-4, "bf16 conv2d \(sh) \(layout) against the reference on rounded inputs", seed: seed)
            // 8 significant bits: each product's inputs are within 2⁻⁸ relative (round to nearest), so
            // the sum is within 2⁻⁷ of Σ|x·w| (plus the f32 accumulation's own tolerance, as above:
            // 1e-4 + 1e-4·|y|).
            let bound = Reference.conv2d(x.map(abs), n: sh.batch, c: sh.inChannels, h: sh.height, w: sh.width, weight: w.map(abs),
                                         bias: nil, outChannels: sh.outChannels, kh: sh.kernelHeight, kw: sh.kernelWidth,
                                         stride: sh.stride, pad: pad)
            var differs = false
            for i in got.indices {
                let d = abs(got[i] - exact[i])
                #expect(d <= bound[i] / 128 + 1e-4 + 1e-4 * abs(exact[i]), "bf16 conv2d \(sh) [\(i)]: \(got[i]) against fp32's \(exact[i]) (seed \(seed))")
                if d > 1e-6 * max(1, abs(exact[i])) { differs = true }
            }
            #expect(differs, "bf16 conv2d \(sh) \(layout) equals the fp32 result: its inputs were not rounded")
        }
    }

    /// The host GEMMs in bf16 (oneDNN's matmul): equal to the reference on bf16-rounded op(A)·alpha
    /// and op(B) up to f32 accumulation, over transposes, offsets, strides, batches, alpha and beta
    /// (GemmTests' cases), an operand shared by every batch (stride 0) and a weight operand converted
    /// once (run twice, then again on new values in a new buffer); padding left untouched; and not
    /// equal to the unrounded result. A product not marked as a model's stays fp32 (metrics' covariances).
    @Test(arguments: [(GemmTests.Case, GemmConstantOperand, Bool, Bool)](
        GemmTests.cases.map { ($0, .none, false, false) } + [
            (GemmTests.Case(transA: false, transB: true, m: 33, n: 20, k: 48, batch: 3, alpha: 0.125, beta: 0), .b, false, true),
            (GemmTests.Case(transA: false, transB: false, m: 24, n: 40, k: 24, batch: 4, alpha: 1, beta: 1), .a, true, false),
            (GemmTests.Case(transA: true, transB: true, m: 19, n: 21, k: 35, batch: 1, alpha: 2, beta: 0), .b, false, false),
        ]))
    func gemmRoundsItsInputsToBFloat16(c: GemmTests.Case, constant: GemmConstantOperand, sharedA: Bool, sharedB: Bool) throws {
        guard try testDevice().kind == .cpu else { return }
        let s = try ComputeStream(device: testDevice(), gemm: .hostBLAS, convolution: ConvolutionPath.oneDNNAvailable ? .oneDNN : .im2colGemm)
        s.setPrecision(.bfloat16)
        guard s.backends.bfloat16GEMMs else {
            // fp32 (no native bf16 here, or a oneDNN without matrix products): OpenBLAS, and said so.
            #expect(s.backends.implementation(.gemm).hasPrefix("OpenBLAS"))
            #expect(!Precision.cpuHasBFloat16 || !ConvolutionPath.oneDNNAvailable || flexMatmulMissing(),
                    "bf16 here, but the GEMMs stayed fp32")
            return
        }
        #expect(s.backends.implementation(.gemm).contains("bf16"))
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let l = GemmTests.Layout(c, sharedA: sharedA, sharedB: sharedB)
        let what = "bf16 gemm \(c) constant \(constant) shared A \(sharedA) B \(sharedB)"
        for round in 0..<3 {
            // Rounds 0 and 1 on the same buffers (the second reads a weight's kept copy); round 2 on new ones.
            if round == 1 { rng = SeededGenerator(seed: seed) }
            let a = randomArray(l.aCount, &rng), b = randomArray(l.bCount, &rng), c0 = randomArray(l.cCount, &rng)
            let da = try s.upload(a), db = try s.upload(b), dc = try s.upload(c0)
            for _ in 0..<(round == 1 ? 2 : 1) {
                try dc.write(c0, queue: s.queue)
                try l.run(s, a: da, b: db, out: dc, bfloat16: s.backends.bfloat16GEMMs, constant: constant)
            }
            let got = try s.download(dc)
            var rounded = c0, exact = c0
            l.reference(a: a.map { bfloat16Rounded($0 * c.alpha) }, b: b.map(bfloat16Rounded), alpha: 1, into: &rounded)
            l.reference(a: a, b: b, into: &exact)
            expectClose(got, rounded, atol: 1e-4, rtol: 1e-4, "\(what) round \(round)", seed: seed)
            #expect(zip(got, exact).contains { abs($0 - $1) > 1e-5 * max(1, abs($1)) }, "\(what): equals fp32's, its inputs were not rounded")
            if round == 0 && constant == .none {
                // The same product not marked as a model's: fp32 on the bf16 stream.
                try dc.write(c0, queue: s.queue)
                try l.run(s, a: da, b: db, out: dc)
                expectClose(try s.download(dc), exact, atol: 1e-4, rtol: 1e-4, "\(what), not a model's product: fp32", seed: seed)
            }
        }
    }

    /// Whether the oneDNN opened lacks matrix products (a build with convolutions only).
    func flexMatmulMissing() -> Bool { !(ConvolutionPath.oneDNNLibrary ?? "").isEmpty && !Backends.hostMatmulAvailable }

    /// A metric's network runs in fp32 on a bf16 stream: `withPrecision` sets and restores it.
    @Test func withPrecisionRestores() throws {
        guard try testDevice().kind == .cpu, ConvolutionPath.oneDNNAvailable, Precision.cpuHasBFloat16 else {
            let s = try ComputeStream(device: testDevice())
            s.withPrecision(.float32) { #expect(s.backends.precision == .float32) }
            #expect(s.backends.precision == .float32)
            return
        }
        let s = try ComputeStream(device: testDevice(), gemm: .hostBLAS, convolution: .oneDNN)
        s.setPrecision(.bfloat16)
        s.withPrecision(.float32) { #expect(s.backends.precision == .float32 && !s.backends.bfloat16Convolutions) }
        #expect(s.backends.precision == .bfloat16)
        #expect(s.backends.implementation(.convolution).contains("bf16"), "\(s.backends.implementation(.convolution))")
    }
}
