// GroupNorm (torch.nn.GroupNorm semantics, biased variance) with an optional fused SiLU.
//
// group_norm: x, y [N, C, P]; one work-group per (n, g), launched as global (LS * N * G), local (LS).
//   LS must be a power of two; `scratch` is LS floats of local memory. y may alias x.
//   Two passes over the group (mean, then centred variance) for accuracy, a third to write.
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

__kernel void group_norm(__global const float* x, __global float* y,
                         __global const float* gamma, __global const float* beta,
                         const int C, const int P, const int G, const float eps,
                         const int apply_silu, __local float* scratch)
{
    const int ng = get_group_id(0);
    const int g = ng % G;
    const int lid = get_local_id(0);
    const int ls = get_local_size(0);
    const int cpg = C / G;
    const int count = cpg * P;
    // The channels of one group are consecutive, so the group is one contiguous run.
    const size_t base = (size_t)ng * count;

    float s = 0.0f;
    for (int i = lid; i < count; i += ls) s += x[base + i];
    const float mean = wg_sum(s, scratch) / (float)count;

    float q = 0.0f;
    for (int i = lid; i < count; i += ls) { const float d = x[base + i] - mean; q += d * d; }
    const float var = wg_sum(q, scratch) / (float)count;
    const float rstd = 1.0f / sqrt(var + eps);

    for (int i = lid; i < count; i += ls) {
        const int c = g * cpg + i / P;
        float v = (x[base + i] - mean) * rstd * gamma[c] + beta[c];
        if (apply_silu) v = v / (1.0f + exp(-v));
        y[base + i] = v;
    }
}
