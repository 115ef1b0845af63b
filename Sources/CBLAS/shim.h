// Host BLAS (OpenBLAS's CBLAS interface): the GEMM path for CPU OpenCL devices, on mapped buffers.
#ifndef FLEXIFFUSION_CBLAS_SHIM_H
#define FLEXIFFUSION_CBLAS_SHIM_H
#include <cblas.h>
#endif
