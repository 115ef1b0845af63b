// Attention support: row-wise softmax of the score matrix (the products run through the GEMM path).
//
// softmax_rows: s[offset ...] as [rows, cols], in place; one work-group per row, launched as global (LS * rows),
//   local (LS), LS a power of two; `scratch` is LS floats of local memory.
// No #defines.

__kernel void softmax_rows(__global float* s, const int offset, const int cols, __local float* scratch)
{
    const int row = get_group_id(0);
    const int lid = get_local_id(0);
    const int ls = get_local_size(0);
    __global float* r = s + offset + (size_t)row * cols;

    float m = -INFINITY;
    for (int j = lid; j < cols; j += ls) m = fmax(m, r[j]);
    scratch[lid] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = ls >> 1; k > 0; k >>= 1) {
        if (lid < k) scratch[lid] = fmax(scratch[lid], scratch[lid + k]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    m = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);

    float sum = 0.0f;
    for (int j = lid; j < cols; j += ls) { const float e = exp(r[j] - m); r[j] = e; sum += e; }
    scratch[lid] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = ls >> 1; k > 0; k >>= 1) {
        if (lid < k) scratch[lid] += scratch[lid + k];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float inv = 1.0f / scratch[0];
    for (int j = lid; j < cols; j += ls) r[j] *= inv;
}
