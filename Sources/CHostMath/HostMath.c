// Row softmax and GroupNorm (+ SiLU) on the host, for CPU devices whose GEMMs already run on the host
// (the host-blas path maps buffers zero-copy): PoCL's work-group softmax spent ~7 ns per element on
// the 64×64 self-attention of Stable Diffusion's UNet, a third of the whole forward pass, and its two
// GroupNorm kernels a fifth of the cifar UNet's. Written with
// clang's vector extensions (8 floats; SSE2 pairs on the x86-64 baseline, AVX where enabled) and
// built at -O3 in every configuration: Swift's SIMD types are orders of magnitude slower in debug
// builds, which the tests use, and plain loops do not vectorise their float reductions.
#include "HostMath.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

__attribute__((always_inline)) static inline v8f splat(float v) { return (v8f){v, v, v, v, v, v, v, v}; }
__attribute__((always_inline)) static inline v8f load8(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
__attribute__((always_inline)) static inline void store8(float *p, v8f v) { memcpy(p, &v, sizeof v); }

// exp(x) for x <= 88: Cephes' expf (range reduction by ln 2, degree-5 polynomial, within 2 ulp on
// [-87, 88]); below -87.3 it gives ~1e-38 instead of 0.
__attribute__((always_inline)) static inline v8f exp8(v8f x) {
    x = __builtin_elementwise_min(__builtin_elementwise_max(x, splat(-87.3f)), splat(88.3f));
    // Round to nearest by adding and removing 1.5·2^23 (|x·log2 e| < 2^22 here).
    const v8f n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    v8f r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    v8f p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const v8f e = p * (r * r) + r + 1.0f;
    const v8i bits = (__builtin_convertvector(n, v8i) + 127) << 23;
    return e * (v8f)bits;
}

__attribute__((always_inline)) static inline float exp1(float x) {
    return exp8(splat(x))[0];
}

__attribute__((always_inline)) static inline void softmax_row(float *r, long n) {
    const long full = n / 8 * 8;
    v8f m8 = splat(-INFINITY);
    for (long j = 0; j < full; j += 8) m8 = __builtin_elementwise_max(m8, load8(r + j));
    float m = -INFINITY;
    for (int k = 0; k < 8; k++) m = m8[k] > m ? m8[k] : m;
    for (long j = full; j < n; j++) m = r[j] > m ? r[j] : m;
    v8f s8 = splat(0.0f);
    const v8f mv = splat(m);
    for (long j = 0; j < full; j += 8) {
        const v8f e = exp8(load8(r + j) - mv);
        store8(r + j, e);
        s8 += e;
    }
    float s = 0.0f;
    for (int k = 0; k < 8; k++) s += s8[k];
    for (long j = full; j < n; j++) {
        const float e = exp1(r[j] - m);
        r[j] = e;
        s += e;
    }
    const float inv = 1.0f / s;
    const v8f iv = splat(inv);
    for (long j = 0; j < full; j += 8) store8(r + j, load8(r + j) * iv);
    for (long j = full; j < n; j++) r[j] *= inv;
}

// On x86-64, a copy for AVX2 + FMA machines besides the baseline one, chosen when the program loads.
#if defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void flex_softmax_rows(float *p, long rows, long cols) {
    for (long i = 0; i < rows; i++) softmax_row(p + i * cols, cols);
}

