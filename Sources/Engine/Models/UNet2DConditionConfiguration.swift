// diffusers' UNet2DConditionModel configuration (Stable Diffusion 1.x/2.x), read into the engine's
// UNetConfiguration with its cross-attention settings. Keys and defaults of
// diffusers.models.unets.unet_2d_condition.UNet2DConditionModel.__init__ (diffusers 0.42); every
// setting whose computation the engine does not implement (SDXL's added embeddings, class
// conditioning, dual cross-attention, …) is refused with its key and value named.
import Foundation

/// What a UNet2DConditionModel adds to the UNet: Transformer2DModel blocks that attend to
/// `encoder_hidden_states` [N, L, crossAttentionDim].
public struct CrossAttentionConfiguration: Codable, Equatable, Sendable {
    /// Width of `encoder_hidden_states` (`cross_attention_dim`).
    public var dim: Int
    /// Attention heads per down level (diffusers' `attention_head_dim`, which is a head count: the
    /// naming issue diffusers#2011); the up path takes them in reverse, the mid block the last.
    public var heads: [Int]
    /// BasicTransformerBlocks per Transformer2DModel, per down level (`transformer_layers_per_block`).
    public var layers: [Int]
    /// `proj_in`/`proj_out` as Linear (SD 2.x) rather than 1×1 Conv2d (SD 1.x).
    public var useLinearProjection: Bool
    /// `upcast_attention`: computes attention in float32 under half precision; the engine always does.
    public var upcastAttention: Bool

    enum CodingKeys: String, CodingKey {
        case dim, heads, layers, useLinearProjection = "use_linear_projection", upcastAttention = "upcast_attention"
    }
}

/// SDXL's added embedding (`addition_embed_type: "text_time"`): the pooled text embedding
/// `text_embeds` [N, D] and the micro-conditioning `time_ids` [N, K] (each sinusoid-embedded to
/// `timeDim` values), concatenated to `inputDim` = D + K · timeDim and fed through a
/// TimestepEmbedding (`add_embedding`: linear_1, SiLU, linear_2) that is added to the time embedding.
public struct TextTimeEmbeddingConfiguration: Codable, Equatable, Sendable {
    /// `addition_time_embed_dim`: the sinusoid width of each time id.
    public var timeDim: Int
    /// `projection_class_embeddings_input_dim`: the width of [text_embeds, embedded time_ids].
    public var inputDim: Int

    enum CodingKeys: String, CodingKey { case timeDim = "addition_time_embed_dim", inputDim = "projection_class_embeddings_input_dim" }

    /// The width of `text_embeds` with `timeIDs` time ids (SDXL base: 6, its refiner: 5).
    public func textDim(timeIDs: Int) -> Int { inputDim - timeIDs * timeDim }
}

