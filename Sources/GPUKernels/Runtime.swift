// OpenCL platform/device discovery (once per process) and device selection by index, type or name.
import COpenCL
import Foundation

/// The kind of an OpenCL device, as `--device gpu|cpu` names it.
public enum DeviceKind: String, Sendable, CustomStringConvertible {
    case gpu, cpu, accelerator, other
    public var description: String { rawValue }
}

/// One OpenCL device as discovered: its identity and the properties users ask about.
public struct DeviceInfo: @unchecked Sendable, CustomStringConvertible {
    /// Position in the flat list of all devices of all platforms (what `--device N` selects).
    public let index: Int
    public let platformIndex: Int
    public let platformName: String
    public let name: String
    public let kind: DeviceKind
    public let vendor: String
    public let version: String
    public let driverVersion: String
    public let computeUnits: Int
    public let globalMemoryBytes: UInt64
    /// The largest single buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE).
    public let maxAllocationBytes: UInt64
    public let localMemoryBytes: UInt64
    public let maxWorkGroupSize: Int
    public let supportsFP64: Bool
    let id: cl_device_id
    let platform: cl_platform_id

    public var description: String { "[\(index)] \(name) (\(kind), \(platformName))" }
}

/// Every platform and device, discovered once per process: the first OpenCL use from several
/// threads at once crashes inside PoCL (shared/OPENCL-NOTES.md), and a Swift `static let` is
/// initialised exactly once, thread-safely.
public enum OpenCLRuntime {
    private static let discovery: Result<[DeviceInfo], OpenCLError> = Result { try discover() }
        .mapError { $0 as? OpenCLError ?? OpenCLError(call: "device discovery", detail: "\($0)") }

    /// All devices of all platforms, in platform order.
    public static func devices() throws -> [DeviceInfo] { try discovery.get() }

    /// The device used when nothing is specified: the first GPU, else the first CPU, else the first.
    public static func defaultDevice() throws -> DeviceInfo {
        let all = try devices()
        if let gpu = all.first(where: { $0.kind == .gpu }) { return gpu }
        if let cpu = all.first(where: { $0.kind == .cpu }) { return cpu }
        guard let first = all.first else {
            throw OpenCLError(call: "device selection", detail: noDeviceReason())
        }
        return first
    }

