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
// No #defines.

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
