// The OpenCL C sources of kernels/, embedded at build time (one entry per op family).
#ifndef FLEXIFFUSION_KERNEL_SOURCES_H
#define FLEXIFFUSION_KERNEL_SOURCES_H

typedef struct {
    const char *name;   // the family name: kernels/<name>.cl
    const char *source; // NUL-terminated OpenCL C source
} FlexKernelSource;

/// The embedded sources; `count` receives the number of entries.
const FlexKernelSource *flex_kernel_sources(int *count);

#endif
