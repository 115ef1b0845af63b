// `flexiffusion bench plans`: plan costs predicted from profiled step latencies against whole plans
// timed on the same sampler (was a unit test; timing belongs in benchmarks).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct BenchPlans: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plans",
        abstract: "Predicted vs measured milliseconds of whole plans (teacher, DeepCache, segment plans).",
        discussion: """
            Each round profiles every step type once (`flexiffusion profile`'s round) and then runs each plan \
            once from the same noise; a plan's prediction is taken from the round just before it, so that the \
            machine's drift falls on both sides of each pair. The table gives medians over --rounds pairs and \
            their range; the cost model is good when predicted / measured stays near 1.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var precisionOptions: PrecisionOptions
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Images per forward pass.") var batch = 8
    @Option(help: "Sampler steps (DDIM).") var steps = 20
    @Option(help: "Rounds (each: a profiling round, then every plan once).") var rounds = 7
    @Option(help: "Plan files to time besides the built-in ones (for --steps DDIM steps).") var plan: [String] = []
    @Flag(help: "Print the table as JSON.") var json = false

    func run() throws {
        guard batch > 0, steps > 0, rounds > 0 else { throw ValidationError("--batch, --steps and --rounds must be positive") }
        let setup = try ModelSetup(modelOptions)
        let stream = try precisionOptions.stream(deviceOptions)
        let pipeline = try GenerationPipeline(unet: setup.unet(stream: stream, batch: batch), schedulerConfiguration: setup.schedulerConfig)
        let sampling = PlanSampler(steps: steps)
        let sampler = try pipeline.sampler(for: sampling)
        let branches = sampler.unet.branchCount
        var plans = [StepPlan.teacher(sampling),
                     try StepPlan.deepCacheUniform(sampling, interval: 3, branch: min(1, branches - 1)),
                     try StepPlan.deepCacheUniform(sampling, interval: 5, branch: branches - 1)]
        if steps >= 4 {
            plans.append(try StepPlan.segments(sampling, intervals: [4, 3, 2, 1].map { min($0, steps / 4) },
                                               branches: [0, 2, 3, 1].map { min($0, branches - 1) }))
        }
        for path in plan {
            let p = try StepPlan.load(from: URL(fileURLWithPath: path), branchCount: branches, schedulerConfiguration: setup.schedulerConfig)
            guard p.sampler == sampling else { throw ValidationError("\(path) is for \(p.sampler), the benchmark runs \(sampling) (--steps)") }
            plans.append(p)
        }
        let profiler = try StepProfiler(sampler: sampler)
        let noise = GenerationNoise(seed: 1)
        func timeRun(_ p: StepPlan) throws -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try pipeline.runBatch(plan: p, noise: noise, batch: 0, count: batch)
            try stream.finish()
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        }
        // Warm-up: compile every kernel the plans and the profiler use.
        _ = try profiler.round()
        for p in plans { _ = try timeRun(p) }
        var pairs = Array(repeating: [(predicted: Double, measured: Double)](), count: plans.count)
        let progress = ProgressLine("bench plans", interval: 5)
        for r in 0..<rounds {
            for (i, p) in plans.enumerated() {
                let round = try profiler.round()
                let predicted = try profiler.latencies(rounds: [round], model: setup.name).cost(of: p).milliseconds
                pairs[i].append((predicted, try timeRun(p)))
            }
            progress.update(r + 1, of: rounds, unit: "rounds")
        }
        progress.finish()
        var table = [["plan", "full/partial/null", "predicted ms", "measured ms", "predicted / measured", "range"]]
        var rows: [[String: Any]] = []
        for (p, pair) in zip(plans, pairs) {
            let ratios = pair.map { $0.predicted / $0.measured }
            let (lo, hi) = spread(ratios)
            table.append([p.description, "\(p.fullSteps)/\(p.partialSteps)/\(p.nullSteps)", String(format: "%.1f", median(pair.map(\.predicted))),
                          String(format: "%.1f", median(pair.map(\.measured))), String(format: "%.3f", median(ratios)), String(format: "%.3f–%.3f", lo, hi)])
            rows.append(["plan": p.description, "predicted_ms": median(pair.map(\.predicted)), "measured_ms": median(pair.map(\.measured)),
                         "ratio": median(ratios), "ratio_min": lo, "ratio_max": hi, "rounds": rounds])
        }
        if json {
            try printJSON(["device": stream.device.name, "batch": batch, "steps": steps, "plans": rows])
        } else {
            print(renderTable(table, rightAlign: [2, 3, 4]))
            print("\(rounds) rounds on \(stream.device.name), batch \(batch), \(sampling); medians")
        }
    }
}
