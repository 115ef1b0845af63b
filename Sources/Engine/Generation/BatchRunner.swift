// The engine's one batch loop, for every ImagePipeline: a step plan (its sampler), initial noise
// from a seed or given, a count → images batch by batch, handed to a sink while they are still on
// the device (so FID and rFID never hold all images). Here and only here: the batches and the last
// batch's padding, the noise streams (NoiseStreams, Noise.swift: image i's noise is the same
// whatever the batch size, so a last batch is filled with the stream's next images, or zeros for
// given noise, and the extra outputs are dropped), resuming from a stored state, progress and
// stopping, and the non-finite check of what comes back. Pipelines say only how a batch is
// conditioned and how its images come out (ImagePipeline.swift).
import Foundation
import GPUKernels

/// Where a generation's noise comes from.
public struct GenerationNoise: Sendable {
    /// The seed of the noise streams (initial noise unless `initial` is given; variance noise always).
    public var seed: UInt64
    /// Given initial noise [count, C, H, W] (as `generate --noise` or `--latents` reads it), instead of the seed's.
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

/// Progress of a generation, after each sampler step.
public struct GenerationProgress: Sendable {
    /// Steps run so far over all batches, and how many the run has.
    public var stepsDone: Int, stepsTotal: Int
    /// Images finished, and the run's count.
    public var imagesDone: Int, count: Int
    /// Seconds since the run started.
    public var seconds: Double
}

/// What a progress handler returns: go on, or stop the run after the current step.
public enum GenerationControl: Sendable { case proceed, stop }

/// A stored sampler state to continue a batch from: the sample before step `step` (for plans
/// sharing a prefix; only for samplers whose state is the sample alone, `resumesFromSample`).
public struct ResumeState {
    public var step: Int
    public var sample: [Float]
    public init(step: Int, sample: [Float]) { self.step = step; self.sample = sample }
}

/// One generated batch, valid while the sink runs.
public struct GeneratedBatch {
    /// The batch's index b: images b·B ..< b·B + images.count of the run.
    public let index: Int
    /// Which of the run's images the batch holds (its first `images.count` rows are real).
    public let images: Range<Int>
    /// The batch's images [B, C, H, W] on the device, in model space (the pipeline's output buffer).
    public let output: DeviceBuffer<Float>
    /// The sampler that ran the batch (its sample holds the final latents).
    public let sampler: Sampler
    let imageValues: Int

    /// The batch's real images, read back to the host [images.count, C, H, W]; non-finite values
    /// (a diverged sampler, NaN in the noise or the weights) are an error naming the images.
    public func download() throws -> [Float] {
        let values = try sampler.unet.stream.download(output, count: images.count * imageValues)
        if let bad = firstNonFinite(values, perImage: imageValues, firstImage: images.lowerBound) {
            throw ModelError("images \(images.lowerBound)…\(images.upperBound - 1) hold non-finite values (first: \(bad.value) in image \(bad.image)): the sampler diverged, or the noise or the weights hold NaN or Inf")
        }
        return values
    }

    /// The batch's final samples (a latent pipeline's latents) of its real images [images.count, C, h, w]
    /// (with guidance, the first half: both hold the same).
    public func latents() throws -> [Float] {
        let size = sampler.imageValues
        let values = try sampler.unet.stream.download(sampler.sampleBuffer, count: images.count * size)
        if let bad = firstNonFinite(values, perImage: size, firstImage: images.lowerBound) {
            throw ModelError("the latents of image \(bad.image) hold non-finite values (\(bad.value)): the sampler diverged, or the latents or the weights hold NaN or Inf")
        }
        return values
    }
}

extension ImagePipeline {
    /// Number of batches for `count` images.
    public func batches(_ count: Int) -> Int { (count + batch - 1) / batch }

    /// Values of one image as the pipeline hands it out.
    public var imageValues: Int { imageShape.reduce(1, *) }

    /// Values of one image's initial noise and sample (C·h·w of the UNet's input).
    public var sampleValues: Int { unet.config.inChannels * unet.height * unet.width }

    /// One image's sample shape [C, h, w] (latents, for a latent pipeline).
    public var sampleShape: [Int] { [unet.config.inChannels, unet.height, unet.width] }

    /// Copies of each image in the UNet's batch: 2 with classifier-free guidance, else 1.
    var copies: Int { unet.batch / batch }

