// The text-to-image options `rfid` and `search` share: a prompt set, a negative prompt and the
// guidance scale, mapped onto Engine's PromptedPipeline for a Stable Diffusion pipeline folder.
import ArgumentParser
import Engine
import Foundation
import GPUKernels

/// The prompts of a file, one per line (blank lines skipped).
func readPrompts(_ path: String, option: String = "--prompts") throws -> [String] {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
        throw ModelError("cannot read \(option) \(path): \(error.localizedDescription)")
    }
    let list = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard !list.isEmpty else { throw ModelError("\(option) \(path) holds no prompt (one per line)") }
    return list
}

struct PromptOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Text-to-image (a Stable Diffusion pipeline folder): the prompt set, one prompt per line; image i is generated from prompt i mod n (e.g. prompts/everyday-scenes.txt, 200 captions).", valueName: "file"))
    var prompts: String?
    @Option(name: .customLong("negative-prompt"), help: "Text-to-image: the negative prompt of every image (default: none, the empty prompt).")
    var negativePrompt: String?
    @Option(name: .customLong("guidance-scale"), help: "Text-to-image: classifier-free guidance scale (≤ 1: no guidance).")
    var guidanceScale: Float = 7.5

    /// Checks that the options fit the model: a prompt set exactly for a Stable Diffusion pipeline,
    /// which must hold a prompt. Returns that prompt set (read here, once, before any work); nil for a
    /// UNet2DModel.
    func check(_ setup: ModelSetup) throws -> [String]? {
        guard setup.config.isConditional else {
            if prompts != nil || negativePrompt != nil {
                throw ValidationError("--prompts and --negative-prompt are for Stable Diffusion pipelines (a UNet2DConditionModel); this model is a UNet2DModel")
            }
            return nil
        }
        guard let prompts else {
            throw ValidationError("\(setup.path) is a Stable Diffusion pipeline: its images come from text; give a prompt set with --prompts FILE (e.g. prompts/everyday-scenes.txt)")
        }
        let list = try readPrompts(prompts)
        guard guidanceScale.isFinite else { throw ValidationError("--guidance-scale must be finite, not \(guidanceScale)") }
        return list
    }

    /// The pipeline over the prompt set `list` (as `check` returned it) for batches of `batch` images,
    /// and the key of everything besides the plan that determines its images (for the teacher-feature
    /// cache and results files).
    func pipeline(_ setup: ModelSetup, prompts list: [String], variant: String?, stream: ComputeStream, batch: Int) throws
        -> (pipeline: PromptedPipeline, key: String) {
        let folder = try StableDiffusionFolder(path: setup.path, variant: variant)
        let t2i = try TextToImagePipeline(folder: folder, variant: variant, stream: stream, batch: batch, guidanceScale: guidanceScale)
        let key = try PromptedPipeline.contentKey(folder: folder, variant: variant, prompts: list, negativePrompt: negativePrompt ?? "",
                                                  guidanceScale: guidanceScale, height: t2i.height, width: t2i.width)
        return (try PromptedPipeline(t2i, prompts: list, negativePrompt: negativePrompt ?? ""), key)
    }
}

/// A model as `rfid` and `search` score it: a UNet2DModel's samples, or a Stable Diffusion pipeline's
/// decoded images over a prompt set.
struct ScoredPipeline {
    let pipeline: any ImagePipeline
    /// What determines the images besides the plan and the seed (rFID's cache key).
    let key: String
    let extractor: FeatureExtractor
    var isTextToImage: Bool { pipeline is PromptedPipeline }

    /// `promptSet`: what `prompts.check(setup)` returned (a pipeline's prompt set, nil for a UNet2DModel).
    init(_ setup: ModelSetup, prompts: PromptOptions, promptSet: [String]?, features: FeatureOptions, variant: String?,
         stream: ComputeStream, batch: Int) throws {
        if let promptSet {
            (pipeline, key) = try prompts.pipeline(setup, prompts: promptSet, variant: variant, stream: stream, batch: batch)
        } else {
            try GenerationPipeline.checkCanGenerate(setup.config)
            pipeline = try GenerationPipeline(unet: setup.unet(stream: stream, batch: batch), schedulerConfiguration: setup.schedulerConfig)
            key = try RFIDEvaluator.modelKey(folder: setup.folder)
        }
        let shape = pipeline.imageShape
        extractor = try features.extractor(stream: stream, batch: batch, channels: shape[0], height: shape[1], width: shape[2],
                                           forText: setup.config.isConditional)
    }
}
