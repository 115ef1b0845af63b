// The multistep solvers' combination kernel against the CPU reference (the single-step update is
// checked against diffusers' goldens in EngineTests/SchedulerTests).
import GPUKernels
import Testing
import TestSupport

@Suite struct SchedulerKernelTests {
    @Test(arguments: [1, 2, 3, 4]) func multistepCombine(order: Int) throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let n = 1_000 + Int.random(in: 0..<37, using: &rng)
        let x = randomArray(n, &rng, in: -3...3)
        let h = (0..<order).map { _ in randomArray(n, &rng, in: -2...2) }
        let c = randomArray(order, &rng, in: -1.5...1.5), cx = Float.random(in: 0.2...1.2, using: &rng)
        let dx = try s.upload(x), dh = try h.map { try s.upload($0) }, dy = try s.buffer(n)
        try s.multistepCombine(sample: dx, history: dh, coefficients: c, sampleCoefficient: cx, output: dy, count: n)
        let ref = (0..<n).map { i in cx * x[i] + (0..<order).map { c[$0] * h[$0][i] }.reduce(0, +) }
        expectClose(try s.download(dy), ref, atol: 1e-6, rtol: 1e-5, "multistep_combine order \(order)", seed: seed)
        // In place, as the sampler runs it.
        try s.multistepCombine(sample: dx, history: dh, coefficients: c, sampleCoefficient: cx, output: dx, count: n)
        expectClose(try s.download(dx), ref, atol: 1e-6, rtol: 1e-5, "multistep_combine in place", seed: seed)
    }

    /// Classifier-free guidance: both halves of [uncond; cond] become u + g(c − u); g = 1 gives c.
    @Test(arguments: [7.5, 1.0, 0.0]) func guidanceCombine(scale: Float) throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let n = 777 + Int.random(in: 0..<41, using: &rng)
        let y = randomArray(2 * n, &rng, in: -3...3)
        let dy = try s.upload(y)
        try s.guidanceCombine(dy, half: n, scale: scale)
        let guided = (0..<n).map { y[$0] + scale * (y[n + $0] - y[$0]) }
        expectClose(try s.download(dy), guided + guided, atol: 1e-6, rtol: 1e-6, "guidance_combine g=\(scale)", seed: seed)
    }
}
