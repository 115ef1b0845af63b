// Host BLAS types (OpenBLAS's CBLAS interface). The library itself is opened at run time
// (GPUKernels/HostBLAS.swift), so that its kernel choice can be fixed before it initialises.
#ifndef FLEXIFFUSION_CBLAS_SHIM_H
#define FLEXIFFUSION_CBLAS_SHIM_H
#include <cblas.h>
#endif
