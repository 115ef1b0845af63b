// The text-to-image options `rfid` and `search` share: a prompt set, a negative prompt and the
// guidance scale, mapped onto Engine's PromptSet for a Stable Diffusion pipeline folder.
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct PromptOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Text-to-image (a Stable Diffusion pipeline folder): the prompt set, one prompt per line (blank lines skipped); image i is generated from prompt i mod n (e.g. prompts/everyday-scenes.txt, 200 captions; `generate` makes one image per prompt).", valueName: "file"))
    var prompts: String?
    @Option(name: .customLong("negative-prompt"), help: "Text-to-image: the negative prompt of every image, the unconditional half of guidance (default: none, the empty prompt).")
    var negativePrompt: String?
    @Option(name: .customLong("guidance-scale"), help: "Text-to-image: classifier-free guidance scale (≤ 1: no guidance, one UNet half).")
    var guidanceScale: Float = 7.5
    @Option(name: .customLong("original-size"), help: ArgumentHelp("SDXL: the micro-conditioning's original_size (default: the image size).", valueName: "H,W"))
    var originalSize: IntPair?
    @Option(name: .customLong("crop-top-left"), help: ArgumentHelp("SDXL: crops_coords_top_left (default: 0,0).", valueName: "TOP,LEFT"))
    var cropTopLeft: IntPair?
    @Option(name: .customLong("target-size"), help: ArgumentHelp("SDXL: target_size (default: the image size).", valueName: "H,W"))
    var targetSize: IntPair?

    /// SDXL's micro-conditioning as given (nil when no option was).
    var microConditioning: MicroConditioning? {
        guard originalSize != nil || cropTopLeft != nil || targetSize != nil else { return nil }
        return MicroConditioning(originalSize: originalSize?.pair, cropTopLeft: cropTopLeft?.pair ?? (0, 0), targetSize: targetSize?.pair)
    }

    /// The negative prompts of the prompt set (none: the empty prompt).
    var negativePrompts: [String] { negativePrompt.map { [$0] } ?? [] }

    /// Checks that the options fit the model: a prompt set exactly for a Stable Diffusion pipeline,
    /// which must hold a prompt. Returns that prompt set (read here, once, before any work); nil for a
    /// UNet2DModel.
    func check(_ setup: ModelSetup) throws -> PromptSet? {
        if microConditioning != nil && setup.config.textTime == nil {
            throw ValidationError("--original-size, --crop-top-left and --target-size are SDXL's micro-conditioning; \(setup.path) is not an SDXL pipeline")
        }
        guard setup.config.isConditional else {
            if prompts != nil || negativePrompt != nil {
                throw ValidationError("--prompts and --negative-prompt are for Stable Diffusion pipelines (a UNet2DConditionModel); this model is a UNet2DModel")
            }
            return nil
        }
        guard let prompts else {
            throw ValidationError("\(setup.path) is a Stable Diffusion pipeline: its images come from text; give a prompt set with --prompts FILE (e.g. prompts/everyday-scenes.txt)")
        }
        let list = try PromptFile.read(prompts)
        try TextToImagePipeline.checkGuidance(guidanceScale)
        return try PromptSet(list, negativePrompts: negativePrompts)
    }
}

/// Says on standard error which prompts the text encoder cuts short (diffusers warns the same).
func warnAboutTruncatedPrompts(_ pipeline: any ImagePipeline) {
    guard let t2i = (pipeline as? TextToImagePipeline) ?? (pipeline as? ImageToImagePipeline)?.text else { return }
    for (text, tokens) in t2i.truncatedPrompts {
        say("warning: \"\(text.prefix(60))\(text.count > 60 ? "…" : "")\" is \(tokens) tokens; the text encoder reads the first \(t2i.promptEncoder.maxLength - 2) (diffusers cuts it the same way, with the same warning)")
    }
}

/// A model as `rfid` and `search` score it: a UNet2DModel's samples, or a Stable Diffusion pipeline's
/// decoded images over a prompt set (Engine's PipelineLoader decides which), with its feature network.
struct ScoredPipeline {
    let pipeline: any ImagePipeline
    /// What determines the images besides the plan and the seed (rFID's cache key).
    let key: String
    let extractor: FeatureExtractor
    var isTextToImage: Bool { pipeline is TextToImagePipeline || pipeline is ImageToImagePipeline }

    /// `promptSet`: what `prompts.check(setup)` returned (a pipeline's prompt set, nil for a UNet2DModel).
    init(_ setup: ModelSetup, prompts: PromptOptions, promptSet: PromptSet?, features: FeatureOptions, variant: String?,
         stream: ComputeStream, batch: Int, initImages: InitImages? = nil) throws {
        var request = PipelineRequest(batch: batch, variant: variant, prompts: promptSet, guidanceScale: prompts.guidanceScale,
                                      microConditioning: prompts.microConditioning)
        request.initImages = initImages
        pipeline = try setup.pipeline(request, stream: stream)
        warnAboutTruncatedPrompts(pipeline)
        // (The precision changes the images: a bf16 run's teacher is not an fp32 run's.)
        key = try pipeline.contentKey() + (stream.backends.precision == .float32 ? "" : "|\(stream.backends.precision)")
        let shape = pipeline.imageShape
        extractor = try features.extractor(stream: stream, batch: batch, channels: shape[0], height: shape[1], width: shape[2],
                                           forText: setup.config.isConditional)
    }
}

/// Two integers as `A,B` (a size H,W or a corner TOP,LEFT), each 0…65536.
struct IntPair: ExpressibleByArgument {
    let pair: (Int, Int)
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let a = parts[0], let b = parts[1], (0...65536).contains(a), (0...65536).contains(b) else { return nil }
        pair = (a, b)
    }
}
