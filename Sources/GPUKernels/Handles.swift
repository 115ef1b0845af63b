// One owning Swift type per OpenCL handle (context, queue, program, kernel, buffer, event), each
// released in deinit. Handles import as OpaquePointer, which is not Sendable: these wrappers are.
import COpenCL
import Foundation

/// An OpenCL context on one device.
public final class CLContext: @unchecked Sendable {
    let handle: cl_context
    public let device: DeviceInfo

    public init(device: DeviceInfo) throws {
        var status: cl_int = 0
        var id: cl_device_id? = device.id
        guard let ctx = clCreateContext(nil, 1, &id, nil, nil, &status) else {
            throw OpenCLError(call: "clCreateContext", status: status, detail: device.name)
        }
        try check(status, "clCreateContext")
        handle = ctx
        self.device = device
    }
    deinit { clReleaseContext(handle) }

    private let bytesLock = NSLock()
    private var liveBytes = 0, peakBytes = 0
    /// Bytes of the context's buffers alive now, and the most alive at once.
    public var allocatedBytes: (now: Int, peak: Int) { bytesLock.withLock { (liveBytes, peakBytes) } }
    func track(_ delta: Int) {
        bytesLock.withLock {
            liveBytes += delta
            peakBytes = max(peakBytes, liveBytes)
        }
    }
}

/// An in-order command queue. With `profiling`, every event carries start/end times.
public final class CLCommandQueue: @unchecked Sendable {
    let handle: cl_command_queue
    public let profiling: Bool

    public init(context: CLContext, profiling: Bool = false) throws {
        var status: cl_int = 0
        var props: [cl_queue_properties] = profiling
            ? [cl_queue_properties(CL_QUEUE_PROPERTIES), cl_queue_properties(CL_QUEUE_PROFILING_ENABLE), 0]
            : [0]
        guard let q = clCreateCommandQueueWithProperties(context.handle, context.device.id, &props, &status) else {
            throw OpenCLError(call: "clCreateCommandQueueWithProperties", status: status)
        }
        try check(status, "clCreateCommandQueueWithProperties")
        handle = q
        self.profiling = profiling
    }
    deinit { clReleaseCommandQueue(handle) }

    /// Maps each distinct buffer for reading and writing (blocking: earlier commands finish first),
    /// runs `body` with host pointers in the order given, then unmaps. On CPU devices this is
    /// zero-copy; it is how the host paths (OpenBLAS, oneDNN) work on device buffers.
    public func withMapped<T>(_ buffers: [DeviceBuffer<Float>], _ body: ([UnsafeMutablePointer<Float>]) throws -> T) throws -> T {
        var mapped: [ObjectIdentifier: UnsafeMutablePointer<Float>] = [:]
        var order: [(DeviceBuffer<Float>, UnsafeMutablePointer<Float>)] = []
        defer {
            for (buf, ptr) in order { clEnqueueUnmapMemObject(handle, buf.handle, UnsafeMutableRawPointer(ptr), 0, nil, nil) }
        }
        for buf in buffers where mapped[ObjectIdentifier(buf)] == nil {
            var status: cl_int = 0
            let flags = cl_map_flags(CL_MAP_READ) | cl_map_flags(CL_MAP_WRITE)
            guard let raw = clEnqueueMapBuffer(handle, buf.handle, cl_bool(CL_TRUE), flags, 0, buf.byteCount,
                                               0, nil, nil, &status), status == CL_SUCCESS else {
                throw OpenCLError(call: "clEnqueueMapBuffer", status: status, detail: "\(buf.byteCount) bytes")
            }
            let p = raw.bindMemory(to: Float.self, capacity: buf.count)
            mapped[ObjectIdentifier(buf)] = p
            order.append((buf, p))
        }
        return try body(buffers.map { mapped[ObjectIdentifier($0)]! })
    }

    /// Blocks until every enqueued command has finished.
    public func finish() throws { try check(clFinish(handle), "clFinish") }
    public func flush() throws { try check(clFlush(handle), "clFlush") }
}

/// A built program.
public final class CLProgram: @unchecked Sendable {
    let handle: cl_program
    public let name: String

