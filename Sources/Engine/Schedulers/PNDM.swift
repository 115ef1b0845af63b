// Port of diffusers' PNDMScheduler (diffusers 0.42): pseudo numerical methods — Runge–Kutta (PRK)
// warm-up steps, then linear multistep (PLMS) steps — or, with `skip_prk_steps` (as Stable Diffusion's
// configs set it), PLMS from the start with one extra evaluation at the second timestep (a Heun-like
// correction of the first step). Model evaluations are not inference steps here: N inference steps
// take N + 1 evaluations (skip_prk_steps) or N + 9 (PRK: 12 for the first three steps); `timesteps`
// has one entry per evaluation, as diffusers' `scheduler.timesteps`, and a plan has one action per
// evaluation.
//
// diffusers keeps the raw model outputs (ets), a running Runge–Kutta sum and the sample a step
// started from (cur_sample); every evaluation's update is then x ← c_x·x_base + Σ c_j·e_j over at most
// four outputs of earlier evaluations, x_base the current or the kept sample. This port runs that
// state machine once on the host, over evaluation indices instead of tensors, and hands each
// evaluation's combination to the device (kernels/scheduler.cl's multistep_combine): the history
// holds raw outputs (ε, or v converted with the base sample inside the combination).
//
// Code name → paper symbol: a = ᾱ_t (base timestep), aPrev = ᾱ_{t−δ}; K = (ᾱ_{t−δ} − ᾱ_t) / (ᾱ_t·√(1 − ᾱ_{t−δ})
// + √(ᾱ_t(1 − ᾱ_t)ᾱ_{t−δ})) — formula (9) of the PNDM paper, x_{t−δ} = √(ᾱ_{t−δ}/ᾱ_t)·x_t − K·ε.
import Foundation
import GPUKernels

public struct PNDMScheduler: Scheduler {
    public let configuration: SchedulerConfiguration
    public let schedule: NoiseSchedule
    /// The timestep of every model evaluation, first to last (diffusers' `scheduler.timesteps`).
    public let timesteps: [Int]
    /// The number of inference steps (`num_inference_steps`).
    public let steps: Int
    /// PLMS only (no Runge–Kutta warm-up).
    public let skipPRKSteps: Bool
    public let historyLength: Int
    let updates: [SchedulerUpdate]
    let keeps: [Bool]

    /// The number of model evaluations of `steps` inference steps.
    public static func evaluations(steps: Int, skipPRKSteps: Bool) -> Int {
        skipPRKSteps ? (steps == 1 ? 1 : steps + 1) : steps + 9
    }

