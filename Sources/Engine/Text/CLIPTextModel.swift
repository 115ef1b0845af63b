// transformers' CLIPTextModel on the engine: token and position embeddings, pre-LN transformer layers
// with causal self-attention and a quick_gelu or gelu MLP, the final LayerNorm — the text encoder of
// Stable Diffusion 1.x (CLIP ViT-L/14's, quick_gelu) and 2.x (OpenCLIP ViT-H's, gelu, 23 layers) —
// and CLIPTextModelWithProjection (SDXL's second encoder: the pooled end-token state projected).
// `last_hidden_state` is what StableDiffusionPipeline conditions on; `clipSkip` as diffusers' encode_prompt;
// `encodePenultimate` gives what StableDiffusionXLPipeline conditions on (hidden_states[-2]) and the pooled
// projection. Port of transformers.models.clip.modeling_clip (CLIPTextTransformer,
// CLIPTextModelWithProjection), transformers 5.
import Foundation
import GPUKernels

/// A text encoder's config.json (transformers' `CLIPTextConfig`): the keys that shape the model are
/// read with transformers' defaults; keys that do not change inference (dropout, initialisation, the
/// other token ids, transformers' generation defaults) are ignored.
public struct CLIPTextConfiguration: Sendable, Equatable {
    public var vocabSize = 49408, hiddenSize = 512, intermediateSize = 2048, layers = 12, heads = 8
    public var maxPositions = 77
    public var layerNormEps: Float = 1e-5
    public var activation: TokenActivation = .quickGELU
    /// `projection_dim` of a CLIPTextModelWithProjection (its `text_projection`); nil for a CLIPTextModel.
    public var projectionDim: Int?
    /// `eos_token_id`: where the pooled state is taken (2, as older configs say, means the largest id).
    public var eosTokenID = 49407
    /// Whether the config names its class (`architectures`); without it, weights with a
    /// `text_projection` are read as a CLIPTextModelWithProjection (of `projection_dim`), as the
    /// pipeline's model_index.json would load them.
    public var namesArchitecture = false
    var configProjectionDim: Int?

    public init() {}
    public var headDim: Int { hiddenSize / heads }

