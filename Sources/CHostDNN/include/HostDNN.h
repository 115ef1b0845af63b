// Convolutions on the host through oneDNN (libdnnl.so.3 or .so.2, opened at run time): the convolution path
// for CPU OpenCL devices, whose buffers are host memory.
#ifndef FLEXIFFUSION_HOST_DNN_H
#define FLEXIFFUSION_HOST_DNN_H

typedef struct FlexConv FlexConv;

/// Opens libdnnl once: `library` (a path or a library name, version 2 or 3) when not NULL, else the
/// defaults below; 1 when usable, else 0 and `flex_dnnl_error()` says why. Later calls return the
/// first's result, whatever they ask.
int flex_dnnl_open(const char *library);
/// flex_dnnl_open(NULL): the library opened, or the defaults when none was asked for yet.
int flex_dnnl_available(void);
const char *flex_dnnl_error(void);

/// The major version of the oneDNN opened (2 or 3; 0 when none) and its library's name or path.
/// The library asked for when one was; else oneDNN 3 first,
/// libdnnl.so.3 on the loader's path or in /usr/local/lib, then Debian 12's libdnnl.so.2.
int flex_dnnl_version(void);
const char *flex_dnnl_library(void);

/// The layout oneDNN's convolutions prefer for activations here: its channel block (8 or 16) for
/// nChw8c / nChw16c (oneDNN 2 on AVX2 / AVX-512), -1 for NHWC (oneDNN 3's brgemm kernels), 0 for
/// anything else or when oneDNN is missing.
int flex_dnnl_preferred_block(void);

/// A forward-inference convolution of f32 tensors with OIHW weights and explicit padding. The caller's
/// input and output are NCHW (`src_block`/`dst_block` 0), nChw8c / nChw16c (8, 16) or NHWC (-1).
/// `blocked`: the convolution runs in the layouts oneDNN prefers (e.g. nChw16c), the input and output
/// reordered around it where the caller's differ; else on NCHW. Returns NULL on failure (see
/// flex_dnnl_error()). `impl` receives oneDNN's implementation name. `bf16`: the input and weights are
/// rounded to bfloat16 (by the reorders into the convolution's layouts) and the products accumulated
/// in f32, the output f32; else f32 throughout.
#include <stddef.h>
FlexConv *flex_conv_create(int n, int c, int h, int w, int o, int kh, int kw, int stride,
                           int pad_top, int pad_left, int pad_bottom, int pad_right, int has_bias,
                           int src_block, int dst_block, int blocked, int bf16, char *impl, int impl_capacity);

/// Bytes of the weights in the convolution's own layout; 0 when it takes OIHW as given.
size_t flex_conv_weights_bytes(const FlexConv *conv);

/// Reorders OIHW `weight` into `out` (flex_conv_weights_bytes(conv) bytes) in the convolution's
/// layout; 0 on success (nothing to do when that size is 0).
int flex_conv_prepare_weights(FlexConv *conv, const float *weight, void *out);

/// Runs the convolution on host pointers, the weights in the convolution's layout (the OIHW weights
/// themselves when flex_conv_weights_bytes is 0); 0 on success.
int flex_conv_execute(FlexConv *conv, const float *x, const void *weight, const float *bias, float *y);

void flex_conv_destroy(FlexConv *conv);

/// Matrix products C[b] = A[b] · B[b] (b < batch) of bf16 A (m × k) and B (k × n), each stored dense
/// and row-major as it is or, with `trans_a` / `trans_b`, as its transpose (k × m, n × k),
/// accumulated and written in f32 into C, whose rows are `c_ld` floats apart and batches `c_stride`;
/// with `shared_a` / `shared_b` one matrix serves every batch. 0 from flex_matmul_available when the library has none (a build with convolutions and
/// reorders only); NULL from create on failure (see flex_dnnl_error()).
#include <stdint.h>
typedef struct FlexMatmul FlexMatmul;
int flex_matmul_available(void);
FlexMatmul *flex_matmul_create(int batch, int m, int n, int k, int shared_a, int shared_b, int trans_a, int trans_b,
                               long c_ld, long c_stride, char *impl, int impl_capacity);
int flex_matmul_execute(FlexMatmul *mm, const uint16_t *a, const uint16_t *b, float *c);
void flex_matmul_destroy(FlexMatmul *mm);

/// out (rows × cols, dense) = bf16(scale · x), x row-major with leading dimension `ld`; rounded to
/// nearest, ties to even (single-threaded).
void flex_pack_bf16(const float *x, long rows, long cols, long ld, float scale, uint16_t *out);

/// Whether this CPU computes bfloat16 products natively (AVX-512 BF16 or AMX-BF16, with the OS
/// saving their state), where oneDNN's bf16 convolutions run at about twice the f32 rate.
int flex_cpu_has_bf16(void);

#endif
