// The GEMM paths (row-major, strided-batched SGEMM on device buffers):
// - clblast:       CLBlast with its database parameters — the path for GPUs.
// - clblast-tuned: CLBlast with Xgemm parameters overridden for this device (a cached tuning result
//                  when `flexiffusion tune-gemm` wrote one, else a hand-picked set).
// - host-blas:     CPU devices only — the buffers are mapped (zero-copy on PoCL) and OpenBLAS
//                  multiplies them on the host; the fastest path on a CPU by far (README, bench).
import CHostDNN
import COpenCL
import Foundation

public enum GemmPath: String, CaseIterable, Sendable, CustomStringConvertible {
    case clblast
    case clblastTuned = "clblast-tuned"
    case hostBLAS = "host-blas"

    public var description: String { rawValue }

    /// host-blas on CPU devices (measured fastest there), CLBlast elsewhere; $FLEXIFFUSION_GEMM wins.
    public static func `default`(for device: DeviceInfo,
                                 environment: [String: String] = ProcessInfo.processInfo.environment) throws -> GemmPath {
        if let p = try EngineEnvironment.gemm.choice(GemmPath.self, in: environment) { return p }
        return device.kind == .cpu ? .hostBLAS : .clblast
    }

    /// Whether this path can run on `device` (host-blas maps its buffers on the host: CPU devices only).
    public func runs(on device: DeviceInfo) -> Bool { self != .hostBLAS || device.kind == .cpu }
}

/// One matrix operand of a strided-batched GEMM: `buffer[offset + b * stride ...]`, leading dimension `ld`.
public struct GemmOperand {
    public var buffer: DeviceBuffer<Float>
    public var offset: Int
    public var ld: Int
    public var stride: Int
    public init(_ buffer: DeviceBuffer<Float>, offset: Int = 0, ld: Int, stride: Int = 0) {
        self.buffer = buffer; self.offset = offset; self.ld = ld; self.stride = stride
    }
}

/// Runs SGEMMs through one `GemmPath`.
public final class GemmEngine: @unchecked Sendable {
    public let path: GemmPath
    public let device: DeviceInfo
    /// Wall-clock times of GEMMs run on a profiling queue, until `ComputeStream.takeTimings()`.
    var recorded: [KernelTiming] = []
    fileprivate var matmuls: [HostMatmulKey: HostMatmul] = [:]
    fileprivate var packedConstants: [PackedOperandKey: PreparedWeights] = [:]
    fileprivate var scratches = [PackedScratch(count: 0), PackedScratch(count: 0)]
    fileprivate var product: [Float] = []

    /// CLBlast's first concurrent call of a routine can crash in its database set-up, and OpenBLAS
    /// calls are serialised too: one lock for every GEMM in the process (shared/OPENCL-NOTES.md).
    static let lock = NSLock()

    public init(path: GemmPath, device: DeviceInfo) throws {
        if !path.runs(on: device) {
            throw OpenCLError(call: "GEMM path selection",
                              detail: "host-blas needs a CPU device (its buffers are mapped on the host); \(device.name) is a \(device.kind)")
        }
        if path == .hostBLAS { _ = try HostBLAS.library.get() }
        self.path = path
        self.device = device
        if path == .clblastTuned { try CLBlastTuning.apply(for: device) }
    }

