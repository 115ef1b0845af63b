// Stable Diffusion's text-to-image pipeline with diffusers' StableDiffusionPipeline semantics, and
// SDXL's with StableDiffusionXLPipeline's, as an ImagePipeline (the batch loop is BatchRunner's):
// prompts tokenized to 77 ids and encoded by the folder's text encoder(s) (PromptEncoders.swift);
// classifier-free guidance with the unconditional (negative prompt, else "" — or SDXL's zeros) and
// conditional halves in one UNet batch; latents from a seed's noise streams (or given) scaled by the
// scheduler's init_noise_sigma; any step plan (its partial and null steps apply to both halves); the
// VAE decoding latents / scaling_factor. Port of diffusers 0.42's StableDiffusionPipeline.__call__
// and StableDiffusionXLPipeline.__call__ (no safety checker, no watermark, no guidance_rescale).
import Foundation
import GPUKernels

/// A pipeline folder as `save_pretrained` writes it (or a Hugging Face cache snapshot of one):
/// model_index.json, tokenizer/, text_encoder/, unet/, vae/ and scheduler/ — and for SDXL (a UNet
/// with the text_time embedding) tokenizer_2/ and text_encoder_2/.
public struct StableDiffusionFolder: Sendable {
    public let unet: ModelFolder
    public let tokenizer: URL, textEncoder: URL, vae: URL
    /// SDXL's second tokenizer and text encoder (nil for SD 1.x/2.x).
    public let tokenizer2: URL?, textEncoder2: URL?
    /// SDXL's `force_zeros_for_empty_prompt` (model_index.json; StableDiffusionXLPipeline's default true).
    public let forceZerosForEmptyPrompt: Bool
    public var root: URL { unet.root }
    public var isXL: Bool { textEncoder2 != nil }

    public init(path: String, variant: String? = nil) throws {
        try self.init(try ModelFolder(path: path, variant: variant), path: path)
    }

    /// The pipeline folder around `unet` (opened as `path`, for messages).
    public init(_ unet: ModelFolder, path: String) throws {
        self.unet = unet
        let root = unet.root, fm = FileManager.default
        guard fm.fileExists(atPath: root.appendingPathComponent("model_index.json").path) else {
            throw ModelError("\(path) is a UNet folder; text-to-image needs a pipeline folder (model_index.json, tokenizer/, text_encoder/, unet/, vae/, scheduler/)")
        }
        tokenizer = root.appendingPathComponent("tokenizer")
        textEncoder = root.appendingPathComponent("text_encoder")
        vae = root.appendingPathComponent("vae")
        let index = root.appendingPathComponent("model_index.json")
        let xl = try UNetConfiguration.load(from: unet.configURL).textTime != nil
        if xl {
            tokenizer2 = root.appendingPathComponent("tokenizer_2")
            textEncoder2 = root.appendingPathComponent("text_encoder_2")
            if !fm.fileExists(atPath: textEncoder.path) && fm.fileExists(atPath: textEncoder2!.path) {
                throw ModelError("\(path): text_encoder_2/ without text_encoder/ is an SDXL refiner (image-to-image with an aesthetic score), which is not supported: SDXL base's text-to-image needs both text encoders")
            }
            forceZerosForEmptyPrompt = try pipelineConfigBool(index: index, key: "force_zeros_for_empty_prompt") ?? true
        } else {
            (tokenizer2, textEncoder2, forceZerosForEmptyPrompt) = (nil, nil, false)
        }
        let needed = [("tokenizer", tokenizer), ("text_encoder", textEncoder), ("vae", vae)]
            + (xl ? [("tokenizer_2", tokenizer2!), ("text_encoder_2", textEncoder2!)] : [])
        for (name, url) in needed where !fm.fileExists(atPath: url.path) {
            throw ModelError("\(path): no \(name)/ folder, which \(xl ? "SDXL's" : "") text-to-image needs\(xl && name.hasSuffix("_2") ? " (its second CLIP tokenizer and CLIPTextModelWithProjection)" : "")")
        }
        try unet.checkCanSample(path: path)
    }
}

/// The prompts of a text-to-image run as a function of the image index: image i's prompt is
/// `prompts[i mod n]` (one for all, one per image, or a prompt set cycled, as rFID and the search
/// use it), its negative prompt `negativePrompts[i mod m]` ("" when there is none).
public struct PromptSet: Sendable, Hashable {
    public let prompts: [String], negativePrompts: [String]

