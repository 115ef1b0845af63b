// `flexiffusion generate` on a Stable Diffusion pipeline folder: maps the text-to-image options onto
// Engine's TextToImagePipeline and writes what it returns.
import ArgumentParser
import Engine
import Foundation
import GPUKernels

extension GenerateCommand {
    /// `setup`: the model as opened (a UNet2DConditionModel).
    func runTextToImage(_ setup: ModelSetup) throws {
        if noise != nil { throw ValidationError("--noise is for UNet2DModels; give a Stable Diffusion pipeline's initial latents with --latents") }
        guard (prompt == nil) != (prompts == nil) else {
            throw ValidationError("a Stable Diffusion pipeline generates from text: give --prompt TEXT or --prompts FILE (one of them)")
        }
        let folder = try StableDiffusionFolder(path: setup.path, variant: modelOptions.variant)
        let plan = try stepPlan(setup)

        let promptList = try prompt.map { [$0] } ?? readPrompts(prompts!)
        var initial: [Float]?, latentsShape: [Int]?
        if let latents {
            let file = try SafeTensorsFile(path: latents)
            guard let key = ["latents", "sample"].first(where: { file.tensors[$0] != nil }) else {
                throw ModelError("\(latents): no tensor `latents`")
            }
            latentsShape = file.tensors[key]!.shape
            initial = try file.floats(key)
        }
        let n = count ?? latentsShape?.first ?? (prompts != nil ? promptList.count : 1)
        if let given = latentsShape?.first, given != n { throw ValidationError("--count \(n) differs from the latents file's \(given) images") }
        if promptList.count > 1 && promptList.count != n {
            throw ValidationError("\(promptList.count) prompts for \(n) images: --count must match the prompts file (or give one --prompt)")
        }

        let stream = try ComputeStream(device: try OpenCLRuntime.select(deviceOptions.device))
        let pipeline = try TextToImagePipeline(folder: folder, variant: modelOptions.variant, stream: stream, batch: min(batch, n),
                                               height: height, width: width, guidanceScale: guidanceScale)
        if let shape = latentsShape, shape.count != 4 || Array(shape.dropFirst()) != pipeline.latentShape {
            throw ModelError("\(latents!): latents of shape \(shape); \(pipeline.width)×\(pipeline.height) images need [N, \(pipeline.latentShape.map(String.init).joined(separator: ", "))]")
        }
        var outputs = SampleOutputs(grid: out, folder: outDir, tensor: outputTensor)
        if outputs.isEmpty && outputLatents == nil { outputs.grid = "samples.png" }
        try outputs.prepare(channels: pipeline.decoder.config.outChannels)
        if let outputLatents { try SampleOutputs(tensor: outputLatents).prepare(channels: 0) }

        let label = plan.sampler.description + (plan.fullSteps == plan.actions.count ? "" : " (\(plan.fullSteps) full, \(plan.partialSteps) partial, \(plan.nullSteps) null)")
            + (pipeline.guided ? ", guidance \(guidanceScale)" : "")
        let progress = ProgressLine(label)
        let shape = [n, pipeline.decoder.config.outChannels, pipeline.height, pipeline.width]
        try checkHeldOutputs(outputs, shape: shape)
        let interrupt = Interrupt()
        var writer = outputs.isEmpty ? nil : try SampleWriter(outputs, shape: shape)
        var latentsWriter = try outputLatents.map { try SafeTensorsStreamWriter(path: $0, name: "latents", shape: [n] + pipeline.latentShape) }
        let completed = try pipeline.generate(prompts: promptList, negativePrompts: negativePrompt.map { [$0] } ?? [], plan: plan,
                                              noise: GenerationNoise(seed: seed, initial: initial), count: n, progress: { p in
            progress.update(p.stepsDone, of: p.stepsTotal)
            return interrupt.requested ? .stop : .proceed
        }) { images, latents, decoded in
            try latentsWriter?.append(latents[...])
            try writer?.append(decoded[...], images: images)
        }
        progress.finish()
        guard completed else { writer = nil; latentsWriter = nil; throw interruptedRun() }
        try writer?.finish()
        try latentsWriter?.finish()
        let written = [outputs.isEmpty ? nil : outputs.summary(count: n), outputLatents].compactMap { $0 }.joined(separator: ", ")
        if json {
            try printJSON(["count": n, "sampler": plan.sampler.description, "full": plan.fullSteps, "partial": plan.partialSteps, "null": plan.nullSteps,
                           "seed": seed, "seconds": progress.elapsed, "device": stream.device.name, "device_memory_peak_bytes": stream.context.allocatedBytes.peak, "guidance_scale": guidanceScale,
                           "height": pipeline.height, "width": pipeline.width,
                           "outputs": [outputs.grid, outputs.folder, outputs.tensor, outputLatents].compactMap { $0 }])
        } else {
            say("\(n) images of \(pipeline.width)×\(pipeline.height), \(label), \(String(format: "%.1f", progress.elapsed)) s on \(stream.device.name): wrote \(written)")
        }
    }
}
