// `flexiffusion generate`: maps options onto a plan, noise and outputs, runs the generation pipeline
// and prints what it wrote.
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate images with a diffusers UNet (or a Stable Diffusion pipeline, from prompts) and DDIM, DDPM, DPM-Solver, UniPC, Euler or PNDM sampling.",
        discussion: """
            The scheduler is the model folder's (its scheduler config's `_class_name`) unless --scheduler \
            names another; its settings come from that config as diffusers' `XScheduler.from_config` would \
            build them (keys the config leaves out take the chosen scheduler's defaults), else diffusers' \
            defaults. A folder whose scheduler class is not implemented here needs --scheduler. Noise comes from \
            --seed (Sources/Engine/Generation/Noise.swift defines the streams: image i's noise is the same \
            whatever --batch), the same on every run and device; --noise gives the initial noise instead. \
            Outputs are written to temporary files and renamed, so an error never leaves a partial file.

            A Stable Diffusion pipeline folder (UNet2DConditionModel, tokenizer, text_encoder, vae) generates \
            from --prompt or --prompts as diffusers' StableDiffusionPipeline: classifier-free guidance with \
            --guidance-scale (the --negative-prompt, else "", as the unconditional half of each UNet batch), \
            latents of image i from --seed's stream (C·H/8·W/8 values each; --latents FILE gives them as \
            tensor `latents`, as diffusers' `latents=`), the folder's scheduler (PNDM for SD 1.5) and 50 \
            steps; PNGs and --output-tensor hold the decoded images, --output-latents the final latents. An \
            SDXL pipeline folder (two text encoders, tokenizer_2, text_encoder_2) generates as diffusers' \
            StableDiffusionXLPipeline: both encoders' penultimate states, the pooled text embedding and the \
            micro-conditioning (--original-size, --crop-top-left, --target-size) as the UNet's added \
            conditions, zeros as the unconditional half when no --negative-prompt is given \
            (force_zeros_for_empty_prompt), 1024×1024 by default for SDXL base.

            Image-to-image (--image FILE or --images DIR with --strength) runs either folder as diffusers' \
            StableDiffusionImg2ImgPipeline / StableDiffusionXLImg2ImgPipeline: the init images' VAE latents \
            (a seeded sample of the latent distribution), noised at the first of the last int(steps × strength) \
            steps, which then run; the images' size is the run's. --noise FILE gives the added noise (tensor \
            `noise`) and optionally the latent sample's (`latent_sample_noise`), to compare with diffusers.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var precisionOptions: PrecisionOptions
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "ddim, ddpm, dpmsolver++, dpmsolver, unipc, euler or pndm (default: the model folder's scheduler, else ddim; or the plan's). pndm follows the folder's skip_prk_steps (default false: Runge–Kutta warm-up).") var scheduler: SchedulerKind?
    @Option(name: .customLong("solver-order"), help: "A multistep solver's order, 1–3 (default: the config's solver_order, else 2).") var solverOrder: Int?
    @Option(help: "Sampling steps (default: 50 for DDIM, 20 for DPM-Solver, UniPC and Euler, the training steps for DDPM; or the plan's).") var steps: Int?
    @Option(help: "DDIM's eta (default: 0, deterministic, or the plan's).") var eta: Float?
    @Option(help: ArgumentHelp("Explicit timesteps, first to last, instead of the config's spacing (dpmsolver++, dpmsolver, unipc, euler; e.g. Align Your Steps' 999,850,736,645,545,455,343,233,124,24). Sets the steps.", valueName: "T1,T2,…")) var timesteps: TimestepList?
    @Option(name: .customLong("timestep-spacing"), help: "The scheduler's timestep spacing instead of its config's: leading, trailing or linspace (diffusers' timestep_spacing).")
    var spacing: TimestepSpacing?
    @Option(help: "Step plan (from `flexiffusion plan` or the search): which steps are full, partial or null. Sets the sampler, steps and eta.") var plan: String?
    @Option(help: "Number of images (default: 64 for a UNet2DModel, one per prompt for a Stable Diffusion pipeline, or the noise or latents file's batch); image i takes prompt i mod n, as rfid and search do.") var count: Int?
    @Option(help: "Images per forward pass (images do not depend on it).") var batch = 32
    @Option(help: "Seed of the noise.") var seed: UInt64 = 0
    @Option(help: "safetensors file with the initial noise as tensor `sample` [N, C, H, W].") var noise: String?
    @Option(name: .customLong("output-tensor"), help: "Write the final samples in model space (about [-1, 1], not clamped) as tensor `sample`.") var outputTensor: String?
    @Option(help: "Write one PNG grid of all images here (default: samples.png when no other output is given).") var out: String?
    @Option(name: .customLong("out-dir"), help: "Write one PNG per image into this folder.") var outDir: String?
    @Option(help: "Text-to-image: the prompt of every image (Stable Diffusion pipeline folders).") var prompt: String?
    @OptionGroup var promptOptions: PromptOptions
    @Option(help: "Text-to-image: image height in pixels (default: the UNet's sample_size × the VAE's scale factor).") var height: Int?
    @Option(help: "Text-to-image: image width in pixels (default: as --height).") var width: Int?
    @Option(help: "Text-to-image: safetensors file with the initial latents as tensor `latents` [N, C, H/8, W/8], unit variance.") var latents: String?
    @Option(name: .customLong("output-latents"), help: "Text-to-image: write the final latents as tensor `latents`.") var outputLatents: String?
    @Option(name: [.customLong("image"), .customLong("init-image")], help: "Image-to-image: the init image (a PNG; RGB, or grey read as RGB) every image starts from; the run's size defaults to its size.") var image: String?
    @Option(name: [.customLong("images"), .customLong("init-images")], help: "Image-to-image: a folder of PNGs (sorted by name): image i starts from PNG i mod n; --count defaults to their number.") var images: String?
    @Option(name: .customLong("class-labels"), help: ArgumentHelp("A class-conditional UNet2DModel: the class of each image, cycled (default: drawn from --seed, image by image).", valueName: "L1,L2,…")) var classLabels: TimestepList?
    @Option(name: .customLong("null-class"), help: "A class-conditional UNet2DModel trained with label dropout: its \"no class\" label; given, the run uses classifier-free guidance over it at --guidance-scale (default 7.5; ≤ 1: none).") var nullClass: Int?
    @Option(help: "Image-to-image: how much of the schedule runs, 0–1 (the last int(steps × strength) steps; default 0.8 for SD, 0.3 for SDXL, as diffusers'; or the plan's).") var strength: Double?
    @Flag(help: "Print a JSON summary on standard output.") var json = false

    func run() throws {
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        if let count, count <= 0 { throw ValidationError("--count must be positive") }
        if let count { try checkImageCount(count, option: "--count") }
        // 0. The outputs, checked before any work: none is an input or another output.
        var outputs = SampleOutputs(grid: out, folder: outDir, tensor: outputTensor)
        if outputs.isEmpty && outputLatents == nil { outputs.grid = "samples.png" }
        let inputs = NamedPath.given([("--plan", plan), ("--noise", noise), ("--latents", latents), ("--prompts", promptOptions.prompts),
                                      ("--model", modelOptions.model), ("--image", image), ("--images", images)])
        let latentsOutput = outputLatents.map { [NamedPath("--output-latents", $0)] } ?? []
        try outputs.checkPaths(inputs: inputs, also: latentsOutput)
        let setup = try ModelSetup(modelOptions, needsSampleSize: false, generates: false, prompted: prompt != nil || promptOptions.prompts != nil)
        let textToImage = setup.config.isConditional
        // 1. The options that apply to this kind of model; the prompts.
        let prompts = try textToImage ? promptSet() : nil
        if image != nil && images != nil { throw ValidationError("give --image FILE or --images DIR, not both") }
        let imageToImage = image != nil || images != nil
        if strength != nil && !imageToImage { throw ValidationError("--strength is for image-to-image: give the init images with --image or --images") }
        if (classLabels != nil || nullClass != nil) && (textToImage || !setup.config.hasClassEmbedding) {
            throw ValidationError("--class-labels and --null-class are for class-conditional UNet2DModels (num_class_embeds or class_embed_type); \(setup.path) has no class embedding")
        }
        if textToImage {
            if imageToImage && latents != nil { throw ValidationError("--latents gives text-to-image's initial latents; image-to-image starts from the images (its noise: --noise FILE with tensor `noise`)") }
            if noise != nil && !imageToImage { throw ValidationError("--noise is for UNet2DModels and image-to-image; give a Stable Diffusion pipeline's initial latents with --latents") }
        } else {
            let textOptions: [(String, Bool)] = [("--prompt", prompt != nil), ("--prompts", promptOptions.prompts != nil),
                                                 ("--negative-prompt", promptOptions.negativePrompt != nil), ("--height", height != nil),
                                                 ("--width", width != nil), ("--latents", latents != nil), ("--output-latents", outputLatents != nil),
                                                 ("--image", image != nil), ("--images", images != nil)]
            if let given = textOptions.first(where: \.1) {
                throw ValidationError("\(given.0) is for Stable Diffusion pipelines (a UNet2DConditionModel); this model is a UNet2DModel")
            }
            try setup.check(needsSampleSize: noise == nil, generates: true)
        }
        let initImages = try (image ?? images).map(ImageToImageOptions.read)
        let plan = try stepPlan(setup, strength: imageToImage ? strength ?? ImageToImagePipeline.defaultStrength(xl: setup.config.textTime != nil) : nil,
                                strengthGiven: strength != nil)

        // 2. The initial noise (latents): from a file, or from the seed's streams.
        var generation = GenerationNoise(seed: seed)
        var given: [Int]?, latentSampleNoise: [Float]?
        if let path = noise ?? latents {
            let file = try SafeTensorsFile(path: path)
            let names = imageToImage ? ["noise"] : textToImage ? ["latents", "sample"] : ["sample"]
            guard let key = names.first(where: { file.tensors[$0] != nil }) else { throw ModelError("\(path): no tensor `\(names[0])`") }
            let shape = file.tensors[key]!.shape
            if !textToImage {
                guard shape.count == 4, shape[1] == setup.config.inChannels, shape.allSatisfy({ $0 > 0 }) else {
                    throw ModelError("\(path): `sample` has shape \(shape); the model needs [N, \(setup.config.inChannels), H, W]")
                }
            }
            if let count, let first = shape.first, count != first { throw ValidationError("--count \(count) differs from the \(textToImage ? "latents" : "noise") file's \(first) images") }
            given = shape
            generation.initial = try file.floats(key)
            if imageToImage, let info = file.tensors["latent_sample_noise"] {
                guard info.shape == shape else { throw ModelError("\(path): `latent_sample_noise` has shape \(info.shape), `noise` \(shape): they must agree") }
                latentSampleNoise = try file.floats("latent_sample_noise")
            }
        }
        let promptCount = promptOptions.prompts != nil ? prompts!.prompts.count : 1
        let n = count ?? given?.first ?? (images != nil ? max(initImages!.images.count, promptCount) : textToImage ? promptCount : 64)

        // 3. The pipeline (Engine decides which the folder gets), the outputs' channels.
        let stream = try precisionOptions.stream(deviceOptions)
        var request = PipelineRequest(batch: min(batch, n), variant: modelOptions.variant,
                                      height: textToImage ? height : given?[2], width: textToImage ? width : given?[3],
                                      prompts: prompts, guidanceScale: promptOptions.guidanceScale,
                                      microConditioning: promptOptions.microConditioning)
        request.initImages = initImages; request.latentSampleNoise = latentSampleNoise
        if !textToImage && setup.config.hasClassEmbedding {
            request.classes = ClassConditioning(labels: classLabels?.values, seed: seed, nullClass: nullClass)
        }
        let pipeline = try setup.pipeline(request, stream: stream)
        if textToImage, let shape = given, shape.count != 4 || Array(shape.dropFirst()) != pipeline.sampleShape {
            let size = pipeline.imageShape
            throw ModelError("\(noise ?? latents!): \(imageToImage ? "noise" : "latents") of shape \(shape); \(size[2])×\(size[1]) images need [N, \(pipeline.sampleShape.map(String.init).joined(separator: ", "))]")
        }
        try outputs.check(channels: pipeline.imageShape[0])
        warnAboutTruncatedPrompts(pipeline)
        let shape = [n] + pipeline.imageShape
        try checkHeldOutputs(outputs, shape: shape)

        // 4. The batches, written as they come.
        let guided = ((pipeline as? TextToImagePipeline) ?? (pipeline as? ImageToImagePipeline)?.text)?.guided
            ?? ((pipeline as? GenerationPipeline)?.guidanceScale != nil)
        let label = plan.sampler.description + (plan.fullSteps == plan.actions.count ? "" : " (\(plan.fullSteps) full, \(plan.partialSteps) partial, \(plan.nullSteps) null)")
            + (guided ? ", guidance \(promptOptions.guidanceScale)" : "")
        let progress = ProgressLine(label)
        let interrupt = Interrupt()
        var writer = outputs.isEmpty ? nil : try SampleWriter(outputs, shape: shape)
        var latentsWriter = try outputLatents.map { try SafeTensorsStreamWriter(path: $0, name: "latents", shape: [n] + pipeline.sampleShape) }
        let completed = try pipeline.generate(plan: plan, noise: generation, count: n, progress: { p in
            progress.update(p.stepsDone, of: p.stepsTotal)
            return interrupt.requested ? .stop : .proceed
        }) { batch in
            if latentsWriter != nil { try latentsWriter?.append(try batch.latents()[...]) }
            if writer != nil { try writer?.append(try batch.download()[...], images: batch.images) }
        }
        progress.finish()
        guard completed else { writer = nil; latentsWriter = nil; throw interruptedRun() }
        try writer?.finish()
        try latentsWriter?.finish()

        // 5. What was written.
        let files = [outputs.grid, outputs.folder, outputs.tensor, outputLatents].compactMap { $0 }
        if json {
            var summary: [String: Any] = ["count": n, "sampler": plan.sampler.description, "full": plan.fullSteps, "partial": plan.partialSteps,
                                          "null": plan.nullSteps, "seed": seed, "seconds": progress.elapsed, "device": stream.device.name,
                                          "device_memory_peak_bytes": stream.context.allocatedBytes.peak, "outputs": files]
            if textToImage {
                summary["guidance_scale"] = promptOptions.guidanceScale
                summary["height"] = pipeline.imageShape[1]; summary["width"] = pipeline.imageShape[2]
            }
            try printJSON(summary)
        } else {
            let written = [outputs.isEmpty ? nil : outputs.summary(count: n), outputLatents].compactMap { $0 }.joined(separator: ", ")
            let size = textToImage ? " of \(pipeline.imageShape[2])×\(pipeline.imageShape[1])" : ""
            say("\(n) images\(size), \(label), \(String(format: "%.1f", progress.elapsed)) s on \(stream.device.name): wrote \(written)")
        }
    }

    /// A Stable Diffusion pipeline's prompts: --prompt, or --prompts' file (one of them), with the
    /// negative prompt; the guidance scale checked.
    func promptSet() throws -> PromptSet {
        guard (prompt == nil) != (promptOptions.prompts == nil) else {
            throw ValidationError("a Stable Diffusion pipeline generates from text: give --prompt TEXT or --prompts FILE (one of them)")
        }
        try TextToImagePipeline.checkGuidance(promptOptions.guidanceScale)
        return try PromptSet(try prompt.map { [$0] } ?? PromptFile.read(promptOptions.prompts!), negativePrompts: promptOptions.negativePrompts)
    }

    /// The plan file's plan (checked against the options given beside it), else every step full on
    /// the sampler the options name.
    /// `strength`: image-to-image's (nil for a run from noise); a plan file's must agree when `strengthGiven`.
    func stepPlan(_ setup: ModelSetup, strength: Double?, strengthGiven: Bool) throws -> StepPlan {
        guard let plan else {
            let kind = try scheduler ?? setup.folderScheduler() ?? .ddim
            if kind != .ddim && eta != nil && eta != 0 { throw ValidationError("--eta applies to DDIM only") }
            if solverOrder != nil && !kind.isMultistep { throw ValidationError("--solver-order applies to multistep solvers (dpmsolver++, dpmsolver, unipc), not \(kind)") }
            if let timesteps, let steps, steps != timesteps.values.count { throw ValidationError("--steps \(steps) differs from the \(timesteps.values.count) --timesteps") }
            let steps = self.steps ?? timesteps?.values.count ?? (kind == .ddim || kind == .pndm ? 50 : kind == .ddpm ? setup.schedulerConfig.numTrainTimesteps : 20)
            guard steps > 0 else { throw ValidationError("--steps must be positive") }
            var sampler = try setup.sampler(kind, steps: steps, eta: eta ?? 0, order: solverOrder, timesteps: timesteps?.values, spacing: spacing)
            sampler.strength = strength
            do { try sampler.validate() } catch let e as ModelError { throw ValidationError(e.message) }
            return StepPlan.teacher(sampler)
        }
        let p = try StepPlan.load(from: URL(fileURLWithPath: plan), branchCount: setup.config.branchCount, schedulerConfiguration: setup.schedulerConfig)
        if let scheduler, scheduler != p.sampler.scheduler { throw ValidationError("--scheduler \(scheduler) differs from the plan's \(p.sampler.scheduler)") }
        if let steps, steps != p.sampler.steps { throw ValidationError("--steps \(steps) differs from the plan's \(p.sampler.steps)") }
        if let eta, eta != p.sampler.eta { throw ValidationError("--eta \(eta) differs from the plan's \(p.sampler.eta)") }
        if let solverOrder, solverOrder != p.sampler.order { throw ValidationError("--solver-order \(solverOrder) differs from the plan's \(p.sampler)") }
        if let timesteps, timesteps.values != p.sampler.timesteps { throw ValidationError("--timesteps differs from the plan's \(p.sampler)") }
        if let spacing, spacing != p.sampler.spacing { throw ValidationError("--timestep-spacing \(spacing) differs from the plan's \(p.sampler)") }
        if strengthGiven, let strength, strength != p.sampler.strength { throw ValidationError("--strength \(strength) differs from the plan's \(p.sampler)") }
        return p
    }
}

/// Outputs are written batch by batch; a grid keeps its 8-bit pixels until the end: refuse one that
/// cannot fit in memory before any work (the PNG folder and the tensor file have no such limit).
func checkHeldOutputs(_ outputs: SampleOutputs, shape: [Int]) throws {
    let held = outputs.heldBytes(shape: shape), memory = Double(ProcessInfo.processInfo.physicalMemory)
    if held > memory / 4 {
        throw ValidationError("--count \(shape[0]) makes a " + String(format: "%.3g-byte image grid (this machine has %.3g bytes of memory)", held, memory)
                              + ": write the images with --out-dir or --output-tensor instead, which are written batch by batch")
    }
}