    /// Why no device was found, in words: PoCL (the CPU driver) offers no device when it cannot create
    /// its kernel cache, which otherwise looks like a missing driver.
    public static func noDeviceReason(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let cache: String
        if let dir = EngineEnvironment.poclCache.value(in: environment) { cache = dir }
        else if let xdg = EngineEnvironment.cacheHome.absolutePath(in: environment) { cache = xdg + "/pocl" }
        else if let home = EngineEnvironment.home.absolutePath(in: environment) { cache = home + "/.cache/pocl" }
        else { cache = "" }
        if !cache.isEmpty, FileManager.default.fileExists(atPath: "/etc/OpenCL/vendors/pocl.icd") {
            var problem: String?
            do { try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true) } catch {
                problem = describeFileError(error)
            }
            if problem == nil, access(cache, W_OK) != 0 { problem = String(cString: strerror(errno)) }
            if let problem {
                return "no OpenCL device found: PoCL (the CPU driver) cannot create its kernel cache in \(cache) (\(problem)); make it writable, or set POCL_CACHE_DIR (or HOME) to a writable folder"
            }
        }
        return "no OpenCL device found (is an ICD such as pocl-opencl-icd installed?)"
    }

    /// Selects a device from `spec` (`--device`), else from $FLEXIFFUSION_DEVICE, else the default.
    ///
    /// A spec is an index into `devices()` (`0`, `1`, …), a type (`gpu`, `cpu`, `accelerator`:
    /// the first device of that type), or a case-insensitive substring of the device's or platform's
    /// name, vendor or version (PoCL names itself only in its version: `pocl` finds it). An empty
    /// `--device` is an error (an empty $FLEXIFFUSION_DEVICE is unset).
    public static func select(_ spec: String? = nil,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DeviceInfo {
        if let spec, spec.trimmingCharacters(in: .whitespaces).isEmpty {
            throw OpenCLError(call: "device selection", detail: "--device \"\(spec)\": give an index from `flexiffusion devices`, gpu, cpu, or part of a device name")
        }
        let chosen = spec ?? EngineEnvironment.device.value(in: environment)
        guard let raw = chosen?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return try defaultDevice() }
        let all = try devices()
        let source = spec != nil ? "--device" : "\(EngineEnvironment.device)"
        let listing = all.map(\.description).joined(separator: "; ")
        if let i = Int(raw) {
            guard all.indices.contains(i) else {
                throw OpenCLError(call: "device selection",
                                  detail: "\(source) \(raw): no device with index \(i) (devices: \(listing))")
            }
            return all[i]
        }
        if let kind = DeviceKind(rawValue: raw.lowercased()), kind != .other {
            guard let d = all.first(where: { $0.kind == kind }) else {
                throw OpenCLError(call: "device selection",
                                  detail: "\(source) \(raw): no \(kind) device (devices: \(listing))")
            }
            return d
        }
        let needle = raw.lowercased()
        if let d = all.first(where: { [$0.name, $0.platformName, $0.vendor, $0.version].contains { $0.lowercased().contains(needle) } }) {
            return d
        }
        throw OpenCLError(call: "device selection",
                          detail: "\(source) '\(raw)' matches no device index, type (gpu, cpu, accelerator) or name (devices: \(listing))")
    }

    private static func discover() throws -> [DeviceInfo] {
        var platformCount: cl_uint = 0
        let st = clGetPlatformIDs(0, nil, &platformCount)
        if st == CL_PLATFORM_NOT_FOUND_KHR || platformCount == 0 { return [] }
        try check(st, "clGetPlatformIDs")
        var platforms = [cl_platform_id?](repeating: nil, count: Int(platformCount))
        try check(clGetPlatformIDs(platformCount, &platforms, nil), "clGetPlatformIDs")

        var result: [DeviceInfo] = []
        for (pi, platform) in platforms.enumerated() {
            guard let platform else { continue }
            let platformName = try platformString(platform, cl_platform_info(CL_PLATFORM_NAME))
            var deviceCount: cl_uint = 0
            let all = cl_device_type(CL_DEVICE_TYPE_ALL)
            let ds = clGetDeviceIDs(platform, all, 0, nil, &deviceCount)
            if ds == CL_DEVICE_NOT_FOUND || deviceCount == 0 { continue }
            try check(ds, "clGetDeviceIDs")
            var ids = [cl_device_id?](repeating: nil, count: Int(deviceCount))
            try check(clGetDeviceIDs(platform, all, deviceCount, &ids, nil), "clGetDeviceIDs")
            for id in ids {
                guard let id else { continue }
                let type: cl_device_type = try deviceValue(id, CL_DEVICE_TYPE)
                let kind: DeviceKind
                if type & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 { kind = .gpu }
                else if type & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 { kind = .cpu }
                else if type & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 { kind = .accelerator }
                else { kind = .other }
                let fp64: cl_device_fp_config = try deviceValue(id, CL_DEVICE_DOUBLE_FP_CONFIG)
                let cu: cl_uint = try deviceValue(id, CL_DEVICE_MAX_COMPUTE_UNITS)
                let mem: cl_ulong = try deviceValue(id, CL_DEVICE_GLOBAL_MEM_SIZE)
                let lmem: cl_ulong = try deviceValue(id, CL_DEVICE_LOCAL_MEM_SIZE)
                let maxAlloc: cl_ulong = try deviceValue(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE)
                let wg: Int = try deviceValue(id, CL_DEVICE_MAX_WORK_GROUP_SIZE)
                result.append(DeviceInfo(
                    index: result.count, platformIndex: pi, platformName: platformName,
                    name: try deviceString(id, CL_DEVICE_NAME), kind: kind,
                    vendor: try deviceString(id, CL_DEVICE_VENDOR),
                    version: try deviceString(id, CL_DEVICE_VERSION),
                    driverVersion: try deviceString(id, CL_DRIVER_VERSION),
                    computeUnits: Int(cu), globalMemoryBytes: mem, maxAllocationBytes: maxAlloc, localMemoryBytes: lmem,
                    maxWorkGroupSize: wg, supportsFP64: fp64 != 0, id: id, platform: platform))
            }
        }
        return result
    }
}

func platformString(_ platform: cl_platform_id, _ param: cl_platform_info) throws -> String {
    var size = 0
    try check(clGetPlatformInfo(platform, param, 0, nil, &size), "clGetPlatformInfo")
    var bytes = [CChar](repeating: 0, count: size + 1)
    try check(clGetPlatformInfo(platform, param, size, &bytes, nil), "clGetPlatformInfo")
    return String(cString: bytes).trimmingCharacters(in: .whitespaces)
}

func deviceString(_ device: cl_device_id, _ param: Int32) throws -> String {
    var size = 0
    try check(clGetDeviceInfo(device, cl_device_info(param), 0, nil, &size), "clGetDeviceInfo")
    var bytes = [CChar](repeating: 0, count: size + 1)
    try check(clGetDeviceInfo(device, cl_device_info(param), size, &bytes, nil), "clGetDeviceInfo")
    return String(cString: bytes).trimmingCharacters(in: .whitespaces)
}

func deviceValue<T: FixedWidthInteger>(_ device: cl_device_id, _ param: Int32) throws -> T {
    var value: T = 0
    try check(clGetDeviceInfo(device, cl_device_info(param), MemoryLayout<T>.size, &value, nil),
              "clGetDeviceInfo(\(param))")
    return value
}

/// A file-system error in words: the underlying POSIX error ("Not a directory", "Read-only file
/// system") where Foundation says only "The operation could not be completed (NSCocoaErrorDomain error 512)".
public func describeFileError(_ error: Error) -> String {
    let ns = error as NSError
    // (On Linux the underlying error casts to Error, not to NSError.)
    if let u = (ns.userInfo[NSUnderlyingErrorKey] as? Error).map({ $0 as NSError }), u.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(u.code)))
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    return ns.localizedDescription
}
