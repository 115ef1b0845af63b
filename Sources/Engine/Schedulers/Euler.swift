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

    /// Whether the timesteps were given (diffusers' `set_timesteps(timesteps=…)`) instead of spaced.
    let explicitTimesteps: Bool

    /// `timesteps`: an explicit list instead of the spacing.
    public init(configuration c: SchedulerConfiguration, steps: Int, timesteps explicit: [Int]? = nil) throws {
        try c.validate()
        let source = "EulerDiscreteScheduler"
        try c.checkSteps(steps)
        configuration = c
        schedule = try NoiseSchedule(c)
        let T = c.numTrainTimesteps
        let spacing = c.value(.timestepSpacing, c.timestepSpacing, defaultFor: .linspace)
        var t: [Double]
        explicitTimesteps = explicit != nil
        if let explicit {
            try SolverSigmas.checkExplicit(explicit, c, steps: steps, source: source)
            t = explicit.map(Double.init)
        } else {
            switch spacing {
            case .linspace:
                // np.linspace(0, T − 1, steps, dtype=float32)[::-1]
                t = linspace(0, Double(T - 1), steps).map { Double(Float($0)) }.reversed()
            case .leading:
                let ratio = T / steps
                t = (0..<steps).map { Double($0 * ratio + c.stepsOffset) }.reversed()
            case .trailing:
                t = trailingTimesteps(T: T, steps: steps).map(Double.init)
            }
        }
        let full = schedule.sigmas
        var s: [Double]
        if c.useKarrasSigmas {
            // _convert_to_karras on the interpolated sigmas: their own last and first as σ_min and σ_max.
            let interpolated = t.map { Self.interpolate(full, at: $0) }
            s = SolverSigmas.karrasSigmas(min: interpolated.last!, max: interpolated.first!, steps: steps)
            let logSigmas = full.map { log($0) }
            t = s.map { SolverSigmas.sigmaToT($0, logSigmas: logSigmas) }
        } else {
            s = t.map { Self.interpolate(full, at: $0) }
        }
        var sigmas = s.map { Float($0) }
        sigmas.append(c.finalSigmasType == .zero ? 0 : full[0])
        guard t.allSatisfy({ $0 >= 0 && $0 <= Double(T - 1) }) else {
            throw ModelError(argument: "\(source): \(steps) steps with steps_offset \(c.stepsOffset) give timesteps outside 0…\(T - 1)")
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

    public var planSampler: PlanSampler { PlanSampler(scheduler: .euler, steps: timesteps.count, timesteps: explicitTimesteps ? timesteps : nil) }
}
