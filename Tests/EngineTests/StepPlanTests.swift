// Step plans: the file format and its checks, the builders (DeepCache's non-uniform schedule against
// NumPy goldens), partial steps against the full pass and against a Python reference of DeepCache's
// shallow path on diffusers (Goldens/cifar-layout/deepcache.safetensors, scripts/goldens/make_deepcache_goldens.py),
// and null steps against the DDIM jump they stand for.
@testable import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct StepPlanTests {
    // MARK: Format and validation

    @Test func roundTripsThroughJSON() throws {
        let plan = try StepPlan.segments(PlanSampler(steps: 20), intervals: [3, 5, 1, 2], branches: [0, 2, 1, 5])
        let back = try JSONDecoder().decode(StepPlan.self, from: plan.jsonData())
        #expect(back == plan)
        #expect(plan.compact == "F00..F2222F....F5...")
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(freshSeed()).json").path
        try plan.write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try StepPlan.load(from: URL(fileURLWithPath: path)) == plan)
    }

    /// Speed-up timing: the rounds' order of runs and each ratio's teacher time, for both ways of
    /// timing the teacher (a clock that drifts: every run takes longer than the one before it).
    @Test func speedupTimingPairsTheTeacherWithThePlans() throws {
        let teacher = StepPlan.teacher(PlanSampler(steps: 10))
        let a = StepPlan.teacher(PlanSampler(steps: 5)), b = StepPlan.teacher(PlanSampler(steps: 2))
        let drift = Double(freshSeed() % 7 + 1) / 100
        final class Clock {
            let drift: Double; var order: [Int] = []
            init(drift: Double) { self.drift = drift }
            func time(_ p: StepPlan) -> Double { order.append(p.fullSteps); return Double(p.fullSteps) * (1 + drift * Double(order.count)) }
        }
        var clock = Clock(drift: drift)
        let beside = try SpeedupTiming.measure([a, b], against: teacher, rounds: 2, teacherTiming: .besideEachPlan, time: clock.time)
        #expect(clock.order == [10, 5, 10, 2, 10, 5, 10, 2])
        #expect(beside.teacherSeconds.count == 4 && beside.plans.map(\.ratios.count) == [2, 2])
        // Round 1, plan a: teacher run 1, a run 2.
        #expect(abs(beside.plans[0].ratios[0] - 10 * (1 + drift) / (5 * (1 + 2 * drift))) < 1e-12)
        #expect(abs(beside.plans[1].median - median([10 * (1 + 3 * drift) / (2 * (1 + 4 * drift)), 10 * (1 + 7 * drift) / (2 * (1 + 8 * drift))])) < 1e-12)

        clock = Clock(drift: drift)
        let around = try SpeedupTiming.measure([a, b], against: teacher, rounds: 3, teacherTiming: .aroundEachRound, warmUp: true, time: clock.time)
        #expect(clock.order == [10, 5, 2] + Array(repeating: [10, 5, 2, 10], count: 3).joined())
        #expect(around.teacherSeconds.count == 6 && around.plans[1].seconds.count == 3)
        // Round 1 (after 3 warm-up runs): teacher run 4, a run 5, b run 6, teacher run 7.
        let teacherMean = 10 * ((1 + 4 * drift) + (1 + 7 * drift)) / 2
        #expect(abs(around.plans[1].ratios[0] - teacherMean / (2 * (1 + 6 * drift))) < 1e-12)
        #expect(around.plans[0].range.min <= around.plans[0].median && around.plans[0].median <= around.plans[0].range.max)
        #expect(throws: ModelError.self) { try SpeedupTiming.measure([a], against: teacher, rounds: 0, teacherTiming: .besideEachPlan, time: { _ in 1 }) }
    }

    /// Corrupt or mismatched plan files are refused with a message naming the problem.
    @Test(arguments: [
        ("{\"format\": \"flexiffusion-step-plan\", \"version\": 1, \"sampler\": {\"scheduler\": \"ddim\", \"steps\": 3, \"eta\": 0}, \"actions\": [\"full\", \"partial:1\"", "not a valid step plan"),
        ("{\"format\": \"something-else\", \"version\": 1}", "format"),
        ("{\"format\": \"flexiffusion-step-plan\", \"version\": 7, \"sampler\": {\"scheduler\": \"ddim\", \"steps\": 1, \"eta\": 0}, \"actions\": [\"full\"]}", "version 7"),
        ("{\"format\": \"flexiffusion-step-plan\", \"version\": 1, \"sampler\": {\"scheduler\": \"ddim\", \"steps\": 3, \"eta\": 0}, \"actions\": [\"full\", \"half\", \"null\"]}", "step 1: unknown step action \"half\""),
        ("{\"format\": \"flexiffusion-step-plan\", \"version\": 1, \"sampler\": {\"scheduler\": \"ddim\", \"steps\": 3, \"eta\": 0}, \"actions\": [\"full\", \"partial:-2\", \"null\"]}", "step 1"),
        ("{\"format\": \"flexiffusion-step-plan\", \"version\": 1, \"sampler\": {\"scheduler\": \"ddim\", \"steps\": 4, \"eta\": 0}, \"actions\": [\"full\", \"null\", \"null\"]}", "3 actions for ddim 4 steps (4 model evaluations)"),
        ("{\"format\": \"flexiffusion-step-plan\", \"version\": 1, \"sampler\": {\"scheduler\": \"ddim\", \"steps\": 2, \"eta\": 0}, \"actions\": [\"partial:0\", \"full\"]}", "first step must be full"),
        ("{\"format\": \"flexiffusion-step-plan\", \"version\": 1, \"sampler\": {\"scheduler\": \"lms\", \"steps\": 1, \"eta\": 0}, \"actions\": [\"full\"]}", "sampler.scheduler \"lms\" is not supported (ddim, ddpm, dpmsolver++, dpmsolver, unipc, euler or pndm)"),
        ("{\"format\": \"flexiffusion-step-plan\", \"version\": 1, \"actions\": [\"full\"]}", "missing \"sampler\""),
        ("{\"format\": \"flexiffusion-step-plan\", \"version\": 1, \"sampler\": {\"scheduler\": \"ddim\", \"steps\": \"ten\", \"eta\": 0}, \"actions\": [\"full\"]}", "sampler.steps"),
    ])
    func refusesBadFiles(text: String, expected: String) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bad-plan-\(freshSeed()).json")
        try Data(text.utf8).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let error = #expect(throws: ModelError.self) { try StepPlan.load(from: path) }
        #expect(error?.message.contains(expected) == true, "message: \(error?.message ?? "none")")
        #expect(error?.message.contains(path.path) == true)
    }

    /// A plan's timestep spacing replaces the config's as `from_config(config, timestep_spacing=…)`
    /// does (goldens of each spacing are in SolverTests/SchedulerTests; python/tests checks plans
    /// with spacings against diffusers); it is written, compared and refused beside explicit timesteps.
    @Test func spacingReplacesTheConfigs() throws {
        let config = SchedulerConfiguration()   // leading, as DDIM's default
        for kind in [SchedulerKind.ddim, .unipc, .dpmsolverPlusPlus, .euler, .pndm] {
            for spacing in [TimestepSpacing.leading, .trailing, .linspace] {
                var direct = config
                direct.timestepSpacing = spacing
                direct.presentKeys.insert("timestep_spacing")
                let sampler = PlanSampler(scheduler: kind, steps: 7, spacing: spacing)
                #expect(try sampler.scheduler(configuration: config).timesteps
                        == PlanSampler(scheduler: kind, steps: 7).scheduler(configuration: direct).timesteps, "\(kind) \(spacing)")
                let plan = StepPlan.teacher(sampler)
                #expect(try StepPlan.decode(plan.jsonData()) == plan)
            }
        }
        #expect(try PlanSampler(scheduler: .unipc, steps: 7, spacing: .trailing).scheduler(configuration: config).timesteps
                != PlanSampler(scheduler: .unipc, steps: 7).scheduler(configuration: config).timesteps, "the spacing changes the timesteps")
        #expect(throws: ModelError.self) { try PlanSampler(scheduler: .euler, steps: 2, timesteps: [999, 500], spacing: .trailing).validate() }
        // rFID's memo and prefix states tell plans apart by their spacing (they once shared one score).
        let keys = Set([nil, TimestepSpacing.leading, .trailing].map { RFIDEvaluator.contentKey(StepPlan.teacher(PlanSampler(scheduler: .unipc, steps: 5, spacing: $0))) })
        #expect(keys.count == 3)
        #expect(throws: ModelError.self) {
            try StepPlan.teacher(PlanSampler(scheduler: .unipc, steps: 5, spacing: .trailing)).validate(sampler: PlanSampler(scheduler: .unipc, steps: 5))
        }
    }

    @Test func refusesMismatchWithModelAndSampler() throws {
        let plan = try StepPlan.deepCacheUniform(PlanSampler(steps: 10), interval: 3, branch: 6)
        #expect(throws: ModelError.self) { try plan.validate(branchCount: 6) }
        try plan.validate(branchCount: 7)
        let e = #expect(throws: ModelError.self) { try plan.validate(scheduler: .ddim, steps: 50) }
        #expect(e?.message.contains("10 steps") == true)
    }

    // MARK: Builders

    @Test func segmentsAndUniformBuilders() throws {
        var rng = SeededGenerator(seed: freshSeed())
        for _ in 0..<20 {
            let steps = Int.random(in: 5...120, using: &rng), n = Int.random(in: 1...min(steps, 8), using: &rng)
            let lengths = StepPlan.segmentLengths(steps: steps, count: n)
            #expect(lengths.reduce(0, +) == steps && lengths.max()! - lengths.min()! <= 1)
            let intervals = lengths.map { Int.random(in: 1...$0, using: &rng) }
            let branches = (0..<n).map { _ in Int.random(in: 0...5, using: &rng) }
            let plan = try StepPlan.segments(PlanSampler(steps: steps), intervals: intervals, branches: branches)
            #expect(plan.actions.count == steps && plan.fullSteps == n)
            #expect(plan.partialSteps == intervals.reduce(0, +) - n)
            #expect(plan.nullSteps == steps - intervals.reduce(0, +))
            try plan.validate(branchCount: 6)
        }
        let dc = try StepPlan.deepCacheUniform(PlanSampler(steps: 100), interval: 3, branch: 1)
        #expect(dc.fullSteps == 34 && dc.actions[3] == .full && dc.actions[4] == .partial(branch: 1))
        #expect(dc.captures[0] == [1] && dc.captures[99] == [] && dc.captures[1] == [])
        #expect(throws: ModelError.self) { try StepPlan.segments(PlanSampler(steps: 10), intervals: [6, 1], branches: [0, 0]) }
        #expect(throws: ModelError.self) { try StepPlan.segments(PlanSampler(steps: 10), intervals: [0, 1], branches: [0, 0]) }
    }

    /// DeepCache's non-uniform full steps equal NumPy's (complex powers included).
    @Test func nonUniformMatchesNumPy() throws {
        let data = try Data(contentsOf: goldens.appendingPathComponent("deepcache_nonuniform.json"))
        let root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let cases = root["cases"] as! [[String: Any]]
        #expect(cases.count >= 6)
        for c in cases {
            let steps = c["steps"] as! Int, interval = c["interval"] as! Int, center = c["center"] as! Int
            let power = c["power"] as! Double
            let want = c["full_steps"] as! [Int]
            let (got, used) = try StepPlan.quadCenterSteps(total: steps, count: (steps + interval - 1) / interval, center: center, power: power)
            #expect(got == want, "T=\(steps) N=\(interval) c=\(center) p=\(power)")
            #expect(abs(used - (c["power_used"] as! Double)) < 1e-9)
            let plan = try StepPlan.deepCacheNonUniform(PlanSampler(steps: steps), interval: interval, branch: 2, center: center, power: power)
            #expect(plan.actions.enumerated().filter { $0.element == .full }.map(\.offset) == want)
        }
    }

    // MARK: Partial and null steps on the UNet

    /// A partial step whose cache was filled at the same input and timestep reproduces the full step.
    @Test(arguments: ["cifar-layout", "default"])
    func partialAtSameInputReproducesFull(model name: String) throws {
        let folder = name == "default" ? try ModelFolder(path: DefaultModel.folder()) : try ModelFolder(path: goldens.appendingPathComponent(name).path)
        let config = try UNetConfiguration.load(from: folder.configURL)
        let side = config.sampleSize!
        let unet = try UNet(folder: folder, stream: ComputeStream(), batch: 2, height: side, width: side)
        var rng = SeededGenerator(seed: freshSeed())
        let x = randomArray(2 * config.inChannels * side * side, &rng, in: -2...2)
        let t = Float(Int.random(in: 0..<1000, using: &rng))
        let all = Set(0..<unet.branchCount)
        try unet.prepareFeatureCache(branches: all)
        try unet.workspace.input.write(x, queue: unet.stream.queue)
        try unet.workspace.timesteps.write([t, t], queue: unet.stream.queue)
        try unet.forward(capturing: all)
        let full = try unet.stream.download(unet.workspace.output)
        var previous = 0
        for m in 0..<unet.branchCount {
            try unet.workspace.input.write(x, queue: unet.stream.queue)
            try unet.forwardPartial(branch: m)
            let partial = try unet.stream.download(unet.workspace.output)
            let (err, worst) = relativeL2(partial, full)
            #expect(err <= 1e-5, "\(name) branch \(m) t=\(t): relative L2 \(err); worst [\(worst)] \(partial[worst]) vs \(full[worst])")
            let macs = unet.macs(for: .partial(branch: m))
            #expect(macs > previous && macs < unet.macs, "branch \(m): \(macs) MACs")
            previous = macs
        }
        #expect(unet.macs(for: .null) == 0 && unet.macs(for: .full) == unet.macs)
        // A plan's predicted cost adds up its steps' latencies and MACs (a round of made-up timings;
        // how well predictions meet measured runs is `flexiffusion bench plans`).
        let profiler = try StepProfiler(sampler: Sampler(unet: unet, scheduler: DDIMScheduler(configuration: SchedulerConfiguration(), steps: 20)))
        var round: [StepProfiler.Kind: Double] = [:]
        for (i, k) in profiler.kinds.enumerated() { round[k] = Double(3 + 2 * i) + Double.random(in: 0..<1, using: &rng) }
        let table = profiler.latencies(rounds: [round], model: "test")
        let cost = try table.cost(of: StepPlan.deepCacheUniform(PlanSampler(steps: 20), interval: 3, branch: 1))
        #expect(cost.macs == 7 * unet.macs + 13 * unet.macs(for: .partial(branch: 1)))
        let want = 7 * round[.step(.full)]! + 13 * round[.step(.partial(branch: 1))]!
        #expect(abs(cost.milliseconds - want) <= 1e-9 * want && abs(cost.speedup - 20 * round[.step(.full)]! / want) <= 1e-9)
    }

    /// Partial steps match DeepCache's shallow path on diffusers at every branch (≤ 1e-4 relative L2).
    @Test func partialMatchesDeepCacheReference() throws {
        let dir = goldens.appendingPathComponent("cifar-layout")
        let golden = try SafeTensorsFile(path: dir.appendingPathComponent("deepcache.safetensors").path)
        let shape = golden.tensors["sample_full"]!.shape
        let unet = try UNet(folder: ModelFolder(path: dir.path), stream: ComputeStream(), batch: shape[0], height: shape[2], width: shape[3])
        let branches = golden.tensors.keys.filter { $0.hasPrefix("partial_m") }.count
        #expect(branches == unet.branchCount && branches == 12)
        let all = Set(0..<unet.branchCount)
        try unet.prepareFeatureCache(branches: all)
        let ws = unet.workspace, q = unet.stream.queue
        try ws.input.write(try golden.floats("sample_full"), queue: q)
        try ws.timesteps.write(Array(repeating: try golden.floats("t_full")[0], count: shape[0]), queue: q)
        try unet.forward(capturing: all)
        let partialInput = try golden.floats("sample_partial"), tPartial = try golden.floats("t_partial")[0]
        for m in 0..<branches {
            try ws.input.write(partialInput, queue: q)
            try ws.timesteps.write(Array(repeating: tPartial, count: shape[0]), queue: q)
            try unet.forwardPartial(branch: m)
            let got = try unet.stream.download(ws.output), want = try golden.floats("partial_m\(m)")
            let (err, worst) = relativeL2(got, want)
            #expect(err <= 1e-4, "branch \(m): relative L2 \(err); worst [\(worst)] got \(got[worst]) want \(want[worst])")
        }
    }

    /// Under DDIM with eta 0 a null step reuses the last ε, which is DDIM's jump over the timestep:
    /// x_{t₂} = √ᾱ_{t₂}·clip(x̂₀) + √(1−ᾱ_{t₂})·ε̂ with x̂₀, ε̂ from step 0.
    @Test func nullStepIsTheDDIMJump() throws {
        let dir = goldens.appendingPathComponent("cifar-layout")
        let unet = try UNet(folder: ModelFolder(path: dir.path), stream: ComputeStream(), batch: 2, height: 16, width: 16)
        let scheduler = try DDIMScheduler(configuration: SchedulerConfiguration(), steps: 10)
        let sampler = try Sampler(unet: unet, scheduler: scheduler)
        var rng = SeededGenerator(seed: freshSeed())
        let x = randomArray(2 * 3 * 16 * 16, &rng, in: -2.5...2.5)
        var noise = NoiseStreams(seed: 1).variance(images: 0..<2, imageSize: 3 * 16 * 16)
        try sampler.setSample(x)
        try sampler.step(0, .full, noiseSource: &noise)
        let epsilon = try unet.stream.download(unet.workspace.output)
        try sampler.step(1, .null, noiseSource: &noise)
        let got = try sampler.currentSample()
        let a = scheduler.schedule.alphasCumprod
        let (t0, t2) = (scheduler.timesteps[0], scheduler.timesteps[2])
        let want = x.indices.map { i -> Float in
            let x0 = min(1, max(-1, (x[i] - (1 - a[t0]).squareRoot() * epsilon[i]) / a[t0].squareRoot()))
            return a[t2].squareRoot() * x0 + (1 - a[t2]).squareRoot() * epsilon[i]
        }
        expectClose(got, want, atol: 2e-5, rtol: 1e-4, "null step vs DDIM jump")
        // A plan's null step does the same inside `run`.
        var unused = NoiseStreams(seed: 1).variance(images: 0..<2, imageSize: 3 * 16 * 16)
        let plan = StepPlan(sampler: PlanSampler(steps: 10), actions: [.full, .null] + Array(repeating: .full, count: 8))
        let viaPlan = try sampler.run(noise: x, plan: plan, noiseSource: &unused)
        try sampler.setSample(got)
        for i in 2..<10 { try sampler.step(i, .full, noiseSource: &unused) }
        #expect(try sampler.currentSample() == viaPlan)
    }
}