    /// C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b] for b in 0..<batch, row-major, where op
    /// transposes when asked; A is m×k after op, B is k×n, C is m×n. `bfloat16`: on the host path,
    /// in bf16 through oneDNN's matmul (a model's product on a bf16 stream passes
    /// `backends.bfloat16GEMMs`; metrics' products never do); `constant` names a weight operand,
    /// converted once.
    public func sgemm(queue: CLCommandQueue, transA: Bool = false, transB: Bool = false,
                      m: Int, n: Int, k: Int, alpha: Float = 1, a: GemmOperand, b: GemmOperand,
                      beta: Float = 0, c: GemmOperand, batch: Int = 1,
                      bfloat16: Bool = false, constant: GemmConstantOperand = .none) throws {
        precondition(m > 0 && n > 0 && k > 0 && batch > 0, "GEMM dimensions must be positive")
        precondition(a.ld >= (transA ? m : k) && b.ld >= (transB ? k : n) && c.ld >= n, "GEMM leading dimension too small")
        func last(_ o: GemmOperand, rows: Int, cols: Int) -> Int { o.offset + (batch - 1) * o.stride + (rows - 1) * o.ld + cols }
        precondition(last(a, rows: transA ? k : m, cols: transA ? m : k) <= a.buffer.count, "GEMM overruns A")
        precondition(last(b, rows: transB ? n : k, cols: transB ? k : n) <= b.buffer.count, "GEMM overruns B")
        precondition(last(c, rows: m, cols: n) <= c.buffer.count, "GEMM overruns C")
        // On a profiling queue, time the GEMM by wall clock between two drains of the queue: CLBlast's
        // event covers only its last kernel, and the host path has none.
        var start: UInt64 = 0
        if queue.profiling {
            try queue.finish()
            start = DispatchTime.now().uptimeNanoseconds
        }
        defer {
            if queue.profiling, (try? queue.finish()) != nil {
                let name = "\(path == .hostBLAS && bfloat16 ? "bf16 gemm" : "sgemm") \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(n)×\(k)\(batch > 1 ? " ×\(batch)" : "")"
                recorded.append(KernelTiming(name: name, nanoseconds: DispatchTime.now().uptimeNanoseconds - start))
            }
        }
        switch path {
        case .clblast, .clblastTuned:
            try clblast(queue: queue, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                        a: a, b: b, beta: beta, c: c, batch: batch)
        case .hostBLAS where bfloat16:
            try hostBFloat16(queue: queue, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                             a: a, b: b, beta: beta, c: c, batch: batch, constant: constant)
        case .hostBLAS:
            try hostBLAS(queue: queue, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                         a: a, b: b, beta: beta, c: c, batch: batch)
        }
    }

    private func clblast(queue: CLCommandQueue, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                         alpha: Float, a: GemmOperand, b: GemmOperand, beta: Float, c: GemmOperand, batch: Int) throws {
        let ta = transA ? CLBlastTransposeYes : CLBlastTransposeNo
        let tb = transB ? CLBlastTransposeYes : CLBlastTransposeNo
        var q: cl_command_queue? = queue.handle
        GemmEngine.lock.lock(); defer { GemmEngine.lock.unlock() }
        let status: CLBlastStatusCode
        if batch == 1 {
            status = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, m, n, k, alpha,
                                  a.buffer.handle, a.offset, a.ld, b.buffer.handle, b.offset, b.ld,
                                  beta, c.buffer.handle, c.offset, c.ld, &q, nil)
        } else {
            status = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, m, n, k, alpha,
                                                a.buffer.handle, a.offset, a.ld, a.stride,
                                                b.buffer.handle, b.offset, b.ld, b.stride,
                                                beta, c.buffer.handle, c.offset, c.ld, c.stride, batch, &q, nil)
        }
        if status != CLBlastSuccess {
            throw OpenCLError(call: batch == 1 ? "CLBlastSgemm" : "CLBlastSgemmStridedBatched", status: status.rawValue,
                              detail: "m \(m) n \(n) k \(k) batch \(batch)")
        }
    }

    private func hostBLAS(queue: CLCommandQueue, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                          alpha: Float, a: GemmOperand, b: GemmOperand, beta: Float, c: GemmOperand, batch: Int) throws {
        try queue.withMapped([a.buffer, b.buffer, c.buffer]) { p in
            GemmEngine.lock.lock(); defer { GemmEngine.lock.unlock() }
            for i in 0..<batch {
                try HostBLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                   a: p[0] + a.offset + i * a.stride, lda: a.ld, b: p[1] + b.offset + i * b.stride, ldb: b.ld,
                                   beta: beta, c: p[2] + c.offset + i * c.stride, ldc: c.ld)
            }
        }
    }
}

