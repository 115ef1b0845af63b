// A stream of work on one device: a command queue, its own kernel objects, its backends (which
// runs each operation: Backends.swift), host convolutions and prepared weights, scratch buffers and
// an optional profiler. One stream per thread; streams on one device share its context and programs.
import COpenCL
import Foundation

/// Device time of one launched command, recorded when profiling is on.
public struct KernelTiming: Sendable {
    public let name: String
    public let nanoseconds: UInt64
}

public final class ComputeStream {
    public let device: DeviceInfo
    public let shared: DeviceContext
    public let queue: CLCommandQueue
    public let gemm: GemmEngine
    /// The kernel objects of every family launched so far (`Kernel` names them).
    private var kernels: [Kernel: CLKernel] = [:]
    private var scratchBuffers: [ScratchKind: DeviceBuffer<Float>] = [:]
    var hostConvolutions: [HostConvolutionKey: HostConvolution] = [:]
    var preparedWeights: [PreparedWeightsKey: PreparedWeights] = [:]

    /// Where each operation runs (Backends.swift): the launchers ask it. The GEMM path is fixed
    /// when the stream is made; the convolution path and oneDNN's layouts may be changed (tests,
    /// benchmarks) to any the device can run.
    public var backends: Backends {
        didSet {
            precondition(backends.gemm == oldValue.gemm, "a stream's GEMM path is fixed")
            precondition((try? backends.convolution.check(for: device)) != nil, "\(backends.convolution) cannot run on \(device.name)")
            precondition(backends.precision == .float32 || Precision.resolve(backends.precision, for: backends).precision == backends.precision,
                         "\(backends.precision) cannot run here (Precision.resolve)")
        }
    }

    /// Small per-stream buffers that operations keep between calls.
    public enum ScratchKind: Hashable { case groupNormAffine }
    private var pendingEvents: [(String, CLEvent)] = []
    private var hostTimings: [KernelTiming] = []

    /// Records the wall-clock time of work done on the host (profiling queues only).
    func recordHostTiming(_ name: String, _ nanoseconds: UInt64) {
        hostTimings.append(KernelTiming(name: name, nanoseconds: nanoseconds))
    }

    /// Runs `body` on the host over `buffers` mapped (CPU devices, whose buffers are host memory). On a
    /// profiling queue the queue is drained first, so that the host work is timed alone and recorded as
    /// `name` (and the mapping as "map", with `timeMapping`).
    func onHost<T>(_ name: @autoclosure () -> String, _ buffers: [DeviceBuffer<Float>], timeMapping: Bool = false,
                   _ body: ([UnsafeMutablePointer<Float>]) throws -> T) throws -> T {
        let profiling = queue.profiling
        if profiling { try queue.finish() }
        let start = profiling ? DispatchTime.now().uptimeNanoseconds : 0
        return try queue.withMapped(buffers) { p in
            let t0 = profiling ? DispatchTime.now().uptimeNanoseconds : 0
            if profiling && timeMapping { recordHostTiming("map", t0 - start) }
            let result = try body(p)
            if profiling { recordHostTiming(name(), DispatchTime.now().uptimeNanoseconds - t0) }
            return result
        }
    }

    /// Whether launches record their events for `takeTimings()`.
    public var recordsTimings: Bool { queue.profiling }

    /// A stream on `device` (default: `OpenCLRuntime.select()`), with the GEMM path `gemm`
    /// (default: `GemmPath.default(for:)`, which $FLEXIFFUSION_GEMM overrides) and the convolution
    /// path `convolution` (default: `ConvolutionPath.default(for:)`, which $FLEXIFFUSION_CONV overrides).
    public init(device: DeviceInfo? = nil, gemm: GemmPath? = nil, convolution: ConvolutionPath? = nil,
                profiling: Bool = false) throws {
        if let stop = Self.refusal { throw OpenCLError(call: "device use", detail: stop) }
        let d = try device ?? OpenCLRuntime.select()
        self.device = d
        shared = try DeviceContext.shared(for: d)
        queue = try CLCommandQueue(context: shared.context, profiling: profiling)
        let engine = try GemmEngine(path: gemm ?? GemmPath.default(for: d), device: d)
        self.gemm = engine
        if let convolution { try convolution.check(for: d) }
        backends = Backends(device: d, gemm: engine.path, convolution: try convolution ?? ConvolutionPath.default(for: d))
    }

    public var context: CLContext { shared.context }

