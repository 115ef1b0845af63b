// Row softmax on the host (Sources/CHostMath), for CPU devices whose GEMMs already run there: the
// rows split over every core.
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
