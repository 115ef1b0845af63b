// 2-D convolution support: im2col lowering (the GEMM itself runs through the GEMM path).
//
// im2col: x [N, C, H, W] -> col [N, C*KH*KW, OH*OW], zero outside the padded input.
//   global size (OH*OW, C*KH*KW, N); any local size. pad_top/pad_left give the asymmetric
//   padding diffusers' Downsample2D uses with padding 0 (F.pad (0,1,0,1)); the bottom/right
//   padding is implied by OH/OW.
// No #defines.

__kernel void im2col(__global const float* x, __global float* col,
                     const int C, const int H, const int W,
                     const int KH, const int KW, const int stride,
                     const int pad_top, const int pad_left,
                     const int OH, const int OW)
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
        v = x[((size_t)(n * C + c) * H + iy) * W + ix];
    col[((size_t)n * (C * KH * KW) + r) * P + p] = v;
}
