// The convolution paths: im2col + GEMM on the device (any device), or oneDNN on the host for CPU
// devices (their buffers are host memory, mapped zero-copy). oneDNN's convolutions ran 1.5–2× faster
// than im2col on PoCL + OpenBLAS on our CPUs (README), so they are the default there.
import CHostDNN
import Foundation

public enum ConvolutionPath: String, CaseIterable, Sendable, CustomStringConvertible {
    case im2colGemm = "im2col-gemm"
    case oneDNN = "onednn"
    /// kernels/conv2d.cl's implicit GEMM on the device: no column buffer (chosen by
    /// $FLEXIFFUSION_CONV=implicit-gemm until a GPU measures it faster than im2col + GEMM).
    case implicitGemm = "implicit-gemm"

    public var description: String { rawValue }

    /// Whether oneDNN (the library $FLEXIFFUSION_ONEDNN names, else libdnnl.so.3 or .so.2) could be opened.
    public static var oneDNNAvailable: Bool { flex_dnnl_open(EngineEnvironment.oneDNN.value()) != 0 }

    /// The oneDNN opened, e.g. "oneDNN 3 (/usr/local/lib/libdnnl.so.3)"; nil when none could be.
    public static var oneDNNLibrary: String? {
        oneDNNAvailable ? "oneDNN \(flex_dnnl_version()) (\(String(cString: flex_dnnl_library())))" : nil
    }

    /// onednn on CPU devices when libdnnl is installed, im2col-gemm elsewhere; $FLEXIFFUSION_CONV wins.
    /// On CPU devices a library named by $FLEXIFFUSION_ONEDNN that cannot be opened is an error, and
    /// on any device an unknown $FLEXIFFUSION_ONEDNN_LAYOUT or $FLEXIFFUSION_ATTENTION.
    public static func `default`(for device: DeviceInfo,
                                 environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ConvolutionPath {
        _ = try EngineEnvironment.oneDNNLayout.choice(OneDNNLayoutMode.self, in: environment)
        _ = try EngineEnvironment.attention.choice(AttentionPath.self, in: environment)
        if let p = try EngineEnvironment.convolution.choice(ConvolutionPath.self, in: environment) {
            try p.check(for: device)
            return p
        }
        if device.kind == .cpu, EngineEnvironment.oneDNN.value(in: environment) != nil, !oneDNNAvailable {
            // A library the user named is not silently replaced by the im2col path.
            throw OpenCLError(call: "convolution path selection", detail: String(cString: flex_dnnl_error()))
        }
        return device.kind == .cpu && oneDNNAvailable ? .oneDNN : .im2colGemm
    }

    /// Throws unless the path can run on `device`.
    public func check(for device: DeviceInfo) throws {
        if self == .implicitGemm && device.maxWorkGroupSize < 256 {
            throw OpenCLError(call: "convolution path selection",
                              detail: "implicit-gemm needs work-groups of 256 work-items; \(device.name) allows \(device.maxWorkGroupSize)")
        }
        guard self == .oneDNN else { return }
        if device.kind != .cpu {
            throw OpenCLError(call: "convolution path selection",
                              detail: "onednn needs a CPU device (its buffers are mapped on the host); \(device.name) is a \(device.kind)")
        }
        if !Self.oneDNNAvailable {
            throw OpenCLError(call: "convolution path selection", detail: String(cString: flex_dnnl_error()))
        }
    }
}

/// One oneDNN convolution primitive, built for a fixed shape.
public final class HostConvolution {
    let handle: OpaquePointer
    /// oneDNN's name for the implementation it chose (e.g. "x64:gemm:jit", "jit:avx512_core").
    let implementation: String
    /// Bytes of weights in the primitive's own layout (0: it reads OIHW as given).
    let weightsBytes: Int

    init(_ key: HostConvolutionKey) throws {
        let s = key.shape
        var impl = [CChar](repeating: 0, count: 128)
        guard let h = flex_conv_create(Int32(s.batch), Int32(s.inChannels), Int32(s.height), Int32(s.width),
                                       Int32(s.outChannels), Int32(s.kernelHeight), Int32(s.kernelWidth), Int32(s.stride),
                                       Int32(s.padTop), Int32(s.padLeft), Int32(s.padBottom), Int32(s.padRight),
                                       key.hasBias ? 1 : 0, key.inputLayout.oneDNNCode, key.outputLayout.oneDNNCode,
                                       key.blocked ? 1 : 0, key.bfloat16 ? 1 : 0, &impl, Int32(impl.count)) else {
            throw OpenCLError(call: "oneDNN convolution", detail: String(cString: flex_dnnl_error()))
        }
        handle = h
        implementation = String(cString: impl)
        weightsBytes = flex_conv_weights_bytes(h)
    }
    deinit { flex_conv_destroy(handle) }

