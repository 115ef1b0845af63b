// A model as the sampling commands (generate, profile, rfid, search, bench) open it, what rfid and
// bench fitness score plans with, and the real images FID compares with.
import Engine
import ArgumentParser
import Foundation
import GPUKernels

/// `--model` and `--variant`, shared by every command that loads a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "Diffusers pipeline or UNet folder, or a Hugging Face id in the local cache (default: \(DefaultModel.summary); \(DefaultModel.textToImageSummary)).")
    var model: String?
    @Option(help: "Weights variant, as diffusers' `variant=`: reads diffusion_pytorch_model.<variant>.safetensors (e.g. fp16).")
    var variant: String?

    /// The model folder (the embedded default model without --model).
    func folder() throws -> ModelFolder { try ModelFolder(path: try model ?? DefaultModel.folder(), variant: variant) }
}

struct ModelSetup {
    /// The folder path, and the name latency tables and reports give it.
    let path: String, name: String
    let folder: ModelFolder
    let config: UNetConfiguration
    /// The sample size (height = width); 0 when the config has none and `needsSampleSize` was false.
    let side: Int
    let schedulerConfig: SchedulerConfiguration
    let weights: SafeTensorsFile

    /// The model --model and --variant name; no --model is the embedded default model, or with
    /// prompts (`prompted`) the embedded text-to-image pipeline.
    /// `generates`: the command makes images from noise (generate, rfid, search), which a
    /// conditional UNet cannot do without its text pipeline: refused here, before other checks.
    init(_ options: ModelOptions, needsSampleSize: Bool = true, generates: Bool = true, prompted: Bool = false) throws {
        path = try options.model ?? (prompted ? DefaultModel.textToImageFolder() : DefaultModel.folder())
        name = options.model == nil ? (prompted ? DefaultModel.textToImageSearchName : DefaultModel.searchName) : path
        folder = try ModelFolder(path: path, variant: options.variant)
        config = try UNetConfiguration.load(from: folder.configURL)
        side = config.sampleSize ?? 0
        try Self.check(config, path: path, needsSampleSize: needsSampleSize, generates: generates)
        schedulerConfig = try folder.schedulerConfiguration()
        schedulerConfig.corrections.forEach(say)
        weights = try SafeTensorsFile(path: folder.weightsURL.path)
    }

    /// The checks `init` makes (`needsSampleSize`, `generates`), for a model opened without them.
    func check(needsSampleSize: Bool, generates: Bool) throws {
        try Self.check(config, path: path, needsSampleSize: needsSampleSize, generates: generates)
    }

    private static func check(_ config: UNetConfiguration, path: String, needsSampleSize: Bool, generates: Bool) throws {
        if generates { try GenerationPipeline.checkCanGenerate(config) }
        if needsSampleSize && config.sampleSize == nil { throw ModelError("\(path): the config has no sample_size; give the noise") }
    }

    /// The scheduler kind the folder's scheduler config names (nil without a config or a class name);
    /// a class this engine does not implement is an error naming it.
    func folderScheduler() throws -> SchedulerKind? {
        guard let name = schedulerConfig.className else { return nil }
        guard let kind = SchedulerKind.named(className: name, configuration: schedulerConfig) else {
            throw ModelError("\(path): the scheduler config's class \(name) is not implemented (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler); choose one with --scheduler")
        }
        return kind
    }

    /// Every step full on `kind` (default: the folder's scheduler, else DDIM) with `steps` steps, the
    /// folder's solver order and PNDM mode where they apply.
    func sampler(_ kind: SchedulerKind? = nil, steps: Int, eta: Float = 0, order: Int? = nil, timesteps: [Int]? = nil,
                 spacing: TimestepSpacing? = nil) throws -> PlanSampler {
        let kind = try kind ?? folderScheduler() ?? .ddim
        let sampler = PlanSampler(scheduler: kind, steps: steps, eta: eta, order: kind.isMultistep ? order ?? schedulerConfig.solverOrder : nil,
                                  skipPRKSteps: kind == .pndm ? schedulerConfig.skipPRKSteps : nil, timesteps: timesteps, spacing: spacing)
        do { try sampler.validate() } catch let e as ModelError { throw ValidationError(e.message) }
        return sampler
    }

