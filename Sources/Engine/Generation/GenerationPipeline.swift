// The engine's one generation loop: a model, a step plan (its sampler), initial noise from a seed
// or given, a count → samples batch by batch, handed to a sink while they are still on the device
// (so FID and rFID never hold all images). `generate`, `rfid`, the search's scorer and the tests
// all run through it. The noise streams are NoiseStreams' (Noise.swift): image i's noise is the
// same whatever the batch size, so a last batch is filled with the stream's next images (or zeros,
// for given noise) and the extra outputs are dropped.
import Foundation
import GPUKernels

/// Where a generation's noise comes from.
public struct GenerationNoise: Sendable {
    /// The seed of the noise streams (initial noise unless `initial` is given; variance noise always).
    public var seed: UInt64
    /// Given initial noise [count, C, H, W] (as `generate --noise` reads it), instead of the seed's.
    public var initial: [Float]?

    public init(seed: UInt64, initial: [Float]? = nil) { self.seed = seed; self.initial = initial }
    public var streams: NoiseStreams { NoiseStreams(seed: seed) }

    /// Initial noise of the run's images `slots` (a batch, [slots.count, …] of `imageSize` values each):
    /// the seed's stream, or the given noise of a `count`-image run (zeros past its last image).
    public func initial(_ slots: Range<Int>, imageSize: Int, count: Int) -> [Float] {
        guard let given = initial else { return streams.initialNoise(images: slots, imageSize: imageSize) }
        let end = min(count, slots.upperBound)
        return Array(given[(slots.lowerBound * imageSize)..<(end * imageSize)]) + Array(repeating: 0, count: (slots.upperBound - end) * imageSize)
    }
}

/// Progress of a generation, after each sampler step (or each batch, where steps are not reported).
public struct GenerationProgress: Sendable {
    /// Steps run so far over all batches, and how many the run has.
    public var stepsDone: Int, stepsTotal: Int
    /// Images finished, and the run's count.
    public var imagesDone: Int, count: Int
    /// Seconds since the run started.
    public var seconds: Double
}

extension GenerationProgress {
    /// The after-step observer of batch `b` (holding `images` of the run's `count`) for a progress
    /// handler: steps done over all batches, images finished, seconds since `start` (uptime ns).
    static func stepObserver(_ handler: ((GenerationProgress) -> GenerationControl)?, batch b: Int, steps: Int, total: Int,
                             images: Range<Int>, count: Int, start: UInt64) -> ((Int) -> GenerationControl)? {
        handler.map { handler in
            { step in
                handler(GenerationProgress(stepsDone: b * steps + step, stepsTotal: total,
                                           imagesDone: images.lowerBound + (step == steps ? images.count : 0), count: count,
                                           seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
            }
        }
    }
}

/// What a progress handler returns: go on, or stop the run after the current step.
public enum GenerationControl: Sendable { case proceed, stop }

/// One generated batch, valid while the sink runs.
public struct GeneratedBatch {
    /// The batch's index b: images b·B ..< b·B + images.count of the run.
    public let index: Int
    /// Which of the run's images the batch holds (its first `images.count` rows are real).
    public let images: Range<Int>
    /// x₀ [B, C, H, W] on the device (the sampler's own buffer).
    public let samples: DeviceBuffer<Float>
    let sampler: Sampler

    /// The batch's real images, read back to the host [images.count, C, H, W]; non-finite values
    /// (a diverged sampler, NaN in the noise or the weights) are an error naming the images.
    public func download() throws -> [Float] {
        let values = try sampler.unet.stream.download(samples, count: images.count * (sampler.count / sampler.unet.batch))
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            let image = images.lowerBound + bad / (sampler.count / sampler.unet.batch)
            throw ModelError("the samples of images \(images.lowerBound)…\(images.upperBound - 1) hold non-finite values (first: \(values[bad]) in image \(image)): the sampler diverged, or the noise or the weights hold NaN or Inf")
        }
        return values
    }
}

/// A model on one device with samplers for any plan: the one loop from noise to samples.
public final class GenerationPipeline {
    public let unet: UNet
    public let schedulerConfiguration: SchedulerConfiguration
    private var samplers: [PlanSampler: Sampler] = [:]

    public init(unet: UNet, schedulerConfiguration: SchedulerConfiguration) throws {
        try Self.checkCanGenerate(unet.config)
        self.unet = unet; self.schedulerConfiguration = schedulerConfiguration
    }