    /// The stream set to compute in `requested` (nil: float32) where it can (`Precision.resolve`);
    /// returns why it runs in another precision where it does.
    @discardableResult
    public func setPrecision(_ requested: Precision?) -> String? {
        let (p, note) = Precision.resolve(requested, for: backends)
        backends.precision = p
        return note
    }

    /// Runs `body` with the stream computing in `precision` (a metric's network in float32 on a
    /// bf16 stream), then restores it.
    public func withPrecision<T>(_ precision: Precision, _ body: () throws -> T) rethrows -> T {
        let saved = backends.precision
        if precision != saved { backends.precision = precision }
        defer { if backends.precision != saved { backends.precision = saved } }
        return try body()
    }

    /// When set, making a stream throws this (`bench fuzz --command-lines`: a command line is run up
    /// to its first use of a device, so that every check before the work runs and no work does).
    nonisolated(unsafe) public static var refusal: String?

    /// A buffer of `count` floats (uninitialised).
    public func buffer(_ count: Int) throws -> DeviceBuffer<Float> { try DeviceBuffer(context: shared.context, count: count) }

    /// A buffer holding `values`.
    public func upload(_ values: [Float]) throws -> DeviceBuffer<Float> {
        let b = try buffer(values.count)
        try b.write(values, queue: queue)
        return b
    }

    public func download(_ buffer: DeviceBuffer<Float>, count: Int? = nil) throws -> [Float] {
        try buffer.read(count: count, queue: queue)
    }

    public func finish() throws { try queue.finish() }

    /// The stream's scratch buffer of `kind`, grown to at least `count` floats. Call `reserve` before a
    /// loop so that the loop itself never allocates.
    func scratch(_ kind: ScratchKind, count: Int) throws -> DeviceBuffer<Float> {
        if let b = scratchBuffers[kind], b.count >= count { return b }
        let b = try buffer(count)
        scratchBuffers[kind] = b
        return b
    }

    /// Allocates the stream's scratch of `kind` for `count` floats now.
    public func reserve(_ kind: ScratchKind, count: Int) throws { _ = try scratch(kind, count: count) }

    /// This stream's kernel object for `kernel`: its family's kernels are created together at the
    /// first launch of any of them (a kernel its program lacks is an error then, naming it).
    func kernel(_ kernel: Kernel) throws -> CLKernel {
        if let k = kernels[kernel] { return k }
        let family = kernel.family, program = try shared.program(family.fileName)
        for k in family.kernels { kernels[k] = try CLKernel(program: program, name: k.name) }
        return kernels[kernel]!
    }

    /// Enqueues `kernel` over `global` work-items (with `local`, or the driver's choice).
    func launch(_ kernel: Kernel, global: [Int], local: [Int]? = nil, _ args: [KernelArgument]) throws {
        precondition(!global.isEmpty && global.count <= 3 && global.allSatisfy { $0 > 0 }, "bad global size \(global)")
        let k = try self.kernel(kernel)
        try k.setArguments(args)
        var g = global
        var event: cl_event? = nil
        let st: cl_int = withUnsafeMutablePointer(to: &event) { ev in
            let evp = recordsTimings ? ev : nil
            if var l = local {
                precondition(l.count == g.count, "local size rank differs from global")
                return clEnqueueNDRangeKernel(queue.handle, k.handle, cl_uint(g.count), nil, &g, &l, 0, nil, evp)
            }
            return clEnqueueNDRangeKernel(queue.handle, k.handle, cl_uint(g.count), nil, &g, nil, 0, nil, evp)
        }
        if st != CL_SUCCESS {
            throw OpenCLError(call: "clEnqueueNDRangeKernel(\(kernel))", status: st, detail: "global \(global), local \(local.map { "\($0)" } ?? "auto")")
        }
        if let event { pendingEvents.append((kernel.name, CLEvent(event))) }
    }

    /// Waits for the queue and returns the device time of every kernel launched since the last call,
    /// then the wall-clock time of every GEMM (named "sgemm …") and host convolution ("conv …").
    public func takeTimings() throws -> [KernelTiming] {
        try finish()
        let out = try pendingEvents.map { KernelTiming(name: $0.0, nanoseconds: try $0.1.durationNanoseconds()) }
            + gemm.recorded + hostTimings
        pendingEvents.removeAll()
        gemm.recorded.removeAll()
        hostTimings.removeAll()
        return out
    }
}
