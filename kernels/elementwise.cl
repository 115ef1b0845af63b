// Element-wise operations on float32 tensors: SiLU, ReLU, clamp, residual add with scale,
// scale and shift, per-channel bias.
//
// Tensors are contiguous NCHW; "P" is H*W. All kernels are guarded, so any global size that covers
// the work and any local size work. No #defines.

// y = x * sigmoid(x); y may alias x. global size (n).
__kernel void silu(__global const float* x, __global float* y, const int n)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    const float v = x[i];
    y[i] = v / (1.0f + exp(-v));
}

// y = max(x, 0); y may alias x. global size (n).
__kernel void relu(__global const float* x, __global float* y, const int n)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    y[i] = fmax(x[i], 0.0f);
}

// y = min(max(x, lo), hi); y may alias x. global size (n).
__kernel void clamp_values(__global const float* x, __global float* y, const int n, const float lo, const float hi)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    y[i] = fmin(fmax(x[i], lo), hi);
}

// y = (a + b) * scale; y may alias a or b. global size (n).
__kernel void add_scale(__global const float* a, __global const float* b, __global float* y,
                        const int n, const float scale)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    y[i] = (a[i] + b[i]) * scale;
}

// y = x * s + b; y may alias x. global size (n).
__kernel void scale_shift(__global const float* x, __global float* y, const int n, const float s, const float b)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    y[i] = x[i] * s + b;
}

// y[offset + (n, c, p)] = bias[c]: the start value for a GEMM with beta = 1. global size (P, C, N).
__kernel void fill_channel_bias(__global float* y, const int offset, __global const float* bias,
                                const int C, const int P)
{
    const int p = get_global_id(0);
    const int c = get_global_id(1);
    const int n = get_global_id(2);
    if (p >= P || c >= C) return;
    y[offset + ((size_t)n * C + c) * P + p] = bias[c];
}

// The same for rows (P = 1): y[offset + r * C + c] = bias[c]. global size (C, R), the contiguous index
// first: (1, C, R) leaves NVIDIA's driver one-item work-groups (SD's linear layers ran 100× slower).
__kernel void fill_row_bias(__global float* y, const int offset, __global const float* bias, const int C)
{
    const int c = get_global_id(0);
    const int r = get_global_id(1);
    if (c >= C) return;
    y[offset + (size_t)r * C + c] = bias[c];
}

// y[r * C + c] += bias[r * bias_row_stride + c]. global size (C, R).
__kernel void add_row_bias(__global float* y, __global const float* bias, const int C, const int bias_row_stride)
{
    const int c = get_global_id(0);
    const int r = get_global_id(1);
    if (c >= C) return;
    y[(size_t)r * C + c] += bias[r * bias_row_stride + c];
}

// y[n, c, p] += bias[n * bias_batch_stride + c]; stride 0 broadcasts one bias over the batch,
// stride C adds a per-sample vector (a time embedding). global size (P, C, N).
__kernel void add_channel_bias(__global float* y, __global const float* bias,
                               const int C, const int P, const int bias_batch_stride)
{
    const int p = get_global_id(0);
    const int c = get_global_id(1);
    const int n = get_global_id(2);
    if (p >= P || c >= C) return;
    y[((size_t)n * C + c) * P + p] += bias[n * bias_batch_stride + c];
}
