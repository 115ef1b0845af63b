// The configuration of a diffusers UNet2DModel (`config.json`), with diffusers' keys and defaults,
// and the check that refuses anything this engine does not compute exactly; a UNet2DConditionModel
// (Stable Diffusion) is read into the same type with its cross-attention settings
// (UNet2DConditionConfiguration.swift).
// Port of diffusers.models.unets.unet_2d.UNet2DModel.__init__'s arguments (diffusers 0.42).
import Foundation

public struct UNetConfiguration: Codable, Equatable, Sendable, CheckedConfiguration {
    public var sampleSize: Int?
    public var inChannels: Int = 3
    public var outChannels: Int = 3
    public var centerInputSample: Bool = false
    public var timeEmbeddingType: String = "positional"
    public var timeEmbeddingDim: Int?
    public var freqShift: Double = 0
    public var flipSinToCos: Bool = true
    public var downBlockTypes: [String] = ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
    public var midBlockType: String? = "UNetMidBlock2D"
    public var upBlockTypes: [String] = ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
    public var blockOutChannels: [Int] = [224, 448, 672, 896]
    public var layersPerBlock: Int = 2
    public var midBlockScaleFactor: Double = 1
    public var downsamplePadding: Int = 1
    public var downsampleType: String = "conv"
    public var upsampleType: String = "conv"
    public var dropout: Double = 0
    public var actFn: String = "silu"
    public var attentionHeadDim: Int? = 8
    public var normNumGroups: Int = 32
    public var attnNormNumGroups: Int?
    public var normEps: Double = 1e-5
    public var resnetTimeScaleShift: String = "default"
    public var addAttention: Bool = true
    public var classEmbedType: String?
    public var numClassEmbeds: Int?
    public var numTrainTimesteps: Int?
    /// Set for a UNet2DConditionModel (its blocks are CrossAttn…/Transformer2DModel), nil for a UNet2DModel.
    public var crossAttention: CrossAttentionConfiguration?
    /// SDXL's added text and time embedding (`addition_embed_type: "text_time"`), nil otherwise.
    public var textTime: TextTimeEmbeddingConfiguration?

    public init() {}

