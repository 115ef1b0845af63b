// GroupNorm (torch.nn.GroupNorm semantics, biased variance) with an optional fused SiLU, in two
// kernels: statistics per (sample, group), then an element-wise normalisation that vectorises well
// on CPU devices (a single fused kernel spent its time on per-element index arithmetic there);
// and LayerNorm over rows (Stable Diffusion's transformer blocks), on the same work-group sum.
//
// group_norm_stats: x [N, C, P] -> affine [N, C, 2] = (scale, shift) with scale = gamma[c] * rstd
//   and shift = beta[c] - mean * scale, rstd = 1/sqrt(var + eps) of the channel's group; one
//   work-group per (n, g), launched as global (LS * N * G), local (LS), LS a power of two; `scratch`
//   is LS floats of local memory. Two passes over the group (mean, then centred variance).
// group_norm_apply: y = x * scale + shift, then SiLU if apply_silu; y may alias x.
//   global size (P, C, N); any local size.
// layer_norm_rows: y[r, :] = (x[r, :] - mean) * rstd * gamma + beta over rows of `cols` features
//   (torch.nn.LayerNorm, biased variance, two passes); one work-group per row, launched as global
//   (LS * rows), local (LS), LS a power of two; `scratch` is LS floats of local memory; y may alias x.
// No #defines.

static float wg_sum(float v, __local float* scratch)
{
    const int lid = get_local_id(0);
    const int ls = get_local_size(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = ls >> 1; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

__kernel void group_norm_stats(__global const float* x, __global float* affine,
                               __global const float* gamma, __global const float* beta,
                               const int C, const int P, const int G, const float eps,
                               __local float* scratch)
{
    const int ng = get_group_id(0);
    const int lid = get_local_id(0);
    const int ls = get_local_size(0);
    const int cpg = C / G;
    const int count = cpg * P;
    // The channels of one group are consecutive, so the group is one contiguous run.
    __global const float* g = x + (size_t)ng * count;

    float s = 0.0f;
    for (int i = lid; i < count; i += ls) s += g[i];
    const float mean = wg_sum(s, scratch) / (float)count;

    float q = 0.0f;
    for (int i = lid; i < count; i += ls) { const float d = g[i] - mean; q += d * d; }
    const float var = wg_sum(q, scratch) / (float)count;
    const float rstd = 1.0f / sqrt(var + eps);
    const int first = (ng % G) * cpg;
    for (int i = lid; i < cpg; i += ls) {
        const float scale = gamma[first + i] * rstd;
        affine[2 * ((size_t)ng * cpg + i)] = scale;
        affine[2 * ((size_t)ng * cpg + i) + 1] = beta[first + i] - mean * scale;
    }
}

__kernel void group_norm_apply(__global const float* x, __global float* y, __global const float* affine,
                               const int C, const int P, const int apply_silu)
{
    const int p = get_global_id(0);
    const int c = get_global_id(1);
    const int n = get_global_id(2);
    if (p >= P || c >= C) return;
    const size_t nc = (size_t)n * C + c;
    const size_t i = nc * P + p;
    float v = x[i] * affine[2 * nc] + affine[2 * nc + 1];
    if (apply_silu) v = v / (1.0f + exp(-v));
    y[i] = v;
}

__kernel void layer_norm_rows(__global const float* x, __global float* y,
                              __global const float* gamma, __global const float* beta,
                              const int cols, const float eps, __local float* scratch)
{
    const size_t row = get_group_id(0);
    const int lid = get_local_id(0);
    const int ls = get_local_size(0);
    __global const float* xr = x + row * cols;
    __global float* yr = y + row * cols;

    float s = 0.0f;
    for (int j = lid; j < cols; j += ls) s += xr[j];
    const float mean = wg_sum(s, scratch) / (float)cols;
    float q = 0.0f;
    for (int j = lid; j < cols; j += ls) { const float d = xr[j] - mean; q += d * d; }
    const float rstd = 1.0f / sqrt(wg_sum(q, scratch) / (float)cols + eps);
    for (int j = lid; j < cols; j += ls) yr[j] = (xr[j] - mean) * rstd * gamma[j] + beta[j];
}