    /// The model's pipeline on `stream` (Engine decides which: PipelineLoader).
    func pipeline(_ request: PipelineRequest, stream: ComputeStream) throws -> any ImagePipeline {
        try PipelineLoader.open(folder, path: path, request: request, stream: stream)
    }

    /// The UNet on `stream` for batches of `batch` (of the model's sample size unless given).
    func unet(stream: ComputeStream, batch: Int, height: Int? = nil, width: Int? = nil) throws -> UNet {
        try UNet(config: config, weights: WeightStore(file: weights), stream: stream, batch: batch, height: height ?? side, width: width ?? side)
    }
}

/// The options of the commands that score plans against a teacher (`rfid`, `bench speedups`, `bench fitness`).
struct ScoringOptions: ParsableArguments {
    @OptionGroup var device: DeviceOptions
    @OptionGroup var features: FeatureOptions
    @OptionGroup var teacher: TeacherOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var prompts: PromptOptions
    @OptionGroup var imageToImage: ImageToImageOptions
    @OptionGroup var precision: PrecisionOptions
}

/// CLIP score beside rFID (`rfid`, `search`): a CLIP model judging a text-to-image run's images against their prompts.
struct CLIPOptions: ParsableArguments {
    @Option(help: "Text-to-image: also score each plan's images (and the teacher's) by CLIP score against their prompts with this CLIP model: a folder or Hugging Face cache id (e.g. openai/clip-vit-large-patch14), as `flexiffusion clipscore` reads it, or `fashion`: the embedded CLIP of the embedded text-to-image model.")
    var clip: String?
    @Option(name: .customLong("clip-variant"), help: "The CLIP weights' variant (model.<variant>.safetensors).") var clipVariant: String?

    /// The judge of `pipeline`'s images (nil without --clip); an error for a model without prompts.
    func judge(_ scored: ScoredPipeline, prompts: PromptSet?, stream: ComputeStream) throws -> CLIPJudge? {
        guard let clip else {
            if clipVariant != nil { throw ValidationError("--clip-variant needs --clip DIR") }
            return nil
        }
        guard let prompts, scored.isTextToImage else {
            throw ValidationError("--clip scores images against their prompts: it needs a Stable Diffusion pipeline and --prompts")
        }
        let model = try CLIPModel(path: try CLIPOptions.folder(clip), variant: clipVariant, stream: stream, batch: scored.pipeline.batch)
        _ = try model.tokenIDs([""])   // (a folder without tokenizer files is refused now, not after the first batch)
        say("CLIP \(model.root.lastPathComponent): \(String(format: "%.1f", Double(model.parameterCount) / 1e6))M parameters")
        return CLIPJudge(model: model, prompts: prompts)
    }

    /// A --clip value as a folder: `fashion` is the embedded CLIP.
    static func folder(_ value: String) throws -> String { value == "fashion" ? try DefaultModel.clipFolder() : value }
}

/// Image-to-image for the commands that score plans: the init images and the strength.
struct ImageToImageOptions: ParsableArguments {
    @Option(name: .customLong("init-image"), help: "Image-to-image (a Stable Diffusion or SDXL pipeline): the init image (a PNG) every image starts from.") var image: String?
    @Option(name: .customLong("init-images"), help: "Image-to-image: a folder of PNGs; image i starts from PNG i mod n.") var images: String?
    @Option(help: "Image-to-image: the teacher's strength (default: the plans' own, else diffusers' 0.8 for SD, 0.3 for SDXL); every plan must have it.") var strength: Double?

    var given: Bool { image != nil || images != nil }

