// Host math for CPU devices whose buffers the host maps zero-copy (see HostMath.c).
#pragma once

/// In-place softmax of `rows` contiguous rows of `cols` floats at `p` (single-threaded; callers
/// split rows over threads).
void flex_softmax_rows(float *p, long rows, long cols);

/// GroupNorm (torch.nn.GroupNorm, biased variance) with an optional SiLU over x [N, C, P] into y (y may
/// be x), for the (sample, group) pairs first ..< first + count (pair i = n * groups + g; single-threaded;
/// callers split the pairs over threads).
void flex_group_norm(const float *x, float *y, const float *gamma, const float *beta, long first, long count,
                     long groups, long channels_per_group, long spatial, float eps, int silu);

/// y[i] = (a[i] + b[i]) * scale for i < count (y may be a or b; single-threaded).
void flex_add_scale(const float *a, const float *b, float *y, long count, float scale);
