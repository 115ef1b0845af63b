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
    X(dnnl_memory_create) X(dnnl_memory_destroy) X(dnnl_primitive_execute) \
    X(dnnl_primitive_desc_query_md) X(dnnl_memory_desc_equal) X(dnnl_memory_desc_get_size) \
    X(dnnl_reorder_primitive_desc_create)

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
    // The caller's layouts (NCHW or nChw{8,16}c activations, OIHW weights), and the ones the convolution chose (blocked, e.g.
    // nChw16c, where that is faster); a reorder primitive between them where they differ.
    dnnl_memory_desc_t src, weights, bias, dst;
    dnnl_memory_desc_t conv_src, conv_weights, conv_dst;
    dnnl_primitive_t src_reorder, weights_reorder, dst_reorder;
    void *src_buffer, *dst_buffer;
    size_t weights_bytes;
    int has_bias;
};

/// A reorder primitive from `from` to `to` into *out (NULL where they are equal); 0 on success.
static int make_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, dnnl_primitive_t *out) {
    *out = NULL;
    if (p_dnnl_memory_desc_equal(from, to)) return 0;
    dnnl_primitive_desc_t pd = NULL;
    if (p_dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, NULL) != dnnl_success) return 1;
    int failed = p_dnnl_primitive_create(out, pd) != dnnl_success;
    p_dnnl_primitive_desc_destroy(pd);
    return failed;
}

void flex_conv_destroy(FlexConv *conv) {
    if (!conv) return;
    if (conv->primitive) p_dnnl_primitive_destroy(conv->primitive);
    if (conv->src_reorder) p_dnnl_primitive_destroy(conv->src_reorder);
    if (conv->weights_reorder) p_dnnl_primitive_destroy(conv->weights_reorder);
    if (conv->dst_reorder) p_dnnl_primitive_destroy(conv->dst_reorder);
    free(conv->src_buffer);
    free(conv->dst_buffer);
    free(conv);
}

/// The caller's layout of an activation: NCHW (block 0 or 1) or nChw8c / nChw16c.
static int activation_tag(int block, dnnl_format_tag_t *tag) {
    switch (block) {
    case 0: case 1: *tag = dnnl_nchw; return 0;
    case 8: *tag = dnnl_nChw8c; return 0;
    case 16: *tag = dnnl_nChw16c; return 0;
    default: snprintf(error, sizeof error, "no activation layout with channel blocks of %d", block); return 1;
    }
}

