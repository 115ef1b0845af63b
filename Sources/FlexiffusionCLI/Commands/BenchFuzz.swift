// `flexiffusion bench fuzz`: mutation fuzzing of the file readers (FileFuzzer). Each input is written to
// a file and read as the commands read it; a trap or a hang stops the run with the input left on disk
// and its path printed, so that it can be replayed (`--replay FILE --readers R`).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

/// What the signal handler and the watchdog print: prepared before each input (they may not allocate).
nonisolated(unsafe) private var crashNote = [CChar](repeating: 0, count: 1024)
nonisolated(unsafe) private var inputStarted: UInt64 = 0
/// Where the note goes: standard error, or its saved copy while command lines run with it silenced.
nonisolated(unsafe) private var noteDescriptor: Int32 = 2

private func setCrashNote(_ text: String) {
    let bytes = Array(text.utf8CString.prefix(crashNote.count - 1)) + [0]
    crashNote.withUnsafeMutableBufferPointer { p in for (i, b) in bytes.enumerated() { p[i] = b } }
}

private func writeCrashNote(_ prefix: StaticString) {
    _ = prefix.withUTF8Buffer { write(noteDescriptor, $0.baseAddress, $0.count) }
    crashNote.withUnsafeBufferPointer { p in _ = write(noteDescriptor, p.baseAddress, strlen(p.baseAddress!)) }
}

