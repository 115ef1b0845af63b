// What a text-to-image pipeline's UNet attends to, made from prompts: Stable Diffusion 1.x/2.x's one
// CLIP text encoder (last_hidden_state, StableDiffusionPipeline.encode_prompt), and SDXL's two
// (StableDiffusionXLPipeline.encode_prompt: both encoders' hidden_states[-2] concatenated, the second
// one's projected pooled state as `text_embeds`, micro-conditioning as `time_ids`, and zeros for the
// unconditional half when no negative prompt is given and force_zeros_for_empty_prompt is set).
// Ports of diffusers 0.42's encode_prompt of both pipelines (no LoRA scale, no textual inversion).
import Foundation
import GPUKernels

/// Turns a batch's prompts into the conditioning a text-to-image pipeline's UNet reads.
public protocol PromptEncoder: AnyObject {
    /// The tokenizers (the length they pad to is the UNet's context length).
    var tokenizers: [CLIPTokenizer] { get }
    /// The width of the states the UNet attends to (its cross_attention_dim).
    var contextDim: Int { get }
    /// Writes into `unet`'s workspace what the batch slots attend to: with `guided`, the unconditional
    /// half (`negatives`, or "" per slot when nil) first, then `prompts`; without, `prompts` alone.
    /// `negatives` nil means no negative prompt was given (SDXL may then use zeros).
    func condition(prompts: [String], negatives: [String]?, guided: Bool, unet: UNet) throws
}

extension PromptEncoder {
    /// Tokens a prompt runs to in each tokenizer: those beyond `maxLength - 2` are cut off.
    public var maxLength: Int { tokenizers[0].maxLength }
}

/// Stable Diffusion 1.x/2.x: one tokenizer and CLIPTextModel, `last_hidden_state` as the context.
public final class CLIPPromptEncoder: PromptEncoder {
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public var tokenizers: [CLIPTokenizer] { [tokenizer] }
    public var contextDim: Int { textEncoder.config.hiddenSize }

    /// `sequences`: the most sequences one batch encodes (the UNet's batch).
    public init(tokenizer: URL, textEncoder: URL, variant: String?, stream: ComputeStream, sequences: Int) throws {
        self.tokenizer = try CLIPTokenizer(folder: tokenizer)
        self.textEncoder = try CLIPTextModel(folder: textEncoder, variant: variant, stream: stream, batch: sequences)
        try checkFits(self.tokenizer, self.textEncoder)
    }

    public func condition(prompts: [String], negatives: [String]?, guided: Bool, unet: UNet) throws {
        let positive = prompts.map { tokenizer($0) }
        let ids = guided ? (negatives ?? prompts.map { _ in "" }).map { tokenizer($0) } + positive : positive
        let states = try textEncoder.encode(ids)
        try unet.workspace.context.copy(from: states, count: ids.count * ids[0].count * contextDim, queue: unet.stream.queue)
    }
}

/// SDXL: `tokenizer` + CLIPTextModel and `tokenizer_2` + CLIPTextModelWithProjection; the context is
/// both encoders' `hidden_states[-2]` side by side, `text_embeds` the second's projected pooled state,
/// `time_ids` each image's (original size, crop top-left, target size).
public final class DualCLIPPromptEncoder: PromptEncoder {
    public let tokenizer: CLIPTokenizer, tokenizer2: CLIPTokenizer
    /// The second encoder is a CLIPTextModelWithProjection (checked on load).
    public let textEncoder: CLIPTextModel, textEncoder2: CLIPTextModel
    /// diffusers' `force_zeros_for_empty_prompt`: the unconditional half is zeros when no negative prompt is given.
    public let forceZerosForEmptyPrompt: Bool
    /// The `time_ids` of every image (SDXL base: 6 values).
    public let timeIDs: [Float]
    public var tokenizers: [CLIPTokenizer] { [tokenizer, tokenizer2] }
    public var contextDim: Int { textEncoder.config.hiddenSize + textEncoder2.config.hiddenSize }
    /// The width of `text_embeds` (the second encoder's projection_dim).
    public let pooledDim: Int
    /// Both encoders' states side by side [sequences, L, contextDim], before they go into the UNet.
    private let states: DeviceBuffer<Float>

