// The sampling loop: a UNet and a scheduler on one device, following a step plan (every step full
// by default). The sample, the timesteps and the feature cache stay on the device; the host writes
// only variance noise (eta > 0, DDPM) and waits only where a caller asks for progress.
import Foundation
import GPUKernels

public final class Sampler {
    public let unet: UNet
    public let scheduler: any Scheduler
    /// The sampler as plans name it.
    public let planSampler: PlanSampler
    let sample: DeviceBuffer<Float>
    let updater: SchedulerUpdater
    /// Every step's timestep repeated over the batch, uploaded once: step i's are at i·batch.
    let timesteps: DeviceBuffer<Float>
    var count: Int { unet.batch * imageValues }
    /// Values of one image's sample (C·H·W).
    public var imageValues: Int { unet.config.inChannels * unet.height * unet.width }
    /// Classifier-free guidance: the UNet's batch holds the unconditional then the conditional half of
    /// the same images, and after every network evaluation both halves of its output become
    /// u + scale·(c − u), so the scheduler updates two identical copies of the sample (which needs a
    /// deterministic scheduler). nil: no guidance.
    public var guidanceScale: Float? {
        didSet { precondition(guidanceScale == nil || unet.batch % 2 == 0, "guidance needs an even UNet batch (two halves)") }
    }

    /// Checks that a model predicts the sample's shape (out_channels = in_channels), as sampling needs.
    public static func checkCanSample(_ config: UNetConfiguration) throws {
        guard config.outChannels == config.inChannels else {
            throw ModelError("out_channels \(config.outChannels) differs from in_channels \(config.inChannels): sampling needs a model that predicts the sample's shape")
        }
    }

    /// `planSampler`: what plans for this sampler name (default: the scheduler's own description;
    /// pipelines pass the sampler they built it from, which may carry a spacing).
    public init(unet: UNet, scheduler: any Scheduler, planSampler: PlanSampler? = nil) throws {
        try Self.checkCanSample(unet.config)
        self.unet = unet
        self.scheduler = scheduler
        self.planSampler = planSampler ?? scheduler.planSampler
        let n = unet.batch * unet.config.inChannels * unet.height * unet.width
        sample = try unet.stream.buffer(n)
        updater = try SchedulerUpdater(scheduler: scheduler, stream: unet.stream, count: n)
        timesteps = try unet.stream.upload(scheduler.modelTimesteps.flatMap { Array(repeating: $0, count: unet.batch) })
    }

    /// The plan with every step full for this sampler.
    public var teacherPlan: StepPlan {
        StepPlan.teacher(planSampler)
    }

    /// Checks `plan` against this sampler and model, and allocates the feature cache it needs.
    public func prepare(_ plan: StepPlan) throws {
        try plan.validate(branchCount: unet.branchCount)
        try plan.validate(sampler: planSampler)
        try unet.prepareFeatureCache(branches: plan.branches)
    }

    /// Runs every step from unit-variance `noise` [batch, C, H, W] (scaled by `init_noise_sigma`) as
    /// `plan` says (default: every step full); variance noise (eta > 0, DDPM) is drawn from
    /// `noiseSource`. Returns x₀ [batch, C, H, W].
    public func run(noise: [Float], plan: StepPlan? = nil, noiseSource: inout VarianceNoise) throws -> [Float] {
        try setInitialNoise(noise)
        try runSteps(plan: plan ?? teacherPlan, noiseSource: &noiseSource)
        return try currentSample()
    }

    /// The step loop: steps `first`… of `plan` from the current sample. `beforeStep(i)` runs before
    /// each step after the first (states may be read then); `afterStep(done)` after each step with
    /// the queue drained, and may stop the loop. Returns false when stopped.
    @discardableResult
    public func runSteps(plan: StepPlan, from first: Int = 0, noiseSource: inout VarianceNoise,
                         beforeStep: ((Int) throws -> Void)? = nil,
                         afterStep: ((Int) -> GenerationControl)? = nil) throws -> Bool {
        try prepare(plan)
        let captures = plan.captures
        for i in first..<plan.actions.count {
            if i > first { try beforeStep?(i) }
            try step(i, plan.actions[i], capturing: captures[i], noiseSource: &noiseSource)
            if let afterStep {
                try unet.stream.finish()
                if afterStep(i + 1) == .stop { return false }
            }
        }
        return true
    }

    /// Sets the current sample to unit-variance `noise` scaled by the scheduler's `init_noise_sigma`,
    /// as diffusers' pipelines prepare latents.
    public func setInitialNoise(_ noise: [Float]) throws {
        let sigma = scheduler.initNoiseSigma
        try setSample(sigma == 1 ? noise : noise.map { $0 * sigma })
    }

