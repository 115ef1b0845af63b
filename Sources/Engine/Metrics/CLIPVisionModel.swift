// transformers' CLIP vision tower with its projection (CLIPModel.get_image_features): the image cut
// into patch × patch squares, each projected (the patch embedding, a convolution without bias, here a
// matrix product over the host's patch matrix), a class token in front, position embeddings,
// `pre_layrnorm`, the encoder layers over every token, `post_layernorm` of the class token's state,
// and `visual_projection`. Port of transformers.models.clip.modeling_clip (CLIPVisionEmbeddings,
// CLIPVisionTransformer), transformers 5.
import Foundation
import GPUKernels

/// The `vision_config` of a CLIPModel's config.json (transformers' `CLIPVisionConfig` and its defaults).
public struct CLIPVisionConfiguration: Sendable, Equatable {
    public var hiddenSize = 768, intermediateSize = 3072, layers = 12, heads = 12
    public var channels = 3, imageSize = 224, patchSize = 32
    public var layerNormEps: Float = 1e-5
    public var activation: TokenActivation = .quickGELU
    /// The CLIPModel's `projection_dim`: the width of `visual_projection`.
    public var projectionDim = 512

    public init() {}
    public var patchesPerSide: Int { imageSize / patchSize }
    /// Tokens per image: the class token and the patches.
    public var positions: Int { patchesPerSide * patchesPerSide + 1 }

    /// Reads `vision_config` (`source` names it in errors).
    public static func parse(_ raw: [String: Any], projectionDim: Int, source: String) throws -> CLIPVisionConfiguration {
        var c = CLIPVisionConfiguration()
        c.projectionDim = projectionDim
        for (key, field) in [("hidden_size", \CLIPVisionConfiguration.hiddenSize), ("intermediate_size", \.intermediateSize),
                             ("num_hidden_layers", \.layers), ("num_attention_heads", \.heads), ("num_channels", \.channels),
                             ("image_size", \.imageSize), ("patch_size", \.patchSize)] {
            guard let value = raw[key] else { continue }
            guard let n = value as? Int, !(value is Bool), n > 0, n < 1 << 24 else {
                throw ModelError("\(source): vision_config.\(key) = \(value) is not a positive integer below 2^24")
            }
            c[keyPath: field] = n
        }
        if let value = raw["layer_norm_eps"] {
            guard let eps = value as? Double, eps > 0, eps < 1 else { throw ModelError("\(source): vision_config.layer_norm_eps = \(value) is not a small positive number") }
            c.layerNormEps = Float(eps)
        }
        if let value = raw["hidden_act"] {
            guard let name = value as? String, let act = TokenActivation(rawValue: name) else {
                throw ModelError("\(source): vision_config.hidden_act = \(value) is not supported (quick_gelu or gelu)")
            }
            c.activation = act
        }
        guard c.hiddenSize % c.heads == 0 else {
            throw ModelError("\(source): vision_config.hidden_size \(c.hiddenSize) is not a multiple of num_attention_heads \(c.heads)")
        }
        guard c.imageSize % c.patchSize == 0 else {
            throw ModelError("\(source): vision_config.image_size \(c.imageSize) is not a multiple of patch_size \(c.patchSize)")
        }
        guard c.channels == 3 else { throw ModelError("\(source): vision_config.num_channels \(c.channels): CLIP's image processor gives 3 (RGB)") }
        return c
    }
}

/// The vision tower on a device, for up to `batch` images of `imageSize`² pixels.
public final class CLIPVisionModel {
    public let config: CLIPVisionConfiguration
    public let batch: Int
    public let stream: ComputeStream
    public let parameterCount: Int
    let patchWeight: DeviceBuffer<Float>
    /// Position embeddings with the class embedding added to position 0 ([positions · D]): the class
    /// token's row of the patch matrix is zero, so its patch product is zero.
    let positionBias: DeviceBuffer<Float>
    let preNorm: (DeviceBuffer<Float>, DeviceBuffer<Float>), postNorm: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    let encoder: CLIPEncoderLayers
    let projection: DeviceBuffer<Float>
    let patches: DeviceBuffer<Float>, embeddings: DeviceBuffer<Float>, hidden: DeviceBuffer<Float>
    let workspace: CLIPEncoderLayers.Workspace
    let classRows: DeviceBuffer<Int32>, pooled: DeviceBuffer<Float>, pooledNormed: DeviceBuffer<Float>
    /// The last call's image embeddings [N, projection_dim] (`get_image_features`, unnormalised).
    public let imageEmbeds: DeviceBuffer<Float>

