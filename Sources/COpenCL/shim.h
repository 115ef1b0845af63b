// The OpenCL and CLBlast C APIs, as one Swift module. The target version must be defined here (a
// cSettings define does not reach Swift importers) and identically wherever CL/cl.h is included.
#ifndef FLEXIFFUSION_COPENCL_SHIM_H
#define FLEXIFFUSION_COPENCL_SHIM_H
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <clblast_c.h>
#endif
