// DDIM and DDPM against diffusers (Goldens/schedulers.json, written by scripts/goldens/make_scheduler_goldens.py):
// timesteps exactly, ᾱ_t to float precision, and single device steps on random tensors.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

struct SchedulerGolden: Decodable {
    struct StepCase: Decodable {
        let index: Int, timestep: Int
        let sample: [Float], model_output: [Float], noise: [Float], prev_sample: [Float]
    }
    let kind: String, steps: Int, eta: Float?
    let timesteps: [Int]
    let alphas_cumprod: [Float]
    let step_cases: [StepCase]
    let config: [String: AnyDecodable]
}

/// Keeps any JSON value, to write the config back out as diffusers saved it.
struct AnyDecodable: Decodable {
    let value: Any
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { value = NSNull() }
        else if let b = try? c.decode(Bool.self) { value = b }
        else if let i = try? c.decode(Int.self) { value = i }
        else if let d = try? c.decode(Double.self) { value = d }
        else if let s = try? c.decode(String.self) { value = s }
        else if let a = try? c.decode([AnyDecodable].self) { value = a.map(\.value) }
        else { value = try c.decode([String: AnyDecodable].self).mapValues(\.value) }
    }
}

let schedulerGoldens: [SchedulerGolden] = {
    let data = try! Data(contentsOf: goldens.appendingPathComponent("schedulers.json"))
    return try! JSONDecoder().decode([SchedulerGolden].self, from: data)
}()

@Suite struct SchedulerTests {
    func makeScheduler(_ g: SchedulerGolden) throws -> any Scheduler {
        // Through a file, as `load` reads it: diffusers' own config, all of its keys.
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("scheduler-\(UUID()).json")
        try JSONSerialization.data(withJSONObject: g.config.mapValues(\.value)).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let config = try SchedulerConfiguration.load(from: url)
        return g.kind == "ddim" ? try DDIMScheduler(configuration: config, steps: g.steps, eta: g.eta ?? 0)
                                : try DDPMScheduler(configuration: config, steps: g.steps)
    }

    @Test(arguments: schedulerGoldens.indices)
    func matchesDiffusers(case i: Int) throws {
        let g = schedulerGoldens[i]
        let scheduler = try makeScheduler(g)
        let label = "\(g.kind) #\(i) (\(g.steps) steps)"
        #expect(scheduler.timesteps == g.timesteps, "\(label) timesteps")
        let alphas = (scheduler as? DDIMScheduler)?.schedule.alphasCumprod ?? (scheduler as! DDPMScheduler).schedule.alphasCumprod
        // torch.linspace's vectorised kernel rounds a few betas differently in the last bit: ≤ 1 ulp here.
        expectClose(alphas, g.alphas_cumprod, atol: 0, rtol: 1e-6, "\(label) alphas_cumprod")
        let s = try ComputeStream()
        for c in g.step_cases {
            let x = try s.upload(c.sample), m = try s.upload(c.model_output), noise = try s.upload(c.noise)
            let y = try s.buffer(c.sample.count)
            try s.schedulerStep(sample: x, modelOutput: m, noise: noise, output: y, count: c.sample.count,
                                scheduler.coefficients(step: c.index))
            expectClose(try s.download(y), c.prev_sample, atol: 2e-6, rtol: 2e-6, "\(label) step \(c.index) (t=\(c.timestep))")
        }
    }