    /// The init images (nil when none are given); an error for a model that takes none.
    func load(_ setup: ModelSetup) throws -> InitImages? {
        if image != nil && images != nil { throw ValidationError("give --init-image FILE or --init-images DIR, not both") }
        if strength != nil && !given { throw ValidationError("--strength is for image-to-image: give --init-image or --init-images") }
        guard let path = image ?? images else { return nil }
        guard setup.config.isConditional else { throw ValidationError("image-to-image is for Stable Diffusion and SDXL pipelines; \(setup.path) is a UNet2DModel") }
        return try Self.read(path)
    }

    /// The init images at `path` (a PNG or a folder of them), with their notes said.
    static func read(_ path: String) throws -> InitImages {
        let images = try InitImages(ImageSet.load(path), source: path)
        images.notes.forEach(say)
        return images
    }

    /// The teacher's strength: --strength, else the plans' when they agree, else the pipeline's default.
    func strength(_ setup: ModelSetup, plans: [StepPlan]) throws -> Double {
        let theirs = Set(plans.compactMap(\.sampler.strength))
        let chosen = strength ?? (theirs.count == 1 ? theirs.first! : ImageToImagePipeline.defaultStrength(xl: setup.config.textTime != nil))
        for p in plans where p.sampler.strength != chosen {
            throw ValidationError("a plan runs \(p.sampler), not at the image-to-image strength \(chosen): make it with `plan … --strength \(chosen)`")
        }
        return chosen
    }
}

/// What `rfid`, `bench speedups` and `bench fitness` share: the model (a UNet2DModel, or a Stable Diffusion pipeline over
/// a prompt set), the teacher, the plan files checked against the model, and an rFID evaluator on the device.
struct PlanScoring {
    let setup: ModelSetup, teacher: StepPlan, plans: [StepPlan], stream: ComputeStream, extractor: FeatureExtractor, evaluator: RFIDEvaluator
    let scored: ScoredPipeline

    init(_ options: ScoringOptions, plans paths: [String], batch: Int, seed: UInt64, clip: CLIPOptions? = nil) throws {
        let (modelOptions, prompts, teacher, features, device) = (options.model, options.prompts, options.teacher, options.features, options.device)
        setup = try ModelSetup(modelOptions, generates: false, prompted: prompts.prompts != nil)
        let promptSet = try prompts.check(setup)
        let config = setup.config, setup = setup
        let initImages = try options.imageToImage.load(setup)
        let loaded = try paths.map {
            try StepPlan.load(from: URL(fileURLWithPath: $0), branchCount: config.branchCount, schedulerConfiguration: setup.schedulerConfig)
        }
        plans = loaded
        let strength = try initImages.map { _ in try options.imageToImage.strength(setup, plans: loaded) }
        var teacherPlan = try teacher.plan(branchCount: config.branchCount, schedulerConfiguration: setup.schedulerConfig,
                                           folderSampler: config.isConditional ? { steps in
                                               var s = try setup.sampler(steps: steps)
                                               s.strength = strength
                                               return s
                                           } : nil)
        if let strength, teacherPlan.sampler.strength != strength {
            guard teacherPlan.sampler.strength == nil, teacherPlan.fullSteps == teacherPlan.actions.count else {
                throw ValidationError("the teacher plan runs \(teacherPlan.sampler), not at the image-to-image strength \(strength)")
            }
            var s = teacherPlan.sampler
            s.strength = strength
            teacherPlan = StepPlan.teacher(s)
        }
        self.teacher = teacherPlan
        stream = try options.precision.stream(device)
        scored = try ScoredPipeline(setup, prompts: prompts, promptSet: promptSet, features: features, variant: modelOptions.variant,
                                    stream: stream, batch: batch, initImages: initImages)
        extractor = scored.extractor
        evaluator = try RFIDEvaluator(pipeline: scored.pipeline, extractor: extractor, teacher: self.teacher, seed: seed, modelKey: scored.key,
                                      clip: try clip?.judge(scored, prompts: promptSet, stream: stream))
    }
}

/// The real images FID compares with: `real`, else (for the default model) the Fashion-MNIST test set when installed.
func realImages(_ real: String?, model: String?) -> String? {
    let testSet = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    return real ?? (model == nil && FileManager.default.fileExists(atPath: testSet) ? testSet : nil)
}
