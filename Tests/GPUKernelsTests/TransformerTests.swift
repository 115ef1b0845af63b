// The token-major operations of Stable Diffusion's transformer blocks against CPU references:
// chunked multi-head attention (sequence lengths the chunk does not divide, head dims 40/64/80,
// cross-attention lengths, fused-QKV strides) on every GEMM path, LayerNorm, GEGLU, the batched
// transpose and the accumulating linear.
import GPUKernels
import Foundation
import Testing
import TestSupport

/// softmax(q kᵀ · scale) v per head in Double, for token-major q [N, Lq, ldq], k/v [N, Lk, ld].
private func referenceAttention(q: [Float], qOffset: Int, ldq: Int, k: [Float], kOffset: Int, ldk: Int,
                                v: [Float], vOffset: Int, ldv: Int, n N: Int, lq: Int, lk: Int, heads: Int, d: Int,
                                causal: Bool = false) -> [Float] {
    let C = heads * d, scale = 1 / Double(d).squareRoot()
    var out = [Float](repeating: 0, count: N * lq * C)
    for n in 0..<N {
        for h in 0..<heads {
            for i in 0..<lq {
                var scores = [Double](repeating: 0, count: lk)
                for j in 0..<lk {
                    var acc = 0.0
                    for e in 0..<d {
                        acc += Double(q[qOffset + (n * lq + i) * ldq + h * d + e]) * Double(k[kOffset + (n * lk + j) * ldk + h * d + e])
                    }
                    scores[j] = causal && j > i ? -.infinity : acc * scale
                }
                let m = scores.max()!
                let w = scores.map { exp($0 - m) }, z = w.reduce(0, +)
                for e in 0..<d {
                    var acc = 0.0
                    for j in 0..<lk { acc += w[j] * Double(v[vOffset + (n * lk + j) * ldv + h * d + e]) }
                    out[(n * lq + i) * C + h * d + e] = Float(acc / z)
                }
            }
        }
    }
    return out
}

/// Random Q, K and V on `s` as the attention tests lay them out: self-attention (lq == lk) reads
/// them from one fused projection [N, L, 3C], cross-attention from a Q buffer and a fused K|V buffer
/// [N, Lk, 2C]; each offset by 3 floats to check offsets. `reference` is referenceAttention on them.
private struct AttentionInputs {
    let query: TokenOperand, key: TokenOperand, value: TokenOperand
    let reference: [Float]

    init(_ s: ComputeStream, shape: TokenAttentionShape, causal: Bool = false, rng: inout SeededGenerator) throws {
        let (N, lq, lk, C) = (shape.batch, shape.queryLength, shape.keyLength, shape.channels)
        let selfAttention = lq == lk
        let qkv = randomArray(N * lq * 3 * C + 3, &rng, in: -2...2)
        let kv = selfAttention ? qkv : randomArray(N * lk * 2 * C + 3, &rng, in: -2...2)
        let dq = try s.upload(qkv), dkv = selfAttention ? dq : try s.upload(kv)
        let (ldq, ldkv) = selfAttention ? (3 * C, 3 * C) : (3 * C, 2 * C)
        let (kOff, vOff) = selfAttention ? (3 + C, 3 + 2 * C) : (3, 3 + C)
        query = TokenOperand(dq, offset: 3, ld: ldq)
        key = TokenOperand(dkv, offset: kOff, ld: ldkv)
        value = TokenOperand(dkv, offset: vOff, ld: ldkv)
        reference = referenceAttention(q: qkv, qOffset: 3, ldq: ldq, k: kv, kOffset: kOff, ldk: ldkv, v: kv, vOffset: vOff, ldv: ldkv,
                                       n: N, lq: lq, lk: lk, heads: shape.heads, d: shape.headDim, causal: causal)
    }
}

@Suite struct TransformerKernelTests {
    /// (batch, query length, key length, heads, head dim, score limit): lengths the chunk does not
    /// divide, one-query chunks, SD's head dims 40/64/80 and a 77-token cross-attention.
    static let attentionCases: [(Int, Int, Int, Int, Int, Int)] = [
        (2, 37, 37, 2, 40, 2 * 37 * 8),      // chunks of 8 queries: 8, 8, 8, 8, 5
        (1, 50, 77, 3, 64, 3 * 77 * 16),     // cross-attention, chunks of 16: 16, 16, 16, 2
        (2, 19, 19, 1, 80, 1),               // one query per chunk
        (1, 64, 64, 5, 64, 1 << 24),         // one chunk
    ]

    @Test(arguments: gemmPaths(), attentionCases.indices)
    func chunkedAttentionMatchesReference(path: GemmPath, index: Int) throws {
        let (N, lq, lk, heads, d, limit) = Self.attentionCases[index]
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let C = heads * d
        let shape = TokenAttentionShape(batch: N, queryLength: lq, keyLength: lk, heads: heads, headDim: d)
        let inputs = try AttentionInputs(s, shape: shape, rng: &rng)
        let out = try s.buffer(N * lq * C), scratch = try s.buffer(shape.scratchCount(scoreLimit: limit))
        try s.multiHeadAttention(query: inputs.query, key: inputs.key, value: inputs.value, output: TokenOperand(out, ld: C),
                                 shape: shape, scratch: scratch, scoreLimit: limit)
        expectClose(try s.download(out), inputs.reference, atol: 1e-5, rtol: 1e-4,
                    "attention N\(N) Lq\(lq) Lk\(lk) heads \(heads)×\(d), chunk \(shape.chunk(scoreLimit: limit)) via \(path)", seed: seed)
    }

