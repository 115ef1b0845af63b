// Every GEMM path against the CPU reference: transposes, offsets, strides, batches, alpha/beta.
import GPUKernels
import Testing
import TestSupport

@Suite struct GemmTests {
    struct Case: Sendable, CustomStringConvertible {
        var transA: Bool, transB: Bool, m: Int, n: Int, k: Int, batch: Int, alpha: Float, beta: Float
        var description: String { "\(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(n)×\(k) batch \(batch) α\(alpha) β\(beta)" }
    }

    /// Where a case's operands lie in their buffers: padded leading dimensions, offsets and batch
    /// strides (0 for an operand every batch shares), so that the GEMM must honour each.
    struct Layout {
        let c: Case
        let lda: Int, ldb: Int, ldc: Int, offA = 5, offB = 7, offC = 11, sA: Int, sB: Int, sC: Int
        /// Floats each buffer holds.
        let aCount: Int, bCount: Int, cCount: Int

        init(_ c: Case, sharedA: Bool = false, sharedB: Bool = false) {
            self.c = c
            let (ar, ac) = c.transA ? (c.k, c.m) : (c.m, c.k)
            let (br, bc) = c.transB ? (c.n, c.k) : (c.k, c.n)
            lda = ac + 3; ldb = bc + 1; ldc = c.n + 2
            sA = sharedA ? 0 : ar * lda + 4; sB = sharedB ? 0 : br * ldb; sC = c.m * ldc + 1
            aCount = offA + (sharedA ? ar * lda : c.batch * sA)
            bCount = offB + (sharedB ? br * ldb : c.batch * sB)
            cCount = offC + c.batch * sC
        }

        /// The case's GEMM on the device buffers `a`, `b`, `out`.
        func run(_ s: ComputeStream, a: DeviceBuffer<Float>, b: DeviceBuffer<Float>, out: DeviceBuffer<Float>,
                 bfloat16: Bool = false, constant: GemmConstantOperand = .none) throws {
            try s.gemm.sgemm(queue: s.queue, transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k, alpha: c.alpha,
                             a: GemmOperand(a, offset: offA, ld: lda, stride: sA), b: GemmOperand(b, offset: offB, ld: ldb, stride: sB),
                             beta: c.beta, c: GemmOperand(out, offset: offC, ld: ldc, stride: sC), batch: c.batch,
                             bfloat16: bfloat16, constant: constant)
        }

        /// The CPU reference of the case on host copies, with `alpha` (default the case's).
        func reference(a: [Float], b: [Float], alpha: Float? = nil, into out: inout [Float]) {
            Reference.gemm(transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k, alpha: alpha ?? c.alpha,
                           a: a, aOffset: offA, lda: lda, strideA: sA, b: b, bOffset: offB, ldb: ldb, strideB: sB,
                           beta: c.beta, c: &out, cOffset: offC, ldc: ldc, strideC: sC, batch: c.batch)
        }
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
        let l = Layout(c)
        let a = randomArray(l.aCount, &rng), b = randomArray(l.bCount, &rng)
        var cRef = randomArray(l.cCount, &rng)
        let da = try s.upload(a), db = try s.upload(b), dc = try s.upload(cRef)
        try l.run(s, a: da, b: db, out: dc)
        l.reference(a: a, b: b, into: &cRef)
        // Elements outside the matrices (padding columns) must be untouched: the reference keeps them.
        expectClose(try s.download(dc), cRef, atol: 1e-4, rtol: 1e-4, "sgemm \(c) via \(path)", seed: seed)
    }
}
