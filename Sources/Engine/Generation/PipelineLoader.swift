// Which pipeline a model folder gets, decided once for every command: a Stable Diffusion pipeline
// folder (a UNet2DConditionModel beside its tokenizer, text encoder and VAE; SDXL's with two of each)
// becomes a TextToImagePipeline over the request's prompts; a UNet2DModel a GenerationPipeline.
// Pipelines the engine does not run (inpainting, ControlNet, image-to-image yet, …) are refused by
// the class model_index.json names, with what is missing.
import Foundation
import GPUKernels

/// What a run asks of a model, whichever pipeline the folder gets.
public struct PipelineRequest: Sendable {
    /// Images per batch (the UNet runs twice as many with classifier-free guidance).
    public var batch: Int
    /// The weights variant (diffusers' `variant=`).
    public var variant: String?
    /// Image height and width in pixels (default: the model's sample size; for a latent pipeline,
    /// times the VAE's scale factor).
    public var height: Int?, width: Int?
    /// Text-to-image: the prompts (needed by a Stable Diffusion pipeline, refused for a UNet2DModel)
    /// and the classifier-free guidance scale.
    public var prompts: PromptSet?
    public var guidanceScale: Float = 7.5
    /// SDXL's micro-conditioning (default: the image size, uncropped); refused for other models.
    public var microConditioning: MicroConditioning?
    /// Image-to-image: the init images (the run's size defaults to theirs), and optionally the ε of
    /// their latent samples [count, C, h, w] (default: the seed's encoder stream).
    public var initImages: InitImages?
    public var latentSampleNoise: [Float]?
    /// A class-conditional UNet2DModel's labels (and null class for guidance by `guidanceScale`).
    public var classes: ClassConditioning?

    public init(batch: Int, variant: String? = nil, height: Int? = nil, width: Int? = nil, prompts: PromptSet? = nil,
                guidanceScale: Float = 7.5, microConditioning: MicroConditioning? = nil) {
        self.batch = batch; self.variant = variant; self.height = height; self.width = width
        self.prompts = prompts; self.guidanceScale = guidanceScale; self.microConditioning = microConditioning
    }
}

public enum PipelineLoader {
    /// The pipeline of the model in `folder` (opened as `path`, for messages) on `stream`.
    public static func open(_ folder: ModelFolder, path: String, request: PipelineRequest, stream: ComputeStream) throws -> any ImagePipeline {
        try checkPipelineClass(folder, path: path)
        let config = try UNetConfiguration.load(from: folder.configURL)
        if request.microConditioning != nil && config.textTime == nil {
            throw ModelError(argument: "micro-conditioning (original size, crop, target size) is SDXL's; \(path) is not an SDXL pipeline")
        }
        if config.isConditional {
            guard let prompts = request.prompts else {
                throw ModelError(argument: "\(path) is a Stable Diffusion pipeline: its images come from text, so it needs prompts")
            }
            let images = request.initImages?.images
            let sd = try StableDiffusionFolder(folder, path: path)
            let text: TextToImagePipeline
            do {
                text = try TextToImagePipeline(folder: sd, variant: request.variant, stream: stream,
                                               batch: request.batch, prompts: prompts, height: request.height ?? images?.height,
                                               width: request.width ?? images?.width,
                                               guidanceScale: request.guidanceScale, microConditioning: request.microConditioning)
            } catch let e as ModelError where images != nil && request.height == nil && request.width == nil && e.message.hasPrefix("height and width") {
                // (The size came from the images: say so, and what diffusers would have done.)
                throw ModelError(argument: "the init images are \(images!.width)×\(images!.height): \(e.message); diffusers would resize them (PIL's Lanczos filter, which the engine does not replicate): resize them first")
            }
            guard let initImages = request.initImages else { return text }
            return try ImageToImagePipeline(text: text, images: initImages, latentSampleNoise: request.latentSampleNoise)
        }
        guard request.initImages == nil else {
            throw ModelError(argument: "image-to-image is for Stable Diffusion and SDXL pipelines; \(path) is a UNet2DModel")
        }
        guard request.prompts == nil else {
            throw ModelError(argument: "prompts are for Stable Diffusion pipelines (a UNet2DConditionModel); \(path) is a UNet2DModel")
        }
        try GenerationPipeline.checkCanGenerate(config)
        let schedulerConfiguration = try folder.samplingSchedulerConfiguration(path: path)
        guard let height = request.height ?? config.sampleSize, let width = request.width ?? config.sampleSize else {
            throw ModelError("\(path): the config has no sample_size; give the noise")
        }
        guard request.batch > 0 else { throw ModelError(argument: "the batch must be positive, not \(request.batch)") }
        let guided = config.hasClassEmbedding && request.classes?.nullClass != nil && request.guidanceScale > 1
        let classes = config.hasClassEmbedding ? request.classes ?? ClassConditioning() : request.classes
        let unet = try UNet(config: config, weights: WeightStore(file: SafeTensorsFile(path: folder.weightsURL.path)), stream: stream,
                            batch: guided ? 2 * request.batch : request.batch, height: height, width: width)
        // LDMPipeline: the UNet's samples are latents for the folder's vqvae (or vae).
        let decoder = try GenerationPipeline.latentDecoderFolder(folder).map { dir in
            let c = try AutoencoderKLConfiguration.load(from: dir.appendingPathComponent("config.json"))
            return try AutoencoderKL(config: c, weights: WeightStore(file: SafeTensorsFile(path: ModelFolder.weights(in: dir, variant: request.variant).path)),
                                     part: .decoder, stream: stream, batch: request.batch, height: height * c.downscale, width: width * c.downscale)
        }
        return try GenerationPipeline(unet: unet, schedulerConfiguration: schedulerConfiguration, folder: folder, decoder: decoder,
                                      classes: classes, guidanceScale: guided ? request.guidanceScale : nil)
    }

    /// What each family of diffusers pipelines the engine does not run needs, by a part of its class name.
    static let unsupported: [(part: String, why: String)] = [
        ("Inpaint", "inpainting (a masked image as extra UNet input) is not supported"),
        ("ControlNet", "ControlNet (a second network's residuals) is not supported"),
        ("Upscale", "upscaling (a low-resolution image as UNet input) is not supported"),
        ("Depth2Img", "depth conditioning is not supported"),
        ("InstructPix2Pix", "image-edit conditioning is not supported"),
        ("Adapter", "adapters (T2I-Adapter, IP-Adapter) are not supported"),
        ("Video", "video models are not supported"),
    ]

    /// Refuses a folder whose model_index.json names a pipeline class the engine does not run, naming what is missing.
    static func checkPipelineClass(_ folder: ModelFolder, path: String) throws {
        guard folder.isPipeline, let name = try configClassName(folder.root.appendingPathComponent("model_index.json")) else { return }
        if let (_, why) = unsupported.first(where: { name.contains($0.part) }) {
            throw ModelError("\(path): \(name): \(why); the engine runs Stable Diffusion (1.x, 2.x, XL) text-to-image and image-to-image, DDPMPipeline and DDIMPipeline folders")
        }
    }
}