struct BenchFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Mutation fuzzing of the file readers: every mutated file must be read or refused with a message, never trap or hang.",
        discussion: """
            Valid files of each format (safetensors, step plans, model and scheduler configs, IDX, .npz \
            statistics, PNG, latency tables) are mutated at random — bytes, integers, JSON values by key — \
            and read as the commands read them, including what they compute from them (tensor values, \
            every scheduler step, FID of the statistics). Prints, per reader, how many inputs were read, \
            refused with a message, or refused with an error of another kind. A trap or a hang stops the \
            run and names the file holding the input (exit code 70); replay it with --replay. \
            --command-lines fuzzes the options instead: random command lines of every command (its options \
            read off its help, with edge values and paths to good and bad files), each run in process up to \
            its first use of a device; each must end with a message and exit code 0, 1 or 64.
            """)

    @Option(help: ArgumentHelp("Readers, comma-separated: \(FuzzReader.names) (default: all).", valueName: "names"))
    var readers: String?
    @Option(help: "Mutated inputs per reader.") var iterations = 10_000
    @Option(help: "Seed of the mutations (the same seed gives the same inputs).") var seed: UInt64 = 0
    @Option(help: "Seconds one input may take before it counts as a hang.") var timeout = 10.0
    @Option(help: "Folder for the inputs (the one being read is left there after a trap or a hang; default: a temporary folder).")
    var directory: String?
    @Option(help: "Read FILE once with --readers R (one reader) and print what it gives.") var replay: String?
    @Flag(name: .customLong("command-lines"), help: "Fuzz the options: --iterations random command lines, run up to their first use of a device.")
    var commandLines = false
    @Flag(help: "Print the figures as JSON.") var json = false

    func validate() throws {
        guard iterations > 0 else { throw ValidationError("--iterations must be positive") }
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
        let chosen = try chosenReaders()
        if replay != nil && chosen.count != 1 { throw ValidationError("--replay needs one reader (--readers R)") }
    }

    /// The readers --readers names (all without it); an unknown name is an error.
    func chosenReaders() throws -> [FuzzReader] {
        guard let readers else { return FuzzReader.allCases }
        return try readers.split(separator: ",").map { name in
            guard let r = FuzzReader(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("unknown reader \(name) (\(FuzzReader.names))")
            }
            return r
        }
    }

    func run() throws {
        if let replay {
            let fuzzer = try FileFuzzer(reader: try chosenReaders()[0], seed: seed)
            print("\(replay): \(fuzzer.read(replay))")
            return
        }
        setvbuf(stdout, nil, _IOLBF, 0)   // (each reader's line is out before a later trap)
        let dir = directory.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-fuzz-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for sig in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT] {
            signal(sig) { _ in
                // (The runtime's own message, "Fatal error: …", is printed above this.)
                writeCrashNote("\nfuzz: signal while reading an input: ")
                _exit(70)
            }
        }
        let limit = UInt64(timeout * 1e9)
        let watchdog = Thread {
            while true {
                Thread.sleep(forTimeInterval: 0.25)
                let started = inputStarted
                if started != 0, DispatchTime.now().uptimeNanoseconds - started > limit {
                    writeCrashNote("\nfuzz: hang (past --timeout) while reading an input: ")
                    _exit(70)
                }
            }
        }
        watchdog.start()
        var rows: [[String: Any]] = []
        if commandLines {
            rows.append(try fuzzCommandLines(in: dir))
        }
        for reader in try commandLines ? [] : chosenReaders() {
            var fuzzer = try FileFuzzer(reader: reader, seed: seed)
            let path = dir.appendingPathComponent("input-\(reader.rawValue).\(reader.fileExtension)").path
            // The seeds themselves must be read.
            for s in fuzzer.seeds {
                try Data(s.bytes).write(to: URL(fileURLWithPath: path))
                let outcome = fuzzer.read(path)
                if outcome != .accepted {
                    throw ModelError("fuzz: the valid \(reader) seed '\(s.name)' is not read: \(outcome)")
                }
            }
            var accepted = 0, refused = 0, other: [String: Int] = [:], messages = Set<String>(), slowest = 0.0
            let progress = ProgressLine("fuzz \(reader)", interval: 15)
            let t0 = DispatchTime.now().uptimeNanoseconds
            for i in 0..<iterations {
                let (bytes, from) = fuzzer.mutant()
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                setCrashNote("\(reader) reader, input \(i) (a mutation of '\(from)', seed \(seed)): \(path)\n  replay: flexiffusion bench fuzz --readers \(reader) --replay \(path)\n")
                let start = DispatchTime.now().uptimeNanoseconds
                inputStarted = start
                let outcome = fuzzer.read(path)
                inputStarted = 0
                slowest = max(slowest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
                switch outcome {
                case .accepted: accepted += 1
                case .refused(let m):
                    refused += 1
                    messages.insert(String(m.replacingOccurrences(of: path, with: "FILE").prefix(60)))
                case .otherError(let m): other[String(m.prefix(160)), default: 0] += 1
                }
                if i % 200 == 199 || i == iterations - 1 { progress.update(i + 1, of: iterations, unit: "inputs") }
            }
            progress.finish()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let otherCount = other.values.reduce(0, +)
            rows.append(["reader": reader.rawValue, "inputs": iterations, "accepted": accepted, "refused": refused, "other_errors": otherCount,
                         "distinct_messages": messages.count, "slowest_ms": slowest, "seconds": seconds])
            if !json {
                print(reader.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%6d inputs: %6d read, %6d refused with a message (%d distinct), %d other errors; slowest %.1f ms, %.1f s",
                             iterations, accepted, refused, messages.count, otherCount, slowest, seconds))
                for (m, n) in other.sorted(by: { $0.value > $1.value }).prefix(5) { print("    other error ×\(n): \(m)") }
            }
        }
        if directory == nil { try? FileManager.default.removeItem(at: dir) }
        if json { try printJSON(["seed": seed, commandLines ? "command_lines" : "readers": rows]) }
        print(json ? "" : "no trap, no hang (seed \(seed))", terminator: json ? "" : "\n")
    }

    /// `--iterations` random command lines in `dir` (their outputs land there), standard output and
    /// error silenced; a trap or hang stops the run naming the line (as for a file).
    func fuzzCommandLines(in dir: URL) throws -> [String: Any] {
        var fuzzer = try CommandLineFuzzer(seed: seed, directory: dir)
        let here = FileManager.default.currentDirectoryPath
        guard FileManager.default.changeCurrentDirectoryPath(dir.path) else { throw ModelError("cannot enter \(dir.path)") }
        ComputeStream.refusal = CommandLineFuzzer.reachedDevice
        let savedOut = dup(1), savedError = dup(2), null = open("/dev/null", O_WRONLY)
        noteDescriptor = savedError
        let progress = ProgressLine("fuzz command lines", interval: 15)
        var ran = 0, reached = 0, refused = 0, other: [String: Int] = [:], messages = Set<String>(), slowest = 0.0
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer {
            fflush(stdout); dup2(savedOut, 1); dup2(savedError, 2); close(savedOut); close(savedError); close(null)
            noteDescriptor = 2; ComputeStream.refusal = nil
            _ = FileManager.default.changeCurrentDirectoryPath(here)
        }
        for i in 0..<iterations {
            let line = fuzzer.next()
            let shown = line.map { $0.isEmpty || $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
            setCrashNote("command line \(i) (seed \(seed)): flexiffusion \(shown)\n")
            fflush(stdout); dup2(null, 1); dup2(null, 2)
            let start = DispatchTime.now().uptimeNanoseconds
            inputStarted = start
            let ending = Flexiffusion.execute(line)
            inputStarted = 0
            fflush(stdout); dup2(savedOut, 1); dup2(savedError, 2)
            slowest = max(slowest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            if ending.message.contains(CommandLineFuzzer.reachedDevice) { reached += 1 }
            else if ending.code == 0 { ran += 1 }
            else if [1, 64].contains(ending.code) && !ending.message.isEmpty {
                refused += 1
                messages.insert(String((ending.message.split(separator: "\n").first ?? "").prefix(50)))
            } else { other["exit code \(ending.code): \(ending.message.prefix(120))", default: 0] += 1 }
            if i % 200 == 199 || i == iterations - 1 { progress.update(i + 1, of: iterations, unit: "lines") }
        }
        progress.finish()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9, otherCount = other.values.reduce(0, +)
        if !json {
            print(String(format: "command lines %6d: %6d ran, %6d reached a device (checks passed), %6d refused with a message (%d distinct), %d other; slowest %.1f ms, %.1f s",
                         iterations, ran, reached, refused, messages.count, otherCount, slowest, seconds))
            for (m, n) in other.sorted(by: { $0.value > $1.value }).prefix(5) { print("    other ×\(n): \(m)") }
        }
        return ["inputs": iterations, "ran": ran, "reached_device": reached, "refused": refused, "other": otherCount,
                "distinct_messages": messages.count, "commands": fuzzer.commands.count, "slowest_ms": slowest, "seconds": seconds]
    }
}
