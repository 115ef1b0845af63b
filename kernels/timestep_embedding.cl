// Sinusoidal timestep embedding: port of diffusers.models.embeddings.get_timestep_embedding
// (float32 throughout, in the same order of operations as PyTorch evaluates it).
//
// timestep_embedding: t [N] (float) -> y [N, dim]. global size (dim, N).
//   neg_log_max_period = -log(max_period) rounded to float; denom = half_dim - downscale_freq_shift.
//   Without flip: [sin | cos]; with flip_sin_to_cos: [cos | sin]; an odd dim gets a zero last column.
// No #defines.

__kernel void timestep_embedding(__global const float* t, __global float* y,
                                 const int dim, const int half_dim, const int flip,
                                 const float neg_log_max_period, const float denom, const float scale)
{
    const int j = get_global_id(0);
    const int n = get_global_id(1);
    if (j >= dim) return;
    float v = 0.0f;
    if (j < 2 * half_dim) {
        int col = j;
        if (flip) col = (j < half_dim) ? j + half_dim : j - half_dim;
        const int i = (col < half_dim) ? col : col - half_dim;
        const float exponent = (neg_log_max_period * (float)i) / denom;
        const float arg = scale * (t[n] * exp(exponent));
        v = (col < half_dim) ? sin(arg) : cos(arg);
    }
    y[(size_t)n * dim + j] = v;
}