@Suite struct LatencyTableTests {
    /// Processes (here threads, each with its own lock descriptor) adding entries to one table at
    /// once keep every entry: the read-insert-write runs under an exclusive lock.
    @Test func concurrentInsertsKeepEveryEntry() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("latency-\(UUID())")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("latency.json")
        func entry(_ batch: Int) throws -> StepLatencies {
            let json = """
                {"model": "m", "model_fingerprint": "x", "batch": \(batch), "height": 28, "width": 28, "gemm": "none", "convolution": "none",
                 "full_ms": 100, "partial_ms": {"0": 12}, "null_ms": 0.2, "scheduler_ms": 0.2, "full_macs": 1000, "partial_macs": {"0": 80},
                 "repeats": 1, "measured": "now"}
                """
            return try JSONDecoder().decode(StepLatencies.self, from: Data(json.utf8))
        }
        let entries = try (1...12).map(entry)
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: entries.count) { i in
            do { try LatencyTable.insert(entries[i], device: "d", into: url) } catch { failures.add("\(error)") }
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        let table = try LatencyTable.load(from: url, missingOK: false)
        #expect(Set((1...12).compactMap { table.lookup(device: "d", fingerprint: "x", batch: $0)?.batch }) == Set(1...12))
        // A table with a negative latency is refused by name (it printed "-nan×" before).
        let text = try String(contentsOf: url, encoding: .utf8)
        try text.replacingOccurrences(of: "\"null_ms\" : 0.2", with: "\"null_ms\" : -3").write(to: url, atomically: true, encoding: .utf8)
        expectError(containing: ["null_ms = -3.0", "device d"]) { _ = try LatencyTable.load(from: url, missingOK: false) }
    }
}

/// Errors collected from concurrent work.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ s: String) { lock.lock(); list.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
