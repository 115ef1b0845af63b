// Every GEMM path against the CPU reference: transposes, offsets, strides, batches, alpha/beta.
import GPUKernels
import Testing
import TestSupport

@Suite struct GemmTests {
    struct Case: Sendable, CustomStringConvertible {
        var transA: Bool, transB: Bool, m: Int, n: Int, k: Int, batch: Int, alpha: Float, beta: Float
        var description: String { "\(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(n)×\(k) batch \(batch) α\(alpha) β\(beta)" }
    }

    static let cases: [Case] = [
        Case(transA: false, transB: false, m: 67, n: 45, k: 33, batch: 1, alpha: 1, beta: 0),
        Case(transA: true, transB: false, m: 40, n: 64, k: 24, batch: 3, alpha: 0.5, beta: 0),
        Case(transA: false, transB: true, m: 32, n: 29, k: 70, batch: 2, alpha: 1, beta: 1),
        Case(transA: true, transB: true, m: 17, n: 23, k: 19, batch: 4, alpha: -1.5, beta: 0.25),
        Case(transA: false, transB: false, m: 128, n: 256, k: 288, batch: 2, alpha: 1, beta: 1),
    ]

    @Test(arguments: gemmPaths(), cases)
    func matchesReference(path: GemmPath, c: Case) throws {
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let (ar, ac) = c.transA ? (c.k, c.m) : (c.m, c.k)
        let (br, bc) = c.transB ? (c.n, c.k) : (c.k, c.n)
        let lda = ac + 3, ldb = bc + 1, ldc = c.n + 2
        let offA = 5, offB = 7, offC = 11
        let sA = ar * lda + 4, sB = br * ldb, sC = c.m * ldc + 1
        let a = randomArray(offA + c.batch * sA, &rng)
        let b = randomArray(offB + c.batch * sB, &rng)
        var cRef = randomArray(offC + c.batch * sC, &rng)
        let da = try s.upload(a), db = try s.upload(b), dc = try s.upload(cRef)
        try s.gemm.sgemm(queue: s.queue, transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k, alpha: c.alpha,
                         a: GemmOperand(da, offset: offA, ld: lda, stride: sA),
                         b: GemmOperand(db, offset: offB, ld: ldb, stride: sB), beta: c.beta,
                         c: GemmOperand(dc, offset: offC, ld: ldc, stride: sC), batch: c.batch)
        Reference.gemm(transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k, alpha: c.alpha,
                       a: a, aOffset: offA, lda: lda, strideA: sA, b: b, bOffset: offB, ldb: ldb, strideB: sB,
                       beta: c.beta, c: &cRef, cOffset: offC, ldc: ldc, strideC: sC, batch: c.batch)
        // Elements outside the matrices (padding columns) must be untouched: the reference keeps them.
        expectClose(try s.download(dc), cRef, atol: 1e-4, rtol: 1e-4, "sgemm \(c) via \(path)", seed: seed)
    }
}
