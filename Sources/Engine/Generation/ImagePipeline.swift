// What a pipeline is to the engine's one batch loop (BatchRunner.swift): a UNet with its samplers,
// images per batch, and the two things that differ between pipelines — what a batch is conditioned
// on before its steps (nothing for a UNet2DModel; text embeddings for Stable Diffusion) and how its
// images come out of the final sample (the sample itself; latents decoded by a VAE). `generate`,
// `rfid`, the search's scorer, plan timing and the tests run every pipeline through that loop.
// GenerationPipeline (UNet2DModel) and TextToImagePipeline (StableDiffusionPipeline) conform; a new
// pipeline (SDXL, image-to-image) is one more conformer, not one more loop.
import Foundation
import GPUKernels

public protocol ImagePipeline: AnyObject {
    /// The denoiser: its stream, branches (partial steps) and step latencies.
    var unet: UNet { get }
    /// Images per batch (the UNet's batch, or half of it with classifier-free guidance).
    var batch: Int { get }
    /// One image's shape [C, H, W] as the pipeline hands images out (and feature networks see them).
    var imageShape: [Int] { get }
    /// The samplers of this pipeline's UNet (made once per plan sampler, with its guidance).
    var samplers: SamplerCache { get }
    /// Sets what the batch of run images `images` (one index per batch slot; a last batch is padded
    /// with the run's last image) is conditioned on, before its steps.
    func condition(images: [Int]) throws
    /// The batch's images [batch, C, H, W] on the device, in model space (about [-1, 1]), from
    /// `sampler`'s final sample (the run's images `images`, for messages); valid until the next batch.
    func output(of sampler: Sampler, images: Range<Int>) throws -> DeviceBuffer<Float>
    /// A key of everything that determines the images besides the plan and the seed: weights,
    /// configs, prompts, guidance, size (rFID's teacher-feature cache and results files use it).
    func contentKey() throws -> String
    /// Sets `sampler`'s first sample for the run's images `slots` (of `count`) from their initial
    /// noise `noise` (one copy, [slots.count, …]): the noise scaled by `init_noise_sigma` (in both
    /// halves with guidance), or for image-to-image the init images' noised latents.
    func setInitialSample(_ sampler: Sampler, noise: [Float], generation: GenerationNoise, slots: Range<Int>, count: Int) throws
}

extension ImagePipeline {
    /// No conditioning (a UNet2DModel).
    public func condition(images: [Int]) throws {}

    /// The initial noise scaled by init_noise_sigma, in both halves with guidance.
    public func setInitialSample(_ sampler: Sampler, noise: [Float], generation: GenerationNoise, slots: Range<Int>, count: Int) throws {
        try sampler.setInitialNoise(copies == 1 ? noise : Array([[Float]](repeating: noise, count: copies).joined()))
    }

    /// The sampler of `s` on this pipeline's UNet (made once, then reused).
    public func sampler(for s: PlanSampler) throws -> Sampler { try samplers.sampler(for: s) }

    /// A latent pipeline's images: the batch's final latents (the first `batch` of the sampler's: with
    /// guidance both halves hold the same) divided by the decoder's scaling_factor and decoded; latents
    /// that are not finite are an error naming the image (`images`: the run's images of the batch).
    func decoded(_ sampler: Sampler, by decoder: AutoencoderKL, images: Range<Int>) throws -> DeviceBuffer<Float> {
        let latents = try unet.stream.download(sampler.sampleBuffer, count: batch * sampleValues)
        if let bad = firstNonFinite(latents, perImage: sampleValues, firstImage: images.lowerBound) {
            throw ModelError("the latents of image \(bad.image) hold non-finite values (\(bad.value)): the sampler diverged, or the latents or the weights hold NaN or Inf")
        }
        try decoder.decodeScaledOnDevice(latents)
        return decoder.output
    }

    /// The pipeline's scheduler settings (the model folder's scheduler config).
    public var schedulerConfiguration: SchedulerConfiguration { samplers.schedulerConfiguration }
}

/// The samplers of one UNet and scheduler configuration, one per plan sampler, made at first use.
/// With classifier-free guidance (a scale above 1) the UNet's batch holds two halves of the same
/// images and every sampler combines them, which needs a deterministic scheduler (the halves would
/// diverge under variance noise).
public final class SamplerCache {
    public let unet: UNet
    public let schedulerConfiguration: SchedulerConfiguration
    /// The guidance scale every sampler applies (nil: none).
    public let guidanceScale: Float?
    /// Whether the samplers run image-to-image (a strength: the kept part of the schedule) or from noise.
    public let imageToImage: Bool
    private var made: [PlanSampler: Sampler] = [:]

    public init(unet: UNet, schedulerConfiguration: SchedulerConfiguration, guidanceScale: Float? = nil, imageToImage: Bool = false) {
        precondition(guidanceScale == nil || unet.batch % 2 == 0, "guidance needs an even UNet batch (two halves)")
        self.unet = unet; self.schedulerConfiguration = schedulerConfiguration; self.guidanceScale = guidanceScale
        self.imageToImage = imageToImage
    }

    public func sampler(for s: PlanSampler) throws -> Sampler {
        if let existing = made[s] { return existing }
        if imageToImage && s.strength == nil {
            throw ModelError(argument: "this is an image-to-image run: the sampler (\(s)) needs a strength — a plan made with --strength, or --strength")
        }
        if !imageToImage, let strength = s.strength {
            throw ModelError(argument: "the sampler (\(s)) has strength \(strength), which is for image-to-image: give init images (--image or --images)")
        }
        let sampler = try Sampler(unet: unet, scheduler: s.scheduler(configuration: schedulerConfiguration), planSampler: s)
        if let guidanceScale {
            guard sampler.scheduler.isDeterministic else {
                throw ModelError(argument: "\(s) draws variance noise at its steps, which guidance does not support here yet (the two halves would diverge): use a deterministic sampler (ddim with eta 0, pndm, dpmsolver++, unipc, euler)")
            }
            sampler.guidanceScale = guidanceScale
        }
        made[s] = sampler
        return sampler
    }
}
