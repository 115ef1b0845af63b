// Feature statistics: column means of a row-major matrix and centring, the steps before the
// covariance GEMM (Xcᵀ·Xc / (n − 1)) that FID needs.
//
// column_mean: x [n, d] -> mean [d]. global size (d); guarded. Sums in order, in float32.
// center_columns: y[i, j] = x[i, j] − mean[j]; y may alias x. global size (d, n); guarded.
// No #defines.

__kernel void column_mean(__global const float* x, __global float* mean, const int n, const int d)
{
    const int j = get_global_id(0);
    if (j >= d) return;
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[(size_t)i * d + j];
    mean[j] = s / (float)n;
}

__kernel void center_columns(__global const float* x, __global const float* mean, __global float* y,
                             const int n, const int d)
{
    const int j = get_global_id(0);
    const int i = get_global_id(1);
    if (j >= d || i >= n) return;
    y[(size_t)i * d + j] = x[(size_t)i * d + j] - mean[j];
}