    /// CLIP's causal self-attention: query i sees keys 0…i, in chunks (16 of 77 queries, one) and whole.
    @Test(arguments: gemmPaths(), [(2, 77, 3, 16, 3 * 77 * 16), (1, 37, 2, 40, 1), (1, 20, 4, 8, 1 << 24)])
    func causalAttentionMatchesReference(path: GemmPath, dims: (Int, Int, Int, Int, Int)) throws {
        let (N, L, heads, d, limit) = dims
        let s = try ComputeStream(device: testDevice(), gemm: path)
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let C = heads * d
        let shape = TokenAttentionShape(batch: N, queryLength: L, keyLength: L, heads: heads, headDim: d)
        let qkv = randomArray(N * L * 3 * C, &rng, in: -2...2)
        let dq = try s.upload(qkv), out = try s.buffer(N * L * C), scratch = try s.buffer(shape.scratchCount(scoreLimit: limit))
        try s.multiHeadAttention(query: TokenOperand(dq, ld: 3 * C), key: TokenOperand(dq, offset: C, ld: 3 * C),
                                 value: TokenOperand(dq, offset: 2 * C, ld: 3 * C), output: TokenOperand(out, ld: C),
                                 shape: shape, scratch: scratch, scoreLimit: limit, causal: true)
        let ref = referenceAttention(q: qkv, qOffset: 0, ldq: 3 * C, k: qkv, kOffset: C, ldk: 3 * C, v: qkv, vOffset: 2 * C,
                                     ldv: 3 * C, n: N, lq: L, lk: L, heads: heads, d: d, causal: true)
        expectClose(try s.download(out), ref, atol: 1e-5, rtol: 1e-4,
                    "causal attention N\(N) L\(L) heads \(heads)×\(d), chunk \(shape.chunk(scoreLimit: limit)) via \(path)", seed: seed)
    }

    /// The fused attention (kernels/attention.cl: online softmax over key tiles in local memory, no
    /// score matrix) against the reference: lengths that are not multiples of its tiles (32 queries,
    /// 32 keys), a 77-key cross-attention, head dims 40, 64, 80 and 160, offsets and fused-QKV
    /// strides, causal or not; and `FLEXIFFUSION_ATTENTION`'s dispatch from multiHeadAttention.
    @Test(arguments: [(2, 37, 37, 2, 40, false), (1, 50, 77, 3, 64, false), (2, 19, 19, 1, 80, true), (1, 33, 77, 2, 160, false),
                      (2, 77, 77, 3, 16, true), (1, 1, 5, 1, 8, false)])
    func fusedAttentionMatchesReference(dims: (Int, Int, Int, Int, Int, Bool)) throws {
        let (N, lq, lk, heads, d, causal) = dims
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let C = heads * d
        let shape = TokenAttentionShape(batch: N, queryLength: lq, keyLength: lk, heads: heads, headDim: d)
        let inputs = try AttentionInputs(s, shape: shape, causal: causal, rng: &rng)
        // Direct, then through multiHeadAttention with the stream's attention path set to fused
        // (its scratch is not needed then: one float).
        for dispatched in [false, true] {
            let out = try s.upload(randomArray(N * lq * C, &rng, in: 100...200))
            if dispatched {
                s.backends.attention = .fused
                try s.multiHeadAttention(query: inputs.query, key: inputs.key, value: inputs.value, output: TokenOperand(out, ld: C),
                                         shape: shape, scratch: try s.buffer(1), causal: causal)
            } else {
                try s.fusedMultiHeadAttention(query: inputs.query, key: inputs.key, value: inputs.value, output: TokenOperand(out, ld: C),
                                              shape: shape, causal: causal)
            }
            expectClose(try s.download(out), inputs.reference, atol: 1e-5, rtol: 1e-4,
                        "fused attention N\(N) Lq\(lq) Lk\(lk) heads \(heads)×\(d) causal \(causal)\(dispatched ? " (dispatched)" : "")", seed: seed)
        }
    }

    /// Token embeddings (gather by id, repeated ids) and CLIP's MLP activations.
    @Test func gatherAndActivations() throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let (V, D, rows) = (50, 24, 31)
        let table = randomArray(V * D, &rng)
        let ids = (0..<rows).map { _ in Int32.random(in: 0..<Int32(V), using: &rng) } + [Int32(V - 1), 0]
        let dIds = try DeviceBuffer<Int32>(context: s.context, count: ids.count)
        try dIds.write(ids, queue: s.queue)
        let y = try s.buffer(ids.count * D)
        try s.gatherRows(try s.upload(table), ids: dIds, output: y, rows: ids.count, width: D)
        let ref = ids.flatMap { Array(table[Int($0) * D ..< (Int($0) + 1) * D]) }
        expectClose(try s.download(y), ref, atol: 0, rtol: 0, "gather_rows", seed: seed)