int flex_dnnl_preferred_block(void) {
    if (!flex_dnnl_available()) return 0;
    // A typical UNet convolution (64 -> 64 channels, 3x3, 16x16) in the layouts oneDNN picks.
    dnnl_dims_t src = {2, 64, 16, 16}, wei = {64, 64, 3, 3}, strides = {1, 1}, pad = {1, 1};
    dnnl_memory_desc_t s, w, d;
    dnnl_convolution_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    int block = 0;
    if (p_dnnl_memory_desc_init_by_tag(&s, 4, src, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
        p_dnnl_memory_desc_init_by_tag(&w, 4, wei, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
        p_dnnl_memory_desc_init_by_tag(&d, 4, src, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
        p_dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, &s, &w, NULL, &d,
                                             strides, pad, pad) == dnnl_success &&
        p_dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL) == dnnl_success) {
        const dnnl_memory_desc_t *md = p_dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
        if (md->format_kind == dnnl_blocked && b->inner_nblks == 1 && b->inner_idxs[0] == 1 &&
            (b->inner_blks[0] == 8 || b->inner_blks[0] == 16) && b->strides[0] >= b->strides[1] &&
            b->strides[1] >= b->strides[2] && b->strides[2] >= b->strides[3])
            block = (int)b->inner_blks[0];
    }
    if (pd) p_dnnl_primitive_desc_destroy(pd);
    return block;
}

FlexConv *flex_conv_create(int n, int c, int h, int w, int o, int kh, int kw, int stride,
                           int pad_top, int pad_left, int pad_bottom, int pad_right, int has_bias,
                           int src_block, int dst_block, int blocked, char *impl, int impl_capacity) {
    if (!flex_dnnl_available()) return NULL;
    dnnl_format_tag_t src_tag, dst_tag;
    if (activation_tag(src_block, &src_tag) || activation_tag(dst_block, &dst_tag)) return NULL;
    FlexConv *conv = calloc(1, sizeof *conv);
    if (!conv) return NULL;
    int oh = (h + pad_top + pad_bottom - kh) / stride + 1, ow = (w + pad_left + pad_right - kw) / stride + 1;
    dnnl_dims_t src = {n, c, h, w}, wei = {o, c, kh, kw}, bia = {o}, dst = {n, o, oh, ow};
    dnnl_dims_t strides = {stride, stride}, pl = {pad_top, pad_left}, pr = {pad_bottom, pad_right};
    dnnl_convolution_desc_t desc;
    dnnl_memory_desc_t any_src, any_weights, any_dst;
    dnnl_format_tag_t layout = blocked ? dnnl_format_tag_any : dnnl_nchw;
    dnnl_primitive_desc_t pd = NULL;
    conv->has_bias = has_bias;
    if (p_dnnl_memory_desc_init_by_tag(&conv->src, 4, src, dnnl_f32, src_tag) != dnnl_success ||
        p_dnnl_memory_desc_init_by_tag(&conv->weights, 4, wei, dnnl_f32, dnnl_oihw) != dnnl_success ||
        p_dnnl_memory_desc_init_by_tag(&conv->bias, 1, bia, dnnl_f32, dnnl_x) != dnnl_success ||
        p_dnnl_memory_desc_init_by_tag(&conv->dst, 4, dst, dnnl_f32, dst_tag) != dnnl_success ||
        p_dnnl_memory_desc_init_by_tag(&any_src, 4, src, dnnl_f32, layout) != dnnl_success ||
        p_dnnl_memory_desc_init_by_tag(&any_weights, 4, wei, dnnl_f32, blocked ? dnnl_format_tag_any : dnnl_oihw) != dnnl_success ||
        p_dnnl_memory_desc_init_by_tag(&any_dst, 4, dst, dnnl_f32, layout) != dnnl_success ||
        p_dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, &any_src,
                                             &any_weights, has_bias ? &conv->bias : NULL, &any_dst,
                                             strides, pl, pr) != dnnl_success ||
        p_dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL) != dnnl_success ||
        p_dnnl_primitive_create(&conv->primitive, pd) != dnnl_success) {
        snprintf(error, sizeof error, "oneDNN has no convolution for %dx%dx%dx%d -> %d, k%dx%d s%d", n, c, h, w, o, kh, kw, stride);
        if (pd) p_dnnl_primitive_desc_destroy(pd);
        flex_conv_destroy(conv);
        // (Where no blocked implementation takes the shape, e.g. tensors past 2^31 elements, the plain one may.)
        return blocked ? flex_conv_create(n, c, h, w, o, kh, kw, stride, pad_top, pad_left, pad_bottom, pad_right, has_bias,
                                          src_block, dst_block, 0, impl, impl_capacity) : NULL;
    }
    conv->conv_src = *p_dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    conv->conv_weights = *p_dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    conv->conv_dst = *p_dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if (impl && impl_capacity > 0) {
        const char *name = NULL;
        p_dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
        snprintf(impl, impl_capacity, "%s", name ? name : "?");
    }
    p_dnnl_primitive_desc_destroy(pd);
    if (make_reorder(&conv->src, &conv->conv_src, &conv->src_reorder) ||
        make_reorder(&conv->weights, &conv->conv_weights, &conv->weights_reorder) ||
        make_reorder(&conv->conv_dst, &conv->dst, &conv->dst_reorder)) {
        snprintf(error, sizeof error, "oneDNN cannot reorder to the layouts of its convolution for %dx%dx%dx%d -> %d", n, c, h, w, o);
        flex_conv_destroy(conv);
        return NULL;
    }
    conv->weights_bytes = conv->weights_reorder ? p_dnnl_memory_desc_get_size(&conv->conv_weights) : 0;
    return conv;
}

