// Layout operations: nearest-neighbour 2x upsampling and channel concatenation (NCHW, float32).
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
