// 2-D pooling over NCHW float32 tensors: max or average over k×k windows with a stride and
// symmetric zero padding (torch.nn.functional.max_pool2d / avg_pool2d, floor mode).
//
// pool2d: x [NC, H, W] -> y [NC, OH, OW], OH = (H + 2·pad − k) / stride + 1 (likewise OW).
//   mode 0: max (padding never wins); mode 1: average, dividing by k·k when count_include_pad
//   is 1, else by the number of in-bounds elements.
//   global size (OW, OH, NC); guarded, any local size. No #defines.
// mean_pool_spatial: y[nc] = mean of x[nc, 0..P) (adaptive average pooling to 1×1).
//   global size (NC); guarded.

__kernel void pool2d(__global const float* x, __global float* y, const int H, const int W,
                     const int OH, const int OW, const int k, const int stride, const int pad,
                     const int mode, const int count_include_pad)
{
    const int ox = get_global_id(0);
    const int oy = get_global_id(1);
    const int nc = get_global_id(2);
    if (ox >= OW || oy >= OH) return;
    __global const float* plane = x + (size_t)nc * H * W;
    const int y0 = oy * stride - pad, x0 = ox * stride - pad;
    float acc = mode == 0 ? -INFINITY : 0.0f;
    int inside = 0;
    for (int ky = 0; ky < k; ky++) {
        const int iy = y0 + ky;
        if (iy < 0 || iy >= H) continue;
        for (int kx = 0; kx < k; kx++) {
            const int ix = x0 + kx;
            if (ix < 0 || ix >= W) continue;
            const float v = plane[iy * W + ix];
            acc = mode == 0 ? fmax(acc, v) : acc + v;
            inside++;
        }
    }
    if (mode == 1) acc /= (float)(count_include_pad ? k * k : inside);
    y[((size_t)nc * OH + oy) * OW + ox] = acc;
}

__kernel void mean_pool_spatial(__global const float* x, __global float* y, const int NC, const int P)
{
    const int nc = get_global_id(0);
    if (nc >= NC) return;
    __global const float* plane = x + (size_t)nc * P;
    float s = 0.0f;
    for (int p = 0; p < P; p++) s += plane[p];
    y[nc] = s / (float)P;
}