    /// Checks that images can be generated from noise alone with a model of `config`: it predicts
    /// the sample's shape and takes no text conditioning.
    public static func checkCanGenerate(_ config: UNetConfiguration) throws {
        try Sampler.checkCanSample(config)
        if config.isConditional {
            throw ModelError("this is a UNet2DConditionModel (Stable Diffusion): it samples from text, through `generate --prompt` on its pipeline folder (TextToImagePipeline); rfid and search from prompts are not built yet; `forward`, `profile`, `plan show` and `bench unet` run it")
        }
    }

    /// Images per forward pass.
    public var batch: Int { unet.batch }
    /// Values per image (C·H·W).
    public var imageSize: Int { unet.config.inChannels * unet.height * unet.width }

    /// The sampler of `s` on this pipeline's UNet (made once, then reused).
    public func sampler(for s: PlanSampler) throws -> Sampler {
        if let existing = samplers[s] { return existing }
        let made = try Sampler(unet: unet, scheduler: s.scheduler(configuration: schedulerConfiguration), planSampler: s)
        samplers[s] = made
        return made
    }


    /// Generates `count` images with `plan` and hands each batch to `sink`, in order. `progress` is
    /// called after every step (the queue drained first) and may stop the run; without it the
    /// device runs a batch without waiting. Returns false when progress stopped the run.
    @discardableResult
    public func generate(plan: StepPlan, noise: GenerationNoise, count: Int,
                         progress: ((GenerationProgress) -> GenerationControl)? = nil,
                         sink: (GeneratedBatch) throws -> Void) throws -> Bool {
        guard count > 0 else { throw ModelError("the number of images must be positive, not \(count)") }
        if let initial = noise.initial, initial.count != count * imageSize {
            throw ModelError("the initial noise has \(initial.count) values; \(count) images of \(imageSize) need \(count * imageSize)")
        }
        let sampler = try sampler(for: plan.sampler)
        try sampler.prepare(plan)
        let steps = plan.actions.count, total = batches(count) * steps
        let start = DispatchTime.now().uptimeNanoseconds
        var stopped = false
        for b in 0..<batches(count) {
            let images = (b * batch)..<min(count, (b + 1) * batch)
            let observer = GenerationProgress.stepObserver(progress, batch: b, steps: steps, total: total, images: images,
                                                           count: count, start: start)
            guard try runBatch(plan: plan, noise: noise, batch: b, count: count, afterStep: observer) else { stopped = true; break }
            try sink(GeneratedBatch(index: b, images: images, samples: sampler.sampleBuffer, sampler: sampler))
        }
        return !stopped
    }

    /// Initial noise of batch `b` [B, C, H, W]: images b·B ..< (b+1)·B of the seed's stream, or of the
    /// given noise (zeros past its `count` images).
    public func initialNoise(_ noise: GenerationNoise, batch b: Int, count: Int) -> [Float] {
        noise.initial((b * batch)..<((b + 1) * batch), imageSize: imageSize, count: count)
    }

    /// Runs batch `b` of `plan` on its sampler: from the batch's initial noise, or from `resume`'s
    /// sample at step `resume.step` (a state stored earlier, for plans sharing a prefix; only for
    /// samplers that `resumesFromSample`). `beforeStep`
    /// is called before each step after the first run here (with the step index; states may be read
    /// from the sampler then); `afterStep` after each step with the number of steps done (the queue
    /// drained), and may stop the batch. x₀ is left in the sampler's `sampleBuffer`. Returns false
    /// when stopped.
    @discardableResult
    public func runBatch(plan: StepPlan, noise: GenerationNoise, batch b: Int, count: Int,
                         resume: (step: Int, sample: [Float])? = nil,
                         beforeStep: ((Int, Sampler) throws -> Void)? = nil,
                         afterStep: ((Int) -> GenerationControl)? = nil) throws -> Bool {
        let sampler = try sampler(for: plan.sampler)
        var variance = noise.streams.variance(images: (b * batch)..<((b + 1) * batch), imageSize: imageSize)
        if let resume { try sampler.setSample(resume.sample) } else { try sampler.setInitialNoise(initialNoise(noise, batch: b, count: count)) }
        return try sampler.runSteps(plan: plan, from: resume?.step ?? 0, noiseSource: &variance,
                                    beforeStep: beforeStep.map { f in { i in try f(i, sampler) } }, afterStep: afterStep)
    }
}
