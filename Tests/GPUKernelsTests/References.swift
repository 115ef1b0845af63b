// CPU references for every device operation, written plainly (Double accumulation) from PyTorch's
// definitions, for the kernel tests to compare against.
import Foundation

enum Reference {
    /// Row-major C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b].
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                     a: [Float], aOffset: Int, lda: Int, strideA: Int,
                     b: [Float], bOffset: Int, ldb: Int, strideB: Int, beta: Float,
                     c: inout [Float], cOffset: Int, ldc: Int, strideC: Int, batch: Int) {
        for bi in 0..<batch {
            for i in 0..<m {
                for j in 0..<n {
                    var acc = 0.0
                    for p in 0..<k {
                        let av = transA ? a[aOffset + bi * strideA + p * lda + i] : a[aOffset + bi * strideA + i * lda + p]
                        let bv = transB ? b[bOffset + bi * strideB + j * ldb + p] : b[bOffset + bi * strideB + p * ldb + j]
                        acc += Double(av) * Double(bv)
                    }
                    let ci = cOffset + bi * strideC + i * ldc + j
                    c[ci] = Float(Double(alpha) * acc + Double(beta) * Double(c[ci]))
                }
            }
        }
    }

    /// torch.nn.functional.conv2d with explicit padding (top, left, bottom, right).
    static func conv2d(_ x: [Float], n N: Int, c C: Int, h H: Int, w W: Int, weight: [Float], bias: [Float]?,
                       outChannels O: Int, kh KH: Int, kw KW: Int, stride S: Int, pad: (Int, Int, Int, Int)) -> [Float] {
        let OH = (H + pad.0 + pad.2 - KH) / S + 1, OW = (W + pad.1 + pad.3 - KW) / S + 1
        var y = [Float](repeating: 0, count: N * O * OH * OW)
        for n in 0..<N { for o in 0..<O { for oy in 0..<OH { for ox in 0..<OW {
            var acc = Double(bias?[o] ?? 0)
            for c in 0..<C { for ky in 0..<KH { for kx in 0..<KW {
                let iy = oy * S - pad.0 + ky, ix = ox * S - pad.1 + kx
                guard iy >= 0, iy < H, ix >= 0, ix < W else { continue }
                acc += Double(x[((n * C + c) * H + iy) * W + ix]) * Double(weight[((o * C + c) * KH + ky) * KW + kx])
            } } }
            y[((n * O + o) * OH + oy) * OW + ox] = Float(acc)
        } } } }
        return y
    }

    static func linear(_ x: [Float], batch: Int, inF: Int, outF: Int, weight: [Float], bias: [Float]?) -> [Float] {
        var y = [Float](repeating: 0, count: batch * outF)
        for n in 0..<batch { for o in 0..<outF {
            var acc = Double(bias?[o] ?? 0)
            for i in 0..<inF { acc += Double(x[n * inF + i]) * Double(weight[o * inF + i]) }
            y[n * outF + o] = Float(acc)
        } }
        return y
    }

    static func silu(_ v: Float) -> Float { Float(Double(v) / (1 + exp(-Double(v)))) }

    static func groupNorm(_ x: [Float], n N: Int, c C: Int, p P: Int, groups G: Int, eps: Float,
                          gamma: [Float], beta: [Float], silu applySiLU: Bool) -> [Float] {
        var y = x
        let cpg = C / G
        for n in 0..<N { for g in 0..<G {
            let base = (n * C + g * cpg) * P, count = cpg * P
            var mean = 0.0
            for i in 0..<count { mean += Double(x[base + i]) }
            mean /= Double(count)
            var v = 0.0
            for i in 0..<count { let d = Double(x[base + i]) - mean; v += d * d }
            v /= Double(count)
            let rstd = 1 / (v + Double(eps)).squareRoot()
            for i in 0..<count {
                let c = g * cpg + i / P
                var r = Float((Double(x[base + i]) - mean) * rstd * Double(gamma[c]) + Double(beta[c]))
                if applySiLU { r = silu(r) }
                y[base + i] = r
            }
        } }
        return y
    }

    static func upsampleNearest2x(_ x: [Float], nc: Int, h: Int, w: Int) -> [Float] {
        var y = [Float](repeating: 0, count: nc * 4 * h * w)
        for c in 0..<nc { for oy in 0..<(2 * h) { for ox in 0..<(2 * w) {
            y[(c * 2 * h + oy) * 2 * w + ox] = x[(c * h + oy / 2) * w + ox / 2]
        } } }
        return y
    }

    static func concat(_ a: [Float], _ b: [Float], n: Int, ca: Int, cb: Int, p: Int) -> [Float] {
        var y: [Float] = []
        for i in 0..<n {
            y += a[(i * ca * p)..<((i + 1) * ca * p)]
            y += b[(i * cb * p)..<((i + 1) * cb * p)]
        }
        return y
    }

    /// diffusers.models.embeddings.get_timestep_embedding, in float64.
    static func timestepEmbedding(_ t: [Float], dim: Int, flip: Bool, shift: Double, scale: Double = 1,
                                  maxPeriod: Double = 10000) -> [Float] {
        let half = dim / 2
        var y = [Float](repeating: 0, count: t.count * dim)
        for (n, tv) in t.enumerated() {
            var row = [Double]()
            let freqs = (0..<half).map { exp(-log(maxPeriod) * Double($0) / (Double(half) - shift)) }
            let args = freqs.map { scale * Double(tv) * $0 }
            row = args.map(sin) + args.map(cos)
            if flip { row = Array(row[half...]) + Array(row[..<half]) }
            if dim % 2 == 1 { row.append(0) }
            for j in 0..<dim { y[n * dim + j] = Float(row[j]) }
        }
        return y
    }

    /// Multi-head self-attention over positions of x [N, C, P] (tokens = positions), as diffusers'
    /// Attention: q/k/v = Linear(x_tokens), softmax(q kᵀ/√d) v per head, then Linear out.
    static func attention(_ x: [Float], n N: Int, c C: Int, p P: Int, heads H: Int,
                          wq: [Float], bq: [Float], wk: [Float], bk: [Float], wv: [Float], bv: [Float],
                          wo: [Float], bo: [Float]) -> [Float] {
        let d = C / H
        var y = [Float](repeating: 0, count: N * C * P)
        for n in 0..<N {
            // tokens [P, C]
            var tokens = [Double](repeating: 0, count: P * C)
            for c in 0..<C { for p in 0..<P { tokens[p * C + c] = Double(x[(n * C + c) * P + p]) } }
            func proj(_ w: [Float], _ b: [Float], _ src: [Double]) -> [Double] {
                var out = [Double](repeating: 0, count: P * C)
                for p in 0..<P { for o in 0..<C {
                    var acc = Double(b[o])
                    for i in 0..<C { acc += src[p * C + i] * Double(w[o * C + i]) }
                    out[p * C + o] = acc
                } }
                return out
            }
            let q = proj(wq, bq, tokens), k = proj(wk, bk, tokens), v = proj(wv, bv, tokens)
            var heads = [Double](repeating: 0, count: P * C)
            for h in 0..<H {
                for i in 0..<P {
                    var s = [Double](repeating: 0, count: P)
                    for j in 0..<P {
                        var acc = 0.0
                        for e in 0..<d { acc += q[i * C + h * d + e] * k[j * C + h * d + e] }
                        s[j] = acc / Double(d).squareRoot()
                    }
                    let m = s.max()!
                    let ex = s.map { exp($0 - m) }
                    let z = ex.reduce(0, +)
                    for e in 0..<d {
                        var acc = 0.0
                        for j in 0..<P { acc += ex[j] / z * v[j * C + h * d + e] }
                        heads[i * C + h * d + e] = acc
                    }
                }
            }
            let out = proj(wo, bo, heads)
            for c in 0..<C { for p in 0..<P { y[(n * C + c) * P + p] = Float(out[p * C + c]) } }
        }
        return y
    }
}
