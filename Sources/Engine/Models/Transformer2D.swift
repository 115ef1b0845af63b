// Stable Diffusion's attention blocks on the engine: diffusers' Transformer2DModel (continuous
// input) with its BasicTransformerBlocks (LayerNorm → self-attention → LayerNorm → cross-attention
// over encoder_hidden_states → LayerNorm → GEGLU feed-forward, each with a residual), in place on a
// channel-first feature map. The blocks run token-major [N, H·W, C]; a 1×1-conv proj_in/proj_out
// (SD 1.x) is the same product as the linear one (SD 2.x), so both run as linears.
// Port of diffusers.models.transformers.transformer_2d.Transformer2DModel and
// diffusers.models.attention.BasicTransformerBlock (norm_type "layer_norm", activation "geglu"),
// diffusers 0.42.
import GPUKernels

/// A layer that mixes a feature map in place: UNet2DModel's spatial attention or Transformer2DModel.
protocol SpatialMixing: AnyObject {
    /// In place on x [N, C, H, W], using the workspace's temporaries.
    func forward(_ s: ComputeStream, _ ws: UNetWorkspace, _ x: DeviceBuffer<Float>) throws
    /// Multiply-accumulates of one forward pass over the batch.
    var macs: Int { get }
}

extension AttentionBlock: SpatialMixing {
    var macs: Int { shape.macs }
}

/// One BasicTransformerBlock's weights: self-attention's Q, K, V fused into one [3C, C] projection,
/// cross-attention's K and V into one [2C, D] projection of encoder_hidden_states.
struct BasicTransformerBlock {
    let norm1: (DeviceBuffer<Float>, DeviceBuffer<Float>), norm2: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    let norm3: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    let selfQKV: DeviceBuffer<Float>, selfOut: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    let crossQ: DeviceBuffer<Float>, crossKV: DeviceBuffer<Float>, crossOut: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    let ff1: (DeviceBuffer<Float>, DeviceBuffer<Float>), ff2: (DeviceBuffer<Float>, DeviceBuffer<Float>)

    init(_ L: WeightLoader, _ prefix: String, channels C: Int, contextDim D: Int) throws {
        func norm(_ name: String) throws -> (DeviceBuffer<Float>, DeviceBuffer<Float>) {
            (try L.tensor("\(prefix).\(name).weight", [C]), try L.tensor("\(prefix).\(name).bias", [C]))
        }
        func stacked(_ names: [String], _ shape: [Int]) throws -> DeviceBuffer<Float> {
            try L.upload(try names.flatMap { try L.store.take("\(prefix).\($0).weight", shape: shape) })
        }
        norm1 = try norm("norm1"); norm2 = try norm("norm2"); norm3 = try norm("norm3")
        selfQKV = try stacked(["attn1.to_q", "attn1.to_k", "attn1.to_v"], [C, C])
        selfOut = (try L.tensor("\(prefix).attn1.to_out.0.weight", [C, C]), try L.tensor("\(prefix).attn1.to_out.0.bias", [C]))
        crossQ = try L.tensor("\(prefix).attn2.to_q.weight", [C, C])
        crossKV = try stacked(["attn2.to_k", "attn2.to_v"], [C, D])
        crossOut = (try L.tensor("\(prefix).attn2.to_out.0.weight", [C, C]), try L.tensor("\(prefix).attn2.to_out.0.bias", [C]))
        ff1 = (try L.tensor("\(prefix).ff.net.0.proj.weight", [8 * C, C]), try L.tensor("\(prefix).ff.net.0.proj.bias", [8 * C]))
        ff2 = (try L.tensor("\(prefix).ff.net.2.weight", [C, 4 * C]), try L.tensor("\(prefix).ff.net.2.bias", [C]))
    }
}

/// Transformer2DModel: x ← x + proj_out(blocks(proj_in(GroupNorm(x)))) with the blocks on tokens.
public final class SpatialTransformer: SpatialMixing {
    public let channels: Int, heads: Int, batch: Int, spatial: Int, contextLength: Int, contextDim: Int
    let norm: GroupNormLayer
    let projIn: (DeviceBuffer<Float>, DeviceBuffer<Float>), projOut: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    let blocks: [BasicTransformerBlock]
    let selfShape: TokenAttentionShape, crossShape: TokenAttentionShape

