// 2-D convolution support: im2col lowering (the GEMM itself runs through the GEMM path).
//
// im2col: images n0 ..< n0 + N of x [·, C, H, W] -> col [N, C*KH*KW, OH*OW] ("batched"), or with wide = 1 the same
//   patches as col [C*KH*KW, N*OH*OW], so that one GEMM covers the whole batch; zero outside the
//   padded input. global size (OH*OW, C*KH*KW, N); any local size. pad_top/pad_left give the
//   asymmetric padding diffusers' Downsample2D uses with padding 0 (F.pad (0,1,0,1)); the
//   bottom/right padding is implied by OH/OW.
// unfold_batch: tmp[tmp_offset ...] as [Co, N*P] (+ bias[Co]) -> y [N, Co, P], undoing the wide layout after the GEMM.
//   global size (P, Co, N).
// im2col_rows: im2col with one work-item per output row (a loop over OW inside) — far faster on
//   CPU devices (PoCL), where per-element index arithmetic dominates; global size (OH, C*KH*KW, N),
//   the same arguments.
// conv2d_implicit: y [N, Co, OH, OW] = w [Co, C*KH*KW] · patches (+ bias) as an implicit GEMM: no
//   column buffer; each work-group computes a 32 × 32 tile of [Co, N*OH*OW], the weights' and the
//   patches' k-slices (16 wide) gathered into local memory, each work-item a 2 × 2 block with a
//   scalar inner product. Local size (16, 16); global size (16 * ceil(N*OH*OW / 32), 16 * ceil(Co / 32)).
#define IG_TILE 32
#define IG_K 16

__kernel void im2col(__global const float* x, const int n0, __global float* col,
                     const int N, const int C, const int H, const int W,
                     const int KH, const int KW, const int stride,
                     const int pad_top, const int pad_left,
                     const int OH, const int OW, const int wide)
{
    const int p = get_global_id(0);
    const int r = get_global_id(1);
    const int n = get_global_id(2);
    const int P = OH * OW;
    if (p >= P || r >= C * KH * KW) return;
    const int c = r / (KH * KW);
    const int k = r - c * (KH * KW);
    const int ky = k / KW;
    const int kx = k - ky * KW;
    const int oy = p / OW;
    const int ox = p - oy * OW;
    const int iy = oy * stride - pad_top + ky;
    const int ix = ox * stride - pad_left + kx;
    float v = 0.0f;
    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
        v = x[((size_t)((n0 + n) * C + c) * H + iy) * W + ix];
    col[(wide ? ((size_t)r * N + n) * P : ((size_t)n * (C * KH * KW) + r) * P) + p] = v;
}

__kernel void unfold_batch(__global const float* tmp, const int tmp_offset,
                           __global const float* bias, __global float* y, const int N, const int Co, const int P, const int has_bias)
{
    const int p = get_global_id(0);
    const int co = get_global_id(1);
    const int n = get_global_id(2);
    if (p >= P || co >= Co) return;
    const float b = has_bias ? bias[co] : 0.0f;
    y[((size_t)n * Co + co) * P + p] = tmp[tmp_offset + ((size_t)co * N + n) * P + p] + b;
}

__kernel void im2col_rows(__global const float* x, const int n0, __global float* col,
                          const int N, const int C, const int H, const int W,
                          const int KH, const int KW, const int stride,
                          const int pad_top, const int pad_left,
                          const int OH, const int OW, const int wide)
{
    const int oy = get_global_id(0);
    const int r = get_global_id(1);
    const int n = get_global_id(2);
    if (oy >= OH || r >= C * KH * KW) return;
    const int P = OH * OW;
    const int c = r / (KH * KW);
    const int k = r - c * (KH * KW);
    const int ky = k / KW;
    const int kx = k - ky * KW;
    const int iy = oy * stride - pad_top + ky;
    __global float* dst = col + (wide ? ((size_t)r * N + n) * P : ((size_t)n * (C * KH * KW) + r) * P) + oy * OW;
    if (iy < 0 || iy >= H) {
        for (int ox = 0; ox < OW; ++ox) dst[ox] = 0.0f;
        return;
    }
    __global const float* src = x + ((size_t)((n0 + n) * C + c) * H + iy) * W;
    for (int ox = 0; ox < OW; ++ox) {
        const int ix = ox * stride - pad_left + kx;
        dst[ox] = (ix >= 0 && ix < W) ? src[ix] : 0.0f;
    }
}

__kernel void conv2d_implicit(__global const float* x, __global const float* w, __global const float* bias, const int has_bias,
                              __global float* y, const int N, const int C, const int H, const int W, const int Co,
                              const int KH, const int KW, const int stride, const int pad_top, const int pad_left,
                              const int OH, const int OW)
{
    const int P = OH * OW, NP = N * P, K = C * KH * KW, KK = KH * KW;
    const int tx = get_local_id(0), ty = get_local_id(1), lin = ty * 16 + tx;
    const int col0 = get_group_id(0) * IG_TILE, row0 = get_group_id(1) * IG_TILE;
    __local float wt[IG_TILE][IG_K + 1];
    __local float xt[IG_K][IG_TILE + 1];
    float a00 = 0.0f, a01 = 0.0f, a10 = 0.0f, a11 = 0.0f;
    for (int k0 = 0; k0 < K; k0 += IG_K) {
        for (int e = lin; e < IG_TILE * IG_K; e += 256) {
            const int r = e / IG_K, kk = e - r * IG_K, row = row0 + r, k = k0 + kk;
            wt[r][kk] = (row < Co && k < K) ? w[(size_t)row * K + k] : 0.0f;
        }
        for (int e = lin; e < IG_K * IG_TILE; e += 256) {
            const int kk = e / IG_TILE, cc = e - kk * IG_TILE, k = k0 + kk, col = col0 + cc;
            float v = 0.0f;
            if (k < K && col < NP) {
                const int n = col / P, p = col - n * P, oh = p / OW, ow = p - oh * OW;
                const int c = k / KK, r = k - c * KK, ky = r / KW, kx = r - ky * KW;
                const int iy = oh * stride - pad_top + ky, ix = ow * stride - pad_left + kx;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[(((size_t)n * C + c) * H + iy) * W + ix];
            }
            xt[kk][cc] = v;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < IG_K; kk++) {
            const float w0 = wt[ty][kk], w1 = wt[ty + 16][kk], x0 = xt[kk][tx], x1 = xt[kk][tx + 16];
            a00 += w0 * x0; a01 += w0 * x1; a10 += w1 * x0; a11 += w1 * x1;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float acc[2][2] = {{a00, a01}, {a10, a11}};
    for (int i = 0; i < 2; i++) {
        const int row = row0 + ty + 16 * i;
        if (row >= Co) continue;
        const float b = has_bias ? bias[row] : 0.0f;
        for (int j = 0; j < 2; j++) {
            const int col = col0 + tx + 16 * j;
            if (col >= NP) continue;
            const int n = col / P, p = col - n * P;
            y[((size_t)n * Co + row) * P + p] = acc[i][j] + b;
        }
    }
}