size_t flex_conv_weights_bytes(const FlexConv *conv) { return conv->weights_bytes; }

/// Runs `primitive` with the given arguments on the process's stream; 0 on success.
static int run(dnnl_primitive_t primitive, int count, const dnnl_exec_arg_t *args) {
    return !(p_dnnl_primitive_execute(primitive, stream, count, args) == dnnl_success && p_dnnl_stream_wait(stream) == dnnl_success);
}

int flex_conv_prepare_weights(FlexConv *conv, const float *weight, void *out) {
    if (!conv->weights_reorder) return 0;
    dnnl_memory_t from = NULL, to = NULL;
    int status = 1;
    if (p_dnnl_memory_create(&from, &conv->weights, engine, (void *)weight) == dnnl_success &&
        p_dnnl_memory_create(&to, &conv->conv_weights, engine, out) == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        pthread_mutex_lock(&lock);
        status = run(conv->weights_reorder, 2, args);
        pthread_mutex_unlock(&lock);
    }
    if (from) p_dnnl_memory_destroy(from);
    if (to) p_dnnl_memory_destroy(to);
    if (status) snprintf(error, sizeof error, "oneDNN weight reorder failed");
    return status;
}

int flex_conv_execute(FlexConv *conv, const float *x, const void *weight, const float *bias, float *y) {
    // m: the caller's src, weights (already in the convolution's layout), bias, dst; the blocked src and dst.
    dnnl_memory_t m[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    int status = 1;
    // (The blocked copies of the input and output are allocated at the first run, not when the
    // primitive is made: a model's size checks come first.)
    size_t src_bytes = p_dnnl_memory_desc_get_size(&conv->conv_src), dst_bytes = p_dnnl_memory_desc_get_size(&conv->conv_dst);
    if ((conv->src_reorder && !conv->src_buffer && !(conv->src_buffer = malloc(src_bytes))) ||
        (conv->dst_reorder && !conv->dst_buffer && !(conv->dst_buffer = malloc(dst_bytes)))) {
        snprintf(error, sizeof error, "cannot allocate %zu bytes for oneDNN's blocked input and output", src_bytes + dst_bytes);
        return 1;
    }
    if (p_dnnl_memory_create(&m[0], &conv->src, engine, (void *)x) == dnnl_success &&
        p_dnnl_memory_create(&m[1], &conv->conv_weights, engine, (void *)weight) == dnnl_success &&
        (!conv->has_bias || p_dnnl_memory_create(&m[2], &conv->bias, engine, (void *)bias) == dnnl_success) &&
        p_dnnl_memory_create(&m[3], &conv->dst, engine, y) == dnnl_success &&
        (!conv->src_reorder || p_dnnl_memory_create(&m[4], &conv->conv_src, engine, conv->src_buffer) == dnnl_success) &&
        (!conv->dst_reorder || p_dnnl_memory_create(&m[5], &conv->conv_dst, engine, conv->dst_buffer) == dnnl_success)) {
        dnnl_memory_t src = conv->src_reorder ? m[4] : m[0], dst = conv->dst_reorder ? m[5] : m[3];
        dnnl_exec_arg_t in[2] = {{DNNL_ARG_FROM, m[0]}, {DNNL_ARG_TO, m[4]}}, out[2] = {{DNNL_ARG_FROM, m[5]}, {DNNL_ARG_TO, m[3]}};
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, m[1]}, {DNNL_ARG_DST, dst}, {DNNL_ARG_BIAS, m[2]}};
        // One stream for the process: executions are serialised.
        pthread_mutex_lock(&lock);
        status = (conv->src_reorder && run(conv->src_reorder, 2, in)) || run(conv->primitive, conv->has_bias ? 4 : 3, args)
                 || (conv->dst_reorder && run(conv->dst_reorder, 2, out));
        pthread_mutex_unlock(&lock);
    }
    for (int i = 0; i < 6; i++) if (m[i]) p_dnnl_memory_destroy(m[i]);
    if (status) snprintf(error, sizeof error, "oneDNN convolution failed");
    return status;
}
