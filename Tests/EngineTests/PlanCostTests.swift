// Plan cost prediction from measured step latencies: within 15 % of the measured latency of whole
// plans on the default model. Profiling rounds and plan runs alternate so that load from the rest of
// the machine (other tests run in parallel) falls on both; medians of 7 rounds.
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
        var measured = Array(repeating: [Double](), count: plans.count)
        for _ in 0..<7 {
            rounds.append(try profiler.round())
            for (i, p) in plans.enumerated() { measured[i].append(try timeRun(p)) }
        }
        let table = profiler.latencies(rounds: rounds, model: "default")
        for (i, p) in plans.enumerated() {
            let got = measured[i].sorted()[measured[i].count / 2]
            let predicted = try table.cost(of: p).milliseconds
            print("plan cost: \(p.description): predicted \(Int(predicted)) ms, measured \(Int(got)) ms")
            #expect(abs(predicted - got) <= 0.15 * got,
                    "\(p.description): predicted \(predicted) ms, measured \(got) ms (runs \(measured[i].map { Int($0) }))")
        }
        // MACs add up step by step.
        let dc = try table.cost(of: plans[1])
        #expect(dc.macs == 7 * unet.macs + 13 * unet.macs(for: .partial(branch: 1)))
    }
}
