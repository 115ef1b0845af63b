// Token-major operations of the transformer blocks in Stable Diffusion's UNet (diffusers'
// Transformer2DModel / BasicTransformerBlock): layout changes between channel-first [N, C, P] and
// token-major [N, P, C], and GEGLU (their LayerNorm is in group_norm.cl, beside GroupNorm).
//
// transpose_batched: x [N, R, K] -> y [N, K, R]; global size (K, R, N); y must not alias x. Work-items
//   of one row read consecutive x and write with stride R (CPU devices vectorise along dimension 0).
// geglu: x [rows, 2F] -> y [rows, F], y = x[:, :F] * gelu(x[:, F:]) with the exact (erf) GELU, as
//   diffusers' GEGLU (`hidden, gate = proj(x).chunk(2, dim=-1); hidden * F.gelu(gate)`), erf within 1.5e-7;
//   global size (F, rows); y must not alias x.
// gather_rows: y [rows, D] = table[ids[r], :] (token embeddings); global size (D, rows).
// activation_inplace: x = quick_gelu(x) (x * sigmoid(1.702 x), kind 0) or the exact (erf) gelu (kind 1),
//   as transformers' CLIP MLP; global size (count).
// causal_mask: scores [H, rows, cols] of queries first..first+rows-1 (each head's block `rows` rows):
//   entries of keys after their query become -inf, as the causal mask of CLIP's text encoder (the
//   softmax then gives them 0); global size (cols, H * rows).
// No #defines.

__kernel void transpose_batched(__global const float* x, __global float* y, const int R, const int K)
{
    const int k = get_global_id(0);
    const int r = get_global_id(1);
    const int n = get_global_id(2);
    if (k >= K || r >= R) return;
    const size_t base = (size_t)n * R * K;
    y[base + (size_t)k * R + r] = x[base + (size_t)r * K + k];
}

// erf(x) within 1.5e-7 (Abramowitz & Stegun 7.1.26): one exp and a division, where PoCL's erf took
// ~24 ns per element on CPU devices.
static float erf_as(const float x)
{
    const float a = fabs(x);
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    return copysign(1.0f - poly * exp(-a * a), x);
}

__kernel void geglu(__global const float* x, __global float* y, const int F)
{
    const int f = get_global_id(0);
    const size_t r = get_global_id(1);
    if (f >= F) return;
    const float h = x[r * 2 * F + f];
    const float g = x[r * 2 * F + F + f];
    y[r * F + f] = h * (0.5f * g * (1.0f + erf_as(g * 0.70710678118654752f)));
}

__kernel void gather_rows(__global const float* table, __global const int* ids, __global float* y, const int D)
{
    const int d = get_global_id(0);
    const size_t r = get_global_id(1);
    if (d >= D) return;
    y[r * D + d] = table[(size_t)ids[r] * D + d];
}

__kernel void activation_inplace(__global float* x, const int count, const int kind)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    const float v = x[i];
    x[i] = kind == 0 ? v / (1.0f + exp(-1.702f * v)) : 0.5f * v * (1.0f + erf_as(v * 0.70710678118654752f));
}

__kernel void causal_mask(__global float* s, const int rows, const int cols, const int first)
{
    const int j = get_global_id(0);
    const int rr = get_global_id(1);
    if (j >= cols) return;
    if (j > first + rr % rows) s[(size_t)rr * cols + j] = -INFINITY;
}
