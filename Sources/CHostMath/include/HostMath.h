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

/// y[(n, c, p)] = bias[n * batch_stride + c] (add: +=) for the (n, c) rows first ..< first + count of
/// y [N, C, P] (row r = n * channels + c; single-threaded).
void flex_channel_bias(float *y, const float *bias, long first, long count, long channels, long spatial, long batch_stride, int add);

/// Nearest-neighbour 2x upsampling of the planes first ..< first + count of x [planes, H, W] into
/// y [planes, 2H, 2W] (single-threaded).
void flex_upsample_nearest2x(const float *x, float *y, long first, long count, long height, long width);

// oneDNN's layouts nChw{B}c for B = 8 or 16, x [N, C/B, P, B] with C a multiple of B, and NHWC
// [N, P, C], which the functions below take as nChw{C}c (B = C, a multiple of 8). See ActivationLayout.

/// GroupNorm (+ SiLU) over blocked x into y (y may be x), for the units first ..< first + count, a unit
/// being `unit` = lcm(channels_per_group, B) channels of one sample (unit i = n * (channels / unit) + u);
/// `work` holds 3 * unit doubles (single-threaded).
void flex_group_norm_blocked(const float *x, float *y, const float *gamma, const float *beta, long first, long count,
                             long channels, long channels_per_group, long unit, long spatial, long block, float eps, int silu,
                             double *work);

/// flex_channel_bias's add over blocked y, for the (n, channel block) rows first ..< first + count (row r = n * (C / B) + block).
void flex_add_channel_bias_blocked(float *y, const float *bias, long first, long count, long channels, long spatial, long block,
                                   long batch_stride);

/// Nearest-neighbour 2x upsampling of blocked planes [H, W, B] first ..< first + count into [2H, 2W, B].
void flex_upsample_nearest2x_blocked(const float *x, float *y, long first, long count, long height, long width, long block);

/// NCHW planes [B, P] to blocked [P, B] (to_blocked), or back, for planes first ..< first + count
/// (plane i = n * (C / B) + channel block; x and y distinct).
void flex_reorder_blocked(const float *x, float *y, long first, long count, long spatial, long block, int to_blocked);

/// torch.cat along channels in NHWC: the positions first ..< first + count (over all samples) of
/// a [.., CA] and b [.., CB] into y [.., CA + CB].
void flex_concat_nhwc(const float *a, const float *b, float *y, long first, long count, long channels_a, long channels_b);