    /// Reads `url`: a `CLIPTextModel` (`model_type` clip_text_model); anything else, or values the
    /// engine does not run, are errors naming the key.
    public static func load(from url: URL) throws -> CLIPTextConfiguration {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw ModelError("cannot read \(url.path): \(error.localizedDescription)") }
        guard let raw = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError("\(url.path) is not a JSON object")
        }
        if let type = raw["model_type"] as? String, type != "clip_text_model" {
            throw ModelError("\(url.path): model_type \(type) is not a CLIP text model (clip_text_model)")
        }
        return try parse(raw, data: data, source: url.path)
    }

    /// The `text_config` of a CLIPModel's config.json (`source` names it in errors): the text tower,
    /// with the model's `projection_dim` as its `text_projection`'s width.
    public static func parse(textConfig raw: [String: Any], projectionDim: Int, source: String) throws -> CLIPTextConfiguration {
        let data = try JSONSerialization.data(withJSONObject: raw)
        var c = try parse(raw.filter { $0.key != "architectures" }, data: data, source: source)
        c.projectionDim = projectionDim; c.namesArchitecture = true
        return c
    }

    static func parse(_ raw: [String: Any], data: Data, source: String) throws -> CLIPTextConfiguration {
        let url = URL(fileURLWithPath: source)
        let architectures = raw["architectures"] as? [String] ?? []
        if let other = architectures.first(where: { !["CLIPTextModel", "CLIPTextModelWithProjection"].contains($0) }) {
            throw ModelError("\(url.path): architecture \(other) is not supported (CLIPTextModel, or SDXL's CLIPTextModelWithProjection)")
        }
        struct Keys: Decodable {
            var vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, max_position_embeddings: Int?
            var projection_dim, eos_token_id: Int?
            var layer_norm_eps: Double?
            var hidden_act: String?
        }
        let keys: Keys
        do { keys = try decodeJSON(Keys.self, from: data, object: raw) } catch { throw ModelError("\(url.path): \(describe(error))") }
        var c = CLIPTextConfiguration()
        for (key, value, field) in [("vocab_size", keys.vocab_size, \CLIPTextConfiguration.vocabSize),
                                    ("hidden_size", keys.hidden_size, \.hiddenSize),
                                    ("intermediate_size", keys.intermediate_size, \.intermediateSize),
                                    ("num_hidden_layers", keys.num_hidden_layers, \.layers),
                                    ("num_attention_heads", keys.num_attention_heads, \.heads),
                                    ("max_position_embeddings", keys.max_position_embeddings, \.maxPositions)] {
            guard let value else { continue }
            guard value > 0 && value < 1 << 24 else { throw ModelError("\(url.path): \(key) = \(value) is not a positive integer below 2^24") }
            c[keyPath: field] = value
        }
        if let eps = keys.layer_norm_eps {
            guard eps > 0 && eps < 1 else { throw ModelError("\(url.path): layer_norm_eps = \(eps) is not a small positive number") }
            c.layerNormEps = Float(eps)
        }
        if let name = keys.hidden_act {
            guard let act = TokenActivation(rawValue: name) else {
                throw ModelError("\(url.path): hidden_act = \(name) is not supported (quick_gelu or gelu)")
            }
            c.activation = act
        }
        if architectures.contains("CLIPTextModelWithProjection") {
            let p = keys.projection_dim ?? 512
            guard p > 0 && p < 1 << 24 else { throw ModelError("\(url.path): projection_dim = \(p) is not a positive integer below 2^24") }
            c.projectionDim = p
        }
        c.namesArchitecture = !architectures.isEmpty
        if let eos = keys.eos_token_id { c.eosTokenID = eos }
        c.configProjectionDim = keys.projection_dim
        guard c.hiddenSize % c.heads == 0 else {
            throw ModelError("\(url.path): hidden_size \(c.hiddenSize) is not a multiple of num_attention_heads \(c.heads)")
        }
        return c
    }
}

/// The text encoder on a device, for up to `batch` sequences of at most `maxPositions` tokens.
public final class CLIPTextModel {
    public let config: CLIPTextConfiguration
    public let batch: Int
    public let stream: ComputeStream
    /// Parameters read from the weights file.
    public let parameterCount: Int

    let tokenEmbedding: DeviceBuffer<Float>, positionEmbedding: DeviceBuffer<Float>
    let encoder: CLIPEncoderLayers
    let finalNorm: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    /// `text_projection` [projection_dim, D] of a CLIPTextModelWithProjection.
    let projection: DeviceBuffer<Float>?
    let ids: DeviceBuffer<Int32>
    /// The rows of the pooled (end) tokens, their states, and the projected pooled output [N, projection_dim].
    let poolRows: DeviceBuffer<Int32>, pooledStates: DeviceBuffer<Float>
    public let pooledOutput: DeviceBuffer<Float>
    let hidden: DeviceBuffer<Float>
    let workspace: CLIPEncoderLayers.Workspace
    /// The last call's output [N, L, D].
    public let output: DeviceBuffer<Float>