    /// Builds `source` for the context's device; a failed build throws with the compiler's log.
    public init(context: CLContext, name: String, source: String, options: String = "") throws {
        var status: cl_int = 0
        let program: cl_program? = source.withCString { cstr in
            var ptr: UnsafePointer<CChar>? = cstr
            return clCreateProgramWithSource(context.handle, 1, &ptr, nil, &status)
        }
        guard let program else { throw OpenCLError(call: "clCreateProgramWithSource(\(name))", status: status) }
        handle = program
        self.name = name
        var id: cl_device_id? = context.device.id
        let st = clBuildProgram(program, 1, &id, options, nil, nil)
        if st != CL_SUCCESS {
            throw OpenCLError(call: "clBuildProgram(\(name).cl)", status: st,
                              buildLog: CLProgram.buildLog(program, context.device.id))
        }
    }
    deinit { clReleaseProgram(handle) }

    static func buildLog(_ program: cl_program, _ device: cl_device_id) -> String {
        var size = 0
        let info = cl_program_build_info(CL_PROGRAM_BUILD_LOG)
        guard clGetProgramBuildInfo(program, device, info, 0, nil, &size) == CL_SUCCESS, size > 0 else { return "" }
        var bytes = [CChar](repeating: 0, count: size + 1)
        guard clGetProgramBuildInfo(program, device, info, size, &bytes, nil) == CL_SUCCESS else { return "" }
        return String(cString: bytes)
    }
}

/// A kernel argument: a buffer, a scalar, or a size of local memory.
public enum KernelArgument {
    case buffer(cl_mem)
    case int32(Int32)
    case float(Float)
    case local(bytes: Int)

    public static func int(_ v: Int) -> KernelArgument { .int32(Int32(v)) }
}

/// A kernel object. Not thread-safe: a `cl_kernel` must not be shared between threads
/// (shared/OPENCL-NOTES.md), so each `ComputeStream` creates its own.
public final class CLKernel {
    let handle: cl_kernel
    public let name: String

    public init(program: CLProgram, name: String) throws {
        var status: cl_int = 0
        guard let k = clCreateKernel(program.handle, name, &status) else {
            throw OpenCLError(call: "clCreateKernel(\(name))", status: status, detail: "program \(program.name).cl")
        }
        handle = k
        self.name = name
    }
    deinit { clReleaseKernel(handle) }

    public func setArguments(_ args: [KernelArgument]) throws {
        for (i, arg) in args.enumerated() {
            let idx = cl_uint(i)
            let st: cl_int
            switch arg {
            case .buffer(let mem):
                var m: cl_mem? = mem
                st = clSetKernelArg(handle, idx, MemoryLayout<cl_mem>.size, &m)
            case .int32(let v):
                var x = v
                st = clSetKernelArg(handle, idx, MemoryLayout<Int32>.size, &x)
            case .float(let v):
                var x = v
                st = clSetKernelArg(handle, idx, MemoryLayout<Float>.size, &x)
            case .local(let bytes):
                st = clSetKernelArg(handle, idx, bytes, nil)
            }
            try check(st, "clSetKernelArg(\(name), \(i))")
        }
    }
}

/// A completion event; with a profiling queue it reports the command's device time.
public final class CLEvent: @unchecked Sendable {
    let handle: cl_event
    init(_ handle: cl_event) { self.handle = handle }
    deinit { clReleaseEvent(handle) }

    public func wait() throws {
        var e: cl_event? = handle
        try check(clWaitForEvents(1, &e), "clWaitForEvents")
    }

    /// Device time from start to end in nanoseconds (needs a profiling queue).
    public func durationNanoseconds() throws -> UInt64 {
        var start: cl_ulong = 0, end: cl_ulong = 0
        try check(clGetEventProfilingInfo(handle, cl_profiling_info(CL_PROFILING_COMMAND_START), 8, &start, nil),
                  "clGetEventProfilingInfo")
        try check(clGetEventProfilingInfo(handle, cl_profiling_info(CL_PROFILING_COMMAND_END), 8, &end, nil),
                  "clGetEventProfilingInfo")
        return end >= start ? end - start : 0
    }
}

/// A typed device buffer of `count` elements.
public final class DeviceBuffer<Element: BitwiseCopyable>: @unchecked Sendable {
    let handle: cl_mem
    public let count: Int
    public let context: CLContext
    public var byteCount: Int { count * MemoryLayout<Element>.stride }

