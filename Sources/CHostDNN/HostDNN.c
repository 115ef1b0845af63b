// oneDNN convolutions, opened with dlopen so that the binary runs where libdnnl is absent (GPU
// machines): oneDNN 3 where it is installed (scripts/ci/install_onednn.sh, or build_onednn.sh), else
// Debian 12's oneDNN 2. In fp32, or with bf16 inputs and fp32 accumulation and output.
// The declarations come from <oneapi/dnnl/dnnl.h> (Debian: libdnnl-dev, version 2); the few that
// differ in version 3 are declared below.
#include "HostDNN.h"

#include <dlfcn.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Functions whose ABI is the same in oneDNN 2 and 3 (memory descriptors pass as pointers: to a
// struct in 2, an opaque handle in 3).
#define DNNL_FUNCTIONS(X) \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_wait) X(dnnl_primitive_desc_destroy) \
    X(dnnl_primitive_desc_query) X(dnnl_primitive_create) X(dnnl_primitive_destroy) \
    X(dnnl_memory_create) X(dnnl_memory_destroy) X(dnnl_primitive_execute) \
    X(dnnl_primitive_desc_query_md) X(dnnl_memory_desc_equal) X(dnnl_memory_desc_get_size) \
    X(dnnl_reorder_primitive_desc_create)
// oneDNN 2 only.
#define DNNL2_FUNCTIONS(X) X(dnnl_memory_desc_init_by_tag) X(dnnl_convolution_forward_desc_init) X(dnnl_primitive_desc_create)

#define DECLARE(name) static __typeof__(name) *p_##name;
DNNL_FUNCTIONS(DECLARE)
DNNL2_FUNCTIONS(DECLARE)

// oneDNN 3 (3.x keeps its ABI), declared here since the headers are version 2's: a memory descriptor
// is a handle, created, cloned and destroyed; convolutions have one primitive-descriptor constructor.
typedef void *md3_t;
static dnnl_status_t (*p3_memory_desc_create_with_tag)(md3_t *, int, const dnnl_dims_t, int, int);
static dnnl_status_t (*p3_memory_desc_clone)(md3_t *, const void *);
static dnnl_status_t (*p3_memory_desc_destroy)(md3_t);
static dnnl_status_t (*p3_memory_desc_query)(const void *, int, void *);
static dnnl_status_t (*p3_convolution_forward_primitive_desc_create)(
    dnnl_primitive_desc_t *, dnnl_engine_t, int, int, const void *, const void *, const void *, const void *,
    const dnnl_dims_t, const dnnl_dims_t, const dnnl_dims_t, const dnnl_dims_t, const void *);
// The values of the enumerations this file uses, from oneDNN 3's dnnl_types.h / dnnl_common_types.h
// (the same in 2 except the format tags and these queries).
enum { V3_BF16 = 2, V3_F32 = 3, V3_ABC = 4, V3_ANY = 1, V3_NCHW = 5, V3_NHWC = 22, V3_OIHW = 5, V3_X = 2, V3_NCHW8C = 102, V3_NCHW16C = 78,
       V3_FORWARD_INFERENCE = 96, V3_CONVOLUTION_DIRECT = 1, V3_SRC_MD = 129, V3_WEIGHTS_MD = 131, V3_DST_MD = 133,
       V3_FORMAT_KIND = 262, V3_INNER_NBLKS = 263, V3_INNER_BLKS = 264, V3_INNER_IDXS = 265, V3_STRIDES = 14, V3_BLOCKED = 2 };

// Matrix products (optional: a library built with convolutions and reorders only lacks them, and then
// the GEMMs stay with OpenBLAS in fp32). Version 3: one constructor; version 2: a desc, then a pd.
static dnnl_status_t (*p3_matmul_primitive_desc_create)(dnnl_primitive_desc_t *, dnnl_engine_t, const void *, const void *,
                                                        const void *, const void *, const void *);