    public init(_ prompts: [String], negativePrompts: [String] = []) throws {
        guard !prompts.isEmpty else { throw ModelError(argument: "text-to-image needs a prompt") }
        self.prompts = prompts; self.negativePrompts = negativePrompts
    }

    public func prompt(_ image: Int) -> String { prompts[image % prompts.count] }
    public func negativePrompt(_ image: Int) -> String { negativePrompts.isEmpty ? "" : negativePrompts[image % negativePrompts.count] }
}

/// The text, UNet and VAE of a Stable Diffusion (1.x, 2.x or XL) pipeline on one device, for batches of
/// `batch` images of `height` × `width` pixels from `prompts`.
public final class TextToImagePipeline: ImagePipeline {
    public let folder: StableDiffusionFolder, variant: String?
    /// The tokenizers and text encoders: SD's one, or SDXL's two with the added conditions.
    public let promptEncoder: any PromptEncoder
    /// The UNet, batch 2·`batch` with guidance (unconditional half first), else `batch`.
    public let unet: UNet
    public let decoder: AutoencoderKL
    public let samplers: SamplerCache
    public let prompts: PromptSet
    /// Images per pass, and the classifier-free guidance scale (≤ 1: none, as diffusers decides).
    public let batch: Int, guidanceScale: Float
    public let height: Int, width: Int

    public var guided: Bool { guidanceScale > 1 }

    /// The prompts and negative prompts longer than the text encoder reads, with their token counts:
    /// their ends are cut off, as diffusers' pipeline cuts them (it warns, and so should a caller).
    public var truncatedPrompts: [(text: String, tokens: Int)] {
        let limit = promptEncoder.maxLength - 2
        return Array(Set(prompts.prompts + prompts.negativePrompts)).sorted().compactMap { text in
            let n = promptEncoder.tokenizers.map { $0.tokens(text).count }.max() ?? 0
            return n > limit ? (text, n) : nil
        }
    }

    /// Values of one image's latents (C · H/f · W/f).
    public var latentSize: Int { sampleValues }
    public var latentShape: [Int] { sampleShape }
    /// Values of one decoded image (3 · H · W).
    public var imageSize: Int { imageValues }
    public var imageShape: [Int] { [decoder.config.outChannels, height, width] }