    /// A `text_encoder` folder (config.json and model[.variant].safetensors, as transformers saves it).
    public convenience init(folder: URL, variant: String? = nil, stream: ComputeStream, batch: Int) throws {
        let config = try CLIPTextConfiguration.load(from: folder.appendingPathComponent("config.json"))
        let url = try ModelFolder.weights(in: folder, variant: variant, stems: ["model"])
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: url.path) } catch { throw ModelError("\(url.path): \(error)") }
        try self.init(config: config, weights: WeightStore(file: file), stream: stream, batch: batch)
    }

    /// Weights named as transformers 5 saves them, or with transformers 4's `text_model.` prefix;
    /// tensors under `otherParts` (a CLIPModel's vision tower) are left to their own model.
    public init(config given: CLIPTextConfiguration, weights store: WeightStore, stream: ComputeStream, batch: Int,
                otherParts: [String] = []) throws {
        precondition(batch > 0, "a text encoder needs a batch of at least one sequence")
        var config = given
        if !config.namesArchitecture && config.projectionDim == nil && store.has("text_projection.weight") {
            config.projectionDim = config.configProjectionDim ?? 512
        }
        self.config = config; self.batch = batch; self.stream = stream
        let before = store.parameterCount
        let (V, D, I, P) = (config.vocabSize, config.hiddenSize, config.intermediateSize, config.maxPositions)
        let prefix = store.has("text_model.embeddings.token_embedding.weight") ? "text_model." : ""
        func take(_ name: String, _ shape: [Int]) throws -> [Float] { try store.take(prefix + name, shape: shape) }
        func up(_ name: String, _ shape: [Int]) throws -> DeviceBuffer<Float> { try stream.upload(try take(name, shape)) }
        func norm(_ name: String) throws -> (DeviceBuffer<Float>, DeviceBuffer<Float>) {
            (try up("\(name).weight", [D]), try up("\(name).bias", [D]))
        }
        tokenEmbedding = try up("embeddings.token_embedding.weight", [V, D])
        positionEmbedding = try up("embeddings.position_embedding.weight", [P, D])
        store.ignore(prefix + "embeddings.position_ids")
        encoder = try CLIPEncoderLayers(count: config.layers, hiddenSize: D, intermediateSize: I, heads: config.heads, eps: config.layerNormEps,
                                        activation: config.activation, stream: stream, take: take)
        finalNorm = try norm("final_layer_norm")
        // (transformers saves a CLIPTextModelWithProjection with the `text_model.` prefix beside text_projection.)
        projection = try config.projectionDim.map { try stream.upload(try store.take("text_projection.weight", shape: [$0, D])) }
        try store.checkAllUsed(except: otherParts)
        parameterCount = store.parameterCount - before

        let rows = batch * P
        ids = try DeviceBuffer<Int32>(context: stream.context, count: rows)
        hidden = try stream.buffer(rows * D)
        workspace = try encoder.workspace(sequences: batch, length: P)
        output = try stream.buffer(rows * D)
        poolRows = try DeviceBuffer<Int32>(context: stream.context, count: batch)
        pooledStates = try stream.buffer(batch * D)
        pooledOutput = try stream.buffer(batch * (config.projectionDim ?? 1))
    }

    /// Runs the encoder on `ids` (one array per sequence, all of one length ≤ max_position_embeddings;
    /// the tokenizer pads them to 77). `clipSkip` k > 0 takes the output of layer L − k through the final
    /// LayerNorm, as diffusers' `encode_prompt(clip_skip=k)`. Returns `output` ([N, L, D], on the device).
    @discardableResult
    public func encode(_ ids: [[Int]], clipSkip: Int = 0) throws -> DeviceBuffer<Float> {
        guard clipSkip >= 0 && clipSkip <= config.layers else {
            throw ModelError("clip_skip \(clipSkip) must be from 0 to \(config.layers) (the encoder has \(config.layers) layers)")
        }
        let L = try embed(ids)
        try runLayers(0..<(config.layers - clipSkip), sequences: ids.count, length: L)
        let rows = ids.count * L
        try stream.layerNorm(hidden, output: output, gamma: finalNorm.0, beta: finalNorm.1, rows: rows, cols: config.hiddenSize,
                             eps: config.layerNormEps)
        return output
    }

    /// What StableDiffusionXLPipeline's `encode_prompt` takes from each encoder: `hidden_states[-(k + 2)]`
    /// (the output of layer L − 1 − k, no final LayerNorm) into `output` [N, L, D]; with `pooled`, the
    /// encoder runs on to the end and a CLIPTextModelWithProjection's `text_embeds` (the final state of
    /// each sequence's end token, projected) go into `pooledOutput` [N, projection_dim].
    @discardableResult
    public func encodePenultimate(_ ids: [[Int]], clipSkip k: Int = 0, pooled: Bool) throws -> DeviceBuffer<Float> {
        guard k >= 0 && k < config.layers else {
            throw ModelError("clip_skip \(k) must be from 0 to \(config.layers - 1) (hidden_states[-(clip_skip + 2)] of \(config.layers) layers)")
        }
        guard !pooled || projection != nil else {
            throw ModelError("the pooled text embedding needs a CLIPTextModelWithProjection (this text encoder has no text_projection)")
        }
        let L = try embed(ids), N = ids.count, D = config.hiddenSize, s = stream
        let stop = config.layers - 1 - k
        try runLayers(0..<stop, sequences: N, length: L)
        try output.copy(from: hidden, count: N * L * D, queue: s.queue)
        guard pooled, let projection, let P = config.projectionDim else { return output }
        try runLayers(stop..<config.layers, sequences: N, length: L)
        try s.layerNorm(hidden, output: workspace.normed, gamma: finalNorm.0, beta: finalNorm.1, rows: N * L, cols: D, eps: config.layerNormEps)
        try poolRows.write(ids.enumerated().map { Int32($0.offset * L + poolPosition($0.element)) }, queue: s.queue)
        try s.gatherRows(workspace.normed, ids: poolRows, output: pooledStates, rows: N, width: D)
        try s.linear(pooledStates, weight: projection, bias: nil, output: pooledOutput, batch: N, inFeatures: D, outFeatures: P)
        return output
    }

    /// A CLIPModel's `get_text_features` (a CLIPTextModelWithProjection's `text_embeds`): the final
    /// state of each sequence's end token, projected, in `pooledOutput` [N, projection_dim].
    @discardableResult
    public func encodePooled(_ ids: [[Int]]) throws -> DeviceBuffer<Float> {
        try encodePenultimate(ids, pooled: true)
        return pooledOutput
    }

    /// The position whose final state is the pooled output (transformers' CLIPTextTransformer): the
    /// first end token, or with the legacy `eos_token_id` 2 the first largest id.
    public func poolPosition(_ ids: [Int]) -> Int {
        if config.eosTokenID == 2 { return ids.indices.max { ids[$0] < ids[$1] || (ids[$0] == ids[$1] && $0 > $1) } ?? 0 }
        return ids.firstIndex(of: config.eosTokenID) ?? 0
    }

    /// Token and position embeddings of `ids` into `hidden`; returns the sequence length.
    private func embed(_ ids: [[Int]]) throws -> Int {
        let (V, D) = (config.vocabSize, config.hiddenSize)
        guard let L = ids.first?.count, L > 0 else { throw ModelError("the text encoder needs at least one non-empty sequence") }
        guard ids.count <= batch else { throw ModelError("\(ids.count) sequences for a text encoder built for \(batch)") }
        guard ids.allSatisfy({ $0.count == L }) else {
            throw ModelError("token sequences of different lengths (\(Set(ids.map(\.count)).sorted())): pad them to one length")
        }
        guard L <= config.maxPositions else {
            throw ModelError("\(L) tokens exceed the text encoder's max_position_embeddings \(config.maxPositions)")
        }
        if let bad = ids.joined().first(where: { $0 < 0 || $0 >= V }) {
            throw ModelError("token id \(bad) is outside the text encoder's vocabulary (\(V) tokens)")
        }
        let N = ids.count, rows = N * L, s = stream
        try self.ids.write(ids.joined().map { Int32($0) }, queue: s.queue)
        try s.gatherRows(tokenEmbedding, ids: self.ids, output: hidden, rows: rows, width: D)
        // Positions 0..<L added to every sequence: a per-"channel" bias over [N, L·D].
        try s.addChannelBias(hidden, bias: positionEmbedding, batch: N, channels: L * D, spatial: 1, biasBatchStride: 0)
        return L
    }

    /// Encoder layers `range` on `hidden`, in place.
    private func runLayers(_ range: Range<Int>, sequences N: Int, length L: Int) throws {
        try encoder.run(range, hidden: hidden, sequences: N, length: L, causal: true, workspace: workspace)
    }

    /// `encode` read back to the host: [N, L, D].
    public func callAsFunction(_ ids: [[Int]], clipSkip: Int = 0) throws -> [Float] {
        try encode(ids, clipSkip: clipSkip)
        return try stream.download(output, count: ids.count * ids[0].count * config.hiddenSize)
    }
}