/// A config.json of class UNet2DConditionModel, as diffusers writes it.
struct UNet2DConditionConfigFile: Decodable {
    /// An int or a per-block list.
    enum IntOrList: Decodable, Equatable, CustomStringConvertible {
        case one(Int), list([Int])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let v = try? c.decode(Int.self) { self = .one(v) } else { self = .list(try c.decode([Int].self)) }
        }
        func perBlock(_ n: Int) -> [Int] { switch self { case .one(let v): Array(repeating: v, count: n); case .list(let l): l } }
        var description: String { switch self { case .one(let v): "\(v)"; case .list(let l): "\(l)" } }
    }
    /// A bool or a per-block list.
    enum BoolOrList: Decodable, Equatable, CustomStringConvertible {
        case one(Bool), list([Bool])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let v = try? c.decode(Bool.self) { self = .one(v) } else { self = .list(try c.decode([Bool].self)) }
        }
        var anyTrue: Bool { switch self { case .one(let v): v; case .list(let l): l.contains(true) } }
        var description: String { switch self { case .one(let v): "\(v)"; case .list(let l): "\(l)" } }
    }

    static let knownKeys: Set<String> = [
        "sample_size", "in_channels", "out_channels", "center_input_sample", "flip_sin_to_cos", "freq_shift",
        "down_block_types", "mid_block_type", "up_block_types", "only_cross_attention", "block_out_channels",
        "layers_per_block", "downsample_padding", "mid_block_scale_factor", "dropout", "act_fn", "norm_num_groups",
        "norm_eps", "cross_attention_dim", "transformer_layers_per_block", "reverse_transformer_layers_per_block",
        "encoder_hid_dim", "encoder_hid_dim_type", "attention_head_dim", "num_attention_heads", "dual_cross_attention",
        "use_linear_projection", "class_embed_type", "addition_embed_type", "addition_time_embed_dim", "num_class_embeds",
        "upcast_attention", "resnet_time_scale_shift", "resnet_skip_time_act", "resnet_out_scale_factor",
        "time_embedding_type", "time_embedding_dim", "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim",
        "conv_in_kernel", "conv_out_kernel", "projection_class_embeddings_input_dim", "attention_type",
        "class_embeddings_concat", "mid_block_only_cross_attention", "cross_attention_norm", "addition_embed_type_num_heads",
    ]

    var sampleSize: Int?
    var inChannels = 4, outChannels = 4
    var centerInputSample = false, flipSinToCos = true
    var freqShift: Double = 0
    var downBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    var midBlockType: String? = "UNetMidBlock2DCrossAttn"
    var upBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    var onlyCrossAttention = BoolOrList.one(false)
    var blockOutChannels = [320, 640, 1280, 1280]
    var layersPerBlock = IntOrList.one(2)
    var downsamplePadding = 1
    var midBlockScaleFactor: Double = 1
    var dropout: Double = 0
    var actFn = "silu"
    var normNumGroups: Int? = 32
    var normEps: Double = 1e-5
    var crossAttentionDim = IntOrList.one(1280)
    var transformerLayersPerBlock = IntOrList.one(1)
    /// Settings that must keep diffusers' default (nil/false/…) for the engine's computation, as raw JSON text.
    var refusedIfSet: [(key: String, value: String)] = []
    var attentionHeadDim = IntOrList.one(8)
    var useLinearProjection = false, upcastAttention = false
    var resnetTimeScaleShift = "default"
    var timeEmbeddingType = "positional"
    var timeEmbeddingDim: Int?
    var convInKernel = 3, convOutKernel = 3
    var resnetOutScaleFactor: Double = 1
    var attentionType = "default"
    var additionEmbedType: String?
    var additionTimeEmbedDim: Int?, projectionClassEmbeddingsInputDim: Int?

    private struct Key: CodingKey {
        var stringValue: String; var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        func value<T: Decodable>(_ key: String, _ current: inout T) throws {
            if c.contains(Key(key)), let v = try c.decodeIfPresent(T.self, forKey: Key(key)) { current = v }
        }
        func optional<T: Decodable>(_ key: String, _ current: inout T?) throws {
            if c.contains(Key(key)) { current = try c.decodeIfPresent(T.self, forKey: Key(key)) }
        }
        // sample_size may be an int or [h, w]; only its first value is kept (it does not affect the graph).
        sampleSize = try c.decodeSampleSize(forKey: Key("sample_size"))
        try value("in_channels", &inChannels); try value("out_channels", &outChannels)
        try value("center_input_sample", &centerInputSample); try value("flip_sin_to_cos", &flipSinToCos)
        try value("freq_shift", &freqShift)
        try value("down_block_types", &downBlockTypes); try optional("mid_block_type", &midBlockType)
        try value("up_block_types", &upBlockTypes); try value("only_cross_attention", &onlyCrossAttention)
        try value("block_out_channels", &blockOutChannels); try value("layers_per_block", &layersPerBlock)
        try value("downsample_padding", &downsamplePadding); try value("mid_block_scale_factor", &midBlockScaleFactor)
        try value("dropout", &dropout); try value("act_fn", &actFn); try optional("norm_num_groups", &normNumGroups)
        try value("norm_eps", &normEps); try value("cross_attention_dim", &crossAttentionDim)
        try value("transformer_layers_per_block", &transformerLayersPerBlock)
        try value("attention_head_dim", &attentionHeadDim)
        try value("use_linear_projection", &useLinearProjection); try value("upcast_attention", &upcastAttention)
        try value("resnet_time_scale_shift", &resnetTimeScaleShift); try value("time_embedding_type", &timeEmbeddingType)
        try optional("time_embedding_dim", &timeEmbeddingDim)
        try value("conv_in_kernel", &convInKernel); try value("conv_out_kernel", &convOutKernel)
        try value("resnet_out_scale_factor", &resnetOutScaleFactor); try value("attention_type", &attentionType)
        try optional("addition_embed_type", &additionEmbedType)
        if additionEmbedType == "text_time" {
            // (SDXL's: both widths are read, and must be given, as diffusers' __init__ requires.)
            try optional("addition_time_embed_dim", &additionTimeEmbedDim)
            try optional("projection_class_embeddings_input_dim", &projectionClassEmbeddingsInputDim)
        }
        // Keys whose only supported value is diffusers' default (null or false), with the reason.
        let textTime = additionEmbedType == "text_time"
        for key in ["reverse_transformer_layers_per_block", "encoder_hid_dim", "encoder_hid_dim_type", "num_attention_heads",
                    "class_embed_type", "num_class_embeds",
                    "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim",
                    "cross_attention_norm", "dual_cross_attention", "class_embeddings_concat", "resnet_skip_time_act",
                    "mid_block_only_cross_attention"] + (textTime ? [] : ["addition_embed_type", "addition_time_embed_dim",
                                                                          "projection_class_embeddings_input_dim"])
            where c.contains(Key(key)) {
            if try c.decodeNil(forKey: Key(key)) { continue }
            if let b = try? c.decode(Bool.self, forKey: Key(key)), !b { continue }
            let text: String
            if let s = try? c.decode(String.self, forKey: Key(key)) { text = s }
            else if let i = try? c.decode(Int.self, forKey: Key(key)) { text = "\(i)" }
            else if let l = try? c.decode([Int].self, forKey: Key(key)) { text = "\(l)" }
            else { text = "true" }
            refusedIfSet.append((key, text))
        }
    }

    static let why: [String: String] = [
        "reverse_transformer_layers_per_block": "only the reverse of transformer_layers_per_block",
        "encoder_hid_dim": "no projection of encoder_hidden_states", "encoder_hid_dim_type": "no projection of encoder_hidden_states",
        "num_attention_heads": "diffusers refuses it too; attention_head_dim gives the head count",
        "class_embed_type": "class conditioning is not supported", "num_class_embeds": "class conditioning is not supported",
        "addition_embed_type": "of the added embeddings only SDXL's text_time is implemented",
        "addition_time_embed_dim": "read only with addition_embed_type text_time",
        "projection_class_embeddings_input_dim": "read only with addition_embed_type text_time (class conditioning is not supported)",
        "time_embedding_act_fn": "no activation after the time embedding", "timestep_post_act": "no activation after the time embedding",
        "time_cond_proj_dim": "no timestep condition (LCM)", "cross_attention_norm": "no norm on encoder_hidden_states",
        "dual_cross_attention": "no dual cross-attention", "class_embeddings_concat": "class conditioning is not supported",
        "resnet_skip_time_act": "resnets apply SiLU to the time embedding",
        "mid_block_only_cross_attention": "the mid block's transformer has self-attention",
    ]

    /// The engine's configuration, or an error naming the first unsupported key and value.
    func configuration(source: String) throws -> UNetConfiguration {
        func refuse(_ key: String, _ value: Any, _ why: String) throws -> Never {
            throw ModelError("\(source): unsupported \(key) = \(value) (\(why))")
        }
        if let (key, value) = refusedIfSet.first { try refuse(key, value, Self.why[key] ?? "only the default") }
        if onlyCrossAttention.anyTrue { try refuse("only_cross_attention", onlyCrossAttention, "transformer blocks have self-attention") }
        if attentionType != "default" { try refuse("attention_type", attentionType, "only default") }
        if convInKernel != 3 { try refuse("conv_in_kernel", convInKernel, "only 3") }
        if convOutKernel != 3 { try refuse("conv_out_kernel", convOutKernel, "only 3") }
        if resnetOutScaleFactor != 1 { try refuse("resnet_out_scale_factor", resnetOutScaleFactor, "only 1") }
        if midBlockType != "UNetMidBlock2DCrossAttn" { try refuse("mid_block_type", midBlockType ?? "null", "only UNetMidBlock2DCrossAttn") }
        guard let groups = normNumGroups else { try refuse("norm_num_groups", "null", "conv_norm_out needs groups") }
        let levels = blockOutChannels.count
        let layerCounts = layersPerBlock.perBlock(levels)
        guard let layers = layerCounts.first, layerCounts.count == levels, Set(layerCounts).count == 1 else {
            try refuse("layers_per_block", layersPerBlock, "one count for every block")
        }
        let dims = crossAttentionDim.perBlock(levels)
        guard let dim = dims.first, dims.count == levels, Set(dims).count == 1, dim >= 1 else {
            try refuse("cross_attention_dim", crossAttentionDim, "one positive width for every block")
        }
        let heads = attentionHeadDim.perBlock(levels)
        if heads.count != levels { try refuse("attention_head_dim", attentionHeadDim, "one per block_out_channels entry (\(levels))") }
        let transformerLayers = transformerLayersPerBlock.perBlock(levels)
        if transformerLayers.count != levels || transformerLayers.contains(where: { $0 < 1 }) {
            try refuse("transformer_layers_per_block", transformerLayersPerBlock, "one positive count per block (\(levels))")
        }
        var c = UNetConfiguration()
        if additionEmbedType == "text_time" {
            guard let t = additionTimeEmbedDim, let d = projectionClassEmbeddingsInputDim, (2...65536).contains(t), t % 2 == 0,
                  (1...(1 << 20)).contains(d) else {
                try refuse("addition_embed_type", "text_time", "needs an even addition_time_embed_dim of 2…65536 and a projection_class_embeddings_input_dim of 1…1048576, not \(additionTimeEmbedDim.map(String.init) ?? "null") and \(projectionClassEmbeddingsInputDim.map(String.init) ?? "null")")
            }
            c.textTime = TextTimeEmbeddingConfiguration(timeDim: t, inputDim: d)
        }
        c.sampleSize = sampleSize; c.inChannels = inChannels; c.outChannels = outChannels
        c.centerInputSample = centerInputSample; c.timeEmbeddingType = timeEmbeddingType; c.timeEmbeddingDim = timeEmbeddingDim
        c.freqShift = freqShift; c.flipSinToCos = flipSinToCos
        c.downBlockTypes = downBlockTypes; c.midBlockType = midBlockType; c.upBlockTypes = upBlockTypes
        c.blockOutChannels = blockOutChannels; c.layersPerBlock = layers; c.midBlockScaleFactor = midBlockScaleFactor
        c.downsamplePadding = downsamplePadding; c.dropout = dropout; c.actFn = actFn
        c.attentionHeadDim = nil; c.normNumGroups = groups; c.normEps = normEps
        c.resnetTimeScaleShift = resnetTimeScaleShift
        c.crossAttention = CrossAttentionConfiguration(dim: dim, heads: heads, layers: transformerLayers,
                                                       useLinearProjection: useLinearProjection, upcastAttention: upcastAttention)
        try c.validate(source: source)
        return c
    }
}
