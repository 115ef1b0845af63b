// Launcher for kernels/timestep_embedding.cl: diffusers' get_timestep_embedding.
import Foundation

extension ComputeStream {
    /// Sinusoidal embedding of `timesteps` [N] into [N, dim], as
    /// `get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period)`.
    public func timestepEmbedding(_ timesteps: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, batch: Int, dim: Int,
                                  flipSinToCos: Bool, downscaleFreqShift: Float, scale: Float = 1,
                                  maxPeriod: Double = 10000) throws {
        let half = dim / 2
        precondition(half > 0 && Float(half) != downscaleFreqShift, "timestep embedding: dim \(dim) too small")
        precondition(timesteps.count >= batch && y.count >= batch * dim, "timestep embedding buffers too small")
        try launch(.timestepEmbedding, global: [dim, batch], [
            .buffer(timesteps.mem), .buffer(y.mem), .int(dim), .int(half), .int(flipSinToCos ? 1 : 0),
            .float(Float(-log(maxPeriod))), .float(Float(half) - downscaleFreqShift), .float(scale),
        ])
    }
}
