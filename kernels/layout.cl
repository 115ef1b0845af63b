// Layout operations: nearest-neighbour 2x upsampling, channel concatenation and copies into a
// channel range, bilinear resizing (NCHW, float32).
// Guarded kernels; any global size that covers the work and any local size work. No #defines.

// x [N, C, H, W] -> y [N, C, 2H, 2W], y[.., oy, ox] = x[.., oy/2, ox/2] (PyTorch 'nearest').
// global size (N*C*2H*2W).
__kernel void upsample_nearest2x(__global const float* x, __global float* y,
                                 const int NC, const int H, const int W)
{
    const int i = get_global_id(0);
    const int OW = 2 * W;
    const int OH = 2 * H;
    if (i >= NC * OH * OW) return;
    const int ox = i % OW;
    const int t = i / OW;
    const int oy = t % OH;
    const int nc = t / OH;
    y[i] = x[((size_t)nc * H + (oy >> 1)) * W + (ox >> 1)];
}

// torch.cat([a, b], dim=1): a [N, CA, P], b [N, CB, P] -> y [N, CA+CB, P]. global size (N*(CA+CB)*P).
__kernel void concat_channels(__global const float* a, __global const float* b, __global float* y,
                              const int N, const int CA, const int CB, const int P)
{
    const int i = get_global_id(0);
    const int C = CA + CB;
    if (i >= N * C * P) return;
    const int p = i % P;
    const int t = i / P;
    const int c = t % C;
    const int n = t / C;
    y[i] = (c < CA) ? a[((size_t)n * CA + c) * P + p] : b[((size_t)n * CB + (c - CA)) * P + p];
}

// Copies x [N, CS, P] into channels [offset, offset + CS) of y [N, CD, P] (one operand of
// torch.cat(dim=1)). global size (N*CS*P).
__kernel void copy_channels(__global const float* x, __global float* y,
                            const int N, const int CS, const int CD, const int offset, const int P)
{
    const int i = get_global_id(0);
    if (i >= N * CS * P) return;
    const int p = i % P;
    const int t = i / P;
    const int c = t % CS;
    const int n = t / CS;
    y[((size_t)n * CD + offset + c) * P + p] = x[i];
}

// F.interpolate's bilinear value (align_corners=False) at output pixel (oy, ox) of one H×W plane
// resized to OH×OW, its four taps clamped to [lo, hi] first. Source index as PyTorch computes it:
// (dst + 0.5) * (in / out) - 0.5, clamped at 0.
inline float bilinear_at(__global const float* plane, const int H, const int W, const int OH, const int OW,
                         const int oy, const int ox, const float lo, const float hi)
{
    const float sy = (float)H / (float)OH, sx = (float)W / (float)OW;
    const float ry = fmax(sy * ((float)oy + 0.5f) - 0.5f, 0.0f);
    const float rx = fmax(sx * ((float)ox + 0.5f) - 0.5f, 0.0f);
    const int y0 = (int)ry, x0 = (int)rx;
    const int dy = (y0 < H - 1) ? W : 0, dx = (x0 < W - 1) ? 1 : 0;
    const float ly = ry - (float)y0, lx = rx - (float)x0;
    __global const float* p = plane + (size_t)y0 * W + x0;
    const float a = clamp(p[0], lo, hi), b = clamp(p[dx], lo, hi);
    const float d = clamp(p[dy], lo, hi), e = clamp(p[dy + dx], lo, hi);
    return (1.0f - ly) * ((1.0f - lx) * a + lx * b) + ly * ((1.0f - lx) * d + lx * e);
}

// F.interpolate(x, size=(OH, OW), mode="bilinear", align_corners=False) of x [N, CI, H, W] (read
// from element x_offset on) clamped to [lo, hi] first, into y [N, CO, OH, OW]; output channel c reads
// input channel c % CI (a grey image becomes RGB). global size (N*CO*OH*OW).
__kernel void resize_bilinear(__global const float* x, const int x_offset, __global float* y,
                              const int N, const int CI, const int H, const int W,
                              const int CO, const int OH, const int OW, const float lo, const float hi)
{
    const int i = get_global_id(0);
    if (i >= N * CO * OH * OW) return;
    const int ox = i % OW;
    int t = i / OW;
    const int oy = t % OH;
    t /= OH;
    const int c = t % CO;
    const int n = t / CO;
    y[i] = bilinear_at(x + x_offset + ((size_t)n * CI + (c % CI)) * H * W, H, W, OH, OW, oy, ox, lo, hi);
}

// resize_bilinear of an RGB image x [N, 3, H, W] to one grey channel y [N, 1, OH, OW]: each channel
// resized as resize_bilinear does (clamped to [lo, hi] first), then combined with ITU-R 601-2 luma
// weights (0.299 R + 0.587 G + 0.114 B, as PIL's convert("L")). global size (N*OH*OW).
__kernel void resize_bilinear_luma(__global const float* x, const int x_offset, __global float* y,
                                   const int N, const int H, const int W, const int OH, const int OW,
                                   const float lo, const float hi)
{
    const int i = get_global_id(0);
    if (i >= N * OH * OW) return;
    const int ox = i % OW;
    const int oy = (i / OW) % OH;
    const int n = i / (OW * OH);
    __global const float* image = x + x_offset + (size_t)n * 3 * H * W;
    y[i] = 0.299f * bilinear_at(image, H, W, OH, OW, oy, ox, lo, hi)
         + 0.587f * bilinear_at(image + (size_t)H * W, H, W, OH, OW, oy, ox, lo, hi)
         + 0.114f * bilinear_at(image + (size_t)2 * H * W, H, W, OH, OW, oy, ox, lo, hi);
}
