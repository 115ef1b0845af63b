// Multi-head spatial self-attention against the CPU reference, on every GEMM path.
import GPUKernels
import Foundation
import Testing
import TestSupport

@Suite struct AttentionTests {
    @Test(arguments: gemmPaths(), [(2, 16, 36, 1), (2, 32, 64, 4), (1, 24, 49, 3)])
    func attentionMatchesReference(path: GemmPath, dims: (Int, Int, Int, Int)) throws {
        let (N, C, P, H) = dims
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let x = randomArray(N * C * P, &rng, in: -2...2)
        let ws = (0..<4).map { _ in randomArray(C * C, &rng, in: -0.4...0.4) }
        let bs = (0..<4).map { _ in randomArray(C, &rng) }
        let w = AttentionWeights(query: try s.upload(ws[0]), queryBias: try s.upload(bs[0]),
                                 key: try s.upload(ws[1]), keyBias: try s.upload(bs[1]),
                                 value: try s.upload(ws[2]), valueBias: try s.upload(bs[2]),
                                 out: try s.upload(ws[3]), outBias: try s.upload(bs[3]))
        let shape = AttentionShape(batch: N, channels: C, spatial: P, heads: H)
        let dx = try s.upload(x), dy = try s.buffer(x.count), scratch = try s.buffer(shape.scratchCount)
        try s.attention(dx, output: dy, weights: w, shape: shape, scratch: scratch)
        let ref = Reference.attention(x, n: N, c: C, p: P, heads: H, wq: ws[0], bq: bs[0], wk: ws[1], bk: bs[1],
                                      wv: ws[2], bv: bs[2], wo: ws[3], bo: bs[3])
        expectClose(try s.download(dy), ref, atol: 1e-4, rtol: 1e-4, "attention N\(N) C\(C) P\(P) heads \(H) via \(path)", seed: seed)
    }

    /// The kernel (CLBlast paths) and the host softmax (host-blas), rows not a multiple of 8 wide,
    /// values far below the row's maximum.
    @Test(arguments: gemmPaths(), [(7, 300), (33, 77), (3, 4096)])
    func softmaxRowsMatchesReference(path: GemmPath, dims: (Int, Int)) throws {
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let (rows, cols) = dims
        let x = randomArray(rows * cols + 3, &rng, in: -20...20)
        let d = try s.upload(x)
        try s.softmaxRows(d, offset: 3, rows: rows, cols: cols)
        var ref = x
        for r in 0..<rows {
            let row = x[(3 + r * cols)..<(3 + (r + 1) * cols)].map(Double.init)
            let m = row.max()!
            let z = row.map { exp($0 - m) }.reduce(0, +)
            for j in 0..<cols { ref[3 + r * cols + j] = Float(exp(row[j] - m) / z) }
        }
        expectClose(try s.download(d), ref, atol: 1e-7, rtol: 1e-5, "softmax rows \(rows)×\(cols) via \(path)", seed: seed)
    }
}