    public init(tokenizers: (URL, URL), textEncoders: (URL, URL), variant: String?, stream: ComputeStream, sequences: Int,
                forceZerosForEmptyPrompt: Bool, timeIDs: [Float]) throws {
        tokenizer = try CLIPTokenizer(folder: tokenizers.0)
        tokenizer2 = try CLIPTokenizer(folder: tokenizers.1)
        textEncoder = try CLIPTextModel(folder: textEncoders.0, variant: variant, stream: stream, batch: sequences)
        let second = try CLIPTextModel(folder: textEncoders.1, variant: variant, stream: stream, batch: sequences)
        guard let projection = second.config.projectionDim else {
            throw ModelError("\(textEncoders.1.path): SDXL's text_encoder_2 must be a CLIPTextModelWithProjection (its pooled, projected output is the UNet's text_embeds); this one has no text_projection")
        }
        textEncoder2 = second; pooledDim = projection
        try checkFits(tokenizer, textEncoder)
        try checkFits(tokenizer2, second)
        guard tokenizer.maxLength == tokenizer2.maxLength else {
            throw ModelError("the two tokenizers pad to \(tokenizer.maxLength) and \(tokenizer2.maxLength) tokens; SDXL concatenates their states, so they must agree")
        }
        self.forceZerosForEmptyPrompt = forceZerosForEmptyPrompt; self.timeIDs = timeIDs
        states = try stream.buffer(sequences * tokenizer.maxLength * (textEncoder.config.hiddenSize + second.config.hiddenSize))
    }

    public func condition(prompts: [String], negatives: [String]?, guided: Bool, unet: UNet) throws {
        let zeros = guided && negatives == nil && forceZerosForEmptyPrompt
        let texts = guided && !zeros ? (negatives ?? prompts.map { _ in "" }) + prompts : prompts
        let (D1, D2, P, L) = (textEncoder.config.hiddenSize, textEncoder2.config.hiddenSize, pooledDim, tokenizer.maxLength)
        let s = unet.stream, ws = unet.workspace, n = texts.count, D = D1 + D2
        try textEncoder.encodePenultimate(texts.map { tokenizer($0) }, pooled: false)
        try textEncoder2.encodePenultimate(texts.map { tokenizer2($0) }, pooled: true)
        try s.concatChannels(textEncoder.output, textEncoder2.output, output: states, batch: n * L, channelsA: D1, channelsB: D2, spatial: 1)
        // The unconditional half as zeros (negative_prompt_embeds = zeros_like(prompt_embeds)), then the encoded sequences.
        let skip = zeros ? prompts.count : 0
        if zeros {
            try ws.context.write([Float](repeating: 0, count: skip * L * D), queue: s.queue)
            try ws.textEmbeds.write([Float](repeating: 0, count: skip * P), queue: s.queue)
        }
        try ws.context.copy(from: states, count: n * L * D, offset: skip * L * D, queue: s.queue)
        try ws.textEmbeds.copy(from: textEncoder2.pooledOutput, count: n * P, offset: skip * P, queue: s.queue)
        // negative_add_time_ids = add_time_ids: every slot the same.
        try ws.timeIDs.write((0..<(skip + n)).flatMap { _ in timeIDs }, queue: s.queue)
    }
}

/// The tokenizer's padded length fits the encoder's positions.
private func checkFits(_ tokenizer: CLIPTokenizer, _ encoder: CLIPTextModel) throws {
    guard tokenizer.maxLength <= encoder.config.maxPositions else {
        throw ModelError("the tokenizer pads to \(tokenizer.maxLength) tokens; the text encoder takes at most \(encoder.config.maxPositions)")
    }
}