static dnnl_status_t (*p3_memory_desc_create_with_strides)(md3_t *, int, const dnnl_dims_t, int, const dnnl_dims_t);
static __typeof__(dnnl_matmul_desc_init) *p_dnnl_matmul_desc_init;
static __typeof__(dnnl_memory_desc_init_by_strides) *p_dnnl_memory_desc_init_by_strides;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int available = 0, version = 0;
static char error[512] = "";
static char library[256] = "";
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/// Opens oneDNN 3 at `path` (0) or leaves everything unset (1).
static int open_version3(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return 1;
#define LOAD3(name) if (!(p_##name = (__typeof__(name) *)dlsym(h, #name))) goto missing;
    DNNL_FUNCTIONS(LOAD3)
#define LOAD3P(field, name) if (!(*(void **)&field = dlsym(h, name))) goto missing;
    LOAD3P(p3_memory_desc_create_with_tag, "dnnl_memory_desc_create_with_tag")
    LOAD3P(p3_memory_desc_clone, "dnnl_memory_desc_clone")
    LOAD3P(p3_memory_desc_destroy, "dnnl_memory_desc_destroy")
    LOAD3P(p3_memory_desc_query, "dnnl_memory_desc_query")
    LOAD3P(p3_convolution_forward_primitive_desc_create, "dnnl_convolution_forward_primitive_desc_create")
    *(void **)&p3_matmul_primitive_desc_create = dlsym(h, "dnnl_matmul_primitive_desc_create");
    *(void **)&p3_memory_desc_create_with_strides = dlsym(h, "dnnl_memory_desc_create_with_strides");
    version = 3;
    snprintf(library, sizeof library, "%s", path);
    return 0;
missing:
    dlclose(h);
    return 1;
}

