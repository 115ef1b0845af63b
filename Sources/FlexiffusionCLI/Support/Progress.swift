// Progress of long commands on standard error: a bar redrawn in place on a terminal, and plain lines
// (at most one every few seconds, and the last) when standard error is piped or a file.
import Foundation

final class ProgressLine {
    let label: String
    let interactive = isatty(2) != 0
    let start = DispatchTime.now().uptimeNanoseconds
    /// Seconds between plain lines when not on a terminal.
    let interval: Double
    private var lastLine = -Double.infinity
    private var drawn = false
    /// The first update's time and count: the rate is measured from there, so that start-up (kernels
    /// compiled, a model loaded) does not make the first ETAs hours long.
    private var first: (time: Double, done: Int)?

    init(_ label: String, interval: Double = 10) { self.label = label; self.interval = interval }
    var elapsed: Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

    /// `done` of `total` units (`unit` names them: "steps", "images"), with the rate and an ETA.
    func update(_ done: Int, of total: Int, unit: String = "steps", note: String = "") {
        let t = elapsed
        if first == nil { first = (t, done) }
        let since = (time: t - first!.time, done: done - first!.done)
        // (No rate before a second update: the first may come right after the line was made.)
        let rate = since.done > 0 && since.time > 0 ? Double(since.done) / since.time : nil
        let eta = rate.flatMap { since.time > 0.5 ? Double(total - done) / $0 : nil }
        let figures = String(format: "%ld/%ld %@", done, total, unit) + (rate.map { String(format: "  %.1f %@/s", $0, unit) } ?? "")
            + (eta.map { String(format: "  ETA %.0f s", $0) } ?? "") + (note.isEmpty ? "" : "  " + note)
        if interactive {
            let width = 24, filled = width * done / max(1, total)
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            write("\r\u{1B}[K\(label) \(bar) \(figures)")
            drawn = true
        } else if t - lastLine >= interval || done == total {
            lastLine = t
            write("\(label): \(figures)\n")
        }
    }

    /// Ends the bar's line on a terminal.
    func finish() { if interactive && drawn { write("\n"); drawn = false } }

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}
