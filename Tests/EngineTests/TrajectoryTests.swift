// Teacher trajectories and the schedules fitted to them (Plans/Trajectories.swift): the dynamic
// programme against brute force, the jumps' closed form against the teacher's own steps, the file
// round trip, and a fitted schedule that runs and is no worse than the evenly spaced one by its cost.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct TrajectoryTests {
    /// Every K-jump path through a small grid, by enumeration.
    func bruteForce(_ cost: [[Double]], jumps K: Int) -> Double {
        let T = cost.count - 1
        func go(_ i: Int, _ left: Int) -> Double {
            if left == 0 { return i == T ? 0 : .infinity }
            return ((i + 1)...max(i + 1, T)).filter { $0 <= T }.map { cost[i][$0] + go($0, left - 1) }.min() ?? .infinity
        }
        return go(0, K)
    }

    @Test func dynamicProgrammeFindsTheCheapestPath() throws {
        var rng = SeededGenerator(seed: freshSeed())
        for T in [1, 3, 7] {
            let cost = (0...T).map { i in (0...T).map { j in j > i ? Double.random(in: 0...1, using: &rng) : 0 } }
            for K in 1...T {
                let (points, total) = try DynamicSchedule.path(cost: cost, jumps: K)
                #expect(points.count == K + 1 && points.first == 0 && points.last == T && zip(points, points.dropFirst()).allSatisfy { $0 < $1 })
                #expect(abs(total - DynamicSchedule.total(points, cost: cost)) < 1e-12)
                #expect(abs(total - bruteForce(cost, jumps: K)) < 1e-12, "T \(T) K \(K)")
            }
            expectError(containing: ["\(T + 1) jumps over a grid of \(T) steps"]) { _ = try DynamicSchedule.path(cost: cost, jumps: T + 1) }
        }
        #expect(DynamicSchedule.uniform(steps: 10, jumps: 4) == [0, 3, 5, 8, 10])
        // Costs that are not numbers leave no path: an error, not a trap.
        let nan = (0...3).map { i in (0...3).map { j in j > i ? Double.nan : 0 } }
        expectError(containing: ["no 2-jump path has a finite cost"]) { _ = try DynamicSchedule.path(cost: nan, jumps: 2) }
    }

    /// On the default model: a one-point jump is the teacher's own DDIM step (its error is float
    /// rounding), longer jumps cost more, the fitted path costs no more than the evenly spaced one,
    /// the file round-trips, and the fitted plan runs.
    @Test func fittedScheduleOnTheDefaultModel() throws {
        let folder = try ModelFolder(path: DefaultModel.folder())
        let pipeline = try PipelineLoader.open(folder, path: folder.root.path, request: PipelineRequest(batch: 3), stream: ComputeStream())
        let t = try TeacherTrajectories.record(pipeline, steps: 20, noise: GenerationNoise(seed: 3), count: 5)
        #expect(t.count == 5 && t.steps == 20 && t.imageSize == 784)
        // (The recorded final states are the teacher's run itself.)
        var final: [Float] = []
        try pipeline.generate(plan: StepPlan.teacher(PlanSampler(scheduler: .ddim, steps: 20)), noise: GenerationNoise(seed: 3), count: 5) {
            final += try $0.latents()
        }
        var recordedFinal: [Float] = []
        for n in 0..<5 {
            let start: Int = (n * 21 + 20) * 784
            recordedFinal += t.states[start..<(start + 784)]
        }
        #expect(relativeL2(recordedFinal, final).error < 1e-6)
        let scale: Double = t.states.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(t.states.count)
        for i in 0..<20 { #expect(t.jumpError(from: i, to: i + 1) < 1e-8 * max(1, scale), "step \(i): \(t.jumpError(from: i, to: i + 1))") }
        #expect(t.jumpError(from: 0, to: 20) > 10 * t.jumpError(from: 10, to: 20))
        let cost = t.jumpErrors()
        for K in [2, 4, 5] {
            let (points, total) = try DynamicSchedule.path(cost: cost, jumps: K)
            #expect(total <= DynamicSchedule.total(DynamicSchedule.uniform(steps: 20, jumps: K), cost: cost) + 1e-12)
            let plan = try DynamicSchedule.plan(points, trajectories: t, description: "test")
            #expect(plan.actions.count == K && plan.sampler.timesteps?.first == t.timesteps[0])
            try plan.validate(branchCount: pipeline.unet.branchCount, schedulerConfiguration: pipeline.schedulerConfiguration)
            var images: [Float] = []
            try pipeline.generate(plan: plan, noise: GenerationNoise(seed: 3), count: 3) { images += try $0.download() }
            #expect(images.count == 3 * 784 && images.allSatisfy(\.isFinite))
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("trajectories-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try t.write(to: file)
        let back = try TeacherTrajectories.load(from: file)
        #expect(back.timesteps == t.timesteps && back.states == t.states && back.outputs == t.outputs && back.alphasCumprod == t.alphasCumprod)
        var states = t.states
        states[7] = .nan
        try TeacherTrajectories(timesteps: t.timesteps, alphasCumprod: t.alphasCumprod, count: t.count, imageSize: t.imageSize,
                                states: states, outputs: t.outputs, sampler: t.sampler).write(to: file)
        expectError(containing: ["`states` holds a non-finite value"]) { _ = try TeacherTrajectories.load(from: file) }
        expectError(containing: ["no tensor `states`", "not a trajectories file"]) {
            _ = try TeacherTrajectories.load(from: goldens.appendingPathComponent("sdxl-layout/golden.safetensors").path)
        }
    }
}