/// Opens oneDNN 2 at `path` (0) or leaves it unset (1, with `error` saying why).
static int open_version2(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { snprintf(error, sizeof error, "cannot open %s: %s", path, dlerror()); return 1; }
#define LOAD(name) \
    if (!(p_##name = (__typeof__(name) *)dlsym(h, #name))) { snprintf(error, sizeof error, "%s is neither oneDNN 2 nor 3: it lacks %s", path, #name); dlclose(h); return 1; }
    DNNL_FUNCTIONS(LOAD)
    DNNL2_FUNCTIONS(LOAD)
    *(void **)&p_dnnl_matmul_desc_init = dlsym(h, "dnnl_matmul_desc_init");
    *(void **)&p_dnnl_memory_desc_init_by_strides = dlsym(h, "dnnl_memory_desc_init_by_strides");
    version = 2;
    snprintf(library, sizeof library, "%s", path);
    return 0;
}

/// The library the first flex_dnnl_open asked for (empty: the defaults).
static char requested[1024];

static void open_library(void) {
    // oneDNN runs between OpenCL kernels on the same cores: its OpenMP threads should sleep when
    // idle instead of spinning against PoCL's workers (unless the user chose otherwise).
    setenv("OMP_WAIT_POLICY", "passive", 0);
    // The library asked for ($FLEXIFFUSION_ONEDNN, read by the Swift side: a path or a library name,
    // version 2 or 3), else oneDNN 3 first (its AVX2 convolutions are brgemm kernels, faster than
    // 2's): libdnnl.so.3 on the loader's path or where scripts/ci/install_onednn.sh installs it, then
    // Debian 12's libdnnl.so.2.
    const char *chosen = requested;
    if (*chosen) {
        if (open_version3(chosen) && open_version2(chosen)) return;
    } else if (open_version3("libdnnl.so.3") && open_version3("/usr/local/lib/libdnnl.so.3") && open_version2("libdnnl.so.2")) {
        snprintf(error, sizeof error, "cannot open libdnnl.so.2 (Debian: apt-get install libdnnl2) or libdnnl.so.3 (scripts/ci/install_onednn.sh)");
        return;
    }
    if (p_dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) { snprintf(error, sizeof error, "dnnl_engine_create failed"); return; }
    if (p_dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) { snprintf(error, sizeof error, "dnnl_stream_create failed"); return; }
    available = 1;
}

static pthread_mutex_t request_lock = PTHREAD_MUTEX_INITIALIZER;
static int request_taken = 0;

int flex_dnnl_open(const char *library) {
    pthread_mutex_lock(&request_lock);
    if (!request_taken) {
        request_taken = 1;
        if (library) snprintf(requested, sizeof requested, "%s", library);
    }
    pthread_mutex_unlock(&request_lock);
    pthread_once(&once, open_library);
    return available;
}

int flex_dnnl_available(void) { return flex_dnnl_open(NULL); }
const char *flex_dnnl_error(void) { return error; }
int flex_dnnl_version(void) { return flex_dnnl_available() ? version : 0; }
const char *flex_dnnl_library(void) { return library; }

// Memory descriptors as pointers for both versions: to a heap copy of the struct (2), or the handle (3).
typedef const void *md_t;

enum layout { L_ANY, L_NCHW, L_OIHW, L_X, L_NCHW8C, L_NCHW16C, L_NHWC };

static int tag_of(enum layout l) {
    static const int v2[] = {dnnl_format_tag_any, dnnl_nchw, dnnl_oihw, dnnl_x, dnnl_nChw8c, dnnl_nChw16c, dnnl_nhwc};
    static const int v3[] = {V3_ANY, V3_NCHW, V3_OIHW, V3_X, V3_NCHW8C, V3_NCHW16C, V3_NHWC};
    return version == 3 ? v3[l] : v2[l];
}

static void md_free(md_t md) {
    if (!md) return;
    if (version == 3) p3_memory_desc_destroy((md3_t)md); else free((void *)md);
}

/// A descriptor of `dims` in layout `l`, of f32 (or bf16 with `bf16`), NULL on failure.
static md_t md_typed(int ndims, const dnnl_dims_t dims, enum layout l, int bf16) {
    if (version == 3) {
        md3_t md = NULL;
        return p3_memory_desc_create_with_tag(&md, ndims, dims, bf16 ? V3_BF16 : V3_F32, tag_of(l)) == dnnl_success ? md : NULL;
    }
    dnnl_memory_desc_t *md = malloc(sizeof *md);
    if (md && p_dnnl_memory_desc_init_by_tag(md, ndims, dims, bf16 ? dnnl_bf16 : dnnl_f32, (dnnl_format_tag_t)tag_of(l)) == dnnl_success) return md;
    free(md);
    return NULL;
}

static md_t md_create(int ndims, const dnnl_dims_t dims, enum layout l) { return md_typed(ndims, dims, l, 0); }

/// A copy of the descriptor `pd` reports for `what` (src, weights or dst), NULL on failure.
static md_t md_query(dnnl_primitive_desc_t pd, int what) {
    static const int v2[] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md};
    static const int v3[] = {V3_SRC_MD, V3_WEIGHTS_MD, V3_DST_MD};
    const void *q = (const void *)p_dnnl_primitive_desc_query_md(pd, (dnnl_query_t)(version == 3 ? v3[what] : v2[what]), 0);
    if (!q) return NULL;
    if (version == 3) {
        md3_t md = NULL;
        return p3_memory_desc_clone(&md, q) == dnnl_success ? md : NULL;
    }
    dnnl_memory_desc_t *md = malloc(sizeof *md);
    if (md) memcpy(md, q, sizeof *md);
    return md;
}

static int md_equal(md_t a, md_t b) { return p_dnnl_memory_desc_equal((const dnnl_memory_desc_t *)a, (const dnnl_memory_desc_t *)b); }
static size_t md_size(md_t a) { return p_dnnl_memory_desc_get_size((const dnnl_memory_desc_t *)a); }
static int memory_create(dnnl_memory_t *m, md_t md, void *data) {
    return p_dnnl_memory_create(m, (const dnnl_memory_desc_t *)md, engine, data) != dnnl_success;
}

/// A forward-inference convolution's primitive descriptor, NULL when oneDNN has none.
static dnnl_primitive_desc_t conv_pd(md_t src, md_t weights, md_t bias, md_t dst, const dnnl_dims_t strides,
                                     const dnnl_dims_t pl, const dnnl_dims_t pr) {
    dnnl_primitive_desc_t pd = NULL;
    if (version == 3) {
        dnnl_dims_t dilates = {0, 0};
        if (p3_convolution_forward_primitive_desc_create(&pd, engine, V3_FORWARD_INFERENCE, V3_CONVOLUTION_DIRECT, src, weights, bias,
                                                         dst, strides, dilates, pl, pr, NULL) != dnnl_success) return NULL;
        return pd;
    }
    dnnl_convolution_desc_t desc;
    if (p_dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, src, weights, bias, dst,
                                             strides, pl, pr) != dnnl_success ||
        p_dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL) != dnnl_success) return NULL;
    return pd;
}