extension GemmEngine {
    /// The host path in bf16: op(A) (scaled by alpha) and op(B) rounded to bf16 in the orientation
    /// they are stored in (dense copies; a weight operand once per buffer, kept while the buffer
    /// lives), multiplied by oneDNN's matmul with f32 accumulation into C (beta · C added after,
    /// where beta is not 0). An operand whose batches share one matrix (stride 0) is packed once.
    fileprivate func hostBFloat16(queue: CLCommandQueue, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                  alpha: Float, a: GemmOperand, b: GemmOperand, beta: Float, c: GemmOperand, batch: Int,
                                  constant: GemmConstantOperand) throws {
        let sharedA = a.stride == 0 && batch > 1, sharedB = b.stride == 0 && batch > 1
        let direct = beta == 0
        let key = HostMatmulKey(batch: batch, m: m, n: n, k: k, sharedA: sharedA, sharedB: sharedB, transA: transA, transB: transB,
                                cLD: direct ? c.ld : n, cStride: direct ? c.stride : m * n)
        let mm: HostMatmul
        if let cached = matmuls[key] { mm = cached } else { mm = try HostMatmul(key); matmuls[key] = mm }
        // Stored shapes: A is (transA ? k × m : m × k), B is (transB ? n × k : k × n).
        let aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n
        let aBatches = sharedA ? 1 : batch, bBatches = sharedB ? 1 : batch
        if !direct, product.count < batch * m * n { product = [Float](repeating: 0, count: batch * m * n) }
        try queue.withMapped([a.buffer, b.buffer, c.buffer]) { p in
            GemmEngine.lock.lock(); defer { GemmEngine.lock.unlock() }
            let pa = try packed(a, p[0], batches: aBatches, rows: aRows, cols: aCols, scale: alpha, constant: constant == .a, scratch: 0)
            let pb = try packed(b, p[1], batches: bBatches, rows: bRows, cols: bCols, scale: 1, constant: constant == .b, scratch: 1)
            if direct {
                try mm(pa, pb, p[2] + c.offset)
            } else {
                try product.withUnsafeMutableBufferPointer { t in
                    try mm(pa, pb, t.baseAddress!)
                    for i in 0..<batch {
                        for r in 0..<m {
                            let row = p[2] + c.offset + i * c.stride + r * c.ld, from = t.baseAddress! + (i * m + r) * n
                            for j in 0..<n { row[j] = from[j] + beta * row[j] }
                        }
                    }
                }
            }
        }
    }

    /// `operand`'s matrices (mapped at `base`) in bf16, dense: a weight's copy made once per buffer
    /// (`constant`), else packed into the scratch copy `scratch` (0 for A, 1 for B), split over the cores.
    private func packed(_ operand: GemmOperand, _ base: UnsafeMutablePointer<Float>, batches: Int, rows: Int, cols: Int,
                        scale: Float, constant: Bool, scratch: Int) throws -> UnsafePointer<UInt16> {
        let count = batches * rows * cols
        func pack(into out: UnsafeMutablePointer<UInt16>) {
            let total = batches * rows, parts = total * cols >= 1 << 16 ? min(ProcessInfo.processInfo.activeProcessorCount, total) : 1
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                for line in (total * part / parts)..<(total * (part + 1) / parts) {
                    let (i, r) = line.quotientAndRemainder(dividingBy: rows)
                    flex_pack_bf16(base + operand.offset + i * operand.stride + r * operand.ld, 1, cols, operand.ld, scale,
                                   out + line * cols)
                }
            }
        }
        if constant {
            let key = PackedOperandKey(buffer: ObjectIdentifier(operand.buffer), offset: operand.offset, ld: operand.ld,
                                       stride: operand.stride, batches: batches, rows: rows, cols: cols, scale: scale)
            if let hit = packedConstants[key], hit.source === operand.buffer {
                return UnsafePointer(hit.bytes.assumingMemoryBound(to: UInt16.self))
            }
            packedConstants = packedConstants.filter { $0.value.source != nil }
            let copy = PreparedWeights(operand.buffer, count: count * MemoryLayout<UInt16>.size)
            let values = copy.bytes.bindMemory(to: UInt16.self, capacity: count)
            pack(into: values)
            packedConstants[key] = copy
            return UnsafePointer(values)
        }
        if scratches[scratch].count < count { scratches[scratch] = PackedScratch(count: count) }
        pack(into: scratches[scratch].values)
        return UnsafePointer(scratches[scratch].values)
    }
}

/// Which operand of a GEMM is a weight (constant while its buffer lives), so that the bf16 path
/// converts it once.
public enum GemmConstantOperand: Sendable { case none, a, b }

struct PackedOperandKey: Hashable {
    let buffer: ObjectIdentifier
    let offset: Int, ld: Int, stride: Int, batches: Int, rows: Int, cols: Int
    let scale: Float
}

/// A reusable bf16 copy of an operand.
final class PackedScratch {
    let values: UnsafeMutablePointer<UInt16>
    let count: Int
    init(count: Int) { self.count = count; values = .allocate(capacity: max(count, 1)) }
    deinit { values.deallocate() }
}

struct HostMatmulKey: Hashable {
    let batch: Int, m: Int, n: Int, k: Int
    /// An operand's batches share one matrix (packed once, broadcast by oneDNN).
    let sharedA: Bool, sharedB: Bool
    /// The operands are stored transposed.
    let transA: Bool, transB: Bool
    /// C's leading dimension and batch stride.
    let cLD: Int, cStride: Int
}