    /// `w`: the weights in the primitive's layout (`PreparedWeights`), or OIHW when `weightsBytes` is 0.
    func callAsFunction(_ x: UnsafePointer<Float>, _ w: UnsafeRawPointer, _ b: UnsafePointer<Float>?,
                        _ y: UnsafeMutablePointer<Float>) throws {
        if flex_conv_execute(handle, x, w, b, y) != 0 {
            throw OpenCLError(call: "oneDNN convolution", detail: String(cString: flex_dnnl_error()))
        }
    }
}

/// A weight buffer's values in another layout or type — a convolution primitive's layout, a bf16
/// GEMM's copy — made once at its first use (weights are not written after they are first used).
/// Dropped when the buffer is gone.
final class PreparedWeights {
    weak var source: DeviceBuffer<Float>?
    let bytes: UnsafeMutableRawPointer

    init(_ source: DeviceBuffer<Float>, count: Int) {
        self.source = source
        bytes = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 64)
    }
    deinit { bytes.deallocate() }
}

struct PreparedWeightsKey: Hashable {
    let buffer: ObjectIdentifier
    let convolution: HostConvolutionKey
}

extension ComputeStream {
    /// Builds the oneDNN primitive for `shape` now (when that is the path), so that the first
    /// convolution of that shape does not.
    public func prepareConvolution(_ shape: Conv2dShape, hasBias: Bool, inputLayout: ActivationLayout = .nchw,
                                   outputLayout: ActivationLayout = .nchw) throws {
        if backends.placement(.convolution) == .host {
            _ = try hostConvolution(HostConvolutionKey(shape: shape, hasBias: hasBias, blocked: backends.blockedConvolutions,
                                                       bfloat16: backends.bfloat16Convolutions, inputLayout: inputLayout, outputLayout: outputLayout))
        }
    }

    func hostConvolution(_ key: HostConvolutionKey) throws -> HostConvolution {
        if let c = hostConvolutions[key] { return c }
        let c = try HostConvolution(key)
        hostConvolutions[key] = c
        return c
    }

    /// `weight` in `conv`'s layout (reordered at its first use; entries of freed buffers dropped then).
    func preparedWeights(_ weight: DeviceBuffer<Float>, mapped: UnsafePointer<Float>, for conv: HostConvolution,
                         key: HostConvolutionKey) throws -> UnsafeRawPointer {
        let k = PreparedWeightsKey(buffer: ObjectIdentifier(weight), convolution: key)
        if let p = preparedWeights[k], p.source === weight { return UnsafeRawPointer(p.bytes) }
        preparedWeights = preparedWeights.filter { $0.value.source != nil }
        let p = PreparedWeights(weight, count: conv.weightsBytes)
        if flex_conv_prepare_weights(conv.handle, mapped, p.bytes) != 0 {
            throw OpenCLError(call: "oneDNN convolution", detail: String(cString: flex_dnnl_error()))
        }
        preparedWeights[k] = p
        return UnsafeRawPointer(p.bytes)
    }

    /// conv2d through oneDNN on the mapped buffers, the input and output in the given layouts.
    func conv2dOnHost(_ input: DeviceBuffer<Float>, weight: DeviceBuffer<Float>, bias: DeviceBuffer<Float>?,
                      output: DeviceBuffer<Float>, shape: Conv2dShape, inputLayout: ActivationLayout, outputLayout: ActivationLayout) throws {
        let key = HostConvolutionKey(shape: shape, hasBias: bias != nil, blocked: backends.blockedConvolutions,
                                     bfloat16: backends.bfloat16Convolutions, inputLayout: inputLayout, outputLayout: outputLayout)
        let conv = try hostConvolution(key)
        try onHost("conv \(shape.kernelHeight)×\(shape.kernelWidth) s\(shape.stride) \(shape.inChannels)→\(shape.outChannels) \(shape.height)×\(shape.width) (onednn\(key.bfloat16 ? " bf16" : ""))",
                   [input, weight, output] + (bias.map { [$0] } ?? []), timeMapping: true) { p in
            let w = conv.weightsBytes > 0 ? try preparedWeights(weight, mapped: p[1], for: conv, key: key) : UnsafeRawPointer(p[1])
            try conv(p[0], w, bias == nil ? nil : p[3], p[2])
        }
    }
}

struct HostConvolutionKey: Hashable {
    let shape: Conv2dShape
    let hasBias: Bool
    /// The convolution itself in oneDNN's preferred layouts (else NCHW).
    let blocked: Bool
    /// bf16 inputs and weights, f32 accumulation and output (else f32 throughout).
    let bfloat16: Bool
    /// The caller's layouts of the input and output.
    let inputLayout: ActivationLayout, outputLayout: ActivationLayout
}
