// Every environment variable the engine reads, listed once with what it does — its own
// FLEXIFFUSION_* settings and the standard variables it honours (the cache folders, Hugging Face's
// hub, PoCL's cache) — and one typed way to read them: a value, an absolute path, or one of an
// enumeration's cases (anything else refused with the choices). `flexiffusion --help` prints the
// list and the README's "Environment variables" table is the same list (EnvironmentTests checks
// both, and that no other file reads the environment).
import Foundation

/// One environment variable the engine reads.
public struct EnvironmentVariable: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    /// What it does, as `--help` and the README say it.
    public let summary: String

    public init(_ name: String, _ summary: String) { self.name = name; self.summary = summary }

    public var description: String { "$\(name)" }

    /// Whether the engine defines it (FLEXIFFUSION_…) rather than honouring a standard one.
    public var isEngineSetting: Bool { name.hasPrefix("FLEXIFFUSION_") }

    /// Its value in `environment` (the process's by default); nil when unset or empty.
    public func value(in environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let v = environment[name], !v.isEmpty else { return nil }
        return v
    }

    /// Its value when it is an absolute path (relative ones are ignored, as the XDG base-directory
    /// specification says of its variables).
    public func absolutePath(in environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        value(in: environment).flatMap { $0.hasPrefix("/") ? $0 : nil }
    }

    /// The case of `T` it names; nil when unset or empty; any other value is an error naming the
    /// variable and listing the choices.
    public func choice<T: RawRepresentable & CaseIterable>(_ type: T.Type,
                                                           in environment: [String: String] = ProcessInfo.processInfo.environment) throws -> T?
    where T.RawValue == String {
        guard let raw = value(in: environment) else { return nil }
        guard let value = T(rawValue: raw) else {
            throw OpenCLError(call: "reading the environment",
                              detail: "$\(name)=\(raw) is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
    }
}

/// The list: every variable the engine reads, and where its cache lives.
public enum EngineEnvironment {
    public static let device = EnvironmentVariable(
        "FLEXIFFUSION_DEVICE", "the device when --device is not given: an index from `flexiffusion devices`, gpu, cpu, or part of a device name")
    public static let gemm = EnvironmentVariable(
        "FLEXIFFUSION_GEMM", "the GEMM path: clblast, clblast-tuned or host-blas (default: host-blas on CPU devices, clblast elsewhere)")
    public static let convolution = EnvironmentVariable(
        "FLEXIFFUSION_CONV", "the convolution path: im2col-gemm, onednn or implicit-gemm (default: onednn on CPU devices when oneDNN opens, else im2col-gemm)")
    public static let oneDNN = EnvironmentVariable(
        "FLEXIFFUSION_ONEDNN", "the oneDNN library to open, a path or a name, version 2 or 3 (default: libdnnl.so.3, /usr/local/lib/libdnnl.so.3, then libdnnl.so.2); one that does not open is an error")
    public static let oneDNNLayout = EnvironmentVariable(
        "FLEXIFFUSION_ONEDNN_LAYOUT", "activations around oneDNN's convolutions: carried (blocked between convolutions, the default), blocked (reordered around each) or plain (NCHW)")
    public static let attention = EnvironmentVariable(
        "FLEXIFFUSION_ATTENTION", "token attention (Stable Diffusion's transformers, CLIP): chunked (score chunks through the GEMM path, the default) or fused (one OpenCL kernel with an online softmax, no score matrix; head dims up to 160)")
    public static let kernelsDirectory = EnvironmentVariable(
        "FLEXIFFUSION_KERNELS_DIR", "a folder to load kernels/*.cl from instead of the embedded copies (to try an edited kernel without rebuilding)")
    public static let inception = EnvironmentVariable(
        "FLEXIFFUSION_INCEPTION", "the folder of FID's converted Inception-v3 (default: the cache's inception-v3-fid)")
    public static let cacheHome = EnvironmentVariable(
        "XDG_CACHE_HOME", "the cache folder's parent when absolute: $XDG_CACHE_HOME/flexiffusion (models, latency tables, statistics, tuning)")
    public static let home = EnvironmentVariable("HOME", "else $HOME/.cache/flexiffusion")
    public static let huggingFaceHubCache = EnvironmentVariable("HF_HUB_CACHE", "where `--model org/name` is looked up (as diffusers finds it offline)")
    public static let huggingFaceHome = EnvironmentVariable("HF_HOME", "else $HF_HOME/hub, else ~/.cache/huggingface/hub")
    public static let poclCache = EnvironmentVariable("POCL_CACHE_DIR", "PoCL's kernel cache, named when it cannot be written (PoCL then offers no device)")
    public static let openBLASCoreType = EnvironmentVariable("OPENBLAS_CORETYPE", "OpenBLAS's kernels; set from the CPU's flags when unset")
    public static let openBLASThreadTimeout = EnvironmentVariable("OPENBLAS_THREAD_TIMEOUT", "how long OpenBLAS's idle threads spin (2^N cycles); set to 4, its least, before OpenBLAS opens when unset, so that they do not spin against oneDNN's convolutions")
    public static let openMPWaitPolicy = EnvironmentVariable("OMP_WAIT_POLICY", "oneDNN's idle threads; set to passive before oneDNN opens when unset, so that they do not spin against PoCL's")

    /// Every variable, the engine's own first.
    public static let all: [EnvironmentVariable] = [
        device, gemm, convolution, oneDNN, oneDNNLayout, attention, kernelsDirectory, inception,
        cacheHome, home, huggingFaceHubCache, huggingFaceHome, poclCache, openBLASCoreType, openBLASThreadTimeout, openMPWaitPolicy,
    ]

    /// The list as `--help` prints it: one line per variable.
    public static var help: String {
        all.map { "$\($0.name): \($0.summary)." }.joined(separator: "\n")
    }

    /// The engine's cache folder: $XDG_CACHE_HOME/flexiffusion when that is absolute, else
    /// $HOME/.cache/flexiffusion, else the account's home's (PoCL reads them the same way).
    public static func cacheDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let xdg = cacheHome.absolutePath(in: environment) { return URL(fileURLWithPath: xdg).appendingPathComponent("flexiffusion") }
        let home = home.absolutePath(in: environment).map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
        return home.appendingPathComponent(".cache").appendingPathComponent("flexiffusion")
    }
}
