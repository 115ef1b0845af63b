// `flexiffusion clipscore`: CLIP score of images against their prompts (torchmetrics' CLIPScore).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct CLIPScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clipscore",
        abstract: "CLIP score of images against their prompts, as torchmetrics' CLIPScore computes it.",
        discussion: """
            IMAGES is a folder of PNGs (sorted by name, as `generate --out-dir` writes them), one PNG, or a \
            .safetensors file with tensor `sample` [N, C, H, W] in model space (`generate --output-tensor`). \
            Image i is scored against prompt i mod n of --prompts (one per line), as `generate` pairs them, or \
            against --prompt. Each pair scores 100 × the cosine of the CLIP model's projected image and text \
            embeddings; the CLIP score is max(mean, 0) (torchmetrics.multimodal.CLIPScore). Images go through \
            CLIPImageProcessor's steps (RGB; the shortest side resized by Pillow's bicubic filter, byte for \
            byte; centre crop; CLIP's mean and std); prompts through CLIP's tokenizer, cut to 77 tokens as \
            torchmetrics cuts them (with a warning). --clip is a CLIP folder as transformers saves a CLIPModel \
            with its processor (openai/clip-vit-large-patch14's layout: config.json, model.safetensors, \
            preprocessor_config.json or processor_config.json, vocab.json and merges.txt or tokenizer.json), or \
            its Hugging Face cache id; without --clip, the CLIP embedded with the shipped text-to-image model.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @Argument(help: "The images: a folder of PNGs, a PNG, or a .safetensors tensor file.") var images: String
    @Option(help: ArgumentHelp("The prompts, one per line: image i is scored against prompt i mod n.", valueName: "file")) var prompts: String?
    @Option(help: "The prompt of every image.") var prompt: String?
    @Option(help: "The CLIP model: a folder or Hugging Face cache id (e.g. openai/clip-vit-large-patch14); default, or `fashion`: the embedded CLIP of the embedded text-to-image model.") var clip = "fashion"
    @Option(help: "The CLIP weights' variant (model.<variant>.safetensors).") var variant: String?
    @Option(help: "Images per forward pass.") var batch = 32
    @Option(help: "Score at most this many images.") var limit: Int?
    @Flag(help: "Print the score, its sample size and every pair's score as JSON.") var json = false

    func run() throws {
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        guard (prompt == nil) != (prompts == nil) else { throw ValidationError("give the images' prompts: --prompts FILE or --prompt TEXT (one of them)") }
        if let prompt, prompt.isEmpty { throw ValidationError("--prompt is empty") }
        let texts = try prompt.map { [$0] } ?? PromptFile.read(prompts!)
        let set = try Image8.load(images, limit: limit)
        let stream = try ComputeStream(device: try OpenCLRuntime.select(deviceOptions.device))
        let model = try CLIPModel(path: try CLIPOptions.folder(clip), variant: variant, stream: stream, batch: min(batch, set.count))
        say("CLIP \(model.root.lastPathComponent): \(String(format: "%.1f", Double(model.parameterCount) / 1e6))M parameters, \(model.config.vision.imageSize)-pixel images in \(model.config.vision.patchSize)-pixel patches, on \(stream.device.name)")
        let progress = ProgressLine("CLIP score of \(images)")
        let (scores, truncated) = try model.pairScores(images: set, prompts: texts) { progress.update($0, of: $1, unit: "images") }
        progress.finish()
        for p in truncated.prefix(3) {
            say("warning: a prompt is longer than CLIP's \(model.config.text.maxPositions) tokens and was cut, as torchmetrics cuts it: \(p.prefix(80))…")
        }
        let score = CLIPScore.metric(scores), mean = scores.reduce(0, +) / Double(scores.count)
        let sorted = scores.sorted()
        if json {
            try printJSON(["clip_score": score, "mean_pair_score": mean, "images": set.count, "prompts": texts.count,
                           "clip": model.root.path, "device": stream.device.name, "pair_scores": scores,
                           "truncated_prompts": truncated.count])
        } else {
            print(String(format: "CLIP score %.4f  (%d images, %d prompts; pairs: min %.3f, median %.3f, max %.3f; %@)",
                         score, set.count, texts.count, sorted.first!, sorted[sorted.count / 2], sorted.last!, model.root.lastPathComponent))
        }
    }
}
