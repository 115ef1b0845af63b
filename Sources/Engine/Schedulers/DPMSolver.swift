// Port of diffusers' DPMSolverMultistepScheduler (diffusers 0.42): DPM-Solver++ (data prediction)
// and DPM-Solver (noise prediction), multistep orders 1–3 with midpoint or Heun second-order
// updates, `lower_order_final`, `euler_at_final`, `use_karras_sigmas`, `final_sigmas_type`, the three
// timestep spacings and `steps_offset`. Host math in float32 as torch computes it; each step is a
// conversion of the model output (x̂₀ for DPM-Solver++, ε̂ for DPM-Solver) into the solver's history
// and a linear combination of the sample and that history (kernels/scheduler.cl).
//
// Code name → paper symbol: sigmas[i] = σᵢ (VE form, √((1−ᾱ)/ᾱ)); alpha, sigma = αₜ, σₜ (VP form,
// αₜ = 1/√(σ²+1), σₜ = σ·αₜ); lambda = λₜ = log αₜ − log σₜ; h = λₜ − λₛ; r0, r1 = h₀/h, h₁/h;
// D0, D1, D2 the divided differences of the converted outputs m0 (newest), m1, m2.
// Not implemented (refused by name): the SDE variants, thresholding, exponential/beta/Lu/flow sigmas,
// dynamic shifting, a finite `lambda_min_clipped`, Karras sigmas with the cosine schedule.
import Foundation
import GPUKernels

public struct DPMSolverMultistepScheduler: Scheduler {
    public let configuration: SchedulerConfiguration
    public let schedule: NoiseSchedule
    public let timesteps: [Int]
    /// σ of every step and the final one (steps + 1 values).
    public let sigmas: [Float]
    public let order: Int
    public let algorithm: DPMSolverAlgorithm
    let heun: Bool

    /// `algorithm` and `order` default to the configuration's (diffusers' defaults: DPM-Solver++, 2).
    /// `timesteps`: an explicit list (diffusers' `set_timesteps(timesteps=…)`) instead of the spacing.
    public init(configuration c: SchedulerConfiguration, steps: Int, algorithm: DPMSolverAlgorithm? = nil, order: Int? = nil,
                timesteps explicit: [Int]? = nil) throws {
        try c.validate()
        let source = "DPMSolverMultistepScheduler"
        try c.checkSteps(steps)
        self.algorithm = algorithm ?? c.algorithmType
        self.order = order ?? c.solverOrder
        guard (1...3).contains(self.order) else { throw ModelError("\(source): solver order \(self.order) is not 1, 2 or 3") }
        switch c.solverType {
        case "midpoint", "bh1", "bh2", "logrho": heun = false   // (diffusers maps UniPC's and DEIS's types to midpoint)
        case "heun": heun = true
        default: throw ModelError("\(source): unsupported solver_type = \(c.solverType) (midpoint or heun)")
        }
        if self.algorithm == .dpmsolver && c.finalSigmasType == .zero && c.presentKeys.contains("final_sigmas_type") {
            throw ModelError("\(source): final_sigmas_type zero needs algorithm_type dpmsolver++ (choose sigma_min)")
        }
        // (diffusers raises for dpmsolver with its default final_sigmas_type "zero"; a config that does
        // not name one gets sigma_min here, so that `--scheduler dpmsolver` works from any config.)
        let finalType = c.value(.finalSigmasType, c.finalSigmasType, defaultFor: self.algorithm == .dpmsolver ? .sigmaMin : .zero)
        if c.useKarrasSigmas && c.betaSchedule == .squaredcosCapV2 {
            throw ModelError("\(source): use_karras_sigmas with beta_schedule squaredcos_cap_v2 (fractional timesteps) is not supported")
        }
        configuration = c
        schedule = try NoiseSchedule(c)
        (timesteps, sigmas) = try SolverSigmas.make(c, schedule: schedule, steps: steps, finalType: finalType, karrasFinalIsLast: false,
                                                    explicit: explicit, source: source)
        finalSigmasZero = finalType == .zero
        explicitTimesteps = explicit != nil
    }
    let finalSigmasZero: Bool
    let explicitTimesteps: Bool
    /// diffusers' `set_begin_index` (image-to-image): the run starts at this step with no history.
    public var beginIndex = 0

    public var historyLength: Int { order }