    /// Whether a run of `s` can resume from its sample alone: no variance noise at any step (DDIM with
    /// eta 0) and no history of model outputs (not a multistep solver).
    public func resumesFromSample(_ s: PlanSampler) throws -> Bool {
        let scheduler = try sampler(for: s).scheduler
        return scheduler.isDeterministic && scheduler.historyLength == 0
    }

    /// Runs batch `b` of `plan` (images b·B ..< (b+1)·B of the seed's streams; `count` images in the
    /// run): conditions it, sets its sample — the batch's initial noise (given noise, zeros past its
    /// `count` images, or the seed's stream), or `resume`'s sample — and runs the steps. `beforeStep`
    /// is called before each step after the first run here (with the step index; states may be read
    /// from the sampler then); `afterStep` after each step with the number of steps done (the queue
    /// drained), and may stop the batch. Returns the batch's images on the device (`output(of:)`),
    /// nil when stopped.
    @discardableResult
    public func runBatch(plan: StepPlan, noise: GenerationNoise, batch b: Int, count: Int, resume: ResumeState? = nil,
                         beforeStep: ((Int, Sampler) throws -> Void)? = nil,
                         afterStep: ((Int) -> GenerationControl)? = nil) throws -> DeviceBuffer<Float>? {
        let sampler = try sampler(for: plan.sampler)
        let slots = (b * batch)..<((b + 1) * batch)
        try condition(images: slots.map { min($0, count - 1) })
        if let resume {
            try sampler.setSample(resume.sample)
        } else {
            try setInitialSample(sampler, noise: noise.initial(slots, imageSize: sampleValues, count: count), generation: noise,
                                 slots: slots, count: count)
        }
        var variance = noise.streams.variance(images: slots, imageSize: sampleValues)
        let done = try sampler.runSteps(plan: plan, from: resume?.step ?? 0, noiseSource: &variance,
                                        beforeStep: beforeStep.map { f in { i in try f(i, sampler) } }, afterStep: afterStep)
        guard done else { return nil }
        return try output(of: sampler, images: slots.lowerBound..<min(count, slots.upperBound))
    }

    /// Generates `count` images with `plan` and hands each batch to `sink`, in order. `progress` is
    /// called after every step (the queue drained first) and may stop the run; without it the
    /// device runs a batch without waiting. Returns false when progress stopped the run.
    @discardableResult
    public func generate(plan: StepPlan, noise: GenerationNoise, count: Int,
                         progress: ((GenerationProgress) -> GenerationControl)? = nil,
                         sink: (GeneratedBatch) throws -> Void) throws -> Bool {
        guard count > 0 else { throw ModelError("the number of images must be positive, not \(count)") }
        if let initial = noise.initial, initial.count != count * sampleValues {
            throw ModelError("the initial noise has \(initial.count) values; \(count) images of \(sampleShape) need \(count * sampleValues)")
        }
        let sampler = try sampler(for: plan.sampler)
        try sampler.prepare(plan)
        let steps = plan.actions.count, total = batches(count) * steps
        let start = DispatchTime.now().uptimeNanoseconds
        for b in 0..<batches(count) {
            let images = (b * batch)..<min(count, (b + 1) * batch)
            let observer = progress.map { handler in
                { (step: Int) -> GenerationControl in
                    handler(GenerationProgress(stepsDone: b * steps + step, stepsTotal: total,
                                               imagesDone: images.lowerBound + (step == steps ? images.count : 0), count: count,
                                               seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
                }
            }
            guard let output = try runBatch(plan: plan, noise: noise, batch: b, count: count, afterStep: observer) else { return false }
            try sink(GeneratedBatch(index: b, images: images, output: output, sampler: sampler, imageValues: imageValues))
        }
        return true
    }

    /// Generates `count` images with `plan` from `noise` and hands each batch's real images, read back
    /// to the host [n, C, H, W], to `sink` with their range. Non-finite values are an error naming the images.
    public func generateImages(plan: StepPlan, noise: GenerationNoise, count: Int, sink: (Range<Int>, [Float]) throws -> Void) throws {
        try generate(plan: plan, noise: noise, count: count) { try sink($0.images, try $0.download()) }
    }

    /// Seconds to generate `count` images with `plan` from `noise`, read back to the host as
    /// `generate` reads them (work queued before is finished first, outside the time).
    public func timeGeneration(plan: StepPlan, noise: GenerationNoise, count: Int) throws -> Double {
        try unet.stream.finish()
        let t0 = DispatchTime.now().uptimeNanoseconds
        try generateImages(plan: plan, noise: noise, count: count) { _, _ in }
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }
}
