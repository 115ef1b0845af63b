// Row softmax and GroupNorm on the host (Sources/CHostMath), for CPU devices whose GEMMs already run
// there (buffers mapped zero-copy): the rows, or the (sample, group) pairs, split over every core.
import CHostMath
import Dispatch
import Foundation

enum HostSoftmax {
    /// In-place softmax of `rows` rows of `cols` floats at `p`, on `threads` threads.
    static func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                            threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        let parts = max(1, min(threads, rows))
        let base = UInt(bitPattern: p)
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let start = rows * part / parts, end = rows * (part + 1) / parts
            flex_softmax_rows(UnsafeMutablePointer<Float>(bitPattern: base)! + start * cols, end - start, cols)
        }
    }
}

enum HostGroupNorm {
    /// GroupNorm (+ SiLU) of x [batch, channels, spatial] into y (which may be x), on `threads` threads.
    static func groupNorm(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, gamma: UnsafeMutablePointer<Float>,
                          beta: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int, groups: Int, eps: Float, silu: Bool,
                          threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        let pairs = batch * groups, parts = max(1, min(threads, pairs))
        let (bx, by, bg, bb) = (UInt(bitPattern: x), UInt(bitPattern: y), UInt(bitPattern: gamma), UInt(bitPattern: beta))
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let start = pairs * part / parts, end = pairs * (part + 1) / parts
            flex_group_norm(UnsafePointer<Float>(bitPattern: bx)!, UnsafeMutablePointer<Float>(bitPattern: by)!,
                            UnsafePointer<Float>(bitPattern: bg)!, UnsafePointer<Float>(bitPattern: bb)!,
                            start, end - start, groups, channels / groups, spatial, eps, silu ? 1 : 0)
        }
    }
}

enum HostElementwise {
    /// y = (a + b) · scale over `count` values, split over `threads` threads (y may be a or b).
    static func addScale(_ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                         count: Int, scale: Float, threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        let parts = max(1, min(threads, count / 16_384))
        let (ba, bb, by) = (UInt(bitPattern: a), UInt(bitPattern: b), UInt(bitPattern: y))
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let start = count * part / parts / 8 * 8, end = part == parts - 1 ? count : count * (part + 1) / parts / 8 * 8
            flex_add_scale(UnsafePointer<Float>(bitPattern: ba)! + start, UnsafePointer<Float>(bitPattern: bb)! + start,
                           UnsafeMutablePointer<Float>(bitPattern: by)! + start, end - start, scale)
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
}
