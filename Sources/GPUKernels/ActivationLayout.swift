// How an activation [N, C, H, W] lies in memory. oneDNN's CPU convolutions run in a blocked layout
// (oneDNN 2: nChw8c on AVX2, nChw16c on AVX-512; oneDNN 3's brgemm kernels: NHWC); with NCHW
// activations every convolution reordered its input and output (about 6 % of the cifar UNet's pass
// on the 2-core AMD VM). A model whose channel counts
// are multiples of the block keeps its activations blocked between convolutions instead, and the
// host operations between them (GroupNorm, the channel bias, concatenation, upsampling, residual
// adds) work on that layout directly.
import CHostDNN
import Foundation

public enum ActivationLayout: Hashable, Sendable, CustomStringConvertible {
    /// [N, C, H, W].
    case nchw
    /// nChw{B}c: [N, C/B, H, W, B], the B channels of a block interleaved at every position (C a multiple of B).
    case blocked(Int)
    /// [N, H, W, C] (channels last; C a multiple of 8 here).
    case nhwc

    public var description: String {
        switch self {
        case .nchw: return "nchw"
        case .blocked(let b): return "nChw\(b)c"
        case .nhwc: return "nhwc"
        }
    }

    /// Whether `channels` fit this layout: whole blocks, or whole 8-float vectors in NHWC.
    public func holds(channels: Int) -> Bool {
        switch self {
        case .nchw: return true
        case .blocked(let b): return channels % b == 0
        case .nhwc: return channels % 8 == 0
        }
    }

    /// The channel block the host operations see: NHWC is nChw{C}c, NCHW nChw1c.
    func hostBlock(channels: Int) -> Int {
        switch self {
        case .nchw: return 1
        case .blocked(let b): return b
        case .nhwc: return channels
        }
    }

    /// How HostDNN names it: 0 NCHW, 8 or 16 nChw8c / nChw16c, -1 NHWC.
    var oneDNNCode: Int32 {
        switch self {
        case .nchw: return 0
        case .blocked(let b): return Int32(b)
        case .nhwc: return -1
        }
    }

    /// The index of element (n, c, p) of [N, C, P] in this layout.
    func index(n: Int, c: Int, p: Int, channels C: Int, spatial P: Int) -> Int {
        let B = hostBlock(channels: C)
        return (n * C + c / B * B) * P + p * B + c % B
    }

    /// The values of x [N, C, P] (NCHW) in this layout (the CPU reference of `reorder`).
    public func arrange(_ x: [Float], batch: Int, channels: Int, spatial: Int) -> [Float] {
        permute(x, batch: batch, channels: channels, spatial: spatial, intoLayout: true)
    }

    /// The NCHW values of x [N, C, P] held in this layout.
    public func plain(_ x: [Float], batch: Int, channels: Int, spatial: Int) -> [Float] {
        permute(x, batch: batch, channels: channels, spatial: spatial, intoLayout: false)
    }

    private func permute(_ x: [Float], batch: Int, channels: Int, spatial: Int, intoLayout: Bool) -> [Float] {
        precondition(holds(channels: channels) && x.count == batch * channels * spatial, "\(self) does not hold \(channels) channels")
        var y = [Float](repeating: 0, count: x.count)
        for n in 0..<batch {
            for c in 0..<channels {
                for p in 0..<spatial {
                    let (nchw, here) = ((n * channels + c) * spatial + p, index(n: n, c: c, p: p, channels: channels, spatial: spatial))
                    if intoLayout { y[here] = x[nchw] } else { y[nchw] = x[here] }
                }
            }
        }
        return y
    }

    /// oneDNN's preferred activation layout on this machine, asked once.
    static let oneDNNPreferred: ActivationLayout = {
        guard ConvolutionPath.oneDNNAvailable else { return .nchw }
        switch flex_dnnl_preferred_block() {
        case -1: return .nhwc
        case let b where b > 1: return .blocked(Int(b))
        default: return .nchw
        }
    }()
}

/// Where activations lie around oneDNN's convolutions, $FLEXIFFUSION_ONEDNN_LAYOUT: carried (the
/// default: the blocked layout kept between convolutions, `Backends.activationLayout(channels:)`),
/// blocked (NCHW between operations, reordered around each convolution) or plain (NCHW throughout,
/// `Backends.blockedConvolutions` off).
public enum OneDNNLayoutMode: String, CaseIterable, Sendable {
    case carried, blocked, plain

    /// The process's choice; an unknown value is refused by `ConvolutionPath.default(for:)`.
    public static let chosen = (try? EngineEnvironment.oneDNNLayout.choice(OneDNNLayoutMode.self)) ?? .carried
}

extension ComputeStream {
    /// x [N, C, P] from layout `from` into y in layout `to` (distinct buffers; a copy when they are equal).
    public func reorder(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, from: ActivationLayout, to: ActivationLayout,
                        batch: Int, channels: Int, spatial: Int) throws {
        let n = batch * channels * spatial
        precondition(x.count >= n && y.count >= n && x !== y, "reorder buffers too small or the same")
        if from == to { return try y.copy(from: x, count: n, queue: queue) }
        precondition(from == .nchw || to == .nchw, "reorders go through NCHW")
        let other = from == .nchw ? to : from, B = other.hostBlock(channels: channels)
        precondition(backends.supports(.reorder, layout: other, channels: channels), "\(from) → \(to) needs whole channel blocks and host operations")
        try onHost("reorder \(from)→\(to) (host)", [x, y]) { p in
            HostElementwise.reorderBlocked(p[0], p[1], planes: batch * channels / B, spatial: spatial, block: B, toBlocked: to != .nchw)
        }
    }
}
