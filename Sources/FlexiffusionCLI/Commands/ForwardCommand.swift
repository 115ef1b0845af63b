// `flexiffusion forward`: one UNet evaluation on a tensor file — the command that checks parity
// with diffusers (`UNet2DModel(sample, t).sample`).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Run the UNet once: read tensor `sample` [N,C,H,W], write the UNet's output as tensor `sample`.",
        discussion: """
            Equivalent to diffusers' `UNet2DModel.from_pretrained(DIR)(sample, T).sample`, or for a \
            UNet2DConditionModel (Stable Diffusion) `unet(sample, T, encoder_hidden_states=E).sample` with \
            E the input file's tensor `encoder_hidden_states` [N, L, cross_attention_dim]; for SDXL's UNet \
            (addition_embed_type text_time) also `added_cond_kwargs={"text_embeds": …, "time_ids": …}` from the \
            file's tensors `text_embeds` [N, D] and `time_ids` [N, K] (K = 6 for SDXL base, 5 for its refiner); for a \
            class-conditional UNet2DModel `unet(sample, T, class_labels=C)` with the file's tensor `class_labels` [N]. --model takes a \
            diffusers pipeline folder (model_index.json, unet/) or a UNet folder (config.json and \
            diffusion_pytorch_model.safetensors; --variant fp16 reads diffusion_pytorch_model.fp16.safetensors). \
            The output is written to a temporary file first, so an error never leaves a partial file.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var precisionOptions: PrecisionOptions
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "safetensors file with tensor `sample` [N, in_channels, H, W] (F32, F16 or BF16), `encoder_hidden_states` [N, L, D] for a conditional UNet, and `text_embeds` [N, D'] and `time_ids` [N, K] for SDXL's.") var input: String
    @Option(help: "The timestep t (the same for every sample).") var timestep: Double
    @Option(help: "safetensors file to write (tensor `sample`, F32).") var output: String

    func run() throws {
        guard timestep.isFinite else { throw ValidationError("--timestep must be a finite number") }
        try OutputCheck.check(outputs: [NamedPath("--output", output)],
                              inputs: NamedPath.given([("--input", input), ("--model", modelOptions.model)]))
        let file = try SafeTensorsFile(path: input)
        guard let info = file.tensors["sample"] else {
            throw ModelError("\(input): no tensor `sample` (has: \(file.names.joined(separator: ", ")))")
        }
        guard info.shape.count == 4, info.shape.allSatisfy({ $0 > 0 }) else {
            throw ModelError("\(input): tensor `sample` has shape \(info.shape); expected [N, C, H, W]")
        }
        let folder = try modelOptions.folder()
        let config = try UNetConfiguration.load(from: folder.configURL)
        let (n, c, h, w) = (info.shape[0], info.shape[1], info.shape[2], info.shape[3])
        var states: [Float]? = nil, contextLength = UNet.defaultContextLength
        let statesInfo = file.tensors["encoder_hidden_states"]
        if let x = config.crossAttention {
            guard let e = statesInfo else {
                throw ModelError("\(input): no tensor `encoder_hidden_states`, which this UNet2DConditionModel needs as [\(n), L, \(x.dim)] (has: \(file.names.joined(separator: ", ")))")
            }
            guard e.shape.count == 3, e.shape[0] == n, e.shape[1] > 0, e.shape[2] == x.dim else {
                throw ModelError("\(input): tensor `encoder_hidden_states` has shape \(e.shape); the model needs [\(n), L, \(x.dim)] (batch of `sample`, any length L, cross_attention_dim \(x.dim))")
            }
            contextLength = e.shape[1]
            states = try file.floats("encoder_hidden_states")
        } else if statesInfo != nil {
            throw ModelError("\(input) has `encoder_hidden_states`, but \(folder.configURL.path) is a UNet2DModel, which takes none")
        }
        var added: (text: [Float], ids: [Float])? = nil, timeIDs = UNet.defaultTimeIDCount
        let (textInfo, idsInfo) = (file.tensors["text_embeds"], file.tensors["time_ids"])
        if let a = config.textTime {
            guard let t = textInfo, let i = idsInfo else {
                throw ModelError("\(input): this UNet (addition_embed_type text_time, as SDXL's) needs tensors `text_embeds` [\(n), D] and `time_ids` [\(n), K] with D + K·\(a.timeDim) = \(a.inputDim) (has: \(file.names.joined(separator: ", ")))")
            }
            guard i.shape.count == 2, i.shape[0] == n, i.shape[1] > 0, t.shape == [n, a.textDim(timeIDs: i.shape[1])] else {
                throw ModelError("\(input): `text_embeds` \(t.shape) and `time_ids` \(i.shape) do not fit: the model needs [\(n), D] and [\(n), K] with D + K·\(a.timeDim) = \(a.inputDim) (SDXL base: K = 6)")
            }
            timeIDs = i.shape[1]
            added = (try file.floats("text_embeds"), try file.floats("time_ids"))
        } else if textInfo != nil || idsInfo != nil {
            throw ModelError("\(input) has `text_embeds`/`time_ids`, but \(folder.configURL.path) has no added embedding (addition_embed_type), so it takes none")
        }
        var labels: [Int]? = nil
        if config.hasClassEmbedding {
            guard let info = file.tensors["class_labels"], info.shape == [n] else {
                throw ModelError("\(input): this UNet2DModel is class-conditional: it needs tensor `class_labels` [\(n)] (has: \(file.names.joined(separator: ", ")))")
            }
            let values = try file.floats("class_labels")
            guard values.allSatisfy({ $0.isFinite && $0 == $0.rounded() }) else { throw ModelError("\(input): `class_labels` holds values that are not whole numbers") }
            labels = values.map { Int($0) }
        } else if file.tensors["class_labels"] != nil {
            throw ModelError("\(input) has `class_labels`, but \(folder.configURL.path) has no class embedding, so it takes none")
        }
        guard c == config.inChannels else {
            throw ModelError("\(input): `sample` has \(c) channels; the model takes in_channels = \(config.inChannels)")
        }
        let stream = try precisionOptions.stream(deviceOptions)
        let unet = try UNet(config: config, weights: WeightStore(file: SafeTensorsFile(path: folder.weightsURL.path)),
                            stream: stream, batch: n, height: h, width: w, contextLength: contextLength, timeIDs: timeIDs)
        let start = DispatchTime.now().uptimeNanoseconds
        let out = try unet(try file.floats("sample"), timesteps: Array(repeating: Float(timestep), count: n), encoderHiddenStates: states,
                           textEmbeds: added?.text, timeIDs: added?.ids, classLabels: labels)
        let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        try SafeTensorsWriter.write([("sample", [n, config.outChannels, h, w], out)], to: output)
        FileHandle.standardError.write("wrote \(output): sample [\(n), \(config.outChannels), \(h), \(w)] in \(formatMilliseconds(ms)) ms on \(stream.device.name)\n".data(using: .utf8)!)
    }
}
