// The sampling loop: a UNet and a scheduler on one device, the sample kept on the device between
// steps; only the timesteps (and any variance noise) are written from the host each step.
import Foundation
import GPUKernels

public final class Sampler {
    public let unet: UNet
    public let scheduler: any Scheduler
    let sample: DeviceBuffer<Float>
    let variance: DeviceBuffer<Float>
    var count: Int { unet.batch * unet.config.inChannels * unet.height * unet.width }

    public init(unet: UNet, scheduler: any Scheduler) throws {
        guard unet.config.outChannels == unet.config.inChannels else {
            throw ModelError("out_channels \(unet.config.outChannels) differs from in_channels \(unet.config.inChannels): the model cannot drive a sampler")
        }
        self.unet = unet
        self.scheduler = scheduler
        let n = unet.batch * unet.config.inChannels * unet.height * unet.width
        sample = try unet.stream.buffer(n)
        variance = try unet.stream.buffer(n)
    }

    /// Runs every step from `noise` [batch, C, H, W]; variance noise (eta > 0, DDPM) is drawn from
    /// `noiseSource`. `progress` is called after each step with (step, total). Returns x₀ [batch, C, H, W].
    public func run(noise: [Float], noiseSource: inout GaussianNoise, progress: ((Int, Int) -> Void)? = nil) throws -> [Float] {
        guard noise.count == count else { throw ModelError("noise has \(noise.count) values, the sampler needs \(count)") }
        let s = unet.stream, ws = unet.workspace
        try sample.write(noise, queue: s.queue)
        let steps = scheduler.timesteps
        for (i, t) in steps.enumerated() {
            try ws.input.copy(from: sample, count: count, queue: s.queue)
            try ws.timesteps.write(Array(repeating: Float(t), count: unet.batch), queue: s.queue)
            try unet.forward()
            let c = scheduler.coefficients(step: i)
            if c.noise != 0 { try variance.write(noiseSource.fill(count), queue: s.queue) }
            try s.schedulerStep(sample: sample, modelOutput: ws.output, noise: c.noise != 0 ? variance : nil,
                                output: sample, count: count, c)
            if let progress { try s.finish(); progress(i + 1, steps.count) }
        }
        return try s.download(sample, count: count)
    }
}
