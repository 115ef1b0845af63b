// Ctrl-C: the first asks the work to stop at its next check, a second ends the process; and the
// exit code of an interrupted run.
import ArgumentParser
import Foundation

/// Ctrl-C: the first asks the work to stop at its next check (`search` at the next evaluation, its
/// results file valid; `generate` at the next step, its outputs removed); a second ends the process.
final class Interrupt: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    private var first = 0.0
    private let source: DispatchSourceSignal

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [unowned self] in
            // (One SIGINT can arrive twice: `timeout -s INT` signals the command and then its process
            // group. Within a second of the first it is the same interrupt.)
            let now = ProcessInfo.processInfo.systemUptime
            self.lock.lock()
            if self.count == 0 { self.first = now }
            if self.count == 0 || now - self.first >= 1 { self.count += 1 }
            let n = self.count
            self.lock.unlock()
            // A second Ctrl-C leaves at once. _exit, not exit: the main thread may be inside OpenCL or
            // oneDNN, and exit's destructors would run beside it — the heap corruption seen in a few
            // interrupted runs (issue 22, item 6). The results file is written by rename, so it holds
            // every plan scored before.
            if n > 1 {
                FileHandle.standardError.write(Data("\ninterrupted again: exiting now\n".utf8))
                _exit(130)
            }
        }
        source.resume()
    }

    var requested: Bool { lock.lock(); defer { lock.unlock() }; return count > 0 }
}

/// Ctrl-C during generation stops at the next step; the outputs written so far are removed (a run
/// writes all or nothing), and the command exits with 130.
func interruptedRun() -> ExitCode {
    FileHandle.standardError.write(Data("interrupted: nothing written\n".utf8))
    return ExitCode(130)
}