// GroupNorm of one (sample, group): x and y point at the group's first channel, `channels` channels of
// `spatial` values each (contiguous). Two passes in double (mean, then centred variance), then
// y = x * scale + shift per channel (scale = gamma * rstd, shift = beta - mean * scale), and SiLU
// (y * sigmoid(y)) when `silu`. y may be x.
__attribute__((always_inline)) static inline void group_norm_one(const float *x, float *y, const float *gamma, const float *beta,
                                                                long channels, long spatial, float eps, int silu) {
    const long n = channels * spatial, full = n / 8 * 8;
    v8f s8 = splat(0.0f);
    double s = 0.0;
    for (long j = 0; j < full; j += 8) {
        s8 += load8(x + j);
        if ((j & 1023) == 1016) { for (int k = 0; k < 8; k++) s += s8[k]; s8 = splat(0.0f); }
    }
    for (int k = 0; k < 8; k++) s += s8[k];
    for (long j = full; j < n; j++) s += x[j];
    const double mean = s / (double)n;
    const v8f mv = splat((float)mean);
    double q = 0.0;
    v8f q8 = splat(0.0f);
    for (long j = 0; j < full; j += 8) {
        const v8f d = load8(x + j) - mv;
        q8 += d * d;
        if ((j & 1023) == 1016) { for (int k = 0; k < 8; k++) q += q8[k]; q8 = splat(0.0f); }
    }
    for (int k = 0; k < 8; k++) q += q8[k];
    for (long j = full; j < n; j++) { const double d = x[j] - mean; q += d * d; }
    const float rstd = (float)(1.0 / sqrt(q / (double)n + eps));
    const long pf = spatial / 8 * 8;
    for (long c = 0; c < channels; c++) {
        const float scale = gamma[c] * rstd, shift = beta[c] - (float)mean * scale;
        const v8f a = splat(scale), b = splat(shift);
        const float *xc = x + c * spatial;
        float *yc = y + c * spatial;
        for (long j = 0; j < pf; j += 8) {
            v8f v = load8(xc + j) * a + b;
            if (silu) v = v / (1.0f + exp8(-v));
            store8(yc + j, v);
        }
        for (long j = pf; j < spatial; j++) {
            float v = xc[j] * scale + shift;
            if (silu) v = v / (1.0f + exp1(-v));
            yc[j] = v;
        }
    }
}

#if defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void flex_group_norm(const float *x, float *y, const float *gamma, const float *beta, long first, long count,
                     long groups, long channels_per_group, long spatial, float eps, int silu) {
    for (long i = first; i < first + count; i++) {
        const long g = i % groups, offset = i * channels_per_group * spatial;
        group_norm_one(x + offset, y + offset, gamma + g * channels_per_group, beta + g * channels_per_group,
                       channels_per_group, spatial, eps, silu);
    }
}

__attribute__((always_inline)) static inline void add_scale(const float *a, const float *b, float *y, long count, float scale) {
    const long full = count / 8 * 8;
    const v8f sv = splat(scale);
    for (long i = 0; i < full; i += 8) store8(y + i, (load8(a + i) + load8(b + i)) * sv);
    for (long i = full; i < count; i++) y[i] = (a[i] + b[i]) * scale;
}

#if defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void flex_add_scale(const float *a, const float *b, float *y, long count, float scale) {
    add_scale(a, b, y, count, scale);
}

__attribute__((always_inline)) static inline void channel_bias(float *y, const float *bias, long first, long count, long channels,
                                                               long spatial, long batch_stride, int add) {
    for (long r = first; r < first + count; r++) {
        const float b = bias[(r / channels) * batch_stride + r % channels];
        const v8f bv = splat(b);
        float *row = y + r * spatial;
        const long full = spatial / 8 * 8;
        if (add) {
            for (long p = 0; p < full; p += 8) store8(row + p, load8(row + p) + bv);
            for (long p = full; p < spatial; p++) row[p] += b;
        } else {
            for (long p = 0; p < full; p += 8) store8(row + p, bv);
            for (long p = full; p < spatial; p++) row[p] = b;
        }
    }
}

#if defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void flex_channel_bias(float *y, const float *bias, long first, long count, long channels, long spatial, long batch_stride, int add) {
    channel_bias(y, bias, first, count, channels, spatial, batch_stride, add);
}

void flex_upsample_nearest2x(const float *x, float *y, long first, long count, long height, long width) {
    for (long plane = first; plane < first + count; plane++) {
        const float *src = x + plane * height * width;
        float *dst = y + plane * 4 * height * width;
        for (long i = 0; i < height; i++) {
            float *r0 = dst + 2 * i * 2 * width;
            for (long j = 0; j < width; j++) r0[2 * j] = r0[2 * j + 1] = src[i * width + j];
            memcpy(r0 + 2 * width, r0, 2 * width * sizeof(float));
        }
    }
}

// MARK: oneDNN's layouts nChw{B}c (B = 8 or 16: [N][C/B][P][B], the channels of one block
// interleaved at every position) and NHWC ([N][P][C], which is nChw{C}c: one block of all channels).
// CPU convolutions read and write them without reorders, so a UNet keeps its activations in one of
// them between convolutions (see ActivationLayout). B is a multiple of 8 (the vectors' lanes).

