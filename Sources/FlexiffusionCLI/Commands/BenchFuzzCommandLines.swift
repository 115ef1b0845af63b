// `flexiffusion bench fuzz --command-lines`: random command lines — every command, its options (read
// off its own help) with edge values (huge, negative, NaN, empty, Unicode, lists, paths to good and bad
// files) — run in process as the executable runs them, up to the first use of a device (making a
// ComputeStream is refused), so that every check before the work runs and no work does. Each must end
// with a message and an exit code (0, 1, 64), never trap or hang.
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct CommandLineFuzzer {
    /// The message a command line ends with when it reached a device: its checks passed.
    static let reachedDevice = "fuzz: stopped before the work (the command's checks passed)"

    /// Each command (its words, e.g. ["plan", "show"]) with its options and whether it takes arguments.
    let commands: [(words: [String], options: [String], arguments: Bool)]
    let values: [String]
    private var rng: SplitMix64

    /// Command lines over the commands (but `bench fuzz` itself), with the files of `directory` as values.
    init(seed: UInt64, directory: URL) throws {
        rng = SplitMix64(seed: seed &+ 0xC0FFEE)
        var found: [([String], [String], Bool)] = []
        func walk(_ type: ParsableCommand.Type, _ words: [String]) {
            let sub = type.configuration.subcommands
            if sub.isEmpty {
                guard type != BenchFuzz.self else { return }
                let help = Flexiffusion.helpMessage(for: type, columns: 10_000)
                let options = Set(help.matches(of: try! Regex("--[a-z][a-z0-9-]*")).map { String(help[$0.range]) })
                    .subtracting(["--help", "--version", "--generate-completion-script"]).sorted()
                found.append((words, options, help.contains("ARGUMENTS:")))
            }
            for s in sub { walk(s, words + [s.configuration.commandName ?? "\(s)"]) }
        }
        walk(Flexiffusion.self, [])
        commands = found
        // Files the values may name: a plan, a plan with a key twice, a search results file without a
        // best plan, prompts, a non-JSON file, an empty file, a folder with a PNG, an empty folder.
        func write(_ name: String, _ text: String) throws -> String {
            let path = directory.appendingPathComponent(name).path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        let plan = try write("plan.json", String(decoding: try StepPlan.deepCacheUniform(PlanSampler(steps: 10), interval: 3, branch: 1).jsonData(), as: UTF8.self))
        let twice = try write("twice.json", #"{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2}, "actions": ["full", "full"], "actions": ["full"]}"#)
        let stopped = try write("stopped.json", #"{"format": "flexiffusion-search", "version": 2, "state": {"records": {"a": {}}}}"#)
        let prompts = try write("prompts.txt", "a red kite\r\nan empty street\n\n")
        let junk = try write("junk.json", "not json"), empty = try write("empty.txt", "")
        let pngs = directory.appendingPathComponent("pngs"), nothing = directory.appendingPathComponent("nothing")
        try FileManager.default.createDirectory(at: pngs, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: nothing, withIntermediateDirectories: true)
        try PNG.encode(width: 4, height: 4, channels: 1, pixels: [UInt8](repeating: 128, count: 16)).write(to: pngs.appendingPathComponent("00000.png"))
        values = ["0", "1", "2", "3", "-1", "-5", "7.5", "0.5", "1.5", "nan", "inf", "-inf", "1e308", "1e-320", "9223372036854775807",
                  "-9223372036854775808", "18446744073709551615", "4611686018427387904", "", " ", "x", "🍕", "ddim", "unipc", "pndm",
                  "euler", "dpmsolver++", "trailing", "rfid", "paired", "fid", "gpu", "cpu", "pocl", "fashion", "inception", "999,500",
                  "1200,500", "1,2,3", "4-50", "50-4", "0-0", "3/2", "0/0", "a,b", "unipc3,lms2", "none", "auto",
                  plan, twice, stopped, prompts, junk, empty, pngs.path, nothing.path, "/nonexistent/x", "/dev/null", "-",
                  "out.png", "out.json", "out.safetensors", "dir/out.png", String(repeating: "n", count: 300)]
    }

    private mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(rng.next() % UInt64(n)) }

    /// A random command line.
    mutating func next() -> [String] {
        let c = commands[below(commands.count)]
        var line = c.words
        for _ in 0..<below(7) where !c.options.isEmpty {
            line.append(c.options[below(c.options.count)])
            if below(8) != 0 { line.append(values[below(values.count)]) }
        }
        if c.arguments { for _ in 0..<below(4) { line.insert(values[below(values.count)], at: c.words.count + below(line.count - c.words.count + 1)) } }
        return line
    }
}