    /// `height` and `width` default to the UNet's sample_size times the VAE's scale factor (512 for SD 1.5,
    /// 1024 for SDXL). SDXL's `microConditioning` defaults to the image size, uncropped, as diffusers'; it
    /// is refused for other models.
    public init(folder: StableDiffusionFolder, variant: String? = nil, stream: ComputeStream, batch: Int, prompts: PromptSet,
                height: Int? = nil, width: Int? = nil, guidanceScale: Float = 7.5,
                microConditioning: MicroConditioning? = nil) throws {
        guard batch > 0 else { throw ModelError(argument: "the batch must be positive, not \(batch)") }
        try Self.checkGuidance(guidanceScale)
        let config = try UNetConfiguration.load(from: folder.unet.configURL)
        guard let cross = config.crossAttention else {
            throw ModelError("\(folder.unet.configURL.path): a UNet2DModel; text-to-image needs a UNet2DConditionModel")
        }
        try Sampler.checkCanSample(config)
        let vaeConfig = try AutoencoderKLConfiguration.load(from: folder.vae.appendingPathComponent("config.json"))
        let f = vaeConfig.downscale
        let h = height ?? (config.sampleSize ?? 64) * f, w = width ?? (config.sampleSize ?? 64) * f
        guard h > 0, w > 0, h % f == 0, w % f == 0, h <= 1 << 16, w <= 1 << 16 else {
            throw ModelError(argument: "height and width must be positive multiples of the VAE's scale factor \(f), at most 65536 (got \(h)×\(w))")
        }
        let multiple = f * config.spatialMultiple
        guard h % multiple == 0, w % multiple == 0 else {
            throw ModelError(argument: "height and width must be multiples of \(multiple) (the VAE's scale factor \(f) times the UNet's \(config.spatialMultiple) for its \(config.levels) levels), not \(w)×\(h) (width × height)")
        }
        if microConditioning != nil && config.textTime == nil {
            throw ModelError(argument: "micro-conditioning (original size, crop, target size) is SDXL's; this pipeline's UNet has no text_time embedding")
        }
        let sequences = guidanceScale > 1 ? 2 * batch : batch   // the UNet's batch and the text encoder's
        let timeIDs = (microConditioning ?? MicroConditioning()).timeIDs(height: h, width: w)
        if let t2 = folder.textEncoder2, let k2 = folder.tokenizer2 {
            promptEncoder = try DualCLIPPromptEncoder(tokenizers: (folder.tokenizer, k2), textEncoders: (folder.textEncoder, t2), variant: variant,
                                                      stream: stream, sequences: sequences,
                                                      forceZerosForEmptyPrompt: folder.forceZerosForEmptyPrompt, timeIDs: timeIDs)
        } else {
            guard config.textTime == nil else { throw ModelError("\(folder.root.path): SDXL's UNet needs its pipeline's two text encoders") }
            promptEncoder = try CLIPPromptEncoder(tokenizer: folder.tokenizer, textEncoder: folder.textEncoder, variant: variant,
                                                  stream: stream, sequences: sequences)
        }
        guard promptEncoder.contextDim == cross.dim else {
            throw ModelError(folder.isXL
                ? "the text encoders' hidden sizes add up to \(promptEncoder.contextDim), not the UNet's cross_attention_dim \(cross.dim)"
                : "the text encoder's hidden_size \(promptEncoder.contextDim) differs from the UNet's cross_attention_dim \(cross.dim)")
        }
        guard vaeConfig.latentChannels == config.inChannels else {
            throw ModelError("the VAE's latent_channels \(vaeConfig.latentChannels) differ from the UNet's in_channels \(config.inChannels)")
        }
        if let a = config.textTime, let dual = promptEncoder as? DualCLIPPromptEncoder {
            // diffusers' _get_add_time_ids check, in its words' sense: projection input = time ids · their width + text_embeds.
            let made = timeIDs.count * a.timeDim + dual.pooledDim
            guard made == a.inputDim else {
                throw ModelError("the UNet expects an added embedding of \(a.inputDim) values (projection_class_embeddings_input_dim), but \(timeIDs.count) time ids of \(a.timeDim) and text_encoder_2's projection_dim \(dual.pooledDim) make \(made): check unet/config.json's addition_time_embed_dim and text_encoder_2's projection_dim")
            }
        }
        unet = try UNet(config: config, weights: WeightStore(file: SafeTensorsFile(path: folder.unet.weightsURL.path)), stream: stream,
                        batch: sequences, height: h / f, width: w / f, contextLength: promptEncoder.maxLength,
                        timeIDs: timeIDs.count)
        let vaeFile = try ModelFolder.weights(in: folder.vae, variant: variant)
        decoder = try AutoencoderKL(config: vaeConfig, weights: WeightStore(file: SafeTensorsFile(path: vaeFile.path)), part: .decoder,
                                    stream: stream, batch: batch, height: h, width: w)
        samplers = SamplerCache(unet: unet, schedulerConfiguration: try folder.unet.schedulerConfiguration(),
                                guidanceScale: guidanceScale > 1 ? guidanceScale : nil)
        self.folder = folder; self.variant = variant; self.prompts = prompts
        self.batch = batch; self.guidanceScale = guidanceScale; self.height = h; self.width = w
        self.timeIDs = folder.isXL ? timeIDs : nil
    }