    /// Weights named as transformers saves a CLIPModel (`vision_model.*`, `visual_projection.weight`);
    /// tensors under `otherParts` (the text tower) are left to their own model.
    public init(config: CLIPVisionConfiguration, weights store: WeightStore, stream: ComputeStream, batch: Int,
                otherParts: [String] = []) throws {
        precondition(batch > 0, "a vision tower needs a batch of at least one image")
        self.config = config; self.batch = batch; self.stream = stream
        let before = store.parameterCount
        let (D, p, C, T) = (config.hiddenSize, config.patchSize, config.channels, config.positions)
        func take(_ name: String, _ shape: [Int]) throws -> [Float] { try store.take("vision_model." + name, shape: shape) }
        func up(_ name: String, _ shape: [Int]) throws -> DeviceBuffer<Float> { try stream.upload(try take(name, shape)) }
        func norm(_ name: String) throws -> (DeviceBuffer<Float>, DeviceBuffer<Float>) { (try up("\(name).weight", [D]), try up("\(name).bias", [D])) }
        // [D, C, p, p] is [D, C·p·p] with the patch's values in (channel, row, column) order.
        patchWeight = try up("embeddings.patch_embedding.weight", [D, C, p, p])
        let classEmbedding = try take("embeddings.class_embedding", [D])
        var positions = try take("embeddings.position_embedding.weight", [T, D])
        for i in 0..<D { positions[i] += classEmbedding[i] }
        positionBias = try stream.upload(positions)
        store.ignore("vision_model.embeddings.position_ids")
        preNorm = try norm("pre_layrnorm")
        encoder = try CLIPEncoderLayers(count: config.layers, hiddenSize: D, intermediateSize: config.intermediateSize, heads: config.heads,
                                        eps: config.layerNormEps, activation: config.activation, stream: stream, take: take)
        postNorm = try norm("post_layernorm")
        projection = try stream.upload(try store.take("visual_projection.weight", shape: [config.projectionDim, D]))
        try store.checkAllUsed(except: otherParts)
        parameterCount = store.parameterCount - before

        let rows = batch * T
        patches = try stream.buffer(rows * C * p * p)
        embeddings = try stream.buffer(rows * D); hidden = try stream.buffer(rows * D)
        workspace = try encoder.workspace(sequences: batch, length: T)
        classRows = try DeviceBuffer<Int32>(context: stream.context, count: batch)
        pooled = try stream.buffer(batch * D); pooledNormed = try stream.buffer(batch * D)
        imageEmbeds = try stream.buffer(batch * config.projectionDim)
    }

    /// `get_image_features` of `pixelValues` ([N, 3, S, S], CLIP-normalised, S = image_size, N ≤ batch)
    /// into `imageEmbeds`.
    @discardableResult
    public func encode(_ pixelValues: [Float], count n: Int) throws -> DeviceBuffer<Float> {
        let (D, p, C, S, g, T) = (config.hiddenSize, config.patchSize, config.channels, config.imageSize, config.patchesPerSide, config.positions)
        guard n > 0 && n <= batch else { throw ModelError("\(n) images for a vision tower built for 1 to \(batch)") }
        guard pixelValues.count == n * C * S * S else {
            throw ModelError("\(pixelValues.count) pixel values for \(n) images of \(C)×\(S)×\(S)")
        }
        // The patch matrix: per image, a zero row (the class token) then the patches in raster order.
        let width = C * p * p
        var matrix = [Float](repeating: 0, count: n * T * width)
        for i in 0..<n {
            for py in 0..<g {
                for px in 0..<g {
                    let row = (i * T + 1 + py * g + px) * width
                    for c in 0..<C {
                        for y in 0..<p {
                            let src = ((i * C + c) * S + py * p + y) * S + px * p
                            let dst = row + (c * p + y) * p
                            for x in 0..<p { matrix[dst + x] = pixelValues[src + x] }
                        }
                    }
                }
            }
        }
        let s = stream, rows = n * T
        try patches.write(matrix, queue: s.queue)
        try s.linear(patches, weight: patchWeight, bias: nil, output: embeddings, batch: rows, inFeatures: width, outFeatures: D)
        try s.addChannelBias(embeddings, bias: positionBias, batch: n, channels: T * D, spatial: 1, biasBatchStride: 0)
        try s.layerNorm(embeddings, output: hidden, gamma: preNorm.0, beta: preNorm.1, rows: rows, cols: D, eps: config.layerNormEps)
        try encoder.run(0..<encoder.count, hidden: hidden, sequences: n, length: T, causal: false, workspace: workspace)
        try classRows.write((0..<n).map { Int32($0 * T) }, queue: s.queue)
        try s.gatherRows(hidden, ids: classRows, output: pooled, rows: n, width: D)
        try s.layerNorm(pooled, output: pooledNormed, gamma: postNorm.0, beta: postNorm.1, rows: n, cols: D, eps: config.layerNormEps)
        try s.linear(pooledNormed, weight: projection, bias: nil, output: imageEmbeds, batch: n, inFeatures: D, outFeatures: config.projectionDim)
        return imageEmbeds
    }
}