// GroupNorm over the unit of `unit` channels (whole groups and whole blocks: lcm(channels per group,
// B), or all channels in NHWC) of one sample at x and y: at position j, its 8-channel chunk k is at
// (8k / B) * P * B + 8k % B + j * B. As group_norm_one: two passes in double per group (mean, then
// the centred variance), accumulated per channel in float vectors flushed to double every 128
// positions, then y = x * scale + shift per channel, SiLU when `silu`. `work` holds 3 * unit doubles.
__attribute__((always_inline)) static inline void group_norm_unit_blocked(const float *x, float *y, const float *gamma, const float *beta,
                                                                         long unit, long cpg, long spatial, long block, float eps, int silu,
                                                                         double *work) {
    double *sum = work, *mean = work + unit;
    float *acc = (float *)(work + 2 * unit);
    const long chunks = unit / 8;
#define CHUNK(k) (((8 * (k)) / block) * spatial * block + (8 * (k)) % block)
    // Blocks of [P][B] are contiguous: one chunk at a time, its sums in a register. Where the unit is
    // one block (NHWC), positions outermost instead, all chunks' sums in memory.
    const int by_chunk = block < unit;
    for (long c = 0; c < unit; c++) { sum[c] = 0.0; acc[c] = 0.0f; }
    if (by_chunk) {
        for (long k = 0; k < chunks; k++) {
            v8f s8 = splat(0.0f);
            for (long j = 0; j < spatial; j++) {
                s8 += load8(x + CHUNK(k) + j * block);
                if ((j & 127) == 127 || j == spatial - 1) {
                    for (int l = 0; l < 8; l++) sum[8 * k + l] += s8[l];
                    s8 = splat(0.0f);
                }
            }
        }
    } else {
        for (long j = 0; j < spatial; j++) {
            for (long k = 0; k < chunks; k++) store8(acc + 8 * k, load8(acc + 8 * k) + load8(x + CHUNK(k) + j * block));
            if ((j & 127) == 127 || j == spatial - 1) {
                for (long c = 0; c < unit; c++) { sum[c] += acc[c]; acc[c] = 0.0f; }
            }
        }
    }
    const double n = (double)(cpg * spatial);
    for (long g = 0; g < unit / cpg; g++) {
        double s = 0.0;
        for (long c = g * cpg; c < (g + 1) * cpg; c++) s += sum[c];
        for (long c = g * cpg; c < (g + 1) * cpg; c++) mean[c] = s / n;
    }
    // acc holds the means in float while the centred squares accumulate in sum.
    float *m = acc, *q = acc + unit;
    for (long c = 0; c < unit; c++) { sum[c] = 0.0; m[c] = (float)mean[c]; q[c] = 0.0f; }
    if (by_chunk) {
        for (long k = 0; k < chunks; k++) {
            const v8f m8 = load8(m + 8 * k);
            v8f q8 = splat(0.0f);
            for (long j = 0; j < spatial; j++) {
                const v8f d = load8(x + CHUNK(k) + j * block) - m8;
                q8 += d * d;
                if ((j & 127) == 127 || j == spatial - 1) {
                    for (int l = 0; l < 8; l++) sum[8 * k + l] += q8[l];
                    q8 = splat(0.0f);
                }
            }
        }
    } else {
        for (long j = 0; j < spatial; j++) {
            for (long k = 0; k < chunks; k++) {
                const v8f d = load8(x + CHUNK(k) + j * block) - load8(m + 8 * k);
                store8(q + 8 * k, load8(q + 8 * k) + d * d);
            }
            if ((j & 127) == 127 || j == spatial - 1) {
                for (long c = 0; c < unit; c++) { sum[c] += q[c]; q[c] = 0.0f; }
            }
        }
    }
    // Per channel: scale in m, shift in q.
    for (long g = 0; g < unit / cpg; g++) {
        double qs = 0.0;
        for (long c = g * cpg; c < (g + 1) * cpg; c++) qs += sum[c];
        const float rstd = (float)(1.0 / sqrt(qs / n + eps));
        for (long c = g * cpg; c < (g + 1) * cpg; c++) {
            const float scale = gamma[c] * rstd;
            m[c] = scale;
            q[c] = beta[c] - (float)mean[c] * scale;
        }
    }
    if (by_chunk) {
        for (long k = 0; k < chunks; k++) {
            const v8f a = load8(m + 8 * k), b = load8(q + 8 * k);
            for (long j = 0; j < spatial; j++) {
                v8f v = load8(x + CHUNK(k) + j * block) * a + b;
                if (silu) v = v / (1.0f + exp8(-v));
                store8(y + CHUNK(k) + j * block, v);
            }
        }
    } else {
        for (long j = 0; j < spatial; j++) {
            for (long k = 0; k < chunks; k++) {
                v8f v = load8(x + CHUNK(k) + j * block) * load8(m + 8 * k) + load8(q + 8 * k);
                if (silu) v = v / (1.0f + exp8(-v));
                store8(y + CHUNK(k) + j * block, v);
            }
        }
    }
#undef CHUNK
}