    /// Allocates `count` elements (uninitialised). On CPU devices the memory is host-allocated so
    /// that mapping it is zero-copy (the host-BLAS GEMM path relies on this).
    public init(context: CLContext, count: Int) throws {
        precondition(count > 0, "a device buffer needs at least one element")
        var flags = cl_mem_flags(CL_MEM_READ_WRITE)
        if context.device.kind == .cpu { flags |= cl_mem_flags(CL_MEM_ALLOC_HOST_PTR) }
        var status: cl_int = 0
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        let device = context.device
        guard !overflow, UInt64(bytes) <= device.maxAllocationBytes else {
            throw OpenCLError(call: "clCreateBuffer", detail: "a buffer of \(overflow ? "over 2^63" : formatBytes(UInt64(bytes))) exceeds the largest allocation \(device.name) allows, \(formatBytes(device.maxAllocationBytes)) (CL_DEVICE_MAX_MEM_ALLOC_SIZE; device memory \(formatBytes(device.globalMemoryBytes)))")
        }
        guard let mem = clCreateBuffer(context.handle, flags, bytes, nil, &status), status == CL_SUCCESS else {
            throw OpenCLError(call: "clCreateBuffer", status: status,
                              detail: "\(formatBytes(UInt64(bytes))) on \(device.name), which has \(formatBytes(device.globalMemoryBytes))")
        }
        handle = mem
        self.count = count
        self.context = context
        context.track(bytes)
    }
    deinit {
        clReleaseMemObject(handle)
        context.track(-byteCount)
    }

    public var mem: cl_mem { handle }

    /// Copies `values` to the buffer starting at element `offset` (blocking).
    public func write(_ values: [Element], offset: Int = 0, queue: CLCommandQueue) throws {
        precondition(offset >= 0 && offset + values.count <= count, "write of \(values.count) at \(offset) overruns \(count)")
        guard !values.isEmpty else { return }
        try values.withUnsafeBytes { raw in
            try check(clEnqueueWriteBuffer(queue.handle, handle, cl_bool(CL_TRUE), offset * MemoryLayout<Element>.stride,
                                           raw.count, raw.baseAddress, 0, nil, nil), "clEnqueueWriteBuffer")
        }
    }

    /// Reads `count` elements from element `offset` (blocking; waits for earlier commands).
    public func read(count n: Int? = nil, offset: Int = 0, queue: CLCommandQueue) throws -> [Element] {
        let n = n ?? (count - offset)
        precondition(offset >= 0 && offset + n <= count, "read of \(n) at \(offset) overruns \(count)")
        return try [Element](unsafeUninitializedCapacity: n) { buf, initialized in
            if n > 0 {
                try check(clEnqueueReadBuffer(queue.handle, handle, cl_bool(CL_TRUE), offset * MemoryLayout<Element>.stride,
                                              n * MemoryLayout<Element>.stride, buf.baseAddress, 0, nil, nil),
                          "clEnqueueReadBuffer")
            }
            initialized = n
        }
    }

    /// Copies `n` elements from `source` (device-side).
    public func copy(from source: DeviceBuffer<Element>, count n: Int, sourceOffset: Int = 0,
                     offset: Int = 0, queue: CLCommandQueue) throws {
        precondition(sourceOffset + n <= source.count && offset + n <= count, "copy overruns a buffer")
        let s = MemoryLayout<Element>.stride
        try check(clEnqueueCopyBuffer(queue.handle, source.handle, handle, sourceOffset * s, offset * s, n * s, 0, nil, nil),
                  "clEnqueueCopyBuffer")
    }
}

/// Bytes as people read them: "3.2 GiB", "417 MiB", "12 kiB", "100 bytes".
public func formatBytes(_ b: UInt64) -> String {
    let gib = Double(b) / 1_073_741_824, mib = Double(b) / 1_048_576
    if gib >= 1 { return String(format: "%.1f GiB", gib) }
    if mib >= 1 { return String(format: "%.0f MiB", mib) }
    return b >= 1024 ? String(format: "%.0f kiB", Double(b) / 1024) : "\(b) bytes"
}
