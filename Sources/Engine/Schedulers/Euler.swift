// Port of diffusers' EulerDiscreteScheduler (diffusers 0.42) without churn (s_churn 0, the default):
// the sample lives in σ-space (x = x̂₀ + σ·ε), the network sees x / √(σ² + 1) (`scale_model_input`) and
// fractional timesteps, and each step is x ← x + (σₙₑₓₜ − σ)·(x − x̂₀)/σ. Initial noise is scaled by
// `init_noise_sigma` (the largest σ, or √(σ² + 1) with leading spacing). Linear interpolation of σ,
// Karras sigmas (timesteps interpolated from log σ, not rounded), `final_sigmas_type`, the three
// spacings. Not implemented (refused by name): churn, log_linear interpolation, continuous timesteps,
// exponential/beta sigmas.
import Foundation
import GPUKernels

public struct EulerDiscreteScheduler: Scheduler {
    public let configuration: SchedulerConfiguration
    public let schedule: NoiseSchedule
    /// σ of every step and the final one (steps + 1 values).
    public let sigmas: [Float]
    public let modelTimesteps: [Float]
    public let initNoiseSigma: Float

    public init(configuration c: SchedulerConfiguration, steps: Int) throws {
        try c.validate()
        let source = "EulerDiscreteScheduler"
        guard steps >= 1, steps <= c.numTrainTimesteps else {
            throw ModelError("--steps \(steps) must be between 1 and the \(c.numTrainTimesteps) training timesteps")
        }
        configuration = c
        schedule = NoiseSchedule(c)
        let T = c.numTrainTimesteps
        let spacing = c.value(.timestepSpacing, c.timestepSpacing, defaultFor: .linspace)
        var t: [Double]
        switch spacing {
        case .linspace:
            // np.linspace(0, T − 1, steps, dtype=float32)[::-1]
            let step = steps == 1 ? 0 : Double(T - 1) / Double(steps - 1)
            t = (0..<steps).map { i in Double(Float(i == steps - 1 && steps > 1 ? Double(T - 1) : Double(i) * step)) }.reversed()
        case .leading:
            let ratio = T / steps
            t = (0..<steps).map { Double($0 * ratio + c.stepsOffset) }.reversed()
        case .trailing:
            let ratio = Double(T) / Double(steps)
            t = []
            var v = Double(T), i = 0
            while v > 0 { t.append(v.rounded(.toNearestOrEven) - 1); i += 1; v = Double(T) - Double(i) * ratio }
        }
        let full = schedule.alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
        var s: [Double]
        if c.useKarrasSigmas {
            // _convert_to_karras on the interpolated sigmas: their own last and first as σ_min and σ_max.
            let interpolated = t.map { Self.interpolate(full, at: $0) }
            let sigmaMin = interpolated.last!, sigmaMax = interpolated.first!, rho = 7.0
            let minInv = pow(sigmaMin, 1 / rho), maxInv = pow(sigmaMax, 1 / rho)
            s = (0..<steps).map { i in pow(maxInv + (steps == 1 ? 0 : Double(i) / Double(steps - 1)) * (minInv - maxInv), rho) }
            let logSigmas = full.map { log($0) }
            t = s.map { SolverSigmas.sigmaToT($0, logSigmas: logSigmas) }
        } else {
            s = t.map { Self.interpolate(full, at: $0) }
        }
        var sigmas = s.map { Float($0) }
        sigmas.append(c.finalSigmasType == .zero ? 0 : ((1 - schedule.alphasCumprod[0]) / schedule.alphasCumprod[0]).squareRoot())
        guard t.allSatisfy({ $0 >= 0 && $0 <= Double(T - 1) }) else {
            throw ModelError("\(source): \(steps) steps with steps_offset \(c.stepsOffset) give timesteps outside 0…\(T - 1)")
        }
        self.sigmas = sigmas
        modelTimesteps = t.map { Float($0) }
        let maxSigma = sigmas.max()!
        initNoiseSigma = spacing == .leading ? (maxSigma * maxSigma + 1).squareRoot() : maxSigma
    }

    /// np.interp over the training steps' σ at a fractional timestep.
    static func interpolate(_ sigmas: [Float], at t: Double) -> Double {
        let lo = min(max(Int(t.rounded(.down)), 0), sigmas.count - 1), hi = min(lo + 1, sigmas.count - 1)
        let w = t - Double(lo)
        return Double(sigmas[lo]) + w * (Double(sigmas[hi]) - Double(sigmas[lo]))
    }

    /// The timesteps rounded to training steps (the network sees `modelTimesteps`).
    public var timesteps: [Int] { modelTimesteps.map { Int($0.rounded()) } }

    public func inputScale(step index: Int) -> Float { 1 / (sigmas[index] * sigmas[index] + 1).squareRoot() }

    public func coefficients(step index: Int) -> SchedulerStepCoefficients {
        let sigma = sigmas[index], dt = sigmas[index + 1] - sigma
        let c = configuration
        switch c.predictionType {
        case .epsilon:
            // x̂₀ = x − σ·m, so x + dt·(x − x̂₀)/σ = x + dt·m.
            return SchedulerStepCoefficients(prediction: .epsilon, sqrtAlphaProduct: 1, sqrtBetaProduct: sigma, clipRange: nil,
                                             originalSample: 0, epsilon: dt, sample: 1, noise: 0)
        case .vPrediction:
            // x̂₀ = x/(σ² + 1) − m·σ/√(σ² + 1) (the kernel's v form with √ᾱ = 1/(σ² + 1), √(1 − ᾱ) = σ/√(σ² + 1)).
            return SchedulerStepCoefficients(prediction: .vPrediction, sqrtAlphaProduct: 1 / (sigma * sigma + 1),
                                             sqrtBetaProduct: sigma / (sigma * sigma + 1).squareRoot(), clipRange: nil,
                                             originalSample: -dt / sigma, epsilon: 0, sample: 1 + dt / sigma, noise: 0)
        case .sample:
            return SchedulerStepCoefficients(prediction: .sample, sqrtAlphaProduct: 1, sqrtBetaProduct: 1, clipRange: nil,
                                             originalSample: -dt / sigma, epsilon: 0, sample: 1 + dt / sigma, noise: 0)
        }
    }
}
