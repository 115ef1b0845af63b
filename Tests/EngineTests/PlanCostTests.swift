// Plan cost prediction from measured step latencies: within 15 % of the measured latency of whole
// plans on the default model. Each plan run follows a profiling round of its own, and the
// prediction error is taken per pair, so that the machine's drift (this VM's speed wanders by
// 10–30 % over seconds) falls on both sides of each comparison; the median over 7 pairs per plan.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct PlanCostTests {
    @Test func predictionWithinFifteenPercent() throws {
        let folder = try ModelFolder(path: DefaultModel.folder())
        let config = try UNetConfiguration.load(from: folder.configURL)
        let side = config.sampleSize!
        let batch = 8, steps = 20
        let unet = try UNet(folder: folder, stream: ComputeStream(), batch: batch, height: side, width: side)
        let scheduler = try DDIMScheduler(configuration: SchedulerConfiguration.load(from: folder.schedulerConfigURL!), steps: steps)
        let sampler = try Sampler(unet: unet, scheduler: scheduler)
        let profiler = try StepProfiler(sampler: sampler)
        let sampling = PlanSampler(steps: steps)
        let plans = [
            StepPlan.teacher(sampling),
            try StepPlan.deepCacheUniform(sampling, interval: 3, branch: 1),
            try StepPlan.segments(sampling, intervals: [4, 3, 2, 1], branches: [0, 2, 3, 1]),
            try StepPlan.deepCacheUniform(sampling, interval: 5, branch: 4),
        ]
        var noise = GaussianNoise(seed: freshSeed())
        let x = noise.fill(batch * config.inChannels * side * side)
        func timeRun(_ plan: StepPlan) throws -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try sampler.run(noise: x, plan: plan, noiseSource: &noise)
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        }
        // Warm-up: compile every kernel the plans and the profiler use.
        _ = try profiler.round()
        for p in plans { _ = try timeRun(p) }
        var rounds: [[StepProfiler.Kind: Double]] = []
        // (predicted, measured) per pair: a profiling round, then one run of the plan.
        var pairs = Array(repeating: [(Double, Double)](), count: plans.count)
        for _ in 0..<7 {
            for (i, p) in plans.enumerated() {
                let round = try profiler.round()
                rounds.append(round)
                let predicted = try profiler.latencies(rounds: [round], model: "default").cost(of: p).milliseconds
                pairs[i].append((predicted, try timeRun(p)))
            }
        }
        let table = profiler.latencies(rounds: rounds, model: "default")
        for (i, p) in plans.enumerated() {
            // |predicted − measured| ≤ 15 % of measured, i.e. |predicted / measured − 1| ≤ 0.15, on the median pair.
            let ratios = pairs[i].map { $0.0 / $0.1 }.sorted()
            let ratio = ratios[ratios.count / 2]
            print("plan cost: \(p.description): predicted / measured \(String(format: "%.3f", ratio)) (pairs \(pairs[i].map { "\(Int($0.0))/\(Int($0.1))" }.joined(separator: " ")) ms)")
            #expect(abs(ratio - 1) <= 0.15,
                    "\(p.description): predicted / measured \(ratio) (pairs \(pairs[i].map { "\(Int($0.0))/\(Int($0.1))" }))")
        }
        // MACs add up step by step.
        let dc = try table.cost(of: plans[1])
        #expect(dc.macs == 7 * unet.macs + 13 * unet.macs(for: .partial(branch: 1)))
    }
}
