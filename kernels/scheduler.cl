// The per-step update of DDIM and DDPM sampling (diffusers' DDIMScheduler.step / DDPMScheduler.step),
// with the scalar coefficients computed on the host.
//
// scheduler_step: x (sample), m (model output), noise -> y (previous sample); y may alias x.
//   pred_type 0 epsilon, 1 sample, 2 v_prediction; sqrt_a = alpha_prod_t^0.5, sqrt_b = beta_prod_t^0.5.
//   x0 and eps follow diffusers' expressions in the same order; x0 is clamped to ±clip_range when
//   clip is set (eps is taken before clipping, as diffusers does);
//   y = c_x0 * x0 + c_eps * eps + c_sample * x + sigma * noise (noise unread when sigma is 0).
//   global size (n).
// multistep_combine: see below.
// guidance_combine: y [2, n] holds the unconditional then the conditional model outputs of one batch;
//   both halves become u + g (c - u) (classifier-free guidance, diffusers' order of operations), so
//   the scheduler then updates two identical copies of the sample. global size (n).
// No #defines.

__kernel void scheduler_step(__global const float* x, __global const float* m, __global const float* noise,
                             __global float* y, const int n, const int pred_type,
                             const float sqrt_a, const float sqrt_b, const int clip, const float clip_range,
                             const float c_x0, const float c_eps, const float c_sample, const float sigma)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    const float xv = x[i], mv = m[i];
    float x0, eps;
    if (pred_type == 0) {
        x0 = (xv - sqrt_b * mv) / sqrt_a;
        eps = mv;
    } else if (pred_type == 1) {
        x0 = mv;
        eps = (xv - sqrt_a * x0) / sqrt_b;
    } else {
        x0 = sqrt_a * xv - sqrt_b * mv;
        eps = sqrt_a * mv + sqrt_b * xv;
    }
    if (clip) x0 = clamp(x0, -clip_range, clip_range);
    float v = c_x0 * x0 + c_eps * eps + c_sample * xv;
    if (sigma != 0.0f) v = v + sigma * noise[i];
    y[i] = v;
}

// multistep_combine: the update of a multistep solver (DPM-Solver's step, UniPC's predictor and
// corrector) as a linear combination of a sample and a history of converted model outputs (newest
// first); y may alias x.
//   y = c_x * x + c0 * h0 + c1 * h1 + c2 * h2 + c3 * h3 (h1…h3 unread when their coefficients are 0).
//   global size (n).
__kernel void multistep_combine(__global const float* x, __global const float* h0, __global const float* h1,
                                __global const float* h2, __global const float* h3, __global float* y, const int n,
                                const float c_x, const float c0, const float c1, const float c2, const float c3)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    float v = c_x * x[i] + c0 * h0[i];
    if (c1 != 0.0f) v += c1 * h1[i];
    if (c2 != 0.0f) v += c2 * h2[i];
    if (c3 != 0.0f) v += c3 * h3[i];
    y[i] = v;
}

__kernel void guidance_combine(__global float* y, const int n, const float g)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    const float u = y[i], c = y[n + i];
    const float v = u + g * (c - u);
    y[i] = v;
    y[n + i] = v;
}
