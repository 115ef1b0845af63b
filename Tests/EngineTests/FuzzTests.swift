// The file readers under mutation (FileFuzzer; `flexiffusion bench fuzz` runs ≥ 10,000 per reader):
// a few hundred mutations of each format in CI, and the inputs the fuzzer found traps with, each now
// refused with a message. A trap here ends the test process: that is the failure.
@testable import Engine
import Foundation
import Testing

@Suite struct FuzzTests {
    static let directory: URL = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-fuzz-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }()

    func path(_ name: String) -> String { Self.directory.appendingPathComponent(name).path }

    @Test(arguments: FuzzReader.allCases)
    func mutationsAreReadOrRefusedWithAMessage(_ reader: FuzzReader) throws {
        var fuzzer = try FileFuzzer(reader: reader, seed: 99)
        let file = path("input-\(reader).\(reader.fileExtension)")
        for s in fuzzer.seeds {
            try Data(s.bytes).write(to: URL(fileURLWithPath: file))
            #expect(fuzzer.read(file) == .accepted, "seed \(s.name) of \(reader)")
        }
        var refused = 0, distinct = Set<[UInt8]>()
        for _ in 0..<300 {
            let (bytes, _) = fuzzer.mutant()
            distinct.insert(bytes)
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            switch fuzzer.read(file) {
            case .accepted: break
            case .refused(let m): refused += 1; #expect(!m.isEmpty)
            case .otherError(let m): Issue.record("\(reader): an error that is not a ModelError: \(m)")
            }
        }
        // The mutations vary and most break the file (else the fuzzer tests nothing).
        #expect(distinct.count > 200 && refused > 100, "\(reader): \(distinct.count) distinct inputs, \(refused) refused")
    }

    /// Inputs that trapped before the fix (found by `bench fuzz`).
    @Test func foundInputsAreRefused() throws {
        let folder = try ModelFolder(path: try DefaultModel.folder())
        let scheduler = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.schedulerConfigURL!)) as! [String: Any]
        var cases: [(FuzzReader, String, [UInt8], String)] = []
        func schedulerCase(_ edit: [String: Any], _ needle: String) throws {
            let json = try JSONSerialization.data(withJSONObject: scheduler.merging(edit) { $1 })
            cases.append((.config, "scheduler \(edit)", [UInt8](json), needle))
        }
        try schedulerCase(["beta_start": 1.5], "beta_start = 1.5")
        try schedulerCase(["beta_start": 0.999999], "ᾱ")               // ᾱ underflows to 0
        try schedulerCase(["beta_start": 1e-300], "beta_start")         // 0 in float32
        try schedulerCase(["steps_offset": Int.max], "steps_offset")
        try schedulerCase(["num_train_timesteps": 1_000_000_000], "num_train_timesteps")
        let plan = #"{"format": "flexiffusion-search", "version": 1, "best_plan": 3}"#
        cases.append((.plan, "best_plan a number", Array(plan.utf8), "best_plan is not a step plan"))
        var png = [UInt8](PNG.encode(width: 2, height: 2, channels: 1, pixels: [1, 2, 3, 4]))
        png.replaceSubrange(16..<24, with: [0xFF, 0, 0, 0xFF, 0xFF, 0, 0, 0])
        cases.append((.png, "4278190335×4278190080 PNG", png, "beyond what this reader takes"))
        let npy = NumPy.npy(descr: "<f8", fortranOrder: "False", shape: "(4611686018427387904, 4)", data: Array(repeating: 0, count: 24))
        cases.append((.npz, "npy shape product beyond 2^63", NumPy.zip([("mu.npy", npy), ("sigma.npy", npy)], deflate: false), "bytes of data for shape"))
        for (reader, what, bytes, needle) in cases {
            let file = path("found.\(reader.fileExtension)")
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            let outcome = try FileFuzzer(reader: reader, seed: 0).read(file)
            if case .refused(let m) = outcome { #expect(m.contains(needle), "\(what): \(m)") } else { Issue.record("\(what): \(outcome)") }
        }
        // A scheduler whose leading spacing and steps_offset pass the training steps: refused (diffusers indexes out of range).
        var c = SchedulerConfiguration()
        c.numTrainTimesteps = 2; c.stepsOffset = 1; c.timestepSpacing = .leading
        for kind in [SchedulerKind.ddim, .ddpm, .pndm] {
            #expect(throws: ModelError.self, "\(kind)") { _ = try PlanSampler(scheduler: kind, steps: 2).scheduler(configuration: c) }
        }
    }
}