/// One oneDNN matmul primitive (bf16 × bf16 → f32) for a fixed shape.
final class HostMatmul {
    let handle: OpaquePointer
    let implementation: String

    /// Whether the oneDNN opened has matrix products (a build with convolutions only has none); asked
    /// once (the library a process opens is fixed at its first use), since model GEMMs ask per call.
    static let available = ConvolutionPath.oneDNNAvailable && flex_matmul_available() != 0

    init(_ key: HostMatmulKey) throws {
        var impl = [CChar](repeating: 0, count: 128)
        guard let h = flex_matmul_create(Int32(key.batch), Int32(key.m), Int32(key.n), Int32(key.k), key.sharedA ? 1 : 0, key.sharedB ? 1 : 0,
                                         key.transA ? 1 : 0, key.transB ? 1 : 0, key.cLD, key.cStride, &impl, Int32(impl.count)) else {
            throw OpenCLError(call: "oneDNN matrix product", detail: String(cString: flex_dnnl_error()))
        }
        handle = h
        implementation = String(cString: impl)
    }
    deinit { flex_matmul_destroy(handle) }

    func callAsFunction(_ a: UnsafePointer<UInt16>, _ b: UnsafePointer<UInt16>, _ c: UnsafeMutablePointer<Float>) throws {
        if flex_matmul_execute(handle, a, b, c) != 0 {
            throw OpenCLError(call: "oneDNN matrix product", detail: String(cString: flex_dnnl_error()))
        }
    }
}

/// CLBlast Xgemm parameters chosen per device: a cached tuning result, else a hand-picked set that
/// reached 60–66 GFLOP/s on PoCL where CLBlast's defaults reach 10–20 (shared/OPENCL-NOTES.md).
public enum CLBlastTuning {
    public static let parameterNames = ["GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
                                        "NDIMC", "NWG", "SA", "SB", "STRM", "STRN", "VWM", "VWN"]
    public static let handPicked: [String: Int] = [
        "GEMMK": 0, "KREG": 1, "KWG": 32, "KWI": 2, "MDIMA": 8, "MDIMC": 8, "MWG": 64, "NDIMB": 8,
        "NDIMC": 8, "NWG": 64, "SA": 1, "SB": 1, "STRM": 0, "STRN": 0, "VWM": 8, "VWN": 8,
    ]

    private static let lock = NSLock()
    nonisolated(unsafe) private static var applied: Set<String> = []

    /// Where the tuned parameters of `device` are cached.
    public static func cacheFile(for device: DeviceInfo) -> URL {
        let safe = "\(device.name)-\(device.driverVersion)".map { $0.isLetter || $0.isNumber ? $0 : "_" }
        return EngineEnvironment.cacheDirectory().appendingPathComponent("clblast-xgemm-\(String(safe)).json")
    }

    /// The parameters to use on `device`: the cached tuning result if present and well-formed.
    public static func parameters(for device: DeviceInfo) -> [String: Int] {
        if let data = try? Data(contentsOf: cacheFile(for: device)),
           let p = try? JSONDecoder().decode([String: Int].self, from: data),
           Set(p.keys) == Set(parameterNames) {
            return p
        }
        return handPicked
    }

    /// Overrides CLBlast's Xgemm parameters for `device` (process-wide, once unless `force`).
    public static func apply(for device: DeviceInfo, parameters: [String: Int]? = nil, force: Bool = false) throws {
        let key = "\(device.index)"
        lock.lock(); defer { lock.unlock() }
        if applied.contains(key) && !force { return }
        let p = parameters ?? self.parameters(for: device)
        let names = parameterNames.map { strdup($0) }
        defer { names.forEach { free($0) } }
        var cnames: [UnsafePointer<CChar>?] = names.map { UnsafePointer($0) }
        var values: [Int] = parameterNames.map { p[$0] ?? 0 }
        GemmEngine.lock.lock(); defer { GemmEngine.lock.unlock() }
        let st = CLBlastOverrideParameters(device.id, "Xgemm", CLBlastPrecisionSingle, parameterNames.count, &cnames, &values)
        if st != CLBlastSuccess {
            throw OpenCLError(call: "CLBlastOverrideParameters(Xgemm)", status: st.rawValue, detail: "\(p)")
        }
        applied.insert(key)
    }
}