#if defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void flex_group_norm_blocked(const float *x, float *y, const float *gamma, const float *beta, long first, long count,
                             long channels, long channels_per_group, long unit, long spatial, long block, float eps, int silu,
                             double *work) {
    const long units = channels / unit;
    for (long i = first; i < first + count; i++) {
        // Units start at channel c0 = u * unit: in nChw{B}c at block c0 / B (unit is a multiple of
        // B); in NHWC (B = channels) there is one unit per sample.
        const long offset = (i / units) * channels * spatial + (i % units) * unit * spatial, c0 = (i % units) * unit;
        group_norm_unit_blocked(x + offset, y + offset, gamma + c0, beta + c0, unit, channels_per_group, spatial, block, eps, silu, work);
    }
}

__attribute__((always_inline)) static inline void channel_bias_blocked(float *y, const float *bias, long first, long count, long channels,
                                                                       long spatial, long block, long batch_stride) {
    const long blocks = channels / block, lanes = block / 8;
    for (long r = first; r < first + count; r++) {
        const float *b = bias + (r / blocks) * batch_stride + (r % blocks) * block;
        float *row = y + r * spatial * block;
        for (long p = 0; p < spatial; p++) {
            for (long l = 0; l < lanes; l++) {
                float *q = row + p * block + l * 8;
                store8(q, load8(q) + load8(b + l * 8));
            }
        }
    }
}

#if defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void flex_add_channel_bias_blocked(float *y, const float *bias, long first, long count, long channels, long spatial, long block,
                                   long batch_stride) {
    channel_bias_blocked(y, bias, first, count, channels, spatial, block, batch_stride);
}

void flex_upsample_nearest2x_blocked(const float *x, float *y, long first, long count, long height, long width, long block) {
    const size_t bytes = (size_t)block * sizeof(float);
    for (long plane = first; plane < first + count; plane++) {
        const float *src = x + plane * height * width * block;
        float *dst = y + plane * 4 * height * width * block;
        for (long i = 0; i < height; i++) {
            float *r0 = dst + 2 * i * 2 * width * block;
            for (long j = 0; j < width; j++) {
                memcpy(r0 + 2 * j * block, src + (i * width + j) * block, bytes);
                memcpy(r0 + (2 * j + 1) * block, src + (i * width + j) * block, bytes);
            }
            memcpy(r0 + 2 * width * block, r0, 2 * width * bytes);
        }
    }
}

void flex_reorder_blocked(const float *x, float *y, long first, long count, long spatial, long block, int to_blocked) {
    for (long plane = first; plane < first + count; plane++) {
        const float *src = x + plane * spatial * block;
        float *dst = y + plane * spatial * block;
        if (to_blocked) {
            for (long c = 0; c < block; c++) for (long p = 0; p < spatial; p++) dst[p * block + c] = src[c * spatial + p];
        } else {
            for (long c = 0; c < block; c++) for (long p = 0; p < spatial; p++) dst[c * spatial + p] = src[p * block + c];
        }
    }
}

void flex_concat_nhwc(const float *a, const float *b, float *y, long first, long count, long channels_a, long channels_b) {
    const size_t ba = (size_t)channels_a * sizeof(float), bb = (size_t)channels_b * sizeof(float);
    for (long i = first; i < first + count; i++) {
        memcpy(y + i * (channels_a + channels_b), a + i * channels_a, ba);
        memcpy(y + i * (channels_a + channels_b) + channels_a, b + i * channels_b, bb);
    }
}