/// The channel block of `md` when it is nChw8c or nChw16c (blocked over dimension 1 only, outer
/// dimensions in order), -1 when it is NHWC, else 0.
static int channel_block(md_t md) {
    int nblks;
    const dnnl_dim_t *blks, *idxs, *strides;
    if (version == 3) {
        int kind;
        const dnnl_dims_t *b = NULL, *i = NULL, *s = NULL;
        if (p3_memory_desc_query(md, V3_FORMAT_KIND, &kind) != dnnl_success || kind != V3_BLOCKED ||
            p3_memory_desc_query(md, V3_INNER_NBLKS, &nblks) != dnnl_success ||
            p3_memory_desc_query(md, V3_INNER_BLKS, &b) != dnnl_success || p3_memory_desc_query(md, V3_INNER_IDXS, &i) != dnnl_success ||
            p3_memory_desc_query(md, V3_STRIDES, &s) != dnnl_success || !b || !i || !s) return 0;
        blks = *b; idxs = *i; strides = *s;
    } else {
        const dnnl_memory_desc_t *d = md;
        if (d->format_kind != dnnl_blocked) return 0;
        nblks = d->format_desc.blocking.inner_nblks;
        blks = d->format_desc.blocking.inner_blks; idxs = d->format_desc.blocking.inner_idxs; strides = d->format_desc.blocking.strides;
    }
    // NHWC: no inner blocks, channels innermost, then width, height, samples.
    if (nblks == 0) return strides[1] == 1 && strides[3] > strides[1] && strides[2] > strides[3] && strides[0] > strides[2] ? -1 : 0;
    if (nblks != 1 || idxs[0] != 1 || (blks[0] != 8 && blks[0] != 16)) return 0;
    if (!(strides[0] >= strides[1] && strides[1] >= strides[2] && strides[2] >= strides[3])) return 0;
    return (int)blks[0];
}

struct FlexConv {
    dnnl_primitive_t primitive;
    // The caller's layouts (NCHW or nChw{8,16}c activations, OIHW weights), and the ones the convolution chose
    // (blocked, e.g. nChw16c, where that is faster); a reorder primitive between them where they differ.
    md_t src, weights, bias, dst;
    md_t conv_src, conv_weights, conv_dst;
    dnnl_primitive_t src_reorder, weights_reorder, dst_reorder;
    void *src_buffer, *dst_buffer;
    size_t weights_bytes;
    int has_bias;
};

/// A reorder primitive from `from` to `to` into *out (NULL where they are equal); 0 on success.
static int make_reorder(md_t from, md_t to, dnnl_primitive_t *out) {
    *out = NULL;
    if (md_equal(from, to)) return 0;
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
    md_t mds[] = {conv->src, conv->weights, conv->bias, conv->dst, conv->conv_src, conv->conv_weights, conv->conv_dst};
    for (size_t i = 0; i < sizeof mds / sizeof mds[0]; i++) md_free(mds[i]);
    free(conv->src_buffer);
    free(conv->dst_buffer);
    free(conv);
}

/// The caller's layout of an activation: NCHW (block 0 or 1), nChw8c / nChw16c or NHWC (-1).
static int activation_layout(int block, enum layout *l) {
    switch (block) {
    case 0: case 1: *l = L_NCHW; return 0;
    case 8: *l = L_NCHW8C; return 0;
    case 16: *l = L_NCHW16C; return 0;
    case -1: *l = L_NHWC; return 0;
    default: snprintf(error, sizeof error, "no activation layout with channel blocks of %d", block); return 1;
    }
}

int flex_dnnl_preferred_block(void) {
    if (!flex_dnnl_available()) return 0;
    // A typical UNet convolution (64 -> 64 channels, 3x3, 16x16) in the layouts oneDNN picks.
    dnnl_dims_t src = {2, 64, 16, 16}, wei = {64, 64, 3, 3}, strides = {1, 1}, pad = {1, 1};
    md_t s = md_create(4, src, L_ANY), w = md_create(4, wei, L_ANY), d = md_create(4, src, L_ANY), chosen = NULL;
    dnnl_primitive_desc_t pd = s && w && d ? conv_pd(s, w, NULL, d, strides, pad, pad) : NULL;
    int block = pd && (chosen = md_query(pd, 0)) ? channel_block(chosen) : 0;
    if (pd) p_dnnl_primitive_desc_destroy(pd);
    md_free(s); md_free(w); md_free(d); md_free(chosen);
    return block;
}

