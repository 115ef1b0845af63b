// How an activation [N, C, H, W] lies in memory. oneDNN's CPU convolutions run in a blocked layout
// (nChw8c on AVX2, nChw16c on AVX-512); with NCHW activations every convolution reordered its input
// and output (about 6 % of the cifar UNet's pass on the 2-core AMD VM). A model whose channel counts
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

    /// Channels per block (1 for NCHW).
    public var block: Int {
        if case .blocked(let b) = self { return b }
        return 1
    }

    public var description: String { self == .nchw ? "nchw" : "nChw\(block)c" }

    /// The values of x [N, C, P] (NCHW) in this layout (the CPU reference of `reorder`).
    public func arrange(_ x: [Float], batch: Int, channels: Int, spatial: Int) -> [Float] {
        let B = block
        guard B > 1 else { return x }
        precondition(channels % B == 0 && x.count == batch * channels * spatial, "\(self) needs whole channel blocks")
        var y = [Float](repeating: 0, count: x.count)
        for n in 0..<batch {
            for c in 0..<channels {
                for p in 0..<spatial {
                    y[((n * channels + c / B * B) * spatial) + p * B + c % B] = x[(n * channels + c) * spatial + p]
                }
            }
        }
        return y
    }

    /// The NCHW values of x [N, C, P] held in this layout.
    public func plain(_ x: [Float], batch: Int, channels: Int, spatial: Int) -> [Float] {
        let B = block
        guard B > 1 else { return x }
        precondition(channels % B == 0 && x.count == batch * channels * spatial, "\(self) needs whole channel blocks")
        var y = [Float](repeating: 0, count: x.count)
        for n in 0..<batch {
            for c in 0..<channels {
                for p in 0..<spatial {
                    y[(n * channels + c) * spatial + p] = x[((n * channels + c / B * B) * spatial) + p * B + c % B]
                }
            }
        }
        return y
    }

    /// Which layout models keep their activations in by default: $FLEXIFFUSION_ONEDNN_LAYOUT =
    /// carried (the default), blocked (NCHW between operations, reordered around each convolution) or plain.
    public static let variable = "FLEXIFFUSION_ONEDNN_LAYOUT"
    /// oneDNN's preferred activation layout on this machine, asked once.
    static let oneDNNPreferred: ActivationLayout = {
        let b = Int(flex_dnnl_preferred_block())
        return b > 1 ? .blocked(b) : .nchw
    }()
    static let carriedByDefault = ProcessInfo.processInfo.environment[variable].map { $0 == "carried" } ?? true
}

extension ComputeStream {
    /// The layout of oneDNN's convolutions here, when a model may carry it between them: oneDNN
    /// convolutions in their preferred layouts (`blockedHostConvolutions`) whose input is nChw8c or
    /// nChw16c, and the other operations on the host (host-blas GEMMs); else NCHW.
    public var convolutionLayout: ActivationLayout {
        guard convolutionPath == .oneDNN, blockedHostConvolutions, gemm.path == .hostBLAS else { return .nchw }
        return ActivationLayout.oneDNNPreferred
    }

    /// The layout a model with these (inner) channel counts keeps its activations in: the blocked
    /// `convolutionLayout` when `carryBlockedLayout` is on and every count is a multiple of its block, else NCHW.
    public func activationLayout(channels: [Int]) -> ActivationLayout {
        let l = convolutionLayout
        guard carryBlockedLayout, l != .nchw, channels.allSatisfy({ $0 % l.block == 0 }) else { return .nchw }
        return l
    }

    /// x [N, C, P] from layout `from` into y in layout `to` (distinct buffers; a copy when they are equal).
    public func reorder(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, from: ActivationLayout, to: ActivationLayout,
                        batch: Int, channels: Int, spatial: Int) throws {
        let n = batch * channels * spatial
        precondition(x.count >= n && y.count >= n && x !== y, "reorder buffers too small or the same")
        if from == to { return try y.copy(from: x, count: n, queue: queue) }
        precondition(from == .nchw || to == .nchw, "reorders go through NCHW")
        let B = max(from.block, to.block)
        precondition(channels % B == 0 && gemm.path == .hostBLAS, "\(from) → \(to) needs whole channel blocks and host operations")
        try onHost("reorder \(from)→\(to) (host)", [x, y]) { p in
            HostElementwise.reorderBlocked(p[0], p[1], planes: batch * channels / B, spatial: spatial, block: B, toBlocked: to != .nchw)
        }
    }
}
