// Pooling, ReLU/clamp and feature-statistics kernels against CPU references (float64 where the
// reference is a sum).
import GPUKernels
import Testing
import TestSupport

@Suite struct PoolingTests {
    /// (batch, channels, height, width, k, stride, padding)
    @Test(arguments: [(2, 3, 28, 28, 2, 2, 0), (1, 5, 35, 35, 3, 2, 0), (2, 4, 17, 17, 3, 1, 1), (1, 2, 8, 9, 3, 1, 1), (3, 2, 7, 7, 3, 2, 1)])
    func pool2dMatchesReference(_ n: Int, _ c: Int, _ h: Int, _ w: Int, _ k: Int, _ stride: Int, _ pad: Int) throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let shape = Pool2dShape(batch: n, channels: c, height: h, width: w, kernelSize: k, stride: stride, padding: pad)
        let x = randomArray(shape.inputCount, &rng, in: -3...3)
        let dx = try s.upload(x), dy = try s.buffer(shape.outputCount)
        for (mode, includePad) in [(ComputeStream.PoolMode.max, true), (.average, true), (.average, false)] {
            try s.pool2d(dx, output: dy, shape: shape, mode: mode, countIncludePad: includePad)
            var ref = [Float](repeating: 0, count: shape.outputCount)
            for plane in 0..<(n * c) { for oy in 0..<shape.outHeight { for ox in 0..<shape.outWidth {
                var best = -Float.infinity, sum = 0.0, inside = 0
                for ky in 0..<k { for kx in 0..<k {
                    let iy = oy * stride - pad + ky, ix = ox * stride - pad + kx
                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                    let v = x[(plane * h + iy) * w + ix]
                    best = max(best, v); sum += Double(v); inside += 1
                } }
                ref[(plane * shape.outHeight + oy) * shape.outWidth + ox] =
                    mode == .max ? best : Float(sum / Double(includePad ? k * k : inside))
            } } }
            expectClose(try s.download(dy), ref, atol: 1e-6, rtol: 1e-5, "pool2d \(mode) includePad \(includePad)", seed: seed)
        }
        let planes = n * c, dm = try s.buffer(planes)
        try s.meanPoolSpatial(dx, output: dm, planes: planes, spatial: h * w)
        let means = (0..<planes).map { p in Float((0..<(h * w)).map { Double(x[p * h * w + $0]) }.reduce(0, +) / Double(h * w)) }
        expectClose(try s.download(dm), means, atol: 1e-6, rtol: 1e-5, "mean_pool_spatial", seed: seed)
    }

    @Test func reluAndClamp() throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let x = randomArray(1000, &rng, in: -3...3)
        let dx = try s.upload(x), dy = try s.buffer(1000)
        try s.relu(dx, output: dy, count: 1000)
        expectClose(try s.download(dy), x.map { max($0, 0) }, atol: 0, rtol: 0, "relu", seed: seed)
        try s.clamp(dx, output: dx, count: 1000, to: -1...1)
        expectClose(try s.download(dx), x.map { min(max($0, -1), 1) }, atol: 0, rtol: 0, "clamp in place", seed: seed)
    }

    /// Mean and unbiased covariance on the device against float64 on the host, on every GEMM path.
    @Test(arguments: gemmPaths())
    func featureStatisticsMatchReference(path: GemmPath) throws {
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let (n, d) = (300, 24)
        // Correlated, offset features: the covariance has structure and the mean is far from 0.
        let base = randomArray(n * d, &rng, in: -1...1)
        let x = (0..<(n * d)).map { i in base[i] + 0.5 * base[(i / d) * d] + Float(i % d) * 0.1 }
        let dx = try s.upload(x), mean = try s.buffer(d), cov = try s.buffer(d * d), centred = try s.buffer(n * d)
        try s.featureStatistics(dx, rows: n, dims: d, mean: mean, covariance: cov, centred: centred)
        var mu = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mu[j] += Double(x[i * d + j]) / Double(n) } }
        var sigma = [Double](repeating: 0, count: d * d)
        for i in 0..<n { for a in 0..<d { for b in 0..<d {
            sigma[a * d + b] += (Double(x[i * d + a]) - mu[a]) * (Double(x[i * d + b]) - mu[b]) / Double(n - 1)
        } } }
        expectClose(try s.download(mean), mu.map { Float($0) }, atol: 1e-5, rtol: 1e-5, "column mean", seed: seed)
        expectClose(try s.download(cov), sigma.map { Float($0) }, atol: 1e-5, rtol: 1e-4, "covariance (\(path))", seed: seed)
    }
}
