// Stable Diffusion's text-to-image pipeline with diffusers' StableDiffusionPipeline semantics, as an
// ImagePipeline (the batch loop is BatchRunner's): prompts tokenized to 77 ids and encoded by CLIP's
// text encoder; classifier-free guidance with the unconditional (negative prompt, else "") and
// conditional halves in one UNet batch; latents from a seed's noise streams (or given) scaled by the
// scheduler's init_noise_sigma; any step plan (its partial and null steps apply to both halves); the
// VAE decoding latents / scaling_factor. Port of
// diffusers.pipelines.stable_diffusion.StableDiffusionPipeline.__call__ (no safety checker), 0.42.
import Foundation
import GPUKernels

/// A pipeline folder as `save_pretrained` writes it (or a Hugging Face cache snapshot of one):
/// model_index.json, tokenizer/, text_encoder/, unet/, vae/ and scheduler/.
public struct StableDiffusionFolder: Sendable {
    public let unet: ModelFolder
    public let tokenizer: URL, textEncoder: URL, vae: URL
    public var root: URL { unet.root }

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
        for (name, url) in [("tokenizer", tokenizer), ("text_encoder", textEncoder), ("vae", vae)] where !fm.fileExists(atPath: url.path) {
            throw ModelError("\(path): no \(name)/ folder, which text-to-image needs")
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

/// The text, UNet and VAE of a Stable Diffusion pipeline on one device, for batches of `batch` images
/// of `height` × `width` pixels from `prompts`.
public final class TextToImagePipeline: ImagePipeline {
    public let folder: StableDiffusionFolder, variant: String?
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
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
        let limit = tokenizer.maxLength - 2
        return Array(Set(prompts.prompts + prompts.negativePrompts)).sorted().compactMap { text in
            let n = tokenizer.tokens(text).count
            return n > limit ? (text, n) : nil
        }
    }

    /// Values of one image's latents (C · H/f · W/f).
    public var latentSize: Int { sampleValues }
    public var latentShape: [Int] { sampleShape }
    /// Values of one decoded image (3 · H · W).
    public var imageSize: Int { imageValues }
    public var imageShape: [Int] { [decoder.config.outChannels, height, width] }

    /// `height` and `width` default to the UNet's sample_size times the VAE's scale factor (512 for SD 1.5).
    public init(folder: StableDiffusionFolder, variant: String? = nil, stream: ComputeStream, batch: Int, prompts: PromptSet,
                height: Int? = nil, width: Int? = nil, guidanceScale: Float = 7.5) throws {
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
        let sequences = guidanceScale > 1 ? 2 * batch : batch   // the UNet's batch and the text encoder's
        tokenizer = try CLIPTokenizer(folder: folder.tokenizer)
        textEncoder = try CLIPTextModel(folder: folder.textEncoder, variant: variant, stream: stream, batch: sequences)
        guard textEncoder.config.hiddenSize == cross.dim else {
            throw ModelError("the text encoder's hidden_size \(textEncoder.config.hiddenSize) differs from the UNet's cross_attention_dim \(cross.dim)")
        }
        guard tokenizer.maxLength <= textEncoder.config.maxPositions else {
            throw ModelError("the tokenizer pads to \(tokenizer.maxLength) tokens; the text encoder takes at most \(textEncoder.config.maxPositions)")
        }
        guard vaeConfig.latentChannels == config.inChannels else {
            throw ModelError("the VAE's latent_channels \(vaeConfig.latentChannels) differ from the UNet's in_channels \(config.inChannels)")
        }
        unet = try UNet(config: config, weights: WeightStore(file: SafeTensorsFile(path: folder.unet.weightsURL.path)), stream: stream,
                        batch: sequences, height: h / f, width: w / f, contextLength: tokenizer.maxLength)
        let vaeFile = try ModelFolder.weights(in: folder.vae, variant: variant)
        decoder = try AutoencoderKL(config: vaeConfig, weights: WeightStore(file: SafeTensorsFile(path: vaeFile.path)), part: .decoder,
                                    stream: stream, batch: batch, height: h, width: w)
        samplers = SamplerCache(unet: unet, schedulerConfiguration: try folder.unet.schedulerConfiguration(),
                                guidanceScale: guidanceScale > 1 ? guidanceScale : nil)
        self.folder = folder; self.variant = variant; self.prompts = prompts
        self.batch = batch; self.guidanceScale = guidanceScale; self.height = h; self.width = w
    }

    /// The guidance scale's one check (the command line's options and the pipeline both ask it).
    public static func checkGuidance(_ scale: Float) throws {
        guard scale.isFinite else { throw ModelError(argument: "the guidance scale must be finite, not \(scale)") }
    }

    /// Writes the batch's text embeddings (negative then positive halves with guidance) into the UNet's
    /// context: slot j holds run image `images[j]`.
    public func condition(images: [Int]) throws {
        let positive = try images.map { try tokenizer(prompts.prompt($0)) }
        let ids = guided ? try images.map { try tokenizer(prompts.negativePrompt($0)) } + positive : positive
        let states = try textEncoder.encode(ids)
        try unet.workspace.context.copy(from: states, count: ids.count * ids[0].count * textEncoder.config.hiddenSize,
                                        queue: unet.stream.queue)
    }

    /// The batch's latents decoded by the VAE (with guidance both halves hold the same latents: the
    /// first is the batch's); latents that are not finite are an error naming the image.
    public func output(of sampler: Sampler, images: Range<Int>) throws -> DeviceBuffer<Float> {
        let final = try unet.stream.download(sampler.sampleBuffer, count: batch * latentSize)
        if let bad = firstNonFinite(final, perImage: latentSize, firstImage: images.lowerBound) {
            throw ModelError("the latents of image \(bad.image) hold non-finite values (\(bad.value)): the sampler diverged, or the latents or the weights hold NaN or Inf")
        }
        try decoder.decodeScaledOnDevice(final)
        return decoder.output
    }

    /// The UNet's, text encoder's and VAE's weights and configs, the tokenizer's files, the prompts,
    /// the guidance scale and the image size.
    public func contentKey() throws -> String {
        var h = FNV1a()
        h.add(Array(try RFIDEvaluator.modelKey(folder: folder.unet).utf8))
        let fm = FileManager.default
        for dir in [folder.textEncoder, folder.vae] {
            let weights = try ModelFolder.weights(in: dir, variant: variant)
            for url in [weights, dir.appendingPathComponent("config.json")] {
                h.add(Array(url.lastPathComponent.utf8))
                h.add(try Data(contentsOf: url))
            }
        }
        for name in ((try? fm.contentsOfDirectory(atPath: folder.tokenizer.path)) ?? []).sorted() {
            h.add(Array(name.utf8))
            h.add((try? Data(contentsOf: folder.tokenizer.appendingPathComponent(name))) ?? Data())
        }
        // (One negative prompt is written as before there could be several: the keys of caches made then stay.)
        let negative = prompts.negativePrompts.joined(separator: "\n")
        h.add(Array("prompts \(prompts.prompts.count)|\(prompts.prompts.joined(separator: "\n"))|negative \(negative)|guidance \(guidanceScale)|\(height)x\(width)".utf8))
        return h.hex
    }
}