    /// Whether the model takes `encoder_hidden_states` (a UNet2DConditionModel).
    public var isConditional: Bool { crossAttention != nil }
    /// Whether the model takes class labels (UNet2DModel's `class_embedding`: a table of
    /// `num_class_embeds` rows, or a TimestepEmbedding of the labels' sinusoids with `class_embed_type` timestep).
    public var hasClassEmbedding: Bool { classEmbedType == "timestep" || (classEmbedType == nil && numClassEmbeds != nil) }
    /// diffusers' class name of the model.
    public var className: String { isConditional ? "UNet2DConditionModel" : "UNet2DModel" }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case centerInputSample = "center_input_sample", timeEmbeddingType = "time_embedding_type"
        case timeEmbeddingDim = "time_embedding_dim", freqShift = "freq_shift", flipSinToCos = "flip_sin_to_cos"
        case downBlockTypes = "down_block_types", midBlockType = "mid_block_type", upBlockTypes = "up_block_types"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case midBlockScaleFactor = "mid_block_scale_factor", downsamplePadding = "downsample_padding"
        case downsampleType = "downsample_type", upsampleType = "upsample_type", dropout, actFn = "act_fn"
        case attentionHeadDim = "attention_head_dim", normNumGroups = "norm_num_groups"
        case attnNormNumGroups = "attn_norm_num_groups", normEps = "norm_eps"
        case resnetTimeScaleShift = "resnet_time_scale_shift", addAttention = "add_attention"
        case classEmbedType = "class_embed_type", numClassEmbeds = "num_class_embeds"
        case numTrainTimesteps = "num_train_timesteps"
        /// Not a config.json key of UNet2DModel: the conditional settings, in the fingerprint only.
        case crossAttention = "cross_attention"
        /// Likewise, SDXL's added embedding.
        case textTime = "text_time"
    }

    /// Missing keys take diffusers' defaults; an explicit `null` is kept as nil (e.g. attention_head_dim).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        func optional<T: Decodable>(_ key: CodingKeys, _ fallback: T?) throws -> T? {
            c.contains(key) ? try c.decodeIfPresent(T.self, forKey: key) : fallback
        }
        let d = UNetConfiguration()
        // sample_size may be an int or [h, w]; only its first value is kept (it does not affect the graph).
        sampleSize = try c.decodeSampleSize(forKey: .sampleSize)
        inChannels = try value(.inChannels, d.inChannels)
        outChannels = try value(.outChannels, d.outChannels)
        centerInputSample = try value(.centerInputSample, d.centerInputSample)
        timeEmbeddingType = try value(.timeEmbeddingType, d.timeEmbeddingType)
        timeEmbeddingDim = try optional(.timeEmbeddingDim, d.timeEmbeddingDim)
        freqShift = try value(.freqShift, d.freqShift)
        flipSinToCos = try value(.flipSinToCos, d.flipSinToCos)
        downBlockTypes = try value(.downBlockTypes, d.downBlockTypes)
        midBlockType = try optional(.midBlockType, d.midBlockType)
        upBlockTypes = try value(.upBlockTypes, d.upBlockTypes)
        blockOutChannels = try value(.blockOutChannels, d.blockOutChannels)
        layersPerBlock = try value(.layersPerBlock, d.layersPerBlock)
        midBlockScaleFactor = try value(.midBlockScaleFactor, d.midBlockScaleFactor)
        downsamplePadding = try value(.downsamplePadding, d.downsamplePadding)
        downsampleType = try value(.downsampleType, d.downsampleType)
        upsampleType = try value(.upsampleType, d.upsampleType)
        dropout = try value(.dropout, d.dropout)
        actFn = try value(.actFn, d.actFn)
        attentionHeadDim = try optional(.attentionHeadDim, d.attentionHeadDim)
        normNumGroups = try value(.normNumGroups, d.normNumGroups)
        attnNormNumGroups = try optional(.attnNormNumGroups, d.attnNormNumGroups)
        normEps = try value(.normEps, d.normEps)
        resnetTimeScaleShift = try value(.resnetTimeScaleShift, d.resnetTimeScaleShift)
        addAttention = try value(.addAttention, d.addAttention)
        classEmbedType = try optional(.classEmbedType, d.classEmbedType)
        numClassEmbeds = try optional(.numClassEmbeds, d.numClassEmbeds)
        numTrainTimesteps = try optional(.numTrainTimesteps, d.numTrainTimesteps)
    }

    /// Reads and checks `config.json` of a UNet2DModel or a UNet2DConditionModel: an unknown key or
    /// an unsupported value is an error naming it.
    public static func load(from url: URL) throws -> UNetConfiguration {
        switch try configClassName(url) ?? "UNet2DModel" {
        case "UNet2DModel":
            return try loadConfigJSON(url, knownKeys: Set(CodingKeys.allCases.filter { $0 != .crossAttention && $0 != .textTime }.map(\.rawValue)))
        case "UNet2DConditionModel":
            let file: UNet2DConditionConfigFile = try decodeConfigJSON(url, knownKeys: UNet2DConditionConfigFile.knownKeys)
            return try file.configuration(source: url.path)
        case let other:
            throw ModelError("\(url.path): _class_name \(other) is not supported (UNet2DModel or UNet2DConditionModel)")
        }
    }

    /// Throws for any setting whose computation this engine does not implement.
    public func validate(source: String = "config") throws {
        func refuse(_ key: CodingKeys, _ value: Any, _ why: String) throws -> Never {
            throw ModelError("\(source): unsupported \(key.rawValue) = \(value) (\(why))")
        }
        if timeEmbeddingType != "positional" { try refuse(.timeEmbeddingType, timeEmbeddingType, "only positional") }
        if actFn != "silu" { try refuse(.actFn, actFn, "only silu") }
        if resnetTimeScaleShift != "default" { try refuse(.resnetTimeScaleShift, resnetTimeScaleShift, "only default") }
        if downsampleType != "conv" { try refuse(.downsampleType, downsampleType, "only conv") }
        if upsampleType != "conv" { try refuse(.upsampleType, upsampleType, "only conv") }
        switch (classEmbedType, numClassEmbeds) {
        case (nil, nil), ("timestep", _): break
        case (nil, let n?): if !(1...(1 << 20)).contains(n) { try refuse(.numClassEmbeds, n, "1…1048576 classes") }
        case (let c?, _): try refuse(.classEmbedType, c, "class embeddings from labels: null with num_class_embeds (a table), or timestep; identity takes class vectors, which no command gives")
        }
        if isConditional && hasClassEmbedding { try refuse(.classEmbedType, classEmbedType ?? "null", "class conditioning of a UNet2DConditionModel is not supported") }
        let (attnDown, attnUp, midType) = isConditional
            ? ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D", "UNetMidBlock2DCrossAttn") : ("AttnDownBlock2D", "AttnUpBlock2D", "UNetMidBlock2D")
        if midBlockType != midType { try refuse(.midBlockType, midBlockType ?? "null", "only \(midType)") }
        if ![0, 1].contains(downsamplePadding) { try refuse(.downsamplePadding, downsamplePadding, "only 0 or 1") }
        for t in downBlockTypes where !["DownBlock2D", attnDown].contains(t) {
            try refuse(.downBlockTypes, t, "only DownBlock2D and \(attnDown)")
        }
        for t in upBlockTypes where !["UpBlock2D", attnUp].contains(t) {
            try refuse(.upBlockTypes, t, "only UpBlock2D and \(attnUp)")
        }
        let levels = blockOutChannels.count
        if levels == 0 { try refuse(.blockOutChannels, blockOutChannels, "at least one level") }
        if downBlockTypes.count != levels { try refuse(.downBlockTypes, downBlockTypes, "needs one per block_out_channels entry (\(levels))") }
        if upBlockTypes.count != levels { try refuse(.upBlockTypes, upBlockTypes, "needs one per block_out_channels entry (\(levels))") }
        // (Upper bounds far beyond any model keep the size arithmetic from overflowing.)
        if levels > 16 { try refuse(.blockOutChannels, blockOutChannels, "at most 16 levels") }
        if !(1...64).contains(layersPerBlock) { try refuse(.layersPerBlock, layersPerBlock, "1…64") }
        if !(1...65536).contains(inChannels) { try refuse(.inChannels, inChannels, "1…65536") }
        if !(1...65536).contains(outChannels) { try refuse(.outChannels, outChannels, "1…65536") }
        if normNumGroups < 1 { try refuse(.normNumGroups, normNumGroups, "must be positive") }
        for c in blockOutChannels where c < 1 || c > 65536 || c % normNumGroups != 0 {
            try refuse(.blockOutChannels, blockOutChannels, "each must be a positive multiple of norm_num_groups \(normNumGroups)")
        }
        if let g = attnNormNumGroups, g < 1 || blockOutChannels.last! % g != 0 {
            try refuse(.attnNormNumGroups, g, "must divide the mid block's \(blockOutChannels.last!) channels")
        }
        if let d = attentionHeadDim {
            if d < 1 { try refuse(.attentionHeadDim, d, "must be positive") }
            for (i, t) in downBlockTypes.enumerated() where t.hasPrefix("Attn") && blockOutChannels[i] % d != 0 {
                try refuse(.attentionHeadDim, d, "must divide the \(blockOutChannels[i]) channels of down block \(i)")
            }
            if addAttention && blockOutChannels.last! % d != 0 {
                try refuse(.attentionHeadDim, d, "must divide the mid block's \(blockOutChannels.last!) channels")
            }
        }
        if let x = crossAttention {
            let key = "attention_head_dim"
            guard x.heads.count == levels, x.layers.count == levels, x.layers.allSatisfy({ (1...64).contains($0) }), (1...65536).contains(x.dim) else {
                throw ModelError("\(source): unsupported cross-attention settings (heads \(x.heads), transformer layers \(x.layers), cross_attention_dim \(x.dim)): one head count and one layer count (1…64) per block (\(levels)) and a width of 1…65536")
            }
            for (i, heads) in x.heads.enumerated() where heads < 1 || (downBlockTypes[i] == attnDown && blockOutChannels[i] % heads != 0) {
                throw ModelError("\(source): unsupported \(key) = \(x.heads) (the head count of down block \(i) must divide its \(blockOutChannels[i]) channels)")
            }
            for (i, t) in upBlockTypes.enumerated() where t == attnUp && upChannels(i) % upHeads(i) != 0 {
                throw ModelError("\(source): unsupported \(key) = \(x.heads) (the head count of up block \(i), \(upHeads(i)), must divide its \(upChannels(i)) channels)")
            }
            if blockOutChannels.last! % x.heads.last! != 0 {
                throw ModelError("\(source): unsupported \(key) = \(x.heads) (the mid block's \(x.heads.last!) heads must divide its \(blockOutChannels.last!) channels)")
            }
        }
        if textTime != nil && !isConditional {
            throw ModelError("\(source): unsupported addition_embed_type = text_time without cross-attention (SDXL's added embedding belongs to a UNet2DConditionModel)")
        }
        if let t = timeEmbeddingDim, !(1...(1 << 20)).contains(t) { try refuse(.timeEmbeddingDim, t, "1…1048576") }
        if !(normEps > 0 && normEps.isFinite) { try refuse(.normEps, normEps, "must be positive") }
        if let s = sampleSize, s < 1 || s > 16384 { try refuse(.sampleSize, s, "must be 1…16384") }
    }

    // MARK: Derived sizes, as UNet2DModel computes them

    public var levels: Int { blockOutChannels.count }
    /// Output channels of up block `i` (block_out_channels reversed).
    public func upChannels(_ i: Int) -> Int { blockOutChannels[levels - 1 - i] }
    /// Attention heads of up block `i` of a conditional UNet (the down blocks' heads reversed).
    public func upHeads(_ i: Int) -> Int { crossAttention!.heads[levels - 1 - i] }
    /// Whether blocks of `type` have attention (AttnDownBlock2D, CrossAttnUpBlock2D, …).
    public static func hasAttention(_ type: String) -> Bool { type.hasPrefix("Attn") || type.hasPrefix("CrossAttn") }
    /// Width of the sinusoidal projection (Timesteps(block_out_channels[0], ...)).
    public var timeProjectionDim: Int { blockOutChannels[0] }
    /// Width of the time embedding fed to every resnet.
    public var timeEmbedDim: Int { timeEmbeddingDim ?? blockOutChannels[0] * 4 }
    /// Inputs must be divisible by this (one halving per level but the last).
    public var spatialMultiple: Int { 1 << (levels - 1) }

    // MARK: Skip branches (numbering in StepPlan.swift)

    /// Number of skip branches: conv_in, every down-block layer, every downsampler.
    public var branchCount: Int { 1 + levels * layersPerBlock + (levels - 1) }

    /// The module whose output is skip `branch` (in a block with attention, the layer's attention or
    /// transformer: its output is the skip), with DeepCache's names for the same branch: its DDPM code's
    /// `branch`, `DeepCacheSDHelper.set_params`'s `cache_branch_id`, and its diffusers pipelines'
    /// `cache_layer_id` (the down block) and `cache_block_id` (the layer in it).
    public func branchName(_ m: Int) -> String {
        precondition((0..<branchCount).contains(m), "branch \(m) outside 0..<\(branchCount)")
        let helper = helperBranchID(m).map { "cache_branch_id \($0)" } ?? "no cache_branch_id"
        guard m > 0 else { return "conv_in (DeepCache \(helper))" }
        let (i, j) = ((m - 1) / (layersPerBlock + 1), (m - 1) % (layersPerBlock + 1))
        let module = j == layersPerBlock ? "down_blocks.\(i).downsamplers.0"
            : Self.hasAttention(downBlockTypes[i]) ? "down_blocks.\(i).attentions.\(j)" : "down_blocks.\(i).resnets.\(j)"
        return "\(module) (DeepCache DDPM branch \(m - 1); \(helper); pipelines' cache_layer_id \(i), cache_block_id \(j))"
    }

    /// Our branch for DeepCache's pipelines' `cache_layer_id` i (the down block) and `cache_block_id` j
    /// (the layer in it; the downsampler is layer `layers_per_block`).
    public func branch(cacheLayerID i: Int, cacheBlockID j: Int) throws -> Int {
        guard (0..<levels).contains(i), (0...layersPerBlock).contains(j), !(i == levels - 1 && j == layersPerBlock) else {
            throw ModelError("cache_layer_id \(i), cache_block_id \(j) is not a skip branch of this model (\(levels) down blocks of \(layersPerBlock) layers)")
        }
        return i * (layersPerBlock + 1) + j + 1
    }

    /// Our branch for `DeepCacheSDHelper.set_params(cache_branch_id: B)` (PyPI deepcache 0.1.1). The
    /// helper splits B into the down block B / 3 and a position B % 3 in it (3: SD's two layers and a
    /// downsampler), runs the down layers before that position and the up path from the resnet taking
    /// the skip made just before it: our branch block · (L + 1) + position, with L = layers_per_block.
    /// (With one layer per block, position 2 runs the block's downsampler too, but the up path from the
    /// same resnet as position 1: the same branch.)
    public func branch(cacheBranchID b: Int) throws -> Int {
        let (block, position) = (b / 3, b % 3)
        let m = block * (layersPerBlock + 1) + min(position, layersPerBlock)
        guard b >= 0, block < levels, m < branchCount else {
            throw ModelError("cache_branch_id \(b) is not a skip branch of this model: DeepCacheSDHelper reads it as down block \(b / 3), position \(b % 3); this model has \(levels) down blocks of \(layersPerBlock) layers (cache_branch_id 0…\(helperBranchIDs.last ?? 0))")
        }
        return m
    }

    /// `DeepCacheSDHelper`'s `cache_branch_id` for our branch `m` (the smallest, where two name it;
    /// nil where its numbering has none: positions past 2 in a block of more than two layers).
    public func helperBranchID(_ m: Int) -> Int? {
        let (block, position) = (m / (layersPerBlock + 1), m % (layersPerBlock + 1))
        return position <= 2 ? 3 * block + position : nil
    }

    /// Every `cache_branch_id` that names a branch of this model, in order.
    var helperBranchIDs: [Int] { (0..<(3 * levels)).filter { (try? branch(cacheBranchID: $0)) != nil } }
}

/// Reads a diffusers config file: a JSON object whose keys (other than `_…` metadata) must all be in
/// `knownKeys`, then `check` on the raw object, then the Codable decoding.
