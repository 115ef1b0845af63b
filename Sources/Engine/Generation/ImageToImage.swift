// Image-to-image for Stable Diffusion and SDXL with the semantics of diffusers'
// StableDiffusionImg2ImgPipeline and StableDiffusionXLImg2ImgPipeline (0.42), as an ImagePipeline
// over a TextToImagePipeline (the same prompts, guidance, text encoders, UNet and decoder): each
// batch's init images are encoded by the VAE's encoder (`latent_dist.sample`: mean + std·ε, ε from
// the seed's encoder stream or given), scaled by `scaling_factor`, and noised at the first kept
// timestep (`scheduler.add_noise`); the plan's sampler carries the strength and runs the kept steps
// (Schedulers/ImageToImageScheduler.swift). No init_noise_sigma scaling, as diffusers'.
import Foundation
import GPUKernels

/// The init images of an image-to-image run: image i of the run starts from `images` image i mod n.
public struct InitImages: Sendable {
    public let images: ImageSet
    /// Notes on what was changed to read them (grey images made RGB), for the caller to print.
    public let notes: [String]

    /// Model-space images ([-1, 1]) as read from PNGs: grey ones become RGB (R = G = B, as PIL's
    /// convert("RGB")); PNG alpha is dropped by the reader. `source` names them in messages.
    public init(_ set: ImageSet, source: String) throws {
        var notes: [String] = []
        switch set.channels {
        case 3: images = set
        case 1:
            let n = set.height * set.width
            let rgb = (0..<set.count).flatMap { i -> [Float] in
                let plane = set.values[(i * n)..<((i + 1) * n)]
                return Array(plane) + plane + plane
            }
            images = ImageSet(count: set.count, channels: 3, height: set.height, width: set.width, values: rgb)
            notes.append("note: \(source): grey images are read as RGB (R = G = B), as PIL's convert(\"RGB\") makes them (diffusers takes RGB images)")
        default:
            throw ModelError("\(source): images of \(set.channels) channels; image-to-image takes RGB or grey images")
        }
        self.notes = notes
    }
}

public final class ImageToImagePipeline: ImagePipeline {
    /// The text-to-image pipeline whose prompts, UNet and decoder the run uses.
    public let text: TextToImagePipeline
    public let initImages: InitImages
    public let encoder: AutoencoderKL
    /// Given ε of the encoder's latent sample [count, C, h, w] (`--noise FILE`'s `latent_sample_noise`),
    /// instead of the seed's encoder stream.
    public let latentSampleNoise: [Float]?
    public let samplers: SamplerCache
    public var unet: UNet { text.unet }
    public var batch: Int { text.batch }
    public var imageShape: [Int] { text.imageShape }

    /// diffusers' default strength: StableDiffusionImg2ImgPipeline's 0.8, StableDiffusionXLImg2ImgPipeline's 0.3.
    public static func defaultStrength(xl: Bool) -> Double { xl ? 0.3 : 0.8 }

    /// The images must have the pipeline's size (`text`'s height and width): diffusers would resize
    /// them with PIL's Lanczos filter, which the engine does not replicate.
    public init(text: TextToImagePipeline, images: InitImages, latentSampleNoise: [Float]? = nil) throws {
        let set = images.images
        guard set.height == text.height, set.width == text.width else {
            throw ModelError(argument: "the init images are \(set.width)×\(set.height); this run makes \(text.width)×\(text.height) images: give images of that size, or leave --height and --width out (they default to the images' size)")
        }
        let vae = text.folder.vae
        let config = try AutoencoderKLConfiguration.load(from: vae.appendingPathComponent("config.json"))
        guard config.inChannels == 3 else { throw ModelError("\(vae.path): the VAE takes \(config.inChannels) channels; image-to-image feeds it RGB images") }
        guard config.shiftFactor == nil else {
            throw ModelError("\(vae.path): shift_factor \(config.shiftFactor!) (SD3's and Flux's VAEs): the image-to-image pipelines here are Stable Diffusion's and SDXL's, which scale latents only")
        }
        let weights = try ModelFolder.weights(in: vae, variant: text.variant)
        encoder = try AutoencoderKL(config: config, weights: WeightStore(file: SafeTensorsFile(path: weights.path)), part: .encoder,
                                    stream: text.unet.stream, batch: text.batch, height: text.height, width: text.width)
        self.text = text; self.initImages = images; self.latentSampleNoise = latentSampleNoise
        samplers = SamplerCache(unet: text.unet, schedulerConfiguration: text.samplers.schedulerConfiguration,
                                guidanceScale: text.samplers.guidanceScale, imageToImage: true)
    }

    public func condition(images: [Int]) throws { try text.condition(images: images) }

    /// The batch's init latents, noised at the sampler's first step: (scaling_factor · (mean + std·ε))·signal
    /// + noise·level, in both halves with guidance.
    public func setInitialSample(_ sampler: Sampler, noise: [Float], generation: GenerationNoise, slots: Range<Int>, count: Int) throws {
        let set = initImages.images, size = set.imageSize, last = max(0, count - 1)
        let pixels = slots.flatMap { slot -> ArraySlice<Float> in
            let i = min(slot, last) % set.count
            return set.values[(i * size)..<((i + 1) * size)]
        }
        let (mean, logvar) = try encoder.encode(pixels)
        let latentSize = sampleValues
        let eps: [Float]
        if let given = latentSampleNoise {
            guard given.count == count * latentSize else {
                throw ModelError("the latent sample noise has \(given.count) values; \(count) images of \(sampleShape) need \(count * latentSize)")
            }
            eps = slots.flatMap { slot -> [Float] in
                slot < count ? Array(given[(slot * latentSize)..<((slot + 1) * latentSize)]) : [Float](repeating: 0, count: latentSize)
            }
        } else {
            eps = generation.streams.encoderSampleNoise(images: slots, imageSize: latentSize)
        }
        let (signal, level) = sampler.scheduler.addNoiseLevels(step: 0)
        let scale = Float(encoder.config.scalingFactor)
        var start = [Float](repeating: 0, count: mean.count)
        for k in start.indices {
            let latent = scale * (mean[k] + exp(0.5 * logvar[k]) * eps[k])
            start[k] = latent * signal + noise[k] * level
        }
        try sampler.setSample(copies == 1 ? start : Array([[Float]](repeating: start, count: copies).joined()))
    }

    public func output(of sampler: Sampler, images: Range<Int>) throws -> DeviceBuffer<Float> { try text.output(of: sampler, images: images) }

    /// The text-to-image key and the init images (their values: the run's images depend on nothing else here).
    public func contentKey() throws -> String {
        var h = FNV1a()
        h.add(Array(try text.contentKey().utf8))
        let set = initImages.images
        h.add(Array("img2img \(set.count)×\(set.channels)×\(set.height)×\(set.width)".utf8))
        set.values.withUnsafeBytes { h.add($0) }
        return h.hex
    }
}