FlexConv *flex_conv_create(int n, int c, int h, int w, int o, int kh, int kw, int stride,
                           int pad_top, int pad_left, int pad_bottom, int pad_right, int has_bias,
                           int src_block, int dst_block, int blocked, int bf16, char *impl, int impl_capacity) {
    if (!flex_dnnl_available()) return NULL;
    enum layout src_layout, dst_layout;
    if (activation_layout(src_block, &src_layout) || activation_layout(dst_block, &dst_layout)) return NULL;
    FlexConv *conv = calloc(1, sizeof *conv);
    if (!conv) return NULL;
    int oh = (h + pad_top + pad_bottom - kh) / stride + 1, ow = (w + pad_left + pad_right - kw) / stride + 1;
    dnnl_dims_t src = {n, c, h, w}, wei = {o, c, kh, kw}, bia = {o}, dst = {n, o, oh, ow};
    dnnl_dims_t strides = {stride, stride}, pl = {pad_top, pad_left}, pr = {pad_bottom, pad_right};
    enum layout layout = blocked ? L_ANY : L_NCHW;
    md_t any_src = NULL, any_weights = NULL, any_dst = NULL;
    dnnl_primitive_desc_t pd = NULL;
    conv->has_bias = has_bias;
    int failed = !(conv->src = md_create(4, src, src_layout)) || !(conv->weights = md_create(4, wei, L_OIHW)) ||
                 !(conv->bias = md_create(1, bia, L_X)) || !(conv->dst = md_create(4, dst, dst_layout)) ||
                 !(any_src = md_typed(4, src, layout, bf16)) || !(any_weights = md_typed(4, wei, blocked ? L_ANY : L_OIHW, bf16)) ||
                 !(any_dst = md_create(4, dst, layout)) ||
                 !(pd = conv_pd(any_src, any_weights, has_bias ? conv->bias : NULL, any_dst, strides, pl, pr)) ||
                 p_dnnl_primitive_create(&conv->primitive, pd) != dnnl_success;
    md_free(any_src); md_free(any_weights); md_free(any_dst);
    if (failed) {
        snprintf(error, sizeof error, "oneDNN has no %s convolution for %dx%dx%dx%d -> %d, k%dx%d s%d", bf16 ? "bf16" : "f32",
                 n, c, h, w, o, kh, kw, stride);
        if (pd) p_dnnl_primitive_desc_destroy(pd);
        flex_conv_destroy(conv);
        // (Where no blocked implementation takes the shape, e.g. tensors past 2^31 elements, the plain one may.)
        return blocked ? flex_conv_create(n, c, h, w, o, kh, kw, stride, pad_top, pad_left, pad_bottom, pad_right, has_bias,
                                          src_block, dst_block, 0, bf16, impl, impl_capacity) : NULL;
    }
    conv->conv_src = md_query(pd, 0);
    conv->conv_weights = md_query(pd, 1);
    conv->conv_dst = md_query(pd, 2);
    if (impl && impl_capacity > 0) {
        const char *name = NULL;
        p_dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
        snprintf(impl, impl_capacity, "%s", name ? name : "?");
    }
    p_dnnl_primitive_desc_destroy(pd);
    if (!conv->conv_src || !conv->conv_weights || !conv->conv_dst ||
        make_reorder(conv->src, conv->conv_src, &conv->src_reorder) ||
        make_reorder(conv->weights, conv->conv_weights, &conv->weights_reorder) ||
        make_reorder(conv->conv_dst, conv->dst, &conv->dst_reorder)) {
        snprintf(error, sizeof error, "oneDNN cannot reorder to the layouts of its convolution for %dx%dx%dx%d -> %d", n, c, h, w, o);
        flex_conv_destroy(conv);
        return NULL;
    }
    conv->weights_bytes = conv->weights_reorder ? md_size(conv->conv_weights) : 0;
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
    if (!memory_create(&from, conv->weights, (void *)weight) && !memory_create(&to, conv->conv_weights, out)) {
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
    size_t src_bytes = md_size(conv->conv_src), dst_bytes = md_size(conv->conv_dst);
    if ((conv->src_reorder && !conv->src_buffer && !(conv->src_buffer = malloc(src_bytes))) ||
        (conv->dst_reorder && !conv->dst_buffer && !(conv->dst_buffer = malloc(dst_bytes)))) {
        snprintf(error, sizeof error, "cannot allocate %zu bytes for oneDNN's blocked input and output", src_bytes + dst_bytes);
        return 1;
    }
    if (!memory_create(&m[0], conv->src, (void *)x) && !memory_create(&m[1], conv->conv_weights, (void *)weight) &&
        (!conv->has_bias || !memory_create(&m[2], conv->bias, (void *)bias)) && !memory_create(&m[3], conv->dst, y) &&
        (!conv->src_reorder || !memory_create(&m[4], conv->conv_src, conv->src_buffer)) &&
        (!conv->dst_reorder || !memory_create(&m[5], conv->conv_dst, conv->dst_buffer))) {
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

// ---- Matrix products in bf16 ----

struct FlexMatmul {
    dnnl_primitive_t primitive;
    md_t a, b, c;
};

/// A dense row-major descriptor of `dims` (3-D) in bf16 or f32, with `strides` when not NULL.
static md_t md_3d(const dnnl_dims_t dims, int bf16, const dnnl_dims_t strides) {
    if (version == 3) {
        md3_t md = NULL;
        int dt = bf16 ? V3_BF16 : V3_F32;
        dnnl_status_t st = strides ? p3_memory_desc_create_with_strides(&md, 3, dims, dt, strides)
                                   : p3_memory_desc_create_with_tag(&md, 3, dims, dt, V3_ABC);
        return st == dnnl_success ? md : NULL;
    }
    dnnl_memory_desc_t *md = malloc(sizeof *md);
    dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    if (md && (strides ? p_dnnl_memory_desc_init_by_strides(md, 3, dims, dt, strides)
                       : p_dnnl_memory_desc_init_by_tag(md, 3, dims, dt, dnnl_abc)) == dnnl_success) return md;
    free(md);
    return NULL;
}

void flex_matmul_destroy(FlexMatmul *mm) {
    if (!mm) return;
    if (mm->primitive) p_dnnl_primitive_destroy(mm->primitive);
    md_free(mm->a); md_free(mm->b); md_free(mm->c);
    free(mm);
}

static int has_matmul_symbols(void) {
    return version == 3 ? p3_matmul_primitive_desc_create && p3_memory_desc_create_with_strides
                        : p_dnnl_matmul_desc_init && p_dnnl_memory_desc_init_by_strides;
}

static FlexMatmul *matmul_create(int batch, int m, int n, int k, int shared_a, int shared_b, int trans_a, int trans_b,
                                 long c_ld, long c_stride, char *impl, int impl_capacity);

static pthread_once_t matmul_once = PTHREAD_ONCE_INIT;
static int matmul_works = 0;

/// Whether a small bf16 product can be made: the symbols exist in every build, the primitive only
/// where it was compiled in (scripts/ci/build_onednn.sh built convolutions and reorders only before
/// 2026-12-07).
static void probe_matmul(void) {
    if (!flex_dnnl_available() || !has_matmul_symbols()) return;
    char saved[sizeof error];
    memcpy(saved, error, sizeof error);
    FlexMatmul *mm = matmul_create(1, 4, 4, 4, 0, 0, 0, 0, 4, 16, NULL, 0);
    matmul_works = mm != NULL;
    flex_matmul_destroy(mm);
    memcpy(error, saved, sizeof error);
}

int flex_matmul_available(void) {
    pthread_once(&matmul_once, probe_matmul);
    return matmul_works;
}

FlexMatmul *flex_matmul_create(int batch, int m, int n, int k, int shared_a, int shared_b, int trans_a, int trans_b,
                               long c_ld, long c_stride, char *impl, int impl_capacity) {
    if (!flex_matmul_available()) {
        snprintf(error, sizeof error, "%s has no bf16 matrix products (a build with convolutions and reorders only)", library);
        return NULL;
    }
    return matmul_create(batch, m, n, k, shared_a, shared_b, trans_a, trans_b, c_ld, c_stride, impl, impl_capacity);
}

static FlexMatmul *matmul_create(int batch, int m, int n, int k, int shared_a, int shared_b, int trans_a, int trans_b,
                                 long c_ld, long c_stride, char *impl, int impl_capacity) {
    FlexMatmul *mm = calloc(1, sizeof *mm);
    if (!mm) return NULL;
    // A and B as stored (dense, transposed or not): a transposed operand is described by its strides.
    dnnl_dims_t a = {shared_a ? 1 : batch, m, k}, b = {shared_b ? 1 : batch, k, n}, c = {batch, m, n};
    dnnl_dims_t as = {(long)m * k, trans_a ? 1 : k, trans_a ? m : 1}, bs = {(long)k * n, trans_b ? 1 : n, trans_b ? k : 1};
    dnnl_dims_t cs = {batch > 1 ? c_stride : (long)m * c_ld, c_ld, 1};
    dnnl_primitive_desc_t pd = NULL;
    int failed = !(mm->a = md_3d(a, 1, as)) || !(mm->b = md_3d(b, 1, bs)) || !(mm->c = md_3d(c, 0, cs));
    if (!failed) {
        if (version == 3) {
            failed = p3_matmul_primitive_desc_create(&pd, engine, mm->a, mm->b, NULL, mm->c, NULL) != dnnl_success;
        } else {
            dnnl_matmul_desc_t desc;
            failed = p_dnnl_matmul_desc_init(&desc, mm->a, mm->b, NULL, mm->c) != dnnl_success ||
                     p_dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL) != dnnl_success;
        }
    }
    failed = failed || p_dnnl_primitive_create(&mm->primitive, pd) != dnnl_success;
    if (!failed && impl && impl_capacity > 0) {
        const char *name = NULL;
        p_dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
        snprintf(impl, impl_capacity, "%s", name ? name : "?");
    }
    if (pd) p_dnnl_primitive_desc_destroy(pd);
    if (failed) {
        snprintf(error, sizeof error, "oneDNN has no bf16 matrix product for %d x (%d x %d) . (%d x %d)", batch, m, k, k, n);
        flex_matmul_destroy(mm);
        return NULL;
    }
    return mm;
}

int flex_matmul_execute(FlexMatmul *mm, const uint16_t *a, const uint16_t *b, float *c) {
    dnnl_memory_t m[3] = {NULL, NULL, NULL};
    int status = 1;
    if (!memory_create(&m[0], mm->a, (void *)a) && !memory_create(&m[1], mm->b, (void *)b) && !memory_create(&m[2], mm->c, c)) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, m[0]}, {DNNL_ARG_WEIGHTS, m[1]}, {DNNL_ARG_DST, m[2]}};
        pthread_mutex_lock(&lock);
        status = run(mm->primitive, 3, args);
        pthread_mutex_unlock(&lock);
    }
    for (int i = 0; i < 3; i++) if (m[i]) p_dnnl_memory_destroy(m[i]);
    if (status) snprintf(error, sizeof error, "oneDNN matrix product failed");
    return status;
}

