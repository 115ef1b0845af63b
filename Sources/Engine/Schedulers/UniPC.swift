// Port of diffusers' UniPCMultistepScheduler (diffusers 0.42): the UniPC predictor (UniP) and
// corrector (UniC) with B(h) = h (`bh1`) or eᴴ − 1 (`bh2`), orders 1–3, data (`predict_x0`) or noise
// prediction, `lower_order_final`, `disable_corrector`, Karras sigmas, `final_sigmas_type`, the three
// spacings. Host math in float32 as torch computes it (the small linear systems in float64); the
// device does each step as: convert the model output into the history, correct the sample from the
// one the previous step predicted from (UniC, from the second step on), keep the corrected sample,
// predict (UniP) — each a linear combination (kernels/scheduler.cl).
//
// Code name → paper symbol: h = λₜ − λₛ₀; hh = −h (data prediction) or h; hPhi1 = expm1(hh);
// rk = (λₛₖ − λₛ₀)/h; R, b the system for ρ (rhos_p, rhos_c); B_h = B(h); m0 the newest converted
// output before this step's (corrector) or this step's (predictor).
// Not implemented (refused by name): solver_p, thresholding, exponential/beta/flow sigmas, dynamic
// shifting, explicit sigma_min/sigma_max.
import Foundation
import GPUKernels

public struct UniPCMultistepScheduler: Scheduler {
    public let configuration: SchedulerConfiguration
    public let schedule: NoiseSchedule
    public let timesteps: [Int]
    /// σ of every step and the final one (steps + 1 values).
    public let sigmas: [Float]
    public let order: Int
    let bh2: Bool
    let predictX0: Bool

    /// `order` defaults to the configuration's `solver_order` (2). `timesteps`: an explicit list
    /// instead of the spacing. diffusers' UniPC takes none in `set_timesteps`; the list gives what its
    /// spacing branch gives for those timesteps (σ of each, then the final σ), which is what the
    /// Python package sets on the scheduler after `set_timesteps` (python/flexiffusion/apply.py).
    public init(configuration c: SchedulerConfiguration, steps: Int, order: Int? = nil, timesteps explicit: [Int]? = nil) throws {
        try c.validate()
        let source = "UniPCMultistepScheduler"
        try c.checkSteps(steps)
        self.order = order ?? c.solverOrder
        guard (1...3).contains(self.order) else { throw ModelError("\(source): solver order \(self.order) is not 1, 2 or 3") }
        switch c.value(.solverType, c.solverType, defaultFor: "bh2") {
        case "bh2": bh2 = true
        case "bh1": bh2 = false
        case "midpoint", "heun", "logrho": bh2 = true   // (diffusers maps other solvers' types to bh2)
        default: throw ModelError("\(source): unsupported solver_type = \(c.solverType) (bh1 or bh2)")
        }
        if !c.predictX0 && c.finalSigmasType == .zero {
            throw ModelError("\(source): predict_x0 false with final_sigmas_type zero gives NaN at the last step (as in diffusers); choose sigma_min")
        }
        configuration = c
        schedule = try NoiseSchedule(c)
        predictX0 = c.predictX0
        (timesteps, sigmas) = try SolverSigmas.make(c, schedule: schedule, steps: steps, finalType: c.finalSigmasType,
                                                    karrasFinalIsLast: true, explicit: explicit, source: source)
        explicitTimesteps = explicit != nil
    }
    let explicitTimesteps: Bool
    /// diffusers' `set_begin_index` (image-to-image): the run starts at this step with no history.
    public var beginIndex = 0

    public var historyLength: Int { order + 1 }
    public var keepsSamples: Bool { true }

    /// The conversion of step `index`'s model output (x̂₀ with `predict_x0`, else ε̂; no noise).
    public func coefficients(step index: Int) -> SchedulerStepCoefficients {
        SolverSigmas.conversion(configuration, sigma: sigmas[index], dataPrediction: predictX0)
    }

    /// The predictor's order at step `index` (`this_order`: warm-up, then lower at the end with `lower_order_final`).
    public func stepOrder(_ index: Int) -> Int {
        let n = timesteps.count
        let wanted = configuration.lowerOrderFinal ? min(order, n - index) : order
        return min(wanted, min(index - beginIndex, order) + 1)
    }

    /// Whether step `index` corrects its sample (UniC) before predicting.
    public func corrects(_ index: Int) -> Bool { index > beginIndex && !configuration.disableCorrector.contains(index - 1) }