    /// The conversion of step `index`'s model output (σ = 0: no noise; the update is `update(step:)`).
    public func coefficients(step index: Int) -> SchedulerStepCoefficients {
        SolverSigmas.conversion(configuration, sigma: sigmas[index], dataPrediction: algorithm == .dpmsolverPlusPlus)
    }

    /// The solver order step `index` uses (lower near the start, and at the end as `lower_order_final` says).
    public func stepOrder(_ index: Int) -> Int {
        let n = timesteps.count, c = configuration
        let lowerFinal = index == n - 1 && (c.eulerAtFinal || (c.lowerOrderFinal && n < 15) || finalSigmasZero)
        let lowerSecond = index == n - 2 && c.lowerOrderFinal && n < 15
        let previous = min(index - beginIndex, order)   // diffusers' lower_order_nums before this step
        if order == 1 || previous < 1 || lowerFinal { return 1 }
        if order == 2 || previous < 2 || lowerSecond { return 2 }
        return 3
    }

    public func update(step index: Int) -> SchedulerUpdate {
        let (alphaT, sigmaT) = SolverSigmas.alphaSigma(sigmas[index + 1])
        let (alphaS0, sigmaS0) = SolverSigmas.alphaSigma(sigmas[index])
        func lambda(_ a: Float, _ s: Float) -> Float { log(a) - log(s) }
        let lambdaT = lambda(alphaT, sigmaT), lambdaS0 = lambda(alphaS0, sigmaS0)
        let h = lambdaT - lambdaS0
        let plus = algorithm == .dpmsolverPlusPlus
        let cx = plus ? sigmaT / sigmaS0 : alphaT / alphaS0
        // x_t = cx·x + u0·D0 + u1·D1 + u2·D2, with (u0, u1, u2) per algorithm and order.
        let A = plus ? alphaT * (exp(-h) - 1) : sigmaT * (exp(h) - 1)
        let k = stepOrder(index)
        if k == 1 { return .multistep(convert: coefficients(step: index), corrector: nil, predictor: Combination(sampleCoefficient: cx, history: [-A])) }
        let (alphaS1, sigmaS1) = SolverSigmas.alphaSigma(sigmas[index - 1])
        let h0 = lambdaS0 - lambda(alphaS1, sigmaS1)
        let r0 = h0 / h, a0 = 1 / r0
        if k == 2 {
            let u1: Float
            if !heun { u1 = -0.5 * A }
            else if plus { u1 = alphaT * ((exp(-h) - 1) / h + 1) }
            else { u1 = -(sigmaT * ((exp(h) - 1) / h - 1)) }
            // D1 = a0·(m0 − m1)
            return .multistep(convert: coefficients(step: index), corrector: nil, predictor: Combination(sampleCoefficient: cx, history: [-A + u1 * a0, -u1 * a0]))
        }
        let (alphaS2, sigmaS2) = SolverSigmas.alphaSigma(sigmas[index - 2])
        let h1 = lambda(alphaS1, sigmaS1) - lambda(alphaS2, sigmaS2)
        let r1 = h1 / h, a1 = 1 / r1
        let u1 = plus ? alphaT * ((exp(-h) - 1) / h + 1) : -(sigmaT * ((exp(h) - 1) / h - 1))
        let u2 = plus ? -(alphaT * ((exp(-h) - 1 + h) / (h * h) - 0.5)) : -(sigmaT * ((exp(h) - 1 - h) / (h * h) - 0.5))
        // D1 = (1 + q·r0)·D1_0 − q·r0·D1_1 and D2 = q·(D1_0 − D1_1), q = 1 / (r0 + r1), D1_0 = a0·(m0 − m1), D1_1 = a1·(m1 − m2).
        let q = 1 / (r0 + r1), kk = r0 * q
        let c0 = -A + u1 * (1 + kk) * a0 + u2 * q * a0
        let c1 = -u1 * ((1 + kk) * a0 + kk * a1) - u2 * q * (a0 + a1)
        let c2 = u1 * kk * a1 + u2 * q * a1
        return .multistep(convert: coefficients(step: index), corrector: nil, predictor: Combination(sampleCoefficient: cx, history: [c0, c1, c2]))
    }

    public var planSampler: PlanSampler { PlanSampler(scheduler: algorithm == .dpmsolver ? .dpmsolver : .dpmsolverPlusPlus, steps: timesteps.count, order: order,
                                                      timesteps: explicitTimesteps ? timesteps : nil) }
}
