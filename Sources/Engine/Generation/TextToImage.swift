// Stable Diffusion's text-to-image loop with diffusers' StableDiffusionPipeline semantics: prompts
// tokenized to 77 ids and encoded by CLIP's text encoder; classifier-free guidance with the
// unconditional (negative prompt, else "") and conditional halves in one UNet batch; latents from a
// seed's noise streams (or given) scaled by the scheduler's init_noise_sigma; any step plan (its
// partial and null steps apply to both halves); the VAE decoding latents / scaling_factor. Port of
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
        unet = try ModelFolder(path: path, variant: variant)
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
    }
}

/// The text, UNet and VAE of a Stable Diffusion pipeline on one device, for batches of `batch` images
/// of `height` × `width` pixels.
public final class TextToImagePipeline {
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    /// The UNet, batch 2·`batch` with guidance (unconditional half first), else `batch`.
    public let unet: UNet
    public let decoder: AutoencoderKL
    public let schedulerConfiguration: SchedulerConfiguration
    /// Images per pass, and the classifier-free guidance scale (≤ 1: none, as diffusers decides).
    public let batch: Int, guidanceScale: Float
    public let height: Int, width: Int
    private var samplers: [PlanSampler: Sampler] = [:]

    public var guided: Bool { guidanceScale > 1 }
    /// Values of one image's latents (C · H/f · W/f).
    public var latentSize: Int { unet.config.inChannels * unet.height * unet.width }
    public var latentShape: [Int] { [unet.config.inChannels, unet.height, unet.width] }
    /// Values of one decoded image (3 · H · W).
    public var imageSize: Int { decoder.config.outChannels * height * width }

    /// `height` and `width` default to the UNet's sample_size times the VAE's scale factor (512 for SD 1.5).
    public init(folder: StableDiffusionFolder, variant: String? = nil, stream: ComputeStream, batch: Int,
                height: Int? = nil, width: Int? = nil, guidanceScale: Float = 7.5) throws {
        guard batch > 0 else { throw ModelError("the batch must be positive, not \(batch)") }
        guard guidanceScale.isFinite else { throw ModelError(argument: "the guidance scale must be finite, not \(guidanceScale)") }
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
        schedulerConfiguration = try folder.unet.schedulerConfiguration()
        self.batch = batch; self.guidanceScale = guidanceScale; self.height = h; self.width = w
    }

    /// The sampler of `s` (made once), with this pipeline's guidance.
    public func sampler(for s: PlanSampler) throws -> Sampler {
        if let existing = samplers[s] { return existing }
        let made = try Sampler(unet: unet, scheduler: s.scheduler(configuration: schedulerConfiguration), planSampler: s)
        if guided {
            guard made.scheduler.isDeterministic else {
                throw ModelError(argument: "\(s) draws variance noise at its steps, which guidance does not support here yet (the two halves would diverge): use a deterministic sampler (ddim with eta 0, pndm, dpmsolver++, unipc, euler)")
            }
            made.guidanceScale = guidanceScale
        }
        samplers[s] = made
        return made
    }

    /// Number of batches for `count` images.
    public func batches(_ count: Int) -> Int { (count + batch - 1) / batch }

    /// Image `i`'s prompt of `list` (one per image, or one for all).
    private func pick(_ list: [String], _ i: Int, _ what: String, count: Int) throws -> String {
        if list.count == 1 { return list[0] }
        guard list.count == count else { throw ModelError("\(list.count) \(what)s for \(count) images: give one, or one per image") }
        return list[i]
    }

