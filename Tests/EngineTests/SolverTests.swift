// DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler and PNDMScheduler against diffusers
// (Goldens/solvers.json and Goldens/cifar-layout/{dpmsolver,unipc,euler,pndm}10.safetensors and pndm_prk6.safetensors,
// written by scripts/goldens/make_solver_goldens.py): timesteps
// exactly, sigmas to float precision, whole solver runs on random model outputs through the device
// update, and whole 10-step runs of a golden UNet, with and without null steps.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

struct SolverGolden: Decodable {
    let kind: String, name: String, steps: Int
    let explicit_timesteps: [Int]?
    let config: [String: AnyDecodable]
    let timesteps: [Double]
    let sigmas: [Float]
    let init_noise_sigma: Float
    let start: [Float]
    let model_outputs: [[Float]], samples: [[Float]]
}

let solverGoldens: [SolverGolden] = {
    let data = try! Data(contentsOf: goldens.appendingPathComponent("solvers.json"))
    return try! JSONDecoder().decode([SolverGolden].self, from: data)
}()

@Suite struct SolverTests {
    /// The scheduler as `from_config` builds it from the golden's (partial) config: keys it leaves out
    /// take DPMSolverMultistepScheduler's defaults, not DDIM's.
    func makeScheduler(_ g: SolverGolden) throws -> (scheduler: any Scheduler, sigmas: [Float], order: (Int) -> Int) {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("solver-\(UUID()).json")
        try JSONSerialization.data(withJSONObject: g.config.mapValues(\.value)).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let config = try SchedulerConfiguration.load(from: url)
        if g.kind == "pndm" {
            let s = try PNDMScheduler(configuration: config, steps: g.steps)
            return (s, [], { _ in 4 })
        }
        if g.kind == "euler" {
            let s = try EulerDiscreteScheduler(configuration: config, steps: g.steps, timesteps: g.explicit_timesteps)
            return (s, s.sigmas, { _ in 1 })
        }
        if g.kind == "unipc" {
            let s = try UniPCMultistepScheduler(configuration: config, steps: g.steps, timesteps: g.explicit_timesteps)
            #expect(s.planSampler.timesteps == g.explicit_timesteps, "\(g.name): the plan sampler carries the explicit timesteps")
            return (s, s.sigmas, s.stepOrder)
        }
        let s = try DPMSolverMultistepScheduler(configuration: config, steps: g.steps, timesteps: g.explicit_timesteps)
        #expect(s.planSampler.timesteps == g.explicit_timesteps, "\(g.name): the plan sampler carries the explicit timesteps")
        return (s, s.sigmas, s.stepOrder)
    }

