// The transformer layers CLIP's text and vision towers share (transformers' CLIPEncoder): pre-LN
// self-attention (causal in the text tower, over every token in the vision tower) and a quick_gelu
// or gelu MLP, each added to the residual stream. Port of transformers.models.clip.modeling_clip
// (CLIPEncoderLayer), transformers 5.
import Foundation
import GPUKernels

/// `encoder.layers.*` of a CLIP tower on a device.
struct CLIPEncoderLayers {
    struct Layer {
        let norm1: (DeviceBuffer<Float>, DeviceBuffer<Float>), norm2: (DeviceBuffer<Float>, DeviceBuffer<Float>)
        /// q, k and v projections stacked into one [3D, D] weight and [3D] bias.
        let qkv: (DeviceBuffer<Float>, DeviceBuffer<Float>)
        let out: (DeviceBuffer<Float>, DeviceBuffer<Float>)
        let fc1: (DeviceBuffer<Float>, DeviceBuffer<Float>), fc2: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    }
    /// The buffers a run needs for up to `rows` tokens.
    struct Workspace {
        let normed: DeviceBuffer<Float>, attention: DeviceBuffer<Float>, wide: DeviceBuffer<Float>, scratch: DeviceBuffer<Float>
    }
    let layers: [Layer]
    let hiddenSize: Int, intermediateSize: Int, heads: Int
    let eps: Float
    let activation: TokenActivation
    let stream: ComputeStream
    var count: Int { layers.count }

    /// Reads `count` layers named `encoder.layers.i.*` through `take` (a name and the shape it must have).
    init(count: Int, hiddenSize D: Int, intermediateSize I: Int, heads: Int, eps: Float, activation: TokenActivation,
         stream: ComputeStream, take: (String, [Int]) throws -> [Float]) throws {
        func up(_ name: String, _ shape: [Int]) throws -> DeviceBuffer<Float> { try stream.upload(try take(name, shape)) }
        func norm(_ name: String) throws -> (DeviceBuffer<Float>, DeviceBuffer<Float>) { (try up("\(name).weight", [D]), try up("\(name).bias", [D])) }
        layers = try (0..<count).map { i in
            let l = "encoder.layers.\(i)"
            let qkvWeight = try ["q", "k", "v"].flatMap { try take("\(l).self_attn.\($0)_proj.weight", [D, D]) }
            let qkvBias = try ["q", "k", "v"].flatMap { try take("\(l).self_attn.\($0)_proj.bias", [D]) }
            return Layer(norm1: try norm("\(l).layer_norm1"), norm2: try norm("\(l).layer_norm2"),
                         qkv: (try stream.upload(qkvWeight), try stream.upload(qkvBias)),
                         out: (try up("\(l).self_attn.out_proj.weight", [D, D]), try up("\(l).self_attn.out_proj.bias", [D])),
                         fc1: (try up("\(l).mlp.fc1.weight", [I, D]), try up("\(l).mlp.fc1.bias", [I])),
                         fc2: (try up("\(l).mlp.fc2.weight", [D, I]), try up("\(l).mlp.fc2.bias", [D])))
        }
        hiddenSize = D; intermediateSize = I; self.heads = heads; self.eps = eps; self.activation = activation; self.stream = stream
    }

    /// Buffers for `sequences` sequences of `length` tokens.
    func workspace(sequences N: Int, length L: Int) throws -> Workspace {
        let (D, I, rows) = (hiddenSize, intermediateSize, N * L)
        let shape = TokenAttentionShape(batch: N, queryLength: L, keyLength: L, heads: heads, headDim: D / heads)
        return Workspace(normed: try stream.buffer(rows * D), attention: try stream.buffer(rows * D),
                         wide: try stream.buffer(rows * max(3 * D, I)),
                         scratch: try stream.buffer(shape.scratchCount(scoreLimit: stream.backends.attentionScoreLimit)))
    }

    /// Layers `range` on `hidden` ([N, L, D]), in place.
    func run(_ range: Range<Int>, hidden: DeviceBuffer<Float>, sequences N: Int, length L: Int, causal: Bool, workspace w: Workspace) throws {
        let (D, I) = (hiddenSize, intermediateSize), rows = N * L, s = stream
        let shape = TokenAttentionShape(batch: N, queryLength: L, keyLength: L, heads: heads, headDim: D / heads)
        let limit = s.backends.attentionScoreLimit
        for layer in layers[range] {
            try s.layerNorm(hidden, output: w.normed, gamma: layer.norm1.0, beta: layer.norm1.1, rows: rows, cols: D, eps: eps)
            try s.linear(w.normed, weight: layer.qkv.0, bias: layer.qkv.1, output: w.wide, batch: rows, inFeatures: D, outFeatures: 3 * D)
            try s.multiHeadAttention(query: TokenOperand(w.wide, ld: 3 * D), key: TokenOperand(w.wide, offset: D, ld: 3 * D),
                                     value: TokenOperand(w.wide, offset: 2 * D, ld: 3 * D), output: TokenOperand(w.attention, ld: D),
                                     shape: shape, scratch: w.scratch, scoreLimit: limit, causal: causal)
            try s.linearAccumulate(w.attention, weight: layer.out.0, bias: layer.out.1, into: hidden, rows: rows, inFeatures: D, outFeatures: D)
            try s.layerNorm(hidden, output: w.normed, gamma: layer.norm2.0, beta: layer.norm2.1, rows: rows, cols: D, eps: eps)
            try s.linear(w.normed, weight: layer.fc1.0, bias: layer.fc1.1, output: w.wide, batch: rows, inFeatures: D, outFeatures: I)
            try s.activation(w.wide, count: rows * I, activation)
            try s.linearAccumulate(w.wide, weight: layer.fc2.0, bias: layer.fc2.1, into: hidden, rows: rows, inFeatures: I, outFeatures: D)
        }
    }
}