    /// Sets the current sample (for callers driving `step` themselves).
    public func setSample(_ values: [Float]) throws {
        guard values.count == count else { throw ModelError("sample has \(values.count) values, the sampler needs \(count)") }
        try sample.write(values, queue: unet.stream.queue)
    }

    /// The sample on the device [batch, C, H, W] (the sampler's own buffer; x₀ after a run).
    public var sampleBuffer: DeviceBuffer<Float> { sample }

    /// The current sample, read back from the device.
    public func currentSample() throws -> [Float] { try unet.stream.download(sample, count: count) }

    /// Step `i` as `action`: the network (full or partial; a full step caching the features of
    /// `capturing`), then the scheduler update, which for a null step reuses the last model output.
    public func step(_ i: Int, _ action: StepAction, capturing: Set<Int> = [], noiseSource: inout VarianceNoise) throws {
        try evaluate(i, action, capturing: capturing)
        try update(i, noiseSource: &noiseSource)
    }

    /// The network part of step `i` (nothing for a null step).
    public func evaluate(_ i: Int, _ action: StepAction, capturing: Set<Int> = []) throws {
        let s = unet.stream, ws = unet.workspace
        guard action != .null else { return }
        let scale = scheduler.inputScale(step: i)
        if scale == 1 { try ws.input.copy(from: sample, count: count, queue: s.queue) }
        else { try s.scale(sample, output: ws.input, count: count, by: scale) }
        try ws.timesteps.copy(from: timesteps, count: unet.batch, sourceOffset: i * unet.batch, queue: s.queue)
        switch action {
        case .full: try unet.forward(capturing: capturing)
        case .partial(let m): try unet.forwardPartial(branch: m)
        case .null: break
        }
        if let g = guidanceScale { try s.guidanceCombine(ws.output, half: count / 2, scale: g) }
    }

    /// The scheduler update of step `i` from the last model output (a multistep solver's history
    /// takes it as step i's output, whether the step ran the network or not).
    public func update(_ i: Int, noiseSource: inout VarianceNoise) throws {
        try updater.update(i, sample: sample, modelOutput: unet.workspace.output, noiseSource: &noiseSource)
    }
}

/// A scheduler's device update on buffers of `count` values, with what it keeps between steps (a
/// multistep solver's history of converted model outputs, the variance-noise scratch).
public final class SchedulerUpdater {
    public let scheduler: any Scheduler
    public let stream: ComputeStream
    public let count: Int
    let variance: DeviceBuffer<Float>
    /// Step i's converted model output sits in slot i mod the history's length.
    let history: [DeviceBuffer<Float>]
    /// The sample a step kept for a later step's combination (UniPC's corrector, PNDM).
    let kept: DeviceBuffer<Float>

    public init(scheduler: any Scheduler, stream: ComputeStream, count: Int) throws {
        self.scheduler = scheduler; self.stream = stream; self.count = count
        variance = try stream.buffer(count)
        history = try (0..<scheduler.historyLength).map { _ in try stream.buffer(count) }
        kept = try stream.buffer(scheduler.keepsSamples ? count : 1)
    }

    /// Step `i` in place on `sample`, from `modelOutput`; variance noise (when the step draws any)
    /// from `noiseSource`. Steps of one run must come in order from 0 (the history is the run's).
    public func update(_ i: Int, sample: DeviceBuffer<Float>, modelOutput: DeviceBuffer<Float>, noiseSource: inout VarianceNoise) throws {
        let s = stream
        if case let .multistep(convert, corrector, predictor) = scheduler.update(step: i) {
            let n = history.count
            try s.schedulerStep(sample: sample, modelOutput: modelOutput, noise: nil, output: history[i % n], count: count, convert)
            func combine(_ c: Combination) throws {
                precondition(c.stepsBack.allSatisfy { (0..<min(n, i + 1)).contains($0) }, "step \(i): a history term \(c.stepsBack) steps back, the history keeps \(n)")
                try s.multistepCombine(sample: c.fromKeptSample ? kept : sample, history: c.stepsBack.map { history[(i - $0) % n] },
                                       coefficients: c.history, sampleCoefficient: c.sampleCoefficient, output: sample, count: count)
            }
            if let corrector { try combine(corrector) }
            if scheduler.keepsSample(step: i) { try kept.copy(from: sample, count: count, queue: s.queue) }
            try combine(predictor)
            return
        }
        let c = scheduler.coefficients(step: i)
        if c.noise != 0 {
            precondition(noiseSource.generators.count * noiseSource.imageSize == count, "variance noise for \(noiseSource.generators.count) images of \(noiseSource.imageSize), the update has \(count) values")
            try variance.write(noiseSource.fill(), queue: s.queue)
        }
        try s.schedulerStep(sample: sample, modelOutput: modelOutput, noise: c.noise != 0 ? variance : nil, output: sample, count: count, c)
    }
}
