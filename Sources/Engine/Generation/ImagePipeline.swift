// What rFID, the search's scorer and plan timing need of a pipeline, whatever makes its images:
// batches of images from a step plan and a seed's noise, left on the device for a feature network.
// GenerationPipeline (a UNet2DModel: its samples are the images) and PromptedPipeline (a Stable
// Diffusion pipeline over a prompt set: latents decoded by the VAE) conform, so `rfid`, `search` and
// their caches work the same on both.
import Foundation
import GPUKernels

public protocol ImagePipeline: AnyObject {
    /// The denoiser: its stream, branches (partial steps) and step latencies.
    var unet: UNet { get }
    /// Images per batch (the UNet's batch, or half of it with classifier-free guidance).
    var batch: Int { get }
    /// One image's shape [C, H, W], as feature networks see it.
    var imageShape: [Int] { get }
    /// The sampler of `s` (made once, then reused).
    func sampler(for s: PlanSampler) throws -> Sampler
    /// Runs batch `b` of `plan` (images b·B ..< (b+1)·B of the seed's streams; `count` images in the
    /// run) from its initial noise, or from `resume`'s sample at step `resume.step`; `beforeStep`
    /// before each step after the first run here, `afterStep` after each (may stop: returns false).
    /// Afterwards `images(of:)` holds the batch's images.
    @discardableResult
    func runBatch(plan: StepPlan, noise: GenerationNoise, batch b: Int, count: Int, resume: (step: Int, sample: [Float])?,
                  beforeStep: ((Int, Sampler) throws -> Void)?, afterStep: ((Int) -> GenerationControl)?) throws -> Bool
    /// The images of the batch `runBatch` last ran with `plan`'s sampler, [batch, C, H, W] on the device
    /// in model space (about [-1, 1]); valid until the next run.
    func images(of plan: StepPlan) throws -> DeviceBuffer<Float>
}

extension ImagePipeline {
    /// Number of batches for `count` images.
    public func batches(_ count: Int) -> Int { (count + batch - 1) / batch }

    /// Whether a run of `s` can resume from its sample alone: no variance noise at any step (DDIM with
    /// eta 0) and no history of model outputs (not a multistep solver).
    public func resumesFromSample(_ s: PlanSampler) throws -> Bool {
        let scheduler = try sampler(for: s).scheduler
        return scheduler.isDeterministic && scheduler.historyLength == 0
    }

    /// Values of one image.
    public var imageValues: Int { imageShape.reduce(1, *) }

    /// Seconds to generate `count` images with `plan` from `noise`, read back to the host as
    /// `generate` reads them (work queued before is finished first, outside the time).
    public func timeGeneration(plan: StepPlan, noise: GenerationNoise, count: Int) throws -> Double {
        try unet.stream.finish()
        let t0 = DispatchTime.now().uptimeNanoseconds
        try generateImages(plan: plan, noise: noise, count: count) { _, _ in }
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    /// Generates `count` images with `plan` from `noise` and hands each batch's real images, read back
    /// to the host [n, C, H, W], to `sink` with their range. Non-finite values are an error naming the images.
    public func generateImages(plan: StepPlan, noise: GenerationNoise, count: Int, sink: (Range<Int>, [Float]) throws -> Void) throws {
        guard count > 0 else { throw ModelError("the number of images must be positive, not \(count)") }
        let size = imageValues
        for b in 0..<batches(count) {
            let images = (b * batch)..<min(count, (b + 1) * batch)
            try runBatch(plan: plan, noise: noise, batch: b, count: count, resume: nil, beforeStep: nil, afterStep: nil)
            let values = try unet.stream.download(try self.images(of: plan), count: images.count * size)
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw ModelError("images \(images.lowerBound)…\(images.upperBound - 1) hold non-finite values (first: \(values[bad]) in image \(images.lowerBound + bad / size)): the sampler diverged, or the noise or the weights hold NaN or Inf")
            }
            try sink(images, values)
        }
    }
}

extension GenerationPipeline: ImagePipeline {
    public var imageShape: [Int] { [unet.config.outChannels, unet.height, unet.width] }

    public func images(of plan: StepPlan) throws -> DeviceBuffer<Float> { try sampler(for: plan.sampler).sampleBuffer }
}
