// Convolutions on the host through oneDNN (libdnnl.so.2, opened at run time): the convolution path
// for CPU OpenCL devices, whose buffers are host memory.
#ifndef FLEXIFFUSION_HOST_DNN_H
#define FLEXIFFUSION_HOST_DNN_H

typedef struct FlexConv FlexConv;

/// Opens libdnnl once; 1 when usable, else 0 and `flex_dnnl_error()` says why.
int flex_dnnl_available(void);
const char *flex_dnnl_error(void);

/// The channel block (8 or 16) of the layout oneDNN's convolutions prefer for activations here
/// (nChw8c on AVX2, nChw16c on AVX-512), 0 when it is not such a layout or oneDNN is missing.
int flex_dnnl_preferred_block(void);

/// A forward-inference convolution of f32 tensors with OIHW weights and explicit padding. The caller's
/// input and output are NCHW (`src_block`/`dst_block` 0) or nChw8c / nChw16c (8, 16).
/// `blocked`: the convolution runs in the layouts oneDNN prefers (e.g. nChw16c), the input and output
/// reordered around it where the caller's differ; else on NCHW. Returns NULL on failure (see
/// flex_dnnl_error()). `impl` receives oneDNN's implementation name.
#include <stddef.h>
FlexConv *flex_conv_create(int n, int c, int h, int w, int o, int kh, int kw, int stride,
                           int pad_top, int pad_left, int pad_bottom, int pad_right, int has_bias,
                           int src_block, int dst_block, int blocked, char *impl, int impl_capacity);

/// Bytes of the weights in the convolution's own layout; 0 when it takes OIHW as given.
size_t flex_conv_weights_bytes(const FlexConv *conv);

/// Reorders OIHW `weight` into `out` (flex_conv_weights_bytes(conv) bytes) in the convolution's
/// layout; 0 on success (nothing to do when that size is 0).
int flex_conv_prepare_weights(FlexConv *conv, const float *weight, void *out);

/// Runs the convolution on host pointers, the weights in the convolution's layout (the OIHW weights
/// themselves when flex_conv_weights_bytes is 0); 0 on success.
int flex_conv_execute(FlexConv *conv, const float *x, const void *weight, const float *bias, float *y);

void flex_conv_destroy(FlexConv *conv);

#endif
