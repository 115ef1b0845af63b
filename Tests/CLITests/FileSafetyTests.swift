// Commands never clobber their inputs or each other's outputs, and read a search's results file as
// the search wrote it: in process, through Flexiffusion.execute, as the executable runs them.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport
@testable import FlexiffusionCLI

/// Runs `body` with standard output going to a file, and returns what it printed.
func capturingStandardOutput(_ body: () -> Void) throws -> String {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-stdout-\(UUID().uuidString)")
    fflush(stdout)
    let saved = dup(1), target = open(file.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    dup2(target, 1)
    body()
    fflush(stdout)
    dup2(saved, 1)
    close(saved); close(target)
    defer { try? FileManager.default.removeItem(at: file) }
    return try String(contentsOf: file, encoding: .utf8)
}

@Suite(.serialized) struct FileSafetyTests {
    let dir: URL

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-files-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// Outputs that are inputs or each other, or that replace a search's results, are refused (64)
    /// before any work, and the files stay as they were.
    @Test func outputsNeverClobberInputs() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let results = try Data(contentsOf: repositoryFile("docs/experiments/plans/cpu-race-search5.json"))
        try results.write(to: URL(fileURLWithPath: path("res.json")))
        try Data("a quiet street\n".utf8).write(to: URL(fileURLWithPath: path("p.txt")))
        let cases: [([String], String)] = [
            (["plan", "ddim", "--steps", "10", "--out", path("res.json")], "holds a search's results"),
            (["generate", "--count", "2", "--plan", path("res.json"), "--output-tensor", path("res.json")], "which this command reads"),
            (["generate", "--steps", "2", "--count", "2", "--out", path("x.jpg")], "give it a .png name"),
            (["generate", "--steps", "2", "--count", "2", "--out", "-"], "give a file name"),
            (["search", "--speedup", "2", "--out", path("s.json"), "--svg", path("s.json")], "are the same file"),
            (["search", "--speedup", "2", "--out", path("s.json"), "--svg", path("nodir/s.svg")], "does not exist"),
            (["search", "--speedup", "2", "--out", path("s.json"), "--latency-table", path("s.json")], "which this command reads"),
            (["fid", path("res.json"), "--save-stats", path("res.json")], "which this command reads"),
            (["generate", "--steps", "2", "--count", "2", "--out-dir", path("p.txt")], "is a file, not a folder"),
            (["generate", "--steps", "2", "--count", "2", "--out", path(String(repeating: "n", count: 240) + ".png")], "give one of at most 230"),
        ]
        for (arguments, fragment) in cases {
            let ending = Flexiffusion.execute(arguments)
            #expect(ending.code == 64 && ending.message.contains(fragment), "\(arguments): \(ending.code) «\(ending.message.prefix(300))»")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path("res.json"))) == results)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["p.txt", "res.json"])
    }

    /// `fid` takes sets of two sizes (each resized to the feature network), skips hidden files (macOS's
    /// "._" forks), refuses a folder named like a PNG by name, and a set against itself is 0, never below.
    @Test func fidTakesSetsAsTheHelpSays() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededGenerator(seed: freshSeed())
        func folder(_ name: String, count: Int, channels: Int, side: Int) throws -> String {
            let f = path(name)
            try FileManager.default.createDirectory(atPath: f, withIntermediateDirectories: true)
            for i in 0..<count {
                let px = (0..<(side * side * channels)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                try PNG.encode(width: side, height: side, channels: channels, pixels: px).write(to: URL(fileURLWithPath: f + String(format: "/%05d.png", i)))
            }
            return f
        }
        let grey = try folder("grey", count: 6, channels: 1, side: 28), rgb = try folder("rgb", count: 5, channels: 3, side: 16)
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: grey + "/._00000.png"))
        func fid(_ a: String, _ b: String) throws -> (Int32, Double?, String) {
            var ending = Flexiffusion.Ending(code: -1, message: "")
            let out = try capturingStandardOutput { ending = Flexiffusion.execute(["fid", a, b, "--json"]) }
            let value = jsonObject(in: out)?["fid"] as? Double
            return (ending.code, value, ending.message)
        }
        let mixed = try fid(grey, rgb)
        #expect(mixed.0 == 0 && (mixed.1 ?? -1) > 0, "\(mixed)")
        let same = try fid(grey, grey)
        #expect(same.0 == 0 && same.1 == 0, "\(same)")
        try FileManager.default.createDirectory(atPath: rgb + "/dir.png", withIntermediateDirectories: true)
        let folderNamedPNG = try fid(grey, rgb)
        #expect(folderNamedPNG.0 == 1 && folderNamedPNG.2.contains("dir.png is not a regular file"), "\(folderNamedPNG)")
    }

    /// Files read wrong are named with what to do (exit code 1): a search stopped before its first
    /// generation, a number too large for its field, a symlink loop among PNGs, a FIFO given as images.
    @Test func filesReadWrongSayWhatToDo() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(#"{"format": "flexiffusion-search", "version": 2, "state": {"records": {"a": {}, "b": {}}}}"#.utf8).write(to: URL(fileURLWithPath: path("stopped.json")))
        try Data(#"{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2, "eta": 1e300}, "actions": ["full", "full"]}"#.utf8)
            .write(to: URL(fileURLWithPath: path("eta.json")))
        try FileManager.default.createDirectory(atPath: path("pngs"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: path("pngs/loop.png"), withDestinationPath: path("pngs/loop.png"))
        mkfifo(path("fifo"), 0o644)
        let cases: [([String], String)] = [
            (["plan", "show", path("stopped.json")], "stopped before its first generation was chosen (2 plans scored"),
            (["plan", "show", path("eta.json")], "eta: 1e+300 does not fit this field (it takes a smaller number)"),
            (["fid", path("pngs"), path("pngs")], "Too many levels of symbolic links"),
            (["fid", path("fifo"), path("fifo")], "is not a regular file (a FIFO"),
            (["fid", "/" + String(repeating: "d/", count: 2100) + "x.png", path("pngs")], "File name too long"),
            (["generate", "--steps", "2", "--count", "2", "--out-dir", "/proc/flexiffusion-no-such-folder"], "cannot create --out-dir /proc/flexiffusion-no-such-folder:"),
        ]
        for (arguments, fragment) in cases {
            let ending = Flexiffusion.execute(arguments)
            #expect(ending.code == 1 && ending.message.contains(fragment), "\(arguments): \(ending.code) «\(ending.message.prefix(300))»")
        }
    }

    /// `plan show` of a results file prices its best plan as the search did: its latencies, its teacher.
    @Test func planShowReadsAResultsFileAsItsSearchPricedIt() throws {
        let file = try repositoryFile("docs/experiments/plans/cpu-race-search5.json")
        let report = try SearchReportFields(file)
        var ending = Flexiffusion.Ending(code: -1, message: "")
        let printed = try capturingStandardOutput { ending = Flexiffusion.execute(["plan", "show", file.path, "--json"]) }
        #expect(ending.code == 0, "\(ending.message)")
        let json = try #require(jsonObject(in: printed))
        let predicted = try #require(json["predicted"] as? [String: Any])
        #expect(predicted["device"] as? String == report.device && predicted["batch"] as? Int == report.batch)
        let speedup = try #require(predicted["speedup_vs_teacher"] as? Double)
        #expect(abs(speedup - report.bestSpeedup) < 1e-9 * report.bestSpeedup, "\(speedup) against the search's \(report.bestSpeedup)")
        #expect(json["teacher"] as? String == report.teacher)
    }
}

/// The JSON object a command printed in `text` (pretty, from a "{" line to a "}" line, or on one
/// line), skipping what other suites running beside it may have printed.
func jsonObject(in text: String) -> [String: Any]? {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for (i, line) in lines.enumerated() where line.hasPrefix("{") {
        let candidates = line.hasSuffix("}") ? [line] : lines[i...].firstIndex(of: "}").map { [lines[i...$0].joined(separator: "\n")] } ?? []
        for c in candidates { if let o = try? JSONSerialization.jsonObject(with: Data(c.utf8)) as? [String: Any] { return o } }
    }
    return nil
}

/// A file of the repository.
func repositoryFile(_ relative: String) throws -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../\(relative)").standardizedFileURL
}

/// What `plan show` should print for a results file, read from its JSON.
struct SearchReportFields {
    let device: String, batch: Int, bestSpeedup: Double, teacher: String
    init(_ url: URL) throws {
        let raw = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        device = try #require(raw["device"] as? String)
        batch = try #require(raw["batch"] as? Int)
        bestSpeedup = try #require((raw["best"] as? [String: Any])?["predicted_speedup"] as? Double)
        let sampler = try #require(raw["sampler"] as? [String: Any])
        teacher = PlanSampler(scheduler: .ddim, steps: try #require(sampler["steps"] as? Int)).description
        #expect(sampler["scheduler"] as? String == "ddim")
    }
}