/// x rounded to the nearest bfloat16, ties to even (NaN kept a NaN).
static inline uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void flex_pack_bf16(const float *x, long rows, long cols, long ld, float scale, uint16_t *out) {
    for (long r = 0; r < rows; r++) {
        const float *row = x + r * ld;
        uint16_t *o = out + r * cols;
        if (scale == 1) for (long j = 0; j < cols; j++) o[j] = to_bf16(row[j]);
        else for (long j = 0; j < cols; j++) o[j] = to_bf16(row[j] * scale);
    }
}

int flex_cpu_has_bf16(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    // AVX-512 BF16 (leaf 7.1 EAX bit 5) with AVX-512F (leaf 7.0 EBX bit 16), or AMX-BF16 (leaf 7.0
    // EDX bit 22); and the OS saving the AVX-512 state (XCR0 bits 1, 2, 5, 6, 7) or AMX's tiles (17, 18).
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    unsigned subleaves = a, avx512f = (b >> 16) & 1, amx = (d >> 22) & 1, avx512bf16 = 0;
    if (subleaves >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) avx512bf16 = (a >> 5) & 1;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return 0;  // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    int avx512_state = (lo & 0xE6) == 0xE6, amx_state = (lo & 0x60000) == 0x60000;
    return (avx512f && avx512bf16 && avx512_state) || (amx && amx_state);
#else
    return 0;
#endif
}
