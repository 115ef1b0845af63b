// Host math for CPU devices whose buffers the host maps zero-copy (see HostMath.c).
#pragma once

/// In-place softmax of `rows` contiguous rows of `cols` floats at `p` (single-threaded; callers
/// split rows over threads).
void flex_softmax_rows(float *p, long rows, long cols);
