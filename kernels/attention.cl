// Attention: row-wise softmax of the score matrix (the chunked path: the products run through the
// GEMM path), and a fused attention that writes no score matrix.
//
// softmax_rows: s[offset ...] as [rows, cols], in place; one work-group per row, launched as global (LS * rows),
//   local (LS), LS a power of two; `scratch` is LS floats of local memory.
// fused_attention: o = softmax(q kᵀ · scale) v per (sample, head) for token-major q [N, Lq, *], k and v
//   [N, Lk, *], o [N, Lq, *] (head h the d features from h·d; each operand with its offset and row
//   stride); `causal`: query i sees keys 0…i. One work-item per query row, work-groups of QT rows;
//   the keys and values in tiles of FA_KT rows in local memory (`tile`: 2 · FA_KT · d floats); an
//   online softmax (running maximum and sum, rescaled once per tile) and the output row in private
//   memory. Launched as global (roundup(Lq, QT), heads, N), local (QT, 1, 1); d ≤ FA_MAX_D.
#define FA_KT 32
#define FA_MAX_D 160

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

__kernel void fused_attention(__global const float* q, const int q_off, const int q_ld,
                              __global const float* k, const int k_off, const int k_ld,
                              __global const float* v, const int v_off, const int v_ld,
                              __global float* o, const int o_off, const int o_ld,
                              const int lq, const int lk, const int d, const float scale, const int causal,
                              __local float* tile)
{
    const int i = get_global_id(0), h = get_global_id(1), n = get_global_id(2);
    const int lid = get_local_id(0), ls = get_local_size(0);
    __local float* kt = tile;
    __local float* vt = tile + FA_KT * d;
    const int active = i < lq;
    float qr[FA_MAX_D], acc[FA_MAX_D], s[FA_KT];
    if (active) {
        __global const float* qrow = q + q_off + (size_t)(n * lq + i) * q_ld + h * d;
        for (int c = 0; c < d; c++) { qr[c] = qrow[c] * scale; acc[c] = 0.0f; }
    }
    float m = -INFINITY, l = 0.0f;
    // (Causal: the group's keys end after its last query; the bound is the same for the whole group.)
    const int group_last = min(lq, (int)((get_group_id(0) + 1) * ls));
    const int keys = causal ? min(lk, group_last) : lk;
    for (int j0 = 0; j0 < keys; j0 += FA_KT) {
        const int rows = min(FA_KT, lk - j0);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < rows * d; e += ls) {
            const int r = e / d, c = e - r * d;
            const size_t row = (size_t)(n * lk + j0 + r);
            kt[e] = k[k_off + row * k_ld + h * d + c];
            vt[e] = v[v_off + row * v_ld + h * d + c];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active) continue;
        const int seen = causal ? min(rows, i - j0 + 1) : rows;
        if (seen <= 0) continue;
        float tile_max = -INFINITY;
        for (int r = 0; r < seen; r++) {
            float dot = 0.0f;
            __local const float* kr = kt + r * d;
            for (int c = 0; c < d; c++) dot += qr[c] * kr[c];
            s[r] = dot;
            tile_max = fmax(tile_max, dot);
        }
        const float m_new = fmax(m, tile_max);
        const float correction = exp(m - m_new);   // 0 before the first tile (m = -inf)
        l *= correction;
        for (int c = 0; c < d; c++) acc[c] *= correction;
        for (int r = 0; r < seen; r++) {
            const float p = exp(s[r] - m_new);
            l += p;
            __local const float* vr = vt + r * d;
            for (int c = 0; c < d; c++) acc[c] += p * vr[c];
        }
        m = m_new;
    }
    if (active) {
        const float inv = 1.0f / l;
        __global float* orow = o + o_off + (size_t)(n * lq + i) * o_ld + h * d;
        for (int c = 0; c < d; c++) orow[c] = acc[c] * inv;
    }
}