    /// SDXL's `time_ids` of every image (nil for SD 1.x/2.x).
    public let timeIDs: [Float]?

    /// The guidance scale's one check (the command line's options and the pipeline both ask it).
    public static func checkGuidance(_ scale: Float) throws {
        guard scale.isFinite else { throw ModelError(argument: "the guidance scale must be finite, not \(scale)") }
    }

    /// Writes the batch's text conditioning (negative then positive halves with guidance) into the
    /// UNet's workspace: slot j holds run image `images[j]`.
    public func condition(images: [Int]) throws {
        try promptEncoder.condition(prompts: images.map(prompts.prompt),
                                    negatives: prompts.negativePrompts.isEmpty ? nil : images.map(prompts.negativePrompt),
                                    guided: guided, unet: unet)
    }

    /// The batch's latents decoded by the VAE (with guidance both halves hold the same latents: the
    /// first is the batch's); latents that are not finite are an error naming the image.
    public func output(of sampler: Sampler, images: Range<Int>) throws -> DeviceBuffer<Float> {
        try decoded(sampler, by: decoder, images: images)
    }

    /// The UNet's, text encoder's and VAE's weights and configs, the tokenizer's files, the prompts,
    /// the guidance scale and the image size.
    public func contentKey() throws -> String {
        var h = FNV1a()
        h.add(Array(try RFIDEvaluator.modelKey(folder: folder.unet).utf8))
        let fm = FileManager.default
        for dir in [folder.textEncoder, folder.vae] + [folder.textEncoder2].compactMap({ $0 }) {
            let weights = try ModelFolder.weights(in: dir, variant: variant)
            for url in [weights, dir.appendingPathComponent("config.json")] {
                h.add(Array(url.lastPathComponent.utf8))
                h.add(try Data(contentsOf: url))
            }
        }
        for tokenizer in [folder.tokenizer] + [folder.tokenizer2].compactMap({ $0 }) {
            for name in ((try? fm.contentsOfDirectory(atPath: tokenizer.path)) ?? []).sorted() {
                h.add(Array(name.utf8))
                h.add((try? Data(contentsOf: tokenizer.appendingPathComponent(name))) ?? Data())
            }
        }
        if let timeIDs {
            h.add(Array("sdxl time_ids \(timeIDs)|force zeros \(folder.forceZerosForEmptyPrompt)".utf8))
        }
        // (One negative prompt is written as before there could be several: the keys of caches made then stay.)
        let negative = prompts.negativePrompts.joined(separator: "\n")
        h.add(Array("prompts \(prompts.prompts.count)|\(prompts.prompts.joined(separator: "\n"))|negative \(negative)|guidance \(guidanceScale)|\(height)x\(width)".utf8))
        return h.hex
    }
}

/// SDXL's micro-conditioning of every image (StableDiffusionXLPipeline's `original_size`,
/// `crops_coords_top_left` and `target_size`, each (height, width) or (top, left)): the UNet's
/// `time_ids`. Sizes not given are the image's own, as diffusers defaults them.
public struct MicroConditioning: Sendable {
    public var originalSize: (Int, Int)?, cropTopLeft: (Int, Int), targetSize: (Int, Int)?

    public init(originalSize: (Int, Int)? = nil, cropTopLeft: (Int, Int) = (0, 0), targetSize: (Int, Int)? = nil) {
        self.originalSize = originalSize; self.cropTopLeft = cropTopLeft; self.targetSize = targetSize
    }

    /// `_get_add_time_ids` for images of `height` × `width`: original_size + crops_coords_top_left + target_size.
    public func timeIDs(height: Int, width: Int) -> [Float] {
        UNet.timeIDs(originalSize: originalSize ?? (height, width), cropTopLeft: cropTopLeft, targetSize: targetSize ?? (height, width))
    }
}