    /// B(h), expm1(hh) and the right-hand side b of the ρ system for `terms` terms, as diffusers builds them.
    func system(h: Float, terms: Int) -> (hh: Float, hPhi1: Float, bh: Float, b: [Float]) {
        let hh = predictX0 ? -h : h
        let hPhi1 = expm1(hh)
        var hPhiK = hPhi1 / hh - 1
        var factorial: Float = 1
        let bh = bh2 ? expm1(hh) : hh
        var b: [Float] = []
        for i in 1...terms {
            b.append(hPhiK * factorial / bh)
            factorial *= Float(i + 1)
            hPhiK = hPhiK / hh - 1 / factorial
        }
        return (hh, hPhi1, bh, b)
    }

    /// Solves R ρ = b with R[i][k] = rk^i (the rks' powers, as `torch.linalg.solve`).
    static func solve(rks: [Float], b: [Float]) -> [Float] {
        let n = b.count
        var m = (0..<n).map { i in (0..<n).map { k in pow(Double(rks[k]), Double(i)) } + [Double(b[i])] }
        for col in 0..<n {
            let pivot = (col..<n).max { abs(m[$0][col]) < abs(m[$1][col]) }!
            m.swapAt(col, pivot)
            for r in 0..<n where r != col {
                let f = m[r][col] / m[col][col]
                for k in col...n { m[r][k] -= f * m[col][k] }
            }
        }
        return (0..<n).map { Float(m[$0][n] / m[$0][$0]) }
    }

    public func update(step index: Int) -> SchedulerUpdate {
        let scale = { (alpha: Float, sigma: Float) in predictX0 ? alpha : sigma }
        // UniC: the sample at this step from the one the previous step predicted from (x_last), the
        // previous outputs m0 = m_{i−1}, m_{i−2}, … and this step's output (history index 0).
        var corrector: Combination? = nil
        if corrects(index) {
            let q = stepOrder(index - 1)
            let (alphaT, sigmaT) = SolverSigmas.alphaSigma(sigmas[index])
            let (alphaS0, sigmaS0) = SolverSigmas.alphaSigma(sigmas[index - 1])
            let lambdaS0 = SolverSigmas.lambda(sigmas[index - 1])
            let h = SolverSigmas.lambda(sigmas[index]) - lambdaS0
            let rks = (1..<max(1, q)).map { k in (SolverSigmas.lambda(sigmas[index - 1 - k]) - lambdaS0) / h } + [1]
            let (_, hPhi1, bh, b) = system(h: h, terms: q)
            let rhos = q == 1 ? [Float(0.5)] : Self.solve(rks: rks, b: b)
            let coef = scale(alphaT, sigmaT)
            // x = cx·x_last − coef·hPhi1·m0 − coef·B_h·(Σₖ ρₖ (m_k − m0)/rₖ + ρ_last (m_t − m0))
            var history = [Float](repeating: 0, count: q + 1)
            history[0] = -coef * bh * rhos[q - 1]
            history[1] = -coef * hPhi1 + coef * bh * rhos[q - 1]
            for k in 1..<max(1, q) {
                history[1] += coef * bh * rhos[k - 1] / rks[k - 1]
                history[k + 1] = -coef * bh * rhos[k - 1] / rks[k - 1]
            }
            corrector = Combination(sampleCoefficient: predictX0 ? sigmaT / sigmaS0 : alphaT / alphaS0, history: history, fromKeptSample: true)
        }
        // UniP: from the (corrected) sample with this step's output m0 = m_i and m_{i−1}, ….
        let p = stepOrder(index)
        let (alphaT, sigmaT) = SolverSigmas.alphaSigma(sigmas[index + 1])
        let (alphaS0, sigmaS0) = SolverSigmas.alphaSigma(sigmas[index])
        let lambdaS0 = SolverSigmas.lambda(sigmas[index])
        let h = SolverSigmas.lambda(sigmas[index + 1]) - lambdaS0
        let rks = (1..<max(1, p)).map { k in (SolverSigmas.lambda(sigmas[index - k]) - lambdaS0) / h } + [1]
        let (_, hPhi1, bh, b) = system(h: h, terms: p)
        let coef = scale(alphaT, sigmaT)
        var history = [Float](repeating: 0, count: p)
        history[0] = -coef * hPhi1
        if p >= 2 {
            let rhos = p == 2 ? [Float(0.5)] : Self.solve(rks: Array(rks.dropLast()), b: Array(b.dropLast()))
            for k in 1..<p {
                history[0] += coef * bh * rhos[k - 1] / rks[k - 1]
                history[k] = -coef * bh * rhos[k - 1] / rks[k - 1]
            }
        }
        return .multistep(convert: coefficients(step: index), corrector: corrector,
                          predictor: Combination(sampleCoefficient: predictX0 ? sigmaT / sigmaS0 : alphaT / alphaS0, history: history))
    }

    public var planSampler: PlanSampler { PlanSampler(scheduler: .unipc, steps: timesteps.count, order: order, timesteps: explicitTimesteps ? timesteps : nil) }
}
