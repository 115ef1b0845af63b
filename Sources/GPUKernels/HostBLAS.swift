// Host BLAS (OpenBLAS), opened at run time: the GEMM of the host-blas path on CPU devices, and
// the host convolution that `flexiffusion bench kernels` measures the device paths against.
import CBLAS
import Foundation

public enum HostBLAS {
    typealias SgemmFunction = @convention(c) (CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, blasint, blasint, blasint,
                                              Float, UnsafePointer<Float>?, blasint, UnsafePointer<Float>?, blasint,
                                              Float, UnsafeMutablePointer<Float>?, blasint) -> Void
    typealias IntFunction = @convention(c) () -> Int32
    typealias StringFunction = @convention(c) () -> UnsafeMutablePointer<CChar>?

    struct Library: @unchecked Sendable {
        let path: String
        let sgemm: SgemmFunction
        let threads: IntFunction?
        let coreName: StringFunction?
        let dgemm: DgemmFunction?
        let dsyevd: DsyevdFunction?
    }
    typealias DgemmFunction = @convention(c) (CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, blasint, blasint, blasint,
                                              Double, UnsafePointer<Double>?, blasint, UnsafePointer<Double>?, blasint,
                                              Double, UnsafeMutablePointer<Double>?, blasint) -> Void
    /// LAPACK's dsyevd_ (Fortran calling convention: every argument by pointer, hidden string lengths).
    typealias DsyevdFunction = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafePointer<Int32>,
                                               UnsafeMutablePointer<Double>, UnsafePointer<Int32>, UnsafeMutablePointer<Double>,
                                               UnsafeMutablePointer<Double>, UnsafePointer<Int32>, UnsafeMutablePointer<Int32>,
                                               UnsafePointer<Int32>, UnsafeMutablePointer<Int32>, Int, Int) -> Void

    /// Debian's OpenBLAS 0.3.21 does not recognise recent Xeons (a virtualised Sapphire Rapids reports
    /// a generic model) and falls back to its SSE3 "Prescott" kernels: 32 instead of ~200 GFLOP/s on
    /// our machines. Unless the user set OPENBLAS_CORETYPE, pick the kernel family from the CPU's
    /// flags before the library initialises; it then uses only instructions the CPU has.
    static func coreTypeForThisCPU() -> String? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(flagsLine.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }).map(String.init))
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(flags.contains) { return "SkylakeX" }
        if ["avx2", "fma"].allSatisfy(flags.contains) { return "Haswell" }
        return nil
    }

    static let library: Result<Library, OpenCLError> = {
        if EngineEnvironment.openBLASCoreType.value() == nil, let core = coreTypeForThisCPU() {
            setenv(EngineEnvironment.openBLASCoreType.name, core, 1)
        }
        // OpenBLAS's workers spin for 2^28 cycles (~0.1 s) after each product by default, on the cores
        // oneDNN's next convolution needs: the cifar UNet at batch 16 took 1,020–1,094 ms with them and
        // 918–926 ms (bf16: 547–557 against 652–738 ms) with the least timeout, 2^4 cycles (2-core EPYC,
        // alternating runs, 2026-12-07).
        if EngineEnvironment.openBLASThreadTimeout.value() == nil {
            setenv(EngineEnvironment.openBLASThreadTimeout.name, "4", 1)
        }
        let candidates = ["libopenblas.so.0", "libopenblas.so", "libcblas.so.3", "libblas.so.3"]
        for name in candidates {
            guard let h = dlopen(name, RTLD_NOW | RTLD_LOCAL), let f = dlsym(h, "cblas_sgemm") else { continue }
            return .success(Library(
                path: name, sgemm: unsafeBitCast(f, to: SgemmFunction.self),
                threads: dlsym(h, "openblas_get_num_threads").map { unsafeBitCast($0, to: IntFunction.self) },
                coreName: dlsym(h, "openblas_get_corename").map { unsafeBitCast($0, to: StringFunction.self) },
                dgemm: dlsym(h, "cblas_dgemm").map { unsafeBitCast($0, to: DgemmFunction.self) },
                dsyevd: dlsym(h, "dsyevd_").map { unsafeBitCast($0, to: DsyevdFunction.self) }))
        }
        return .failure(OpenCLError(call: "loading host BLAS",
                                    detail: "none of \(candidates.joined(separator: ", ")) provides cblas_sgemm (Debian: apt-get install libopenblas0)"))
    }()

    /// Whether a host BLAS could be opened.
    public static var isAvailable: Bool { (try? library.get()) != nil }

    /// "OpenBLAS (SkylakeX kernels, 2 threads)" or the like, for benchmark headers.
    public static func describe() -> String {
        guard let lib = try? library.get() else { return "no host BLAS" }
        let core = lib.coreName?().map { String(cString: $0) } ?? "?"
        let threads = lib.threads.map { "\($0())" } ?? "?"
        return "\(lib.path) (\(core) kernels, \(threads) threads)"
    }

    /// Row-major SGEMM on host memory: C = alpha · op(A) · op(B) + beta · C.
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) throws {
        let lib = try library.get()
        lib.sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                  blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Row-major DGEMM on host memory: C = alpha · op(A) · op(B) + beta · C.
    public static func dgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                             a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                             beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) throws {
        let lib = try library.get()
        guard let dgemm = lib.dgemm else { throw OpenCLError(call: "cblas_dgemm", detail: "\(lib.path) has no cblas_dgemm") }
        dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Eigen-decomposition of a symmetric n×n matrix (LAPACK dsyevd, divide and conquer): returns the
    /// eigenvalues in ascending order and overwrites `matrix` with the eigenvectors (as columns in
    /// column-major order, i.e. as rows in row-major order) when `vectors`.
    public static func symmetricEigen(_ matrix: inout [Double], n: Int, vectors: Bool) throws -> [Double] {
        precondition(matrix.count == n * n, "symmetricEigen: \(matrix.count) values for \(n)×\(n)")
        let lib = try library.get()
        guard let dsyevd = lib.dsyevd else {
            throw OpenCLError(call: "dsyevd_", detail: "\(lib.path) has no LAPACK dsyevd_ (Debian: libopenblas0 provides it)")
        }
        var w = [Double](repeating: 0, count: n)
        var N = Int32(n), info: Int32 = 0
        let jobz: [CChar] = [CChar(UInt8(ascii: vectors ? "V" : "N")), 0], uplo: [CChar] = [CChar(UInt8(ascii: "U")), 0]
        // Workspace query, then the call.
        var workSize = 0.0, iworkSize: Int32 = 0, query: Int32 = -1
        dsyevd(jobz, uplo, &N, &matrix, &N, &w, &workSize, &query, &iworkSize, &query, &info, 1, 1)
        guard info == 0 else { throw OpenCLError(call: "dsyevd_", detail: "workspace query failed (info \(info))") }
        var work = [Double](repeating: 0, count: max(1, Int(workSize)))
        var iwork = [Int32](repeating: 0, count: max(1, Int(iworkSize)))
        var lwork = Int32(work.count), liwork = Int32(iwork.count)
        dsyevd(jobz, uplo, &N, &matrix, &N, &w, &work, &lwork, &iwork, &liwork, &info, 1, 1)
        guard info == 0 else { throw OpenCLError(call: "dsyevd_", detail: "did not converge (info \(info))") }
        return w
    }

    /// y [Co, N·OH·OW] = W [Co, C·k·k] · im2col(x) [C·k·k, N·OH·OW], the layout that gives OpenBLAS
    /// one large product. `col` and `y` are caller-owned scratch of the sizes the shape implies.
    public static func conv2d(_ x: [Float], weight: [Float], shape s: Conv2dShape,
                              col: inout [Float], output y: inout [Float]) throws {
        let P = s.outHeight * s.outWidth, NP = s.batch * P, KH = s.kernelHeight, KW = s.kernelWidth
        precondition(col.count >= s.patch * NP && y.count >= s.outChannels * NP, "host conv buffers too small")
        x.withUnsafeBufferPointer { xp in
            col.withUnsafeMutableBufferPointer { cp in
                for c in 0..<s.inChannels { for ky in 0..<KH { for kx in 0..<KW {
                    let r = (c * KH + ky) * KW + kx
                    for n in 0..<s.batch {
                        let xbase = (n * s.inChannels + c) * s.height * s.width
                        var dst = r * NP + n * P
                        for oy in 0..<s.outHeight {
                            let iy = oy * s.stride - s.padTop + ky
                            for ox in 0..<s.outWidth {
                                let ix = ox * s.stride - s.padLeft + kx
                                cp[dst] = (iy >= 0 && iy < s.height && ix >= 0 && ix < s.width) ? xp[xbase + iy * s.width + ix] : 0
                                dst += 1
                            }
                        }
                    }
                } } }
            }
        }
        try weight.withUnsafeBufferPointer { wp in
            try col.withUnsafeBufferPointer { cp in
                try y.withUnsafeMutableBufferPointer { yp in
                    try sgemm(transA: false, transB: false, m: s.outChannels, n: NP, k: s.patch, alpha: 1,
                              a: wp.baseAddress!, lda: s.patch, b: cp.baseAddress!, ldb: NP, beta: 0,
                              c: yp.baseAddress!, ldc: NP)
                }
            }
        }
    }
}