    /// Writes batch `b`'s text embeddings (negative then positive halves with guidance) into the UNet's
    /// context: image i's prompt is `prompt(i)`, its negative prompt `negative(i)` (images past the
    /// run's `count`, which fill a last batch, take the last image's).
    func encodePrompts(prompt: (Int) throws -> String, negative: (Int) throws -> String, batch b: Int, count: Int) throws {
        let images = ((b * batch)..<((b + 1) * batch)).map { min($0, count - 1) }
        let positive = try images.map { try tokenizer(try prompt($0)) }
        let ids = guided ? try images.map { try tokenizer(try negative($0)) } + positive : positive
        let states = try textEncoder.encode(ids)
        try unet.workspace.context.copy(from: states, count: ids.count * ids[0].count * textEncoder.config.hiddenSize,
                                        queue: unet.stream.queue)
    }

    /// Runs batch `b` of `plan`: encodes its prompts (see `encodePrompts`), sets its latents — images
    /// b·B ..< (b+1)·B of `noise` (given latents, zeros past their `count` images, or the seed's
    /// stream), or `resume`'s sample at step `resume.step` — and runs the steps (`beforeStep`,
    /// `afterStep` as GenerationPipeline's `runBatch`). The latents are left in the sampler: read them
    /// with `finalLatents`. Returns false when `afterStep` stopped the batch.
    @discardableResult
    public func runBatch(prompt: (Int) throws -> String, negative: (Int) throws -> String, plan: StepPlan, noise: GenerationNoise,
                         batch b: Int, count: Int, resume: (step: Int, sample: [Float])? = nil,
                         beforeStep: ((Int, Sampler) throws -> Void)? = nil,
                         afterStep: ((Int) -> GenerationControl)? = nil) throws -> Bool {
        let sampler = try sampler(for: plan.sampler)
        try encodePrompts(prompt: prompt, negative: negative, batch: b, count: count)
        let slots = (b * batch)..<((b + 1) * batch)
        if let resume {
            try sampler.setSample(resume.sample)
        } else {
            let latents = noise.initial(slots, imageSize: latentSize, count: count)
            try sampler.setInitialNoise(guided ? latents + latents : latents)
        }
        var variance = noise.streams.variance(images: slots, imageSize: latentSize)
        return try sampler.runSteps(plan: plan, from: resume?.step ?? 0, noiseSource: &variance,
                                    beforeStep: beforeStep.map { f in { i in try f(i, sampler) } }, afterStep: afterStep)
    }

    /// The latents [batch, C, h, w] of the batch last run with `s` (images `images`, for the message
    /// when they hold non-finite values). With guidance both halves hold the same latents: the first is the batch's.
    public func finalLatents(_ s: PlanSampler, images: Range<Int>) throws -> [Float] {
        let final = try unet.stream.download(try sampler(for: s).sampleBuffer, count: batch * latentSize)
        if let bad = final.firstIndex(where: { !$0.isFinite }) {
            throw ModelError("the latents of image \(images.lowerBound + bad / latentSize) hold non-finite values (\(final[bad])): the sampler diverged, or the latents or the weights hold NaN or Inf")
        }
        return final
    }