    /// `skipPRKSteps` defaults to the configuration's `skip_prk_steps` (false, PNDMScheduler's default).
    /// `begin`: image-to-image's first evaluation (diffusers slices `timesteps[begin:]` and PNDM's state
    /// machine starts afresh there, its counter at 0); `timesteps` are then the remaining evaluations'.
    public init(configuration c: SchedulerConfiguration, steps: Int, skipPRKSteps: Bool? = nil, begin: Int = 0) throws {
        try c.validate()
        let source = "PNDMScheduler"
        try c.checkSteps(steps)
        if c.predictionType == .sample {
            throw ModelError("\(source): unsupported prediction_type = sample (epsilon or v_prediction)")
        }
        let skip = skipPRKSteps ?? c.skipPRKSteps
        if !skip && steps < 4 {
            throw ModelError(argument: "\(source): Runge–Kutta warm-up needs at least 4 steps, not \(steps) (diffusers fails there too); use skip_prk_steps")
        }
        configuration = c
        schedule = try NoiseSchedule(c)
        self.steps = steps
        self.skipPRKSteps = skip
        let T = c.numTrainTimesteps, ratio = T / steps
        let ascending = Array(try DDIMScheduler.spacedTimesteps(c, steps: steps, source: "PNDMScheduler").reversed())
        var prk: [Int] = [], plms: [Int]
        if skip {
            // concatenate([_t[:-1], _t[-2:-1], _t[-1:]])[::-1]
            let n = ascending.count
            plms = Array((Array(ascending.dropLast()) + (n >= 2 ? [ascending[n - 2]] : []) + [ascending[n - 1]]).reversed())
        } else {
            // (_t[-4:].repeat(2) + tile([0, T // N // 2], 4))[:-1].repeat(2)[1:-1][::-1]
            let pairs = ascending.suffix(4).flatMap { [$0, $0 + ratio / 2] }.dropLast()
            prk = Array(pairs.flatMap { [$0, $0] }.dropFirst().dropLast().reversed())
            plms = Array(ascending.dropLast(3).reversed())
        }
        if begin > 0 && !skip {
            throw ModelError(argument: "\(source): image-to-image with Runge–Kutta steps is not supported (diffusers' PNDM then takes its Runge–Kutta timesteps by its counter, not from the image's); use skip_prk_steps")
        }
        guard (0..<(prk.count + plms.count)).contains(begin) else {
            throw ModelError(argument: "\(source): begin index \(begin) outside the \(prk.count + plms.count) evaluations")
        }
        timesteps = Array((prk + plms).dropFirst(begin))
        let setAlphaToOne = c.value(.setAlphaToOne, c.setAlphaToOne, defaultFor: false)
        let finalAlpha: Float = setAlphaToOne ? 1 : schedule.alphasCumprod[0]
        let alphas = schedule.alphasCumprod, vPrediction = c.predictionType == .vPrediction

        // diffusers' step_prk / step_plms over evaluation indices.
        var ets: [Int] = [], updates: [SchedulerUpdate] = [], keeps: [Bool] = []
        let identity = SchedulerStepCoefficients(prediction: .epsilon, sqrtAlphaProduct: 1, sqrtBetaProduct: 1, clipRange: nil,
                                                 originalSample: 0, epsilon: 1, sample: 0, noise: 0)
        for (i, t) in timesteps.enumerated() {
            var base = t, prev: Int, terms: [(Int, Float)], keep = false, fromKept = false
            if i < prk.count {
                prev = t - (i % 2 == 1 ? 0 : ratio / 2)
                base = prk[i / 4 * 4]
                switch i % 4 {
                case 0: terms = [(i, 1)]; ets.append(i); keep = true
                case 3: terms = [(i - 3, 1.0 / 6), (i - 2, 1.0 / 3), (i - 1, 1.0 / 3), (i, 1.0 / 6)]; fromKept = true
                default: terms = [(i, 1)]; fromKept = true
                }
            } else {
                prev = t - ratio
                if i != 1 { ets = ets.suffix(3) + [i] } else { prev = t; base = t + ratio }   // (i: diffusers' counter)
                let e = Array(ets.reversed())   // newest first
                switch ets.count {
                case 1 where i == 0: terms = [(i, 1)]; keep = true
                case 1: terms = [(i, 0.5), (e[0], 0.5)]; fromKept = true
                case 2: terms = [(e[0], 1.5), (e[1], -0.5)]
                case 3: terms = [(e[0], 23.0 / 12), (e[1], -16.0 / 12), (e[2], 5.0 / 12)]
                default: terms = [(e[0], 55.0 / 24), (e[1], -59.0 / 24), (e[2], 37.0 / 24), (e[3], -9.0 / 24)]
                }
            }
            guard (0..<T).contains(base), prev < T else {
                throw ModelError(argument: "\(source): \(c.timestepSpacing) spacing with \(steps) steps reaches timestep \(max(base, prev)), beyond the \(T) training timesteps (diffusers fails there too)")
            }
            let a = alphas[base], aPrev = prev >= 0 ? alphas[prev] : finalAlpha
            let b = 1 - a, bPrev = 1 - aPrev
            let sampleCoefficient = (aPrev / a).squareRoot()
            let k = (aPrev - a) / (a * bPrev.squareRoot() + (a * b * aPrev).squareRoot())
            // ε = m, or for v-prediction √ᾱ·v + √(1 − ᾱ)·x_base (at the base timestep).
            let outputScale = vPrediction ? a.squareRoot() : 1
            updates.append(.multistep(convert: identity, corrector: nil, predictor: Combination(
                sampleCoefficient: sampleCoefficient - (vPrediction ? k * b.squareRoot() : 0),
                history: terms.map { -k * outputScale * $0.1 }, stepsBack: terms.map { i - $0.0 }, fromKeptSample: fromKept)))
            keeps.append(keep)
        }
        self.updates = updates
        self.keeps = keeps
        historyLength = 1 + updates.map { u -> Int in
            if case let .multistep(_, _, p) = u { return p.stepsBack.max() ?? 0 } else { return 0 }
        }.max()!
    }

    /// The identity (the history keeps raw model outputs; the update is all in the combination).
    public func coefficients(step index: Int) -> SchedulerStepCoefficients {
        if case let .multistep(convert, _, _) = updates[index] { return convert }
        preconditionFailure("PNDM updates are combinations")
    }

    public func update(step index: Int) -> SchedulerUpdate { updates[index] }
    public var keepsSamples: Bool { true }
    public func keepsSample(step index: Int) -> Bool { keeps[index] }
    public var planSampler: PlanSampler { PlanSampler(scheduler: .pndm, steps: steps, skipPRKSteps: skipPRKSteps) }
}
