// Convolutions on the host through oneDNN (libdnnl.so.2, opened at run time): the convolution path
// for CPU OpenCL devices, whose buffers are host memory.
#ifndef FLEXIFFUSION_HOST_DNN_H
#define FLEXIFFUSION_HOST_DNN_H

typedef struct FlexConv FlexConv;

/// Opens libdnnl once; 1 when usable, else 0 and `flex_dnnl_error()` says why.
int flex_dnnl_available(void);
const char *flex_dnnl_error(void);

/// A forward-inference convolution of NCHW f32 tensors with OIHW weights and explicit padding.
/// Returns NULL on failure (see flex_dnnl_error()). `impl` receives oneDNN's implementation name.
FlexConv *flex_conv_create(int n, int c, int h, int w, int o, int kh, int kw, int stride,
                           int pad_top, int pad_left, int pad_bottom, int pad_right, int has_bias,
                           char *impl, int impl_capacity);

/// Runs the convolution on host pointers; 0 on success.
int flex_conv_execute(FlexConv *conv, const float *x, const float *weight, const float *bias, float *y);

void flex_conv_destroy(FlexConv *conv);

#endif