    @Test func badSettingsAreRefused() throws {
        var c = SchedulerConfiguration()
        #expect(throws: ModelError.self) { try DDIMScheduler(configuration: c, steps: 1001) }
        #expect(throws: ModelError.self) { try DDIMScheduler(configuration: c, steps: 0) }
        #expect(throws: ModelError.self) { try DDIMScheduler(configuration: c, steps: 10, eta: -1) }
        let choice = FileManager.default.temporaryDirectory.appendingPathComponent("scheduler-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: choice) }
        for (key, value) in [("beta_schedule", "sigmoid"), ("prediction_type", "flow"), ("timestep_spacing", "karras"), ("variance_type", "learned")] {
            try Data("{\"\(key)\": \"\(value)\"}".utf8).write(to: choice)
            expectError(containing: [key, value]) { _ = try SchedulerConfiguration.load(from: choice) }
        }
        c.thresholding = true
        expectError(containing: ["thresholding"]) { try c.validate() }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("scheduler-\(UUID()).json")
        try Data(#"{"num_train_timesteps": 1000, "solver_p": 2}"#.utf8).write(to: url)
        expectError(containing: ["solver_p"]) { _ = try SchedulerConfiguration.load(from: url) }
        try Data(#"{"use_karras_sigmas": false, "use_exponential_sigmas": true}"#.utf8).write(to: url)
        expectError(containing: ["use_exponential_sigmas"]) { _ = try SchedulerConfiguration.load(from: url) }
        try Data(#"{"algorithm_type": "sde-dpmsolver++"}"#.utf8).write(to: url)
        expectError(containing: ["algorithm_type", "sde-dpmsolver++"]) { _ = try SchedulerConfiguration.load(from: url) }
    }

    /// A pipeline folder with `scheduler` as its scheduler config, a UNet of `unetClass` and a
    /// model_index.json naming `pipelineClass` (an empty weights file: the config is all that is read).
    func pipelineFolder(pipelineClass: String, unetClass: String, scheduler: String) throws -> ModelFolder {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pipeline-\(UUID())")
        let fm = FileManager.default
        for sub in ["unet", "scheduler"] { try fm.createDirectory(at: root.appendingPathComponent(sub), withIntermediateDirectories: true) }
        try Data("{\"_class_name\": \"\(pipelineClass)\"}".utf8).write(to: root.appendingPathComponent("model_index.json"))
        try Data("{\"_class_name\": \"\(unetClass)\"}".utf8).write(to: root.appendingPathComponent("unet/config.json"))
        try Data().write(to: root.appendingPathComponent("unet/diffusion_pytorch_model.safetensors"))
        try Data(scheduler.utf8).write(to: root.appendingPathComponent("scheduler/scheduler_config.json"))
        return try ModelFolder(path: root.path)
    }

    /// StableDiffusionPipeline.__init__ sets an outdated steps_offset to 1 and clip_sample to false (with
    /// a warning each); the engine reads an SD folder's scheduler config the same way, and nothing else's.
    @Test func stableDiffusionFoldersGetDiffusersCorrections() throws {
        let outdated = #"{"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "set_alpha_to_one": false}"#
        let sd = try pipelineFolder(pipelineClass: "StableDiffusionPipeline", unetClass: "UNet2DConditionModel", scheduler: outdated)
        defer { try? FileManager.default.removeItem(at: sd.root) }
        let c = try sd.schedulerConfiguration()
        #expect(c.stepsOffset == 1 && !c.clipSample)
        #expect(c.corrections.count == 2)
        #expect(c.corrections.contains { $0.contains("steps_offset should be 1, not 0") })
        #expect(c.corrections.contains { $0.contains("clip_sample true") })
        // The corrected values are what DDIM then runs: leading spacing from 1, no clipping.
        let ddim = try DDIMScheduler(configuration: c, steps: 10)
        #expect(ddim.timesteps == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
        #expect(ddim.coefficients(step: 0).clipRange == nil)
        // A PNDM config without clip_sample has none to correct; one with steps_offset 1 is left alone.
        let pndm = try pipelineFolder(pipelineClass: "StableDiffusionPipeline", unetClass: "UNet2DConditionModel",
                                      scheduler: #"{"_class_name": "PNDMScheduler", "steps_offset": 1, "skip_prk_steps": true}"#)
        defer { try? FileManager.default.removeItem(at: pndm.root) }
        let p = try pndm.schedulerConfiguration()
        #expect(p.corrections.isEmpty && p.stepsOffset == 1 && !p.presentKeys.contains("clip_sample"))
        // SDXL's pipelines and UNet2DModel pipelines correct nothing.
        for (pipelineClass, unetClass) in [("StableDiffusionXLPipeline", "UNet2DConditionModel"), ("DDPMPipeline", "UNet2DModel")] {
            let other = try pipelineFolder(pipelineClass: pipelineClass, unetClass: unetClass, scheduler: outdated)
            defer { try? FileManager.default.removeItem(at: other.root) }
            let o = try other.schedulerConfiguration()
            #expect(o.corrections.isEmpty && o.stepsOffset == 0 && o.clipSample, "\(pipelineClass)")
        }
    }
}