    init(_ L: WeightLoader, _ prefix: String, channels C: Int, height: Int, width: Int, heads: Int, layers: Int) throws {
        let x = L.config.crossAttention!, N = L.batch, P = height * width
        channels = C; self.heads = heads; batch = N; spatial = P
        contextLength = L.contextLength; contextDim = x.dim
        // Transformer2DModel's GroupNorm has eps 1e-6 whatever norm_eps says.
        norm = try GroupNormLayer(L, "\(prefix).norm", channels: C, groups: L.config.normNumGroups, eps: 1e-6)
        let projShape = x.useLinearProjection ? [C, C] : [C, C, 1, 1]
        projIn = (try L.tensor("\(prefix).proj_in.weight", projShape), try L.tensor("\(prefix).proj_in.bias", [C]))
        blocks = try (0..<layers).map {
            try BasicTransformerBlock(L, "\(prefix).transformer_blocks.\($0)", channels: C, contextDim: x.dim)
        }
        projOut = (try L.tensor("\(prefix).proj_out.weight", projShape), try L.tensor("\(prefix).proj_out.bias", [C]))
        selfShape = TokenAttentionShape(batch: N, queryLength: P, keyLength: P, heads: heads, headDim: C / heads)
        crossShape = TokenAttentionShape(batch: N, queryLength: P, keyLength: L.contextLength, heads: heads, headDim: C / heads)
        L.plan.activation = max(L.plan.activation, N * P * C)
        L.plan.tokenWide = max(L.plan.tokenWide, N * P * 8 * C, N * P * 3 * C)
        L.plan.tokenGated = max(L.plan.tokenGated, N * P * 4 * C)
        L.plan.contextKV = max(L.plan.contextKV, N * L.contextLength * 2 * C)
        let limit = L.stream.backends.attentionScoreLimit
        L.plan.attentionScratch = max(L.plan.attentionScratch, selfShape.scratchCount(scoreLimit: limit),
                                      crossShape.scratchCount(scoreLimit: limit))
    }

    var macs: Int {
        let (N, P, C, Lc, D) = (batch, spatial, channels, contextLength, contextDim)
        let perBlock = N * P * C * C * (3 + 1 + 1 + 1) + N * Lc * D * 2 * C + N * P * C * 12 * C + selfShape.macs + crossShape.macs
        return 2 * N * P * C * C + blocks.count * perBlock
    }

    /// In place on x [N, C, H, W] with the context in `ws.context`; uses tA (the hidden tokens H),
    /// tB (normed tokens), tC (attention output), tokenWide, tokenGated, contextKV and the attention scratch.
    func forward(_ s: ComputeStream, _ ws: UNetWorkspace, _ x: DeviceBuffer<Float>) throws {
        let (N, P, C) = (batch, spatial, channels), rows = N * P
        let H = ws.tA, X = ws.tB, O = ws.tC
        try norm(s, x, X, batch: N, spatial: P, silu: false)
        try s.transposeBatched(X, output: O, batch: N, rows: C, cols: P)
        try s.linear(O, weight: projIn.0, bias: projIn.1, output: H, batch: rows, inFeatures: C, outFeatures: C)
        for b in blocks {
            // 1. self-attention
            try s.layerNorm(H, output: X, gamma: b.norm1.0, beta: b.norm1.1, rows: rows, cols: C, eps: 1e-5)
            try s.linear(X, weight: b.selfQKV, bias: nil, output: ws.tokenWide, batch: rows, inFeatures: C, outFeatures: 3 * C)
            try s.multiHeadAttention(query: TokenOperand(ws.tokenWide, ld: 3 * C), key: TokenOperand(ws.tokenWide, offset: C, ld: 3 * C),
                                     value: TokenOperand(ws.tokenWide, offset: 2 * C, ld: 3 * C), output: TokenOperand(O, ld: C),
                                     shape: selfShape, scratch: ws.attentionScratch,
                                     scoreLimit: s.backends.attentionScoreLimit)
            try s.linearAccumulate(O, weight: b.selfOut.0, bias: b.selfOut.1, into: H, rows: rows, inFeatures: C, outFeatures: C)
            // 2. cross-attention over encoder_hidden_states
            try s.layerNorm(H, output: X, gamma: b.norm2.0, beta: b.norm2.1, rows: rows, cols: C, eps: 1e-5)
            try s.linear(X, weight: b.crossQ, bias: nil, output: ws.tokenWide, batch: rows, inFeatures: C, outFeatures: C)
            try s.linear(ws.context, weight: b.crossKV, bias: nil, output: ws.contextKV, batch: N * contextLength,
                         inFeatures: contextDim, outFeatures: 2 * C)
            try s.multiHeadAttention(query: TokenOperand(ws.tokenWide, ld: C), key: TokenOperand(ws.contextKV, ld: 2 * C),
                                     value: TokenOperand(ws.contextKV, offset: C, ld: 2 * C), output: TokenOperand(O, ld: C),
                                     shape: crossShape, scratch: ws.attentionScratch,
                                     scoreLimit: s.backends.attentionScoreLimit)
            try s.linearAccumulate(O, weight: b.crossOut.0, bias: b.crossOut.1, into: H, rows: rows, inFeatures: C, outFeatures: C)
            // 3. GEGLU feed-forward
            try s.layerNorm(H, output: X, gamma: b.norm3.0, beta: b.norm3.1, rows: rows, cols: C, eps: 1e-5)
            try s.linear(X, weight: b.ff1.0, bias: b.ff1.1, output: ws.tokenWide, batch: rows, inFeatures: C, outFeatures: 8 * C)
            try s.geglu(ws.tokenWide, output: ws.tokenGated, rows: rows, features: 4 * C)
            try s.linearAccumulate(ws.tokenGated, weight: b.ff2.0, bias: b.ff2.1, into: H, rows: rows, inFeatures: 4 * C, outFeatures: C)
        }
        try s.linear(H, weight: projOut.0, bias: projOut.1, output: X, batch: rows, inFeatures: C, outFeatures: C)
        try s.transposeBatched(X, output: O, batch: N, rows: P, cols: C)
        try s.addScale(x, O, output: x, count: N * C * P)
    }
}
