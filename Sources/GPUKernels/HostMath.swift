// Row softmax and GroupNorm on the host (Sources/CHostMath), for CPU devices whose GEMMs already run
// there (buffers mapped zero-copy): the rows, or the (sample, group) pairs, split over every core.
import CHostMath
import Dispatch
import Foundation

/// Runs `body` concurrently on `parts` contiguous slices of 0..<count (at least one, at most `count`);
/// every boundary but the end is a multiple of `align`. Pointers cross into `body` as bit patterns.
private func splitOverCores(count: Int, parts: Int, align: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
    let parts = max(1, min(parts, count))
    DispatchQueue.concurrentPerform(iterations: parts) { part in
        let start = count * part / parts / align * align
        let end = part == parts - 1 ? count : count * (part + 1) / parts / align * align
        body(start..<end)
    }
}

private let cores = ProcessInfo.processInfo.activeProcessorCount

enum HostSoftmax {
    /// In-place softmax of `rows` rows of `cols` floats at `p`, on `threads` threads.
    static func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int, threads: Int = cores) {
        let base = UInt(bitPattern: p)
        splitOverCores(count: rows, parts: threads) { r in
            flex_softmax_rows(UnsafeMutablePointer<Float>(bitPattern: base)! + r.lowerBound * cols, r.count, cols)
        }
    }
}

enum HostGroupNorm {
    /// GroupNorm (+ SiLU) of x [batch, channels, spatial] into y (which may be x), on `threads` threads.
    static func groupNorm(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, gamma: UnsafeMutablePointer<Float>,
                          beta: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int, groups: Int, eps: Float, silu: Bool,
                          threads: Int = cores) {
        let (bx, by, bg, bb) = (UInt(bitPattern: x), UInt(bitPattern: y), UInt(bitPattern: gamma), UInt(bitPattern: beta))
        splitOverCores(count: batch * groups, parts: threads) { pairs in
            flex_group_norm(UnsafePointer<Float>(bitPattern: bx)!, UnsafeMutablePointer<Float>(bitPattern: by)!,
                            UnsafePointer<Float>(bitPattern: bg)!, UnsafePointer<Float>(bitPattern: bb)!,
                            pairs.lowerBound, pairs.count, groups, channels / groups, spatial, eps, silu ? 1 : 0)
        }
    }
}

extension HostGroupNorm {
    /// GroupNorm (+ SiLU) of x in nChw{block}c (NHWC: block = channels) into y (which may be x): units
    /// of lcm(channels per group, block) channels of one sample, split over `threads` threads.
    static func groupNormBlocked(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, gamma: UnsafeMutablePointer<Float>,
                                 beta: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int, groups: Int, block: Int,
                                 eps: Float, silu: Bool, threads: Int = cores) {
        let cpg = channels / groups
        var (a, b) = (cpg, block)
        while b != 0 { (a, b) = (b, a % b) }
        let unit = cpg / a * block
        let (bx, by, bg, bb) = (UInt(bitPattern: x), UInt(bitPattern: y), UInt(bitPattern: gamma), UInt(bitPattern: beta))
        splitOverCores(count: batch * channels / unit, parts: threads) { units in
            let work = UnsafeMutablePointer<Double>.allocate(capacity: 3 * unit)
            defer { work.deallocate() }
            flex_group_norm_blocked(UnsafePointer<Float>(bitPattern: bx)!, UnsafeMutablePointer<Float>(bitPattern: by)!,
                                    UnsafePointer<Float>(bitPattern: bg)!, UnsafePointer<Float>(bitPattern: bb)!,
                                    units.lowerBound, units.count, channels, cpg, unit, spatial, block, eps, silu ? 1 : 0, work)
        }
    }
}

enum HostElementwise {
    /// y = (a + b) · scale over `count` values, split over `threads` threads in slices of at least
    /// 16 Ki values, aligned to C's 8-float vectors (y may be a or b).
    static func addScale(_ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                         count: Int, scale: Float, threads: Int = cores) {
        let (ba, bb, by) = (UInt(bitPattern: a), UInt(bitPattern: b), UInt(bitPattern: y))
        splitOverCores(count: count, parts: min(threads, count / 16_384), align: 8) { r in
            flex_add_scale(UnsafePointer<Float>(bitPattern: ba)! + r.lowerBound, UnsafePointer<Float>(bitPattern: bb)! + r.lowerBound,
                           UnsafeMutablePointer<Float>(bitPattern: by)! + r.lowerBound, r.count, scale)
        }
    }

