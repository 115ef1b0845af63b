// The timesteps and σ schedule of diffusers' multistep solvers (DPMSolverMultistepScheduler and
// UniPCMultistepScheduler share set_timesteps but for the last Karras σ): the three spacings with
// `lambda_min_clipped` at −inf (the last timestep is T), or Karras sigmas with timesteps found by
// interpolating log σ; then the final σ (`final_sigmas_type`). In float32 as torch and NumPy compute.
import Foundation
import GPUKernels

enum SolverSigmas {
    /// (timesteps, σ for each step and the final one); `explicit` timesteps replace the spacing.
    static func make(_ c: SchedulerConfiguration, schedule: NoiseSchedule, steps: Int, finalType: FinalSigmasType,
                     karrasFinalIsLast: Bool, explicit: [Int]? = nil, source: String) throws -> ([Int], [Float]) {
        let T = c.numTrainTimesteps
        let spacing = c.value(.timestepSpacing, c.timestepSpacing, defaultFor: .linspace)
        let offset = c.stepsOffset
        var t: [Int]
        if let explicit {
            try checkExplicit(explicit, c, steps: steps, source: source)
            let full = schedule.sigmas
            return (explicit, explicit.map { full[$0] } + [finalType == .zero ? 0 : full[0]])
        }
        switch spacing {
        case .linspace:
            // np.linspace(0, T − 1, steps + 1).round()[::-1][:-1]
            t = Array(linspace(0, Double(T - 1), steps + 1).map { Int($0.rounded(.toNearestOrEven)) }.reversed().dropLast())
        case .leading:
            let ratio = T / (steps + 1)
            t = Array((0...steps).map { $0 * ratio }.reversed().dropLast()).map { $0 + offset }
        case .trailing:
            t = trailingTimesteps(T: T, steps: steps)
        }
        let full = schedule.sigmas
        var s: [Float]
        if c.useKarrasSigmas {
            let karras = karrasSigmas(min: Double(full[0]), max: Double(full[T - 1]), steps: steps)
            let logSigmas = full.map { log($0) }
            t = karras.map { Int(sigmaToT($0, logSigmas: logSigmas).rounded(.toNearestOrEven)) }
            s = karras.map { Float($0) }
            if finalType == .sigmaMin && karrasFinalIsLast {
                s.append(s.last!)
                return try checked(t, s, T: T, steps: steps, offset: offset, source: source)
            }
        } else {
            try checkRange(t, T: T, steps: steps, offset: offset, source: source)
            s = t.map { full[$0] }
        }
        s.append(finalType == .zero ? 0 : full[0])
        return try checked(t, s, T: T, steps: steps, offset: offset, source: source)
    }

    /// An explicit timestep list: `steps` values, strictly decreasing, within the training steps; not with Karras sigmas.
    static func checkExplicit(_ t: [Int], _ c: SchedulerConfiguration, steps: Int, source: String) throws {
        guard t.count == steps else { throw ModelError(argument: "\(source): \(t.count) timesteps for \(steps) steps") }
        guard t.allSatisfy({ (0..<c.numTrainTimesteps).contains($0) }), zip(t, t.dropFirst()).allSatisfy({ $0 > $1 }) else {
            throw ModelError(argument: "\(source): timesteps \(t) must be strictly decreasing within 0…\(c.numTrainTimesteps - 1)")
        }
        if c.useKarrasSigmas { throw ModelError(argument: "\(source): explicit timesteps with use_karras_sigmas = true (diffusers refuses them too)") }
    }

    static func checked(_ t: [Int], _ s: [Float], T: Int, steps: Int, offset: Int, source: String) throws -> ([Int], [Float]) {
        try checkRange(t, T: T, steps: steps, offset: offset, source: source)
        return (t, s)
    }

    static func checkRange(_ t: [Int], T: Int, steps: Int, offset: Int, source: String) throws {
        guard t.allSatisfy({ (0..<T).contains($0) }) else {
            throw ModelError(argument: "\(source): \(steps) steps with steps_offset \(offset) give timesteps outside 0…\(T - 1)")
        }
    }

    /// `_convert_to_karras`: ρ = 7 interpolation from σ_max to σ_min over `steps` points, float64.
    static func karrasSigmas(min sigmaMin: Double, max sigmaMax: Double, steps: Int) -> [Double] {
        let rho = 7.0, minInv = pow(sigmaMin, 1 / rho), maxInv = pow(sigmaMax, 1 / rho)
        return (0..<steps).map { i in pow(maxInv + (steps == 1 ? 0 : Double(i) / Double(steps - 1)) * (minInv - maxInv), rho) }
    }

    /// A multistep solver's conversion of the model output at σ: into x̂₀ (`dataPrediction`) or ε̂, no noise.
    static func conversion(_ c: SchedulerConfiguration, sigma: Float, dataPrediction: Bool) -> SchedulerStepCoefficients {
        let (alpha, sigmaT) = alphaSigma(sigma)
        return SchedulerStepCoefficients(prediction: c.prediction, sqrtAlphaProduct: alpha, sqrtBetaProduct: sigmaT, clipRange: nil,
                                         originalSample: dataPrediction ? 1 : 0, epsilon: dataPrediction ? 0 : 1, sample: 0, noise: 0)
    }

    /// diffusers' `_sigma_to_t`: the fractional training step whose log σ interpolates to `sigma`'s.
    static func sigmaToT(_ sigma: Double, logSigmas: [Float]) -> Double {
        let logSigma = log(max(sigma, 1e-10))
        var low = 0
        for (i, l) in logSigmas.enumerated() where logSigma - Double(l) >= 0 { low = i }
        low = min(low, logSigmas.count - 2)
        let lo = Double(logSigmas[low]), hi = Double(logSigmas[low + 1])
        // (Two equal neighbours — tiny betas in float32 — give 0/0: either end will do.)
        let raw = (lo - logSigma) / (lo - hi), w = raw.isNaN ? 0 : min(max(raw, 0), 1)
        return (1 - w) * Double(low) + w * Double(low + 1)
    }

    /// (αₜ, σₜ) of σ, as `_sigma_to_alpha_sigma_t`.
    static func alphaSigma(_ sigma: Float) -> (Float, Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }

    /// λ = log α − log σ of σ.
    static func lambda(_ sigma: Float) -> Float {
        let (a, s) = alphaSigma(sigma)
        return log(a) - log(s)
    }
}
