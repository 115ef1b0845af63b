// oneDNN convolutions, opened with dlopen so that the binary runs where libdnnl is absent (GPU
// machines); the declarations come from <oneapi/dnnl/dnnl.h> (Debian: libdnnl-dev).
#include "HostDNN.h"

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNNL_FUNCTIONS(X) \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_wait) X(dnnl_memory_desc_init_by_tag) \
    X(dnnl_convolution_forward_desc_init) X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_destroy) \
    X(dnnl_primitive_desc_query) X(dnnl_primitive_create) X(dnnl_primitive_destroy) \
    X(dnnl_memory_create) X(dnnl_memory_destroy) X(dnnl_primitive_execute)

#define DECLARE(name) static __typeof__(name) *p_##name;
DNNL_FUNCTIONS(DECLARE)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int available = 0;
static char error[512] = "";
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void open_library(void) {
    // oneDNN runs between OpenCL kernels on the same cores: its OpenMP threads should sleep when
    // idle instead of spinning against PoCL's workers (unless the user chose otherwise).
    setenv("OMP_WAIT_POLICY", "passive", 0);
    void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) { snprintf(error, sizeof error, "cannot open libdnnl.so.2 (Debian: apt-get install libdnnl2): %s", dlerror()); return; }
#define LOAD(name) \
    if (!(p_##name = (__typeof__(name) *)dlsym(h, #name))) { snprintf(error, sizeof error, "libdnnl.so.2 lacks %s", #name); return; }
    DNNL_FUNCTIONS(LOAD)
    if (p_dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) { snprintf(error, sizeof error, "dnnl_engine_create failed"); return; }
    if (p_dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) { snprintf(error, sizeof error, "dnnl_stream_create failed"); return; }
    available = 1;
}

int flex_dnnl_available(void) { pthread_once(&once, open_library); return available; }
const char *flex_dnnl_error(void) { return error; }

struct FlexConv {
    dnnl_primitive_t primitive;
    dnnl_memory_desc_t src, weights, bias, dst;
    int has_bias;
};

FlexConv *flex_conv_create(int n, int c, int h, int w, int o, int kh, int kw, int stride,
                           int pad_top, int pad_left, int pad_bottom, int pad_right, int has_bias,
                           char *impl, int impl_capacity) {
    if (!flex_dnnl_available()) return NULL;
    FlexConv *conv = calloc(1, sizeof *conv);
    if (!conv) return NULL;
    int oh = (h + pad_top + pad_bottom - kh) / stride + 1, ow = (w + pad_left + pad_right - kw) / stride + 1;
    dnnl_dims_t src = {n, c, h, w}, wei = {o, c, kh, kw}, bia = {o}, dst = {n, o, oh, ow};
    dnnl_dims_t strides = {stride, stride}, pl = {pad_top, pad_left}, pr = {pad_bottom, pad_right};
    dnnl_convolution_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    conv->has_bias = has_bias;
    if (p_dnnl_memory_desc_init_by_tag(&conv->src, 4, src, dnnl_f32, dnnl_nchw) != dnnl_success ||
        p_dnnl_memory_desc_init_by_tag(&conv->weights, 4, wei, dnnl_f32, dnnl_oihw) != dnnl_success ||
        p_dnnl_memory_desc_init_by_tag(&conv->bias, 1, bia, dnnl_f32, dnnl_x) != dnnl_success ||
        p_dnnl_memory_desc_init_by_tag(&conv->dst, 4, dst, dnnl_f32, dnnl_nchw) != dnnl_success ||
        p_dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, &conv->src,
                                             &conv->weights, has_bias ? &conv->bias : NULL, &conv->dst,
                                             strides, pl, pr) != dnnl_success ||
        p_dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL) != dnnl_success ||
        p_dnnl_primitive_create(&conv->primitive, pd) != dnnl_success) {
        snprintf(error, sizeof error, "oneDNN has no convolution for %dx%dx%dx%d -> %d, k%dx%d s%d", n, c, h, w, o, kh, kw, stride);
        if (pd) p_dnnl_primitive_desc_destroy(pd);
        free(conv);
        return NULL;
    }
    if (impl && impl_capacity > 0) {
        const char *name = NULL;
        p_dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
        snprintf(impl, impl_capacity, "%s", name ? name : "?");
    }
    p_dnnl_primitive_desc_destroy(pd);
    return conv;
}

int flex_conv_execute(FlexConv *conv, const float *x, const float *weight, const float *bias, float *y) {
    dnnl_memory_t m[4] = {NULL, NULL, NULL, NULL};
    int status = 1;
    if (p_dnnl_memory_create(&m[0], &conv->src, engine, (void *)x) == dnnl_success &&
        p_dnnl_memory_create(&m[1], &conv->weights, engine, (void *)weight) == dnnl_success &&
        (!conv->has_bias || p_dnnl_memory_create(&m[2], &conv->bias, engine, (void *)bias) == dnnl_success) &&
        p_dnnl_memory_create(&m[3], &conv->dst, engine, y) == dnnl_success) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, m[0]}, {DNNL_ARG_WEIGHTS, m[1]}, {DNNL_ARG_DST, m[3]}, {DNNL_ARG_BIAS, m[2]}};
        // One stream for the process: executions are serialised.
        pthread_mutex_lock(&lock);
        if (p_dnnl_primitive_execute(conv->primitive, stream, conv->has_bias ? 4 : 3, args) == dnnl_success &&
            p_dnnl_stream_wait(stream) == dnnl_success) status = 0;
        pthread_mutex_unlock(&lock);
    }
    for (int i = 0; i < 4; i++) if (m[i]) p_dnnl_memory_destroy(m[i]);
    if (status) snprintf(error, sizeof error, "oneDNN convolution failed");
    return status;
}

void flex_conv_destroy(FlexConv *conv) {
    if (!conv) return;
    if (conv->primitive) p_dnnl_primitive_destroy(conv->primitive);
    free(conv);
}