    @Test(arguments: solverGoldens.map(\.name))
    func matchesDiffusers(name: String) throws {
        let g = solverGoldens.first { $0.name == name }!
        let (scheduler, sigmas, stepOrder) = try makeScheduler(g)
        expectClose(scheduler.modelTimesteps, g.timesteps.map { Float($0) }, atol: 2e-4, rtol: 1e-6, "\(name): timesteps")
        if g.kind != "euler" { #expect(scheduler.timesteps == g.timesteps.map { Int($0) }, "\(name): timesteps") }
        #expect(abs(scheduler.initNoiseSigma - g.init_noise_sigma) <= 1e-6 * g.init_noise_sigma, "\(name): init_noise_sigma \(scheduler.initNoiseSigma) vs \(g.init_noise_sigma)")
        expectClose(sigmas, g.sigmas, atol: 1e-7, rtol: 2e-6, "\(name): sigmas")
        // The whole run, step by step on the device, from the golden's model outputs.
        let s = try ComputeStream()
        let n = g.start.count
        let sample = try s.upload(g.start), output = try s.buffer(n)
        let updater = try SchedulerUpdater(scheduler: scheduler, stream: s, count: n)
        var noise = NoiseStreams(seed: 0).variance(images: 0..<1, imageSize: n)
        #expect(scheduler.timesteps.count == g.timesteps.count && g.model_outputs.count == g.timesteps.count, "\(name): one update per model evaluation")
        for i in 0..<g.timesteps.count {
            try output.write(g.model_outputs[i], queue: s.queue)
            try updater.update(i, sample: sample, modelOutput: output, noiseSource: &noise)
            let got = try s.download(sample)
            let scale = g.samples[i].map { abs($0) }.max()!
            expectClose(got, g.samples[i], atol: 2e-5 * max(1, scale), rtol: 1e-4, "\(name): step \(i) (order \(stepOrder(i)))")
        }
        let (err, _) = relativeL2(try s.download(sample), g.samples.last!)
        #expect(err <= 1e-4, "\(name): final sample relative L2 \(err)")
    }

    /// 10 steps of DPM-Solver++ (2M), UniPC (bh2, 2), Euler and PNDM (PLMS: 11 model evaluations), and
    /// 6 steps of PNDM with Runge–Kutta steps (15 evaluations), on the cifar-layout UNet from the same
    /// noise as diffusers (Euler: noise scaled by init_noise_sigma, the network's input by
    /// scale_model_input, fractional timesteps): relative L2 ≤ 1e-4 — every step full, with null steps,
    /// and with partial and null steps.
    @Test(arguments: [("dpmsolver10", PlanSampler(scheduler: .dpmsolverPlusPlus, steps: 10)), ("unipc10", PlanSampler(scheduler: .unipc, steps: 10)),
                      ("euler10", PlanSampler(scheduler: .euler, steps: 10)), ("pndm10", PlanSampler(scheduler: .pndm, steps: 10)),
                      ("pndm_prk6", PlanSampler(scheduler: .pndm, steps: 6, skipPRKSteps: false))])
    func wholeRunMatchesDiffusers(file: String, planSampler: PlanSampler) throws {
        let kind = planSampler.description
        let dir = goldens.appendingPathComponent("cifar-layout")
        let golden = try SafeTensorsFile(path: dir.appendingPathComponent("\(file).safetensors").path)
        let shape = golden.tensors["noise"]!.shape
        let unet = try UNet(folder: ModelFolder(path: dir.path), stream: ComputeStream(), batch: shape[0], height: shape[2], width: shape[3])
        let plan = StepPlan.teacher(planSampler)
        let sampler = try Sampler(unet: unet, scheduler: plan.sampler.scheduler(configuration: SchedulerConfiguration()))
        #expect(sampler.planSampler == plan.sampler)
        var unused = NoiseStreams(seed: 0).variance(images: 0..<shape[0], imageSize: shape[1] * shape[2] * shape[3])
        let got = try sampler.run(noise: try golden.floats("noise"), plan: plan, noiseSource: &unused)
        let want = try golden.floats("sample")
        let (err, worst) = relativeL2(got, want)
        #expect(err <= 1e-4, "\(kind) 10 steps: relative L2 \(err); worst [\(worst)] got \(got[worst]) want \(want[worst])")
        // A plan with null steps on the solver: the solver takes the last model output as the null
        // step's own, as the reference loop does (and the result is not the full run's).
        var actions = plan.actions
        for i in [1, 4, 8] { actions[i] = .null }
        let nulls = try sampler.run(noise: try golden.floats("noise"), plan: StepPlan(sampler: plan.sampler, actions: actions), noiseSource: &unused)
        let wantNulls = try golden.floats("sample_null_1_4_8")
        let (errNulls, _) = relativeL2(nulls, wantNulls)
        #expect(errNulls <= 1e-4, "\(kind) with null steps 1, 4, 8: relative L2 \(errNulls)")
        #expect(relativeL2(wantNulls, want).error > 1e-3, "the null steps change the result")
        // A plan with partial steps too (DeepCache's shallow path in PyTorch, fed with the last full
        // step's feature at that branch): the solver takes a partial step's output like a full one's.
        let head = ["full", "partial:1", "null", "full", "partial:4", "partial:2", "full", "null", "partial:0", "full"]
        let mixed = try (head + Array(repeating: "full", count: plan.actions.count)).prefix(plan.actions.count).map(StepAction.init(parsing:))
        let got3 = try sampler.run(noise: try golden.floats("noise"), plan: StepPlan(sampler: plan.sampler, actions: mixed), noiseSource: &unused)
        let wantPlan = try golden.floats("sample_plan")
        let (errPlan, _) = relativeL2(got3, wantPlan)
        #expect(errPlan <= 1e-4, "\(kind) with partial and null steps: relative L2 \(errPlan)")
        #expect(relativeL2(wantPlan, want).error > 1e-3, "the partial steps change the result")
    }

    /// A folder's scheduler class chooses the sampler (`generate` without --scheduler): DPM-Solver's
    /// algorithm type picks between its two kinds; classes not implemented here give none (an error there).
    @Test func schedulerClassNamesAKind() throws {
        var c = SchedulerConfiguration()
        #expect(SchedulerKind.named(className: "DDIMScheduler", configuration: c) == .ddim)
        #expect(SchedulerKind.named(className: "DDPMScheduler", configuration: c) == .ddpm)
        #expect(SchedulerKind.named(className: "DPMSolverMultistepScheduler", configuration: c) == .dpmsolverPlusPlus)
        c.algorithmType = .dpmsolver
        #expect(SchedulerKind.named(className: "DPMSolverMultistepScheduler", configuration: c) == .dpmsolver)
        #expect(SchedulerKind.named(className: "UniPCMultistepScheduler", configuration: c) == .unipc)
        #expect(SchedulerKind.named(className: "EulerDiscreteScheduler", configuration: c) == .euler)
        #expect(SchedulerKind.named(className: "PNDMScheduler", configuration: c) == .pndm)
        #expect(SchedulerKind.named(className: "LMSDiscreteScheduler", configuration: c) == nil)
        // A plan file's solver order: 2 when left out, refused out of range or on a single-step sampler.
        let plan = try StepPlan.decode(Data(#"{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "dpmsolver++", "steps": 2}, "actions": ["full", "null"]}"#.utf8))
        #expect(plan.sampler.order == 2 && plan.sampler.description == "dpmsolver++ 2 steps, order 2")
        expectError(containing: ["solver order", "5"]) { _ = try StepPlan.decode(Data(#"{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "dpmsolver++", "steps": 1, "order": 5}, "actions": ["full"]}"#.utf8)).validate() }
        expectError(containing: ["multistep"]) { _ = try StepPlan.decode(Data(#"{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 1, "order": 2}, "actions": ["full"]}"#.utf8)).validate() }
    }

    /// Settings the solver does not implement are refused by name.
    @Test func unsupportedSettingsAreRefused() throws {
        var c = SchedulerConfiguration()
        c.solverType = "bogus"
        expectError(containing: ["solver_type", "bogus"]) { _ = try DPMSolverMultistepScheduler(configuration: c, steps: 10) }
        c = SchedulerConfiguration(); c.useKarrasSigmas = true; c.betaSchedule = .squaredcosCapV2
        expectError(containing: ["use_karras_sigmas"]) { _ = try DPMSolverMultistepScheduler(configuration: c, steps: 10) }
        expectError(containing: ["solver order", "4"]) { _ = try DPMSolverMultistepScheduler(configuration: SchedulerConfiguration(), steps: 10, order: 4) }
        expectError(containing: ["eta applies to DDIM only"]) { try PlanSampler(scheduler: .dpmsolverPlusPlus, steps: 10, eta: 0.5).validate() }
        // PNDM: no sample prediction; the Runge–Kutta warm-up needs 4 steps; a plan has one action per
        // model evaluation (steps + 1 with PLMS only, steps + 9 with Runge–Kutta steps).
        c = SchedulerConfiguration(); c.predictionType = .sample
        expectError(containing: ["prediction_type", "sample"]) { _ = try PNDMScheduler(configuration: c, steps: 10) }
        expectError(containing: ["4 steps", "3"]) { _ = try PNDMScheduler(configuration: SchedulerConfiguration(), steps: 3, skipPRKSteps: false) }
        expectError(containing: ["4 steps"]) { try PlanSampler(scheduler: .pndm, steps: 2, skipPRKSteps: false).validate() }
        #expect(PlanSampler(scheduler: .pndm, steps: 50).evaluations == 51 && PlanSampler(scheduler: .pndm, steps: 50, skipPRKSteps: false).evaluations == 59)
        expectError(containing: ["10 actions", "11 model evaluations"]) {
            try StepPlan(sampler: PlanSampler(scheduler: .pndm, steps: 10), actions: Array(repeating: .full, count: 10)).validate()
        }
        let pndmPlan = try StepPlan.decode(Data(#"{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "pndm", "steps": 2}, "actions": ["full", "null", "full"]}"#.utf8))
        #expect(pndmPlan.sampler.skipPRKSteps == true)
        expectError(containing: ["skip_prk_steps", "pndm only"]) { _ = try StepPlan.decode(Data(#"{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 1, "skip_prk_steps": true}, "actions": ["full"]}"#.utf8)) }
        // Explicit timesteps: DPM-Solver and Euler only, strictly decreasing, within the training steps, not with Karras sigmas.
        expectError(containing: ["explicit timesteps", "ddim"]) { try PlanSampler(scheduler: .ddim, steps: 2, timesteps: [900, 100]).validate() }
        expectError(containing: ["strictly decreasing"]) { try PlanSampler(scheduler: .euler, steps: 2, timesteps: [100, 900]).validate() }
        expectError(containing: ["3 timesteps for 2 steps"]) { try PlanSampler(scheduler: .euler, steps: 2, timesteps: [900, 500, 100]).validate() }
        expectError(containing: ["0…999"]) { _ = try DPMSolverMultistepScheduler(configuration: SchedulerConfiguration(), steps: 2, timesteps: [1000, 10]) }
        c = SchedulerConfiguration(); c.useKarrasSigmas = true
        expectError(containing: ["use_karras_sigmas"]) { _ = try EulerDiscreteScheduler(configuration: c, steps: 2, timesteps: [900, 10]) }
        let ays = PlanSampler(scheduler: .dpmsolverPlusPlus, steps: 3, timesteps: [999, 500, 24])
        #expect(try ays.scheduler(configuration: SchedulerConfiguration()).timesteps == [999, 500, 24])
        expectError(containing: ["timesteps 999,500,24"]) { try StepPlan.teacher(ays).validate(sampler: PlanSampler(scheduler: .dpmsolverPlusPlus, steps: 3)) }
        // A plan for PLMS does not run on a Runge–Kutta sampler of the same steps.
        let prk = try PNDMScheduler(configuration: SchedulerConfiguration(), steps: 4)
        expectError(containing: ["PRK + PLMS"]) { try StepPlan.teacher(PlanSampler(scheduler: .pndm, steps: 4)).validate(sampler: prk.planSampler) }
    }
}