    /// y [N, CA + CB, P] = concat(a [N, CA, P], b [N, CB, P]) along channels: two copies per sample.
    static func concatChannels(_ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                               batch: Int, channelsA: Int, channelsB: Int, spatial: Int) {
        let (na, nb) = (channelsA * spatial, channelsB * spatial)
        for n in 0..<batch {
            (y + n * (na + nb)).update(from: a + n * na, count: na)
            (y + n * (na + nb) + na).update(from: b + n * nb, count: nb)
        }
    }

    /// y [N, C, P] (from element `offset`) = bias[n · batchStride + c], or += it (`add`), over the
    /// (n, c) rows split over `threads` threads.
    static func channelBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int,
                            batchStride: Int, add: Bool, threads: Int = cores) {
        let (by, bb) = (UInt(bitPattern: y), UInt(bitPattern: bias))
        splitOverCores(count: batch * channels, parts: min(threads, batch * channels * spatial / 16_384)) { r in
            flex_channel_bias(UnsafeMutablePointer<Float>(bitPattern: by)!, UnsafePointer<Float>(bitPattern: bb)!, r.lowerBound, r.count,
                              channels, spatial, batchStride, add ? 1 : 0)
        }
    }

    /// Nearest-neighbour 2× upsampling of x [planes, H, W] into y [planes, 2H, 2W], planes split over `threads` threads.
    static func upsampleNearest2x(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int, height: Int, width: Int,
                                  threads: Int = cores) {
        let (bx, by) = (UInt(bitPattern: x), UInt(bitPattern: y))
        splitOverCores(count: planes, parts: min(threads, planes * height * width / 16_384)) { r in
            flex_upsample_nearest2x(UnsafePointer<Float>(bitPattern: bx)!, UnsafeMutablePointer<Float>(bitPattern: by)!, r.lowerBound, r.count,
                                    height, width)
        }
    }

    /// `channelBias`'s add over y in nChw{block}c: the (n, channel block) rows split over `threads` threads.
    static func addChannelBiasBlocked(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafeMutablePointer<Float>, batch: Int, channels: Int,
                                      spatial: Int, block: Int, batchStride: Int, threads: Int = cores) {
        let (by, bb) = (UInt(bitPattern: y), UInt(bitPattern: bias))
        splitOverCores(count: batch * channels / block, parts: min(threads, batch * channels * spatial / 16_384)) { r in
            flex_add_channel_bias_blocked(UnsafeMutablePointer<Float>(bitPattern: by)!, UnsafePointer<Float>(bitPattern: bb)!, r.lowerBound,
                                          r.count, channels, spatial, block, batchStride)
        }
    }

    /// `upsampleNearest2x` of blocked planes x [planes, H, W, block] into y [planes, 2H, 2W, block].
    static func upsampleNearest2xBlocked(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int, height: Int,
                                         width: Int, block: Int, threads: Int = cores) {
        let (bx, by) = (UInt(bitPattern: x), UInt(bitPattern: y))
        splitOverCores(count: planes, parts: min(threads, planes * height * width * block / 16_384)) { r in
            flex_upsample_nearest2x_blocked(UnsafePointer<Float>(bitPattern: bx)!, UnsafeMutablePointer<Float>(bitPattern: by)!,
                                            r.lowerBound, r.count, height, width, block)
        }
    }

    /// NCHW planes [block, P] of x into blocked [P, block] planes of y (`toBlocked`), or back.
    static func reorderBlocked(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int, spatial: Int, block: Int,
                               toBlocked: Bool, threads: Int = cores) {
        let (bx, by) = (UInt(bitPattern: x), UInt(bitPattern: y))
        splitOverCores(count: planes, parts: min(threads, planes * spatial * block / 16_384)) { r in
            flex_reorder_blocked(UnsafePointer<Float>(bitPattern: bx)!, UnsafeMutablePointer<Float>(bitPattern: by)!, r.lowerBound, r.count,
                                 spatial, block, toBlocked ? 1 : 0)
        }
    }

    /// torch.cat along channels in NHWC: a [positions, CA] and b [positions, CB] into y [positions, CA + CB].
    static func concatNHWC(_ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                           positions: Int, channelsA: Int, channelsB: Int, threads: Int = cores) {
        let (ba, bb, by) = (UInt(bitPattern: a), UInt(bitPattern: b), UInt(bitPattern: y))
        splitOverCores(count: positions, parts: min(threads, positions * (channelsA + channelsB) / 16_384)) { r in
            flex_concat_nhwc(UnsafePointer<Float>(bitPattern: ba)!, UnsafePointer<Float>(bitPattern: bb)!, UnsafeMutablePointer<Float>(bitPattern: by)!,
                             r.lowerBound, r.count, channelsA, channelsB)
        }
    }
}