    /// Generates `count` images from `prompts` (one for all, or one per image) with `plan`, handing each
    /// batch's final latents [n, C, h, w] and decoded images [n, 3, H, W] (about [-1, 1], not clamped)
    /// to `sink` with the images' range. `negativePrompts`: none (""), one, or one per image.
    /// `noise.initial` gives the latents [count, C, h, w] (unit variance, as `latents=` in diffusers),
    /// else image i's come from the seed's stream. Returns false when progress stopped the run.
    @discardableResult
    public func generate(prompts: [String], negativePrompts: [String] = [], plan: StepPlan, noise: GenerationNoise, count: Int,
                         progress: ((GenerationProgress) -> GenerationControl)? = nil,
                         sink: (Range<Int>, [Float], [Float]) throws -> Void) throws -> Bool {
        guard count > 0 else { throw ModelError("the number of images must be positive, not \(count)") }
        guard !prompts.isEmpty else { throw ModelError("text-to-image needs a prompt") }
        _ = try pick(prompts, 0, "prompt", count: count)
        if !negativePrompts.isEmpty { _ = try pick(negativePrompts, 0, "negative prompt", count: count) }
        if let initial = noise.initial, initial.count != count * latentSize {
            throw ModelError("the latents have \(initial.count) values; \(count) images of \(latentShape) need \(count * latentSize)")
        }
        let negatives = negativePrompts.isEmpty ? [""] : negativePrompts
        try sampler(for: plan.sampler).prepare(plan)
        let steps = plan.actions.count, total = batches(count) * steps
        let start = DispatchTime.now().uptimeNanoseconds
        for b in 0..<batches(count) {
            let images = (b * batch)..<min(count, (b + 1) * batch)
            let ok = try runBatch(prompt: { try self.pick(prompts, $0, "prompt", count: count) },
                                  negative: { try self.pick(negatives, $0, "negative prompt", count: count) },
                                  plan: plan, noise: noise, batch: b, count: count,
                                  afterStep: GenerationProgress.stepObserver(progress, batch: b, steps: steps, total: total, images: images,
                                                                             count: count, start: start))
            guard ok else { return false }
            let final = try finalLatents(plan.sampler, images: images)
            let decoded = try decoder.decodeScaled(final)
            try sink(images, Array(final[..<(images.count * latentSize)]), Array(decoded[..<(images.count * imageSize)]))
        }
        return true
    }
}

/// A text-to-image pipeline over a prompt set, as rFID and the search use it: image i is generated
/// from prompt i mod n (and the negative prompt, if any) and the seed's latents, and decoded by the VAE
/// on the device.
public final class PromptedPipeline: ImagePipeline {
    public let pipeline: TextToImagePipeline
    public let prompts: [String], negativePrompt: String

    public init(_ pipeline: TextToImagePipeline, prompts: [String], negativePrompt: String = "") throws {
        guard !prompts.isEmpty else { throw ModelError("a prompt set needs at least one prompt") }
        self.pipeline = pipeline; self.prompts = prompts; self.negativePrompt = negativePrompt
    }

    public var unet: UNet { pipeline.unet }
    public var batch: Int { pipeline.batch }
    public var imageShape: [Int] { [pipeline.decoder.config.outChannels, pipeline.height, pipeline.width] }
    public func sampler(for s: PlanSampler) throws -> Sampler { try pipeline.sampler(for: s) }

    @discardableResult
    public func runBatch(plan: StepPlan, noise: GenerationNoise, batch b: Int, count: Int, resume: (step: Int, sample: [Float])?,
                         beforeStep: ((Int, Sampler) throws -> Void)?, afterStep: ((Int) -> GenerationControl)?) throws -> Bool {
        let ok = try pipeline.runBatch(prompt: { self.prompts[$0 % self.prompts.count] }, negative: { _ in self.negativePrompt },
                                       plan: plan, noise: noise, batch: b, count: count, resume: resume,
                                       beforeStep: beforeStep, afterStep: afterStep)
        guard ok else { return false }
        try pipeline.decoder.decodeScaledOnDevice(try pipeline.finalLatents(plan.sampler, images: (b * batch)..<((b + 1) * batch)))
        return true
    }

    public func images(of plan: StepPlan) throws -> DeviceBuffer<Float> { pipeline.decoder.output }

    /// A key of everything that determines the images besides the plan and the seed: the UNet's,
    /// text encoder's and VAE's weights and configs, the tokenizer's files, the prompts, the guidance
    /// scale and the image size (rFID's teacher-feature cache is keyed by it).
    public static func contentKey(folder: StableDiffusionFolder, variant: String?, prompts: [String], negativePrompt: String,
                                  guidanceScale: Float, height: Int, width: Int) throws -> String {
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
        h.add(Array("prompts \(prompts.count)|\(prompts.joined(separator: "\n"))|negative \(negativePrompt)|guidance \(guidanceScale)|\(height)x\(width)".utf8))
        return h.hex
    }
}
