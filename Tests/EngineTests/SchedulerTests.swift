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
}
