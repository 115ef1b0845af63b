// Where kernel sources come from (embedded, or kernels/ on disk for development) and the
// per-context program cache.
import CKernelSources
import Foundation

/// The OpenCL C sources of `kernels/`, one per op family.
public enum KernelLibrary {
    /// The sources embedded at build time, by family name.
    public static let embedded: [String: String] = {
        var count: Int32 = 0
        guard let table = flex_kernel_sources(&count) else { return [:] }
        var out: [String: String] = [:]
        for i in 0..<Int(count) {
            out[String(cString: table[i].name)] = String(cString: table[i].source)
        }
        return out
    }()

    /// The source of one family: from $FLEXIFFUSION_KERNELS_DIR when set, else embedded.
    public static func source(of family: String,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        if let dir = EngineEnvironment.kernelsDirectory.value(in: environment) {
            let path = URL(fileURLWithPath: dir).appendingPathComponent("\(family).cl").path
            do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw OpenCLError(call: "loading kernel source",
                                  detail: "\(path) (from \(EngineEnvironment.kernelsDirectory)): \(error.localizedDescription)")
            }
        }
        guard let s = embedded[family] else {
            throw OpenCLError(call: "loading kernel source", detail: "no kernel family '\(family)' is embedded")
        }
        return s
    }
}

/// FNV-1a over the source and options: the program cache key (with the device, which a context fixes).
func sourceHash(_ s: String) -> UInt64 { FNV1a.of(s) }

/// A context shared by every user of one device in the process, with its compiled programs.
/// Thread-safe: programs are built once per (family, source, options) under a lock.
public final class DeviceContext: @unchecked Sendable {
    public let device: DeviceInfo
    public let context: CLContext
    private let lock = NSLock()
    private var programs: [String: CLProgram] = [:]

    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var registry: [Int: DeviceContext] = [:]

    /// The process-wide context of `device`.
    public static func shared(for device: DeviceInfo) throws -> DeviceContext {
        registryLock.lock(); defer { registryLock.unlock() }
        if let c = registry[device.index] { return c }
        let c = try DeviceContext(device: device)
        registry[device.index] = c
        return c
    }

    private init(device: DeviceInfo) throws {
        self.device = device
        context = try CLContext(device: device)
    }

    /// The built program of a kernel family (built on first use, then cached).
    public func program(_ family: String, options: String = "") throws -> CLProgram {
        let source = try KernelLibrary.source(of: family)
        let key = "\(family)|\(options)|\(sourceHash(source))"
        lock.lock(); defer { lock.unlock() }
        if let p = programs[key] { return p }
        let p = try CLProgram(context: context, name: family, source: source, options: options)
        programs[key] = p
        return p
    }
}