        let x = randomArray(1000, &rng, in: -12...12)
        for kind in [TokenActivation.quickGELU, .gelu] {
            let dx = try s.upload(x)
            try s.activation(dx, count: x.count, kind)
            let want = x.map { v -> Float in
                let v = Double(v)
                return Float(kind == .quickGELU ? v / (1 + exp(-1.702 * v)) : 0.5 * v * (1 + erf(v / 2.0.squareRoot())))
            }
            expectClose(try s.download(dx), want, atol: 1e-6, rtol: 1e-5, "activation \(kind.rawValue)", seed: seed)
        }
    }

    @Test func chunkBoundsTheScores() {
        let sd = TokenAttentionShape(batch: 2, queryLength: 4096, keyLength: 4096, heads: 8, headDim: 40)
        #expect(sd.chunk() == 512 && sd.scratchCount() == TokenAttentionShape.defaultScoreLimit)
        #expect(sd.chunk(scoreLimit: 1) == 1)
        let small = TokenAttentionShape(batch: 1, queryLength: 10, keyLength: 77, heads: 2, headDim: 8)
        #expect(small.chunk() == 10)
    }

    @Test(arguments: [(5, 320), (3, 77), (1, 1280)])
    func layerNormMatchesReference(dims: (Int, Int)) throws {
        let (rows, cols) = dims
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let x = randomArray(rows * cols, &rng, in: -3...5), g = randomArray(cols, &rng), b = randomArray(cols, &rng)
        let dx = try s.upload(x), dy = try s.buffer(x.count)
        try s.layerNorm(dx, output: dy, gamma: try s.upload(g), beta: try s.upload(b), rows: rows, cols: cols, eps: 1e-5)
        var ref = [Float](repeating: 0, count: x.count)
        for r in 0..<rows {
            let row = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let mean = row.reduce(0, +) / Double(cols)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)
            for j in 0..<cols { ref[r * cols + j] = Float((row[j] - mean) / (variance + 1e-5).squareRoot() * Double(g[j]) + Double(b[j])) }
        }
        expectClose(try s.download(dy), ref, atol: 1e-5, rtol: 1e-4, "layer norm \(rows)×\(cols)", seed: seed)
        try s.layerNorm(dx, output: dx, gamma: try s.upload(g), beta: try s.upload(b), rows: rows, cols: cols, eps: 1e-5)
        expectClose(try s.download(dx), ref, atol: 1e-5, rtol: 1e-4, "layer norm in place", seed: seed)
    }

    @Test func gegluMatchesReference() throws {
        let (rows, F) = (7, 53)
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let x = randomArray(rows * 2 * F, &rng, in: -4...4)
        let dy = try s.buffer(rows * F)
        try s.geglu(try s.upload(x), output: dy, rows: rows, features: F)
        var ref = [Float](repeating: 0, count: rows * F)
        for r in 0..<rows {
            for f in 0..<F {
                let h = Double(x[r * 2 * F + f]), g = Double(x[r * 2 * F + F + f])
                ref[r * F + f] = Float(h * 0.5 * g * (1 + erf(g / 2.0.squareRoot())))
            }
        }
        expectClose(try s.download(dy), ref, atol: 1e-6, rtol: 1e-5, "geglu", seed: seed)
    }

    @Test func transposeAndAccumulatingLinear() throws {
        let (N, R, K) = (2, 5, 7)
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let x = randomArray(N * R * K, &rng)
        let dy = try s.buffer(x.count)
        try s.transposeBatched(try s.upload(x), output: dy, batch: N, rows: R, cols: K)
        var ref = x
        for n in 0..<N { for r in 0..<R { for k in 0..<K { ref[n * R * K + k * R + r] = x[n * R * K + r * K + k] } } }
        #expect(try s.download(dy) == ref)

        let (rows, inF, outF) = (6, 9, 4)
        let a = randomArray(rows * inF, &rng), w = randomArray(outF * inF, &rng), b = randomArray(outF, &rng)
        let y0 = randomArray(rows * outF, &rng)
        let dOut = try s.upload(y0)
        try s.linearAccumulate(try s.upload(a), weight: try s.upload(w), bias: try s.upload(b), into: dOut,
                               rows: rows, inFeatures: inF, outFeatures: outF)
        var expected = y0
        for r in 0..<rows {
            for o in 0..<outF {
                var acc = Double(y0[r * outF + o]) + Double(b[o])
                for i in 0..<inF { acc += Double(a[r * inF + i]) * Double(w[o * inF + i]) }
                expected[r * outF + o] = Float(acc)
            }
        }
        expectClose(try s.download(dOut), expected, atol: 1e-5, rtol: 1e-5, "linear accumulate", seed: seed)
    }
}
