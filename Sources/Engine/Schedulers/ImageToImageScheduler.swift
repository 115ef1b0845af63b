// Image-to-image's part of a schedule, as diffusers' img2img pipelines run it (`get_timesteps`):
// with N steps and strength s, the first int(N·s) steps are skipped — t_start = N − int(N·s) — the
// image's latents get noise at the first remaining timestep (`scheduler.add_noise`), and the
// scheduler runs from there as from a fresh start (`set_begin_index(t_start)`: no solver history,
// PNDM's counter at 0), its steps renumbered from 0 here, so plans have one action per remaining
// evaluation. Port of StableDiffusionImg2ImgPipeline.get_timesteps / prepare_latents and each
// scheduler's add_noise (diffusers 0.42).
import Foundation
import GPUKernels

/// How much of a schedule an image-to-image run keeps.
public enum ImageToImageStrength {
    /// diffusers' t_start for `steps` steps at `strength` (an error when no step remains or the
    /// strength is outside [0, 1]).
    public static func beginStep(steps: Int, strength: Double) throws -> Int {
        guard strength.isFinite, (0...1).contains(strength) else {
            throw ModelError(argument: "the strength must be in [0, 1] (diffusers' range), not \(strength)")
        }
        let kept = min(Int(Double(steps) * strength), steps)   // (Python's int(): toward zero)
        guard kept > 0 else {
            throw ModelError(argument: "strength \(strength) with \(steps) steps keeps no step (int(\(steps) × \(strength)) = 0): raise the strength or the steps")
        }
        return steps - kept
    }
}

/// A scheduler's run from step `begin` on, renumbered from 0 (image-to-image).
public struct ImageToImageScheduler: Scheduler {
    public let base: any Scheduler
    /// The first step of the base schedule this run takes (diffusers' begin index).
    public let begin: Int
    public let planSampler: PlanSampler

    /// `base` must already run fresh from `begin` (DPM-Solver's and UniPC's `beginIndex`, PNDM's suffix:
    /// `PlanSampler.scheduler` builds them so); `offset` is where this run's step 0 sits in `base`
    /// (0 for PNDM, whose suffix is its whole schedule).
    init(base: any Scheduler, begin: Int, offset: Int, planSampler: PlanSampler) {
        self.base = base; self.begin = begin; self.offset = offset; self.planSampler = planSampler
    }
    let offset: Int

    public var configuration: SchedulerConfiguration { base.configuration }
    public var timesteps: [Int] { Array(base.timesteps.dropFirst(offset)) }
    public func coefficients(step index: Int) -> SchedulerStepCoefficients { base.coefficients(step: offset + index) }
    public func update(step index: Int) -> SchedulerUpdate { base.update(step: offset + index) }
    public var historyLength: Int { base.historyLength }
    public var keepsSamples: Bool { base.keepsSamples }
    public func keepsSample(step index: Int) -> Bool { base.keepsSample(step: offset + index) }
    public var modelTimesteps: [Float] { Array(base.modelTimesteps.dropFirst(offset)) }
    public func inputScale(step index: Int) -> Float { base.inputScale(step: offset + index) }
    /// (Image-to-image scales nothing by it: the noise is added at the first step's level.)
    public var initNoiseSigma: Float { base.initNoiseSigma }
    public func addNoiseLevels(step index: Int) -> (signal: Float, noise: Float) { base.addNoiseLevels(step: offset + index) }
}

// `add_noise(x, ε, t)` at a step as x·signal + ε·noise: √ᾱ_t and √(1 − ᾱ_t) for DDIM, DDPM and PNDM at
// the step's timestep; x + σ·ε for Euler; α_t·x + σ_t·ε for the multistep solvers.
extension DDIMScheduler {
    public func addNoiseLevels(step index: Int) -> (signal: Float, noise: Float) {
        let a = schedule.alphasCumprod[timesteps[index]]
        return (a.squareRoot(), (1 - a).squareRoot())
    }
}

extension DDPMScheduler {
    public func addNoiseLevels(step index: Int) -> (signal: Float, noise: Float) {
        let a = schedule.alphasCumprod[timesteps[index]]
        return (a.squareRoot(), (1 - a).squareRoot())
    }
}

extension PNDMScheduler {
    public func addNoiseLevels(step index: Int) -> (signal: Float, noise: Float) {
        let a = schedule.alphasCumprod[timesteps[index]]
        return (a.squareRoot(), (1 - a).squareRoot())
    }
}

extension EulerDiscreteScheduler {
    /// x + σ·ε (the σ-space sample).
    public func addNoiseLevels(step index: Int) -> (signal: Float, noise: Float) { (1, sigmas[index]) }
}

extension DPMSolverMultistepScheduler {
    /// α_t·x + σ_t·ε with α_t = 1/√(σ² + 1), σ_t = σ·α_t.
    public func addNoiseLevels(step index: Int) -> (signal: Float, noise: Float) { SolverSigmas.alphaSigma(sigmas[index]) }
}

extension UniPCMultistepScheduler {
    public func addNoiseLevels(step index: Int) -> (signal: Float, noise: Float) { SolverSigmas.alphaSigma(sigmas[index]) }
}
