// Samplers as host math, separate from the model: the noise schedule, the timesteps of an inference
// run, and each step's coefficients for the device update (kernels/scheduler.cl).
// Port of diffusers' DDIMScheduler and DDPMScheduler (diffusers 0.42), float32 as diffusers computes.
//
// Code name → paper symbol: alphasCumprod[t] = ᾱ_t; alphaProduct = ᾱ_t; alphaProductPrevious = ᾱ_{t−Δ};
// betaProduct = 1 − ᾱ_t; eta = η (DDIM); sigma = σ_t; originalSample = x̂₀; epsilon = ε̂.
import Foundation
import GPUKernels

/// `scheduler_config.json` of DDIMScheduler, DDPMScheduler or DPMSolverMultistepScheduler, with
/// diffusers' keys and defaults. Keys absent from the file take the defaults of the scheduler that is
/// built from it (as `XScheduler.from_config` does): `presentKeys` says which were given.
public struct SchedulerConfiguration: Codable, Equatable, Sendable, CheckedConfiguration {
    public var className: String?
    public var numTrainTimesteps = 1000
    public var betaStart = 0.0001
    public var betaEnd = 0.02
    public var betaSchedule = BetaSchedule.linear
    public var clipSample = true
    public var clipSampleRange = 1.0
    public var setAlphaToOne = true
    public var stepsOffset = 0
    public var predictionType = PredictionType.epsilon
    public var timestepSpacing = TimestepSpacing.leading
    public var varianceType = VarianceType.fixedSmall
    public var thresholding = false
    public var rescaleBetasZeroSnr = false
    // DPMSolverMultistepScheduler's own settings.
    public var solverOrder = 2
    public var algorithmType = DPMSolverAlgorithm.dpmsolverPlusPlus
    public var solverType = "midpoint"
    public var lowerOrderFinal = true
    public var eulerAtFinal = false
    public var useKarrasSigmas = false
    public var finalSigmasType = FinalSigmasType.zero
    // UniPCMultistepScheduler's own settings (it shares solver_order, solver_type, lower_order_final,
    // use_karras_sigmas and final_sigmas_type with DPM-Solver).
    public var predictX0 = true
    public var disableCorrector: [Int] = []
    // PNDMScheduler's own setting.
    public var skipPRKSteps = false
    /// The keys the file gave (empty for a configuration made in code: every key at its default).
    public var presentKeys: Set<String> = []
    /// What a pipeline corrected on load (`correctedAsStableDiffusionPipeline`), one warning each, for
    /// the caller to print; not part of the configuration's encoding.
    public var corrections: [String] = []

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case className = "_class_name", numTrainTimesteps = "num_train_timesteps", betaStart = "beta_start"
        case betaEnd = "beta_end", betaSchedule = "beta_schedule", clipSample = "clip_sample"
        case clipSampleRange = "clip_sample_range", setAlphaToOne = "set_alpha_to_one", stepsOffset = "steps_offset"
        case predictionType = "prediction_type", timestepSpacing = "timestep_spacing", varianceType = "variance_type"
        case thresholding, rescaleBetasZeroSnr = "rescale_betas_zero_snr"
        case solverOrder = "solver_order", algorithmType = "algorithm_type", solverType = "solver_type"
        case lowerOrderFinal = "lower_order_final", eulerAtFinal = "euler_at_final", useKarrasSigmas = "use_karras_sigmas"
        case finalSigmasType = "final_sigmas_type"
        case predictX0 = "predict_x0", disableCorrector = "disable_corrector"
        case skipPRKSteps = "skip_prk_steps"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SchedulerConfiguration()
        func v<T: Decodable>(_ k: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: k) ?? fallback }
        className = try c.decodeIfPresent(String.self, forKey: .className)
        numTrainTimesteps = try v(.numTrainTimesteps, d.numTrainTimesteps)
        betaStart = try v(.betaStart, d.betaStart); betaEnd = try v(.betaEnd, d.betaEnd)
        betaSchedule = try v(.betaSchedule, d.betaSchedule)
        clipSample = try v(.clipSample, d.clipSample); clipSampleRange = try v(.clipSampleRange, d.clipSampleRange)
        setAlphaToOne = try v(.setAlphaToOne, d.setAlphaToOne); stepsOffset = try v(.stepsOffset, d.stepsOffset)
        predictionType = try v(.predictionType, d.predictionType); timestepSpacing = try v(.timestepSpacing, d.timestepSpacing)
        varianceType = try v(.varianceType, d.varianceType); thresholding = try v(.thresholding, d.thresholding)
        rescaleBetasZeroSnr = try v(.rescaleBetasZeroSnr, d.rescaleBetasZeroSnr)
        solverOrder = try v(.solverOrder, d.solverOrder); algorithmType = try v(.algorithmType, d.algorithmType)
        solverType = try v(.solverType, d.solverType); lowerOrderFinal = try v(.lowerOrderFinal, d.lowerOrderFinal)
        eulerAtFinal = try v(.eulerAtFinal, d.eulerAtFinal); useKarrasSigmas = try v(.useKarrasSigmas, d.useKarrasSigmas)
        finalSigmasType = try v(.finalSigmasType, d.finalSigmasType)
        predictX0 = try v(.predictX0, d.predictX0); disableCorrector = try v(.disableCorrector, d.disableCorrector)
        skipPRKSteps = try v(.skipPRKSteps, d.skipPRKSteps)
        presentKeys = Set(c.allKeys.map(\.stringValue))
    }

    /// Settings that only a scheduler other than the one named would read are accepted when at
    /// diffusers' defaults; these must stay off for every scheduler here.
    static let offKeys = ["use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting"]

    /// Keys of either scheduler that do not change the computation when at their defaults.
    static let inertKeys = Set(["dynamic_thresholding_ratio", "sample_max_value", "trained_betas", "flow_shift", "time_shift_type"])
        .union(offKeys).union(nullKeys).union(fixedKeys.map(\.0))

    /// Settings accepted only when null (they switch on what is not implemented here).
    static let nullKeys = ["solver_p", "sigma_min", "sigma_max", "shift_terminal"]

    /// Settings accepted only at one value: (key, the value).
    static let fixedKeys = [("interpolation_type", "linear"), ("timestep_type", "discrete")]

    /// Reads and checks a `scheduler_config.json`; unsupported settings are errors naming the key and value.
    public static func load(from url: URL) throws -> SchedulerConfiguration {
        let known = Set(CodingKeys.allCases.map(\.rawValue)).union(inertKeys)
        return try loadConfigJSON(url, knownKeys: known) { raw in
            if let betas = raw["trained_betas"], !(betas is NSNull) {
                throw ModelError("\(url.path): unsupported trained_betas (only beta schedules are supported)")
            }
            for key in offKeys where raw[key] as? Bool == true {
                throw ModelError("\(url.path): unsupported \(key) = true (not implemented)")
            }
            for (key, value) in fixedKeys where raw[key] != nil && raw[key] as? String != value {
                throw ModelError("\(url.path): unsupported \(key) = \(raw[key]!) (only \(value) is implemented)")
            }
            for key in nullKeys where raw[key] != nil && !(raw[key] is NSNull) {
                throw ModelError("\(url.path): unsupported \(key) = \(raw[key]!) (only null is implemented)")
            }
        }
    }

    public func validate(source: String = "scheduler config") throws {
        func refuse(_ key: String, _ value: Any, _ why: String) throws -> Never {
            throw ModelError("\(source): unsupported \(key) = \(value) (\(why))")
        }
        if thresholding { try refuse("thresholding", true, "dynamic thresholding is not supported") }
        if rescaleBetasZeroSnr { try refuse("rescale_betas_zero_snr", true, "not supported") }
        if !(2...100_000).contains(numTrainTimesteps) { try refuse("num_train_timesteps", numTrainTimesteps, "2…100000") }
        // (A beta of 1 or more makes ᾱ zero or negative, a beta of 0 makes σ zero: σ's logarithm is then not a number.)
        for (key, beta) in [("beta_start", betaStart), ("beta_end", betaEnd)] where !(beta > 0 && beta < 1) {
            try refuse(key, beta, "betas are in (0, 1)")
        }
        if !(0..<numTrainTimesteps).contains(stepsOffset) { try refuse("steps_offset", stepsOffset, "0…num_train_timesteps − 1") }
        _ = try NoiseSchedule(self)   // (betas that leave no noise level defined)
        if !(clipSampleRange > 0 && clipSampleRange.isFinite) { try refuse("clip_sample_range", clipSampleRange, "must be positive") }
        if !(1...3).contains(solverOrder) { try refuse("solver_order", solverOrder, "1, 2 or 3") }
    }

    /// The scheduler classes whose `clip_sample` defaults to true (the others have no such setting).
    static let clipSampleClasses: Set<String> = ["DDIMScheduler", "DDPMScheduler"]

    /// This configuration as `StableDiffusionPipeline.__init__` (and its image-to-image sibling) leaves
    /// it in diffusers 0.42: an outdated `steps_offset` (every scheduler here has one; 0 when absent)
    /// becomes 1, and `clip_sample` true (given, or the default of DDIM and DDPM) becomes false, each
    /// with the warning diffusers gives (in `corrections`). Schedulers made later with `from_config` of
    /// the pipeline's config inherit the corrected values, so both keys then count as given.
    public func correctedAsStableDiffusionPipeline(source: String) -> SchedulerConfiguration {
        var c = self
        let name = className ?? "the scheduler"
        if stepsOffset != 1 {
            c.corrections.append("warning: \(source): \(name)'s config is outdated: steps_offset should be 1, not \(stepsOffset); using 1, as diffusers' StableDiffusionPipeline does on load (it warns the same: update scheduler_config.json)")
            c.stepsOffset = 1
            c.presentKeys.insert(CodingKeys.stepsOffset.rawValue)
        }
        let hasClipSample = presentKeys.contains(CodingKeys.clipSample.rawValue) || Self.clipSampleClasses.contains(className ?? "")
        if hasClipSample && clipSample {
            c.corrections.append("warning: \(source): \(name)'s config has clip_sample true; using false, as diffusers' StableDiffusionPipeline does on load (it warns the same: set clip_sample to false in scheduler_config.json)")
            c.clipSample = false
            c.presentKeys.insert(CodingKeys.clipSample.rawValue)
        }
        return c
    }

    /// Checks that a run of `steps` steps fits the training timesteps.
    func checkSteps(_ steps: Int) throws {
        guard steps >= 1, steps <= numTrainTimesteps else {
            throw ModelError(argument: "\(steps) steps: a run takes between 1 and the \(numTrainTimesteps) training timesteps")
        }
    }

    /// `key`'s value when the file gave it, else the default of the scheduler being built.
    func value<T>(_ key: CodingKeys, _ current: T, defaultFor scheduler: T) -> T {
        presentKeys.contains(key.rawValue) ? current : scheduler
    }

    var prediction: SchedulerStepCoefficients.Prediction {
        switch predictionType {
        case .epsilon: return .epsilon
        case .sample: return .sample
        case .vPrediction: return .vPrediction
        }
    }
}

/// `beta_schedule`.
public enum BetaSchedule: String, NamedChoice { case linear, scaledLinear = "scaled_linear", squaredcosCapV2 = "squaredcos_cap_v2" }
/// `prediction_type`: what the model predicts.
public enum PredictionType: String, NamedChoice { case epsilon, sample, vPrediction = "v_prediction" }
/// `timestep_spacing`.
public enum TimestepSpacing: String, NamedChoice { case leading, trailing, linspace }
/// `variance_type` (DDPM).
public enum VarianceType: String, NamedChoice { case fixedSmall = "fixed_small", fixedSmallLog = "fixed_small_log", fixedLarge = "fixed_large" }
/// DPMSolverMultistepScheduler's `algorithm_type` (the SDE variants are not implemented).
public enum DPMSolverAlgorithm: String, NamedChoice { case dpmsolverPlusPlus = "dpmsolver++", dpmsolver }
/// DPMSolverMultistepScheduler's `final_sigmas_type`.
public enum FinalSigmasType: String, NamedChoice { case zero, sigmaMin = "sigma_min" }

/// np.linspace(start, end, n) in float64: start + i·step, the last point exactly `end`.
func linspace(_ start: Double, _ end: Double, _ n: Int) -> [Double] {
    let step = n == 1 ? 0 : (end - start) / Double(n - 1)
    return (0..<n).map { i in i == n - 1 && n > 1 ? end : start + Double(i) * step }
}

/// "trailing" spacing: np.round(np.arange(T, 0, −T / steps)) − 1.
func trailingTimesteps(T: Int, steps: Int) -> [Int] {
    let ratio = Double(T) / Double(steps)
    var out: [Int] = []
    var v = Double(T), i = 0
    while v > 0 { out.append(Int(v.rounded(.toNearestOrEven)) - 1); i += 1; v = Double(T) - Double(i) * ratio }
    return out
}

/// The training noise schedule: β_t and ᾱ_t in float32 as torch computes them.
public struct NoiseSchedule: Sendable {
    public let betas: [Float]
    public let alphasCumprod: [Float]

    /// σ of every training step in the variance-exploding form, float32 as torch computes ((1 − ᾱ) / ᾱ) ** 0.5
    /// (the multistep solvers' and Euler's schedule).
    public var sigmas: [Float] { alphasCumprod.map { ((1 - $0) / $0).squareRoot() } }

    /// The schedule of `c`; an error when its betas drive ᾱ to zero in float32 (σ would be infinite).
    public init(_ c: SchedulerConfiguration) throws {
        let T = c.numTrainTimesteps
        switch c.betaSchedule {
        case .scaledLinear:
            betas = NoiseSchedule.linspace(Float(c.betaStart.squareRoot()), Float(c.betaEnd.squareRoot()), T).map { $0 * $0 }
        case .squaredcosCapV2:
            // betas_for_alpha_bar(T, "cosine"), in float64, then float32.
            func alphaBar(_ t: Double) -> Double { pow(cos((t + 0.008) / 1.008 * Double.pi / 2), 2) }
            betas = (0..<T).map { i in Float(min(1 - alphaBar(Double(i + 1) / Double(T)) / alphaBar(Double(i) / Double(T)), 0.999)) }
        case .linear:
            betas = NoiseSchedule.linspace(Float(c.betaStart), Float(c.betaEnd), T)
        }
        if let t = betas.firstIndex(where: { !($0 > 0 && $0 < 1) }) {
            throw ModelError("the scheduler config's betas (\(c.betaSchedule), beta_start \(c.betaStart), beta_end \(c.betaEnd)) give beta \(betas[t]) in float32 at training step \(t): each must be in (0, 1)")
        }
        // torch.cumprod over float32 accumulates in double on the CPU.
        var product = 1.0
        alphasCumprod = betas.map { b in product *= Double(1 - b); return Float(product) }
        if let t = alphasCumprod.firstIndex(where: { !($0 > 0) }) {
            throw ModelError("the scheduler config's betas (\(c.betaSchedule), beta_start \(c.betaStart), beta_end \(c.betaEnd)) drive ᾱ to \(alphasCumprod[t]) by training step \(t): no noise level is defined there")
        }
    }

    /// torch.linspace(start, end, steps, dtype=float32): from both ends towards the middle.
    static func linspace(_ start: Float, _ end: Float, _ steps: Int) -> [Float] {
        let step = (end - start) / Float(steps - 1)
        return (0..<steps).map { i in i < steps / 2 ? start + step * Float(i) : end - step * Float(steps - i - 1) }
    }
}

/// What a sampler needs: the timesteps of a run and each step's device update.
public protocol Scheduler: Sendable {
    var configuration: SchedulerConfiguration { get }
    /// The timesteps of an `steps`-step run, first to last.
    var timesteps: [Int] { get }
    /// The coefficients of step `index` (0-based into `timesteps`): the whole update of a single-step
    /// scheduler, the model output's conversion for a multistep one (σ is the step's noise either way).
    func coefficients(step index: Int) -> SchedulerStepCoefficients
    /// Step `index`'s device update.
    func update(step index: Int) -> SchedulerUpdate
    /// How many converted model outputs a multistep solver keeps (0 for single-step schedulers).
    var historyLength: Int { get }
    /// Whether any step keeps its sample for a later step's combination (UniPC's corrector, PNDM's
    /// Runge–Kutta and first PLMS steps).
    var keepsSamples: Bool { get }
    /// Whether step `index` keeps the sample it predicts from (after its corrector, before its predictor).
    func keepsSample(step index: Int) -> Bool
    /// The timesteps the network sees (fractional for some schedulers, e.g. Euler's linspace).
    var modelTimesteps: [Float] { get }
    /// The factor on the sample before the network at step `index` (`scale_model_input`).
    func inputScale(step index: Int) -> Float
    /// The standard deviation of the initial noise (`init_noise_sigma`): unit noise is scaled by it.
    var initNoiseSigma: Float { get }
    /// This scheduler as plans name it.
    var planSampler: PlanSampler { get }
    /// `add_noise(x, ε, t)` at step `index` as x·signal + ε·noise (image-to-image's start; ImageToImageScheduler.swift).
    func addNoiseLevels(step index: Int) -> (signal: Float, noise: Float)
}

extension Scheduler {
    public func update(step index: Int) -> SchedulerUpdate { .single(coefficients(step: index)) }
    public var historyLength: Int { 0 }
    public var keepsSamples: Bool { false }
    public func keepsSample(step index: Int) -> Bool { keepsSamples }
    public var modelTimesteps: [Float] { timesteps.map(Float.init) }
    public func inputScale(step index: Int) -> Float { 1 }
    public var initNoiseSigma: Float { 1 }
    /// Whether no step draws variance noise.
    public var isDeterministic: Bool { timesteps.indices.allSatisfy { coefficients(step: $0).noise == 0 } }
}

/// One step's work on the device after the network.
public enum SchedulerUpdate: Equatable, Sendable {
    /// y = c_x0·x̂₀ + c_ε·ε̂ + c_x·x + σ·noise (DDIM, DDPM).
    case single(SchedulerStepCoefficients)
    /// Multistep solvers: the model output converted by `convert` (x̂₀ or ε̂, from the sample as it
    /// came in; no noise) becomes the newest history entry h₀; then, with a `corrector` (UniPC's UniC),
    /// the sample becomes corrector.sampleCoefficient·x_kept + Σₖ corrector.history[k]·h₋ₖ, where x_kept is
    /// the sample a step that keeps one (`Scheduler.keepsSample`) started its prediction from; then the
    /// sample is kept when this step keeps it; then the sample becomes the predictor's combination (of
    /// the current sample or the kept one).
    case multistep(convert: SchedulerStepCoefficients, corrector: Combination?, predictor: Combination)
}

/// A linear combination of one sample and a solver's history: the current sample, or the kept one
/// (`fromKeptSample`), and the converted outputs of the steps `stepsBack` before this one (0 = this
/// step's own; by default 0, 1, 2, …: the newest first). At most 4 history terms.
public struct Combination: Equatable, Sendable {
    public var sampleCoefficient: Float
    public var history: [Float]
    public var stepsBack: [Int]
    public var fromKeptSample: Bool
    public init(sampleCoefficient: Float, history: [Float], stepsBack: [Int]? = nil, fromKeptSample: Bool = false) {
        precondition(stepsBack == nil || stepsBack!.count == history.count, "one step back per history term")
        self.sampleCoefficient = sampleCoefficient; self.history = history
        self.stepsBack = stepsBack ?? Array(history.indices); self.fromKeptSample = fromKeptSample
    }
}

/// DDIMScheduler.set_timesteps / step (with eta; variance noise supplied by the caller).
public struct DDIMScheduler: Scheduler {
    public let configuration: SchedulerConfiguration
    public let schedule: NoiseSchedule
    public let timesteps: [Int]
    public let eta: Float
    let stepRatio: Int

    public init(configuration c: SchedulerConfiguration, steps: Int, eta: Float = 0) throws {
        try c.validate()
        try c.checkSteps(steps)
        guard eta >= 0, eta <= 1 else { throw ModelError("eta \(eta) must be in [0, 1] (DDIM's range: above 1 its noise exceeds the step's variance)") }
        configuration = c
        schedule = try NoiseSchedule(c)
        self.eta = eta
        stepRatio = c.numTrainTimesteps / steps
        timesteps = try DDIMScheduler.spacedTimesteps(c, steps: steps)
    }

    /// set_timesteps for the three spacings (shared with DDPM and PNDM); an error where steps_offset
    /// pushes a timestep past the training steps (diffusers indexes out of range there).
    static func spacedTimesteps(_ c: SchedulerConfiguration, steps: Int, source: String = "DDIMScheduler") throws -> [Int] {
        let T = c.numTrainTimesteps
        let t: [Int]
        switch c.timestepSpacing {
        case .linspace:
            // np.linspace(0, T - 1, steps).round()[::-1]
            t = linspace(0, Double(T - 1), steps).map { Int($0.rounded(.toNearestOrEven)) }.reversed()
        case .trailing:
            t = trailingTimesteps(T: T, steps: steps)
        case .leading:
            let ratio = T / steps
            t = (0..<steps).map { $0 * ratio + c.stepsOffset }.reversed()
        }
        try SolverSigmas.checkRange(t, T: T, steps: steps, offset: c.stepsOffset, source: source)
        return t
    }

    public func coefficients(step index: Int) -> SchedulerStepCoefficients {
        let c = configuration, t = timesteps[index]
        let prev = t - stepRatio
        let a = schedule.alphasCumprod[t]
        let aPrev = prev >= 0 ? schedule.alphasCumprod[prev] : (c.setAlphaToOne ? 1 : schedule.alphasCumprod[0])
        let b = 1 - a, bPrev = 1 - aPrev
        let variance = (bPrev / b) * (1 - a / aPrev)
        let std = eta * variance.squareRoot()
        return SchedulerStepCoefficients(
            prediction: c.prediction, sqrtAlphaProduct: a.squareRoot(), sqrtBetaProduct: b.squareRoot(),
            clipRange: c.clipSample ? Float(c.clipSampleRange) : nil,
            originalSample: aPrev.squareRoot(), epsilon: (1 - aPrev - std * std).squareRoot(), sample: 0, noise: std)
    }
}

extension DDIMScheduler {
    public var planSampler: PlanSampler { PlanSampler(scheduler: .ddim, steps: timesteps.count, eta: eta) }
}

extension DDPMScheduler {
    public var planSampler: PlanSampler { PlanSampler(scheduler: .ddpm, steps: timesteps.count) }
}

/// DDPMScheduler.set_timesteps / step: ancestral sampling (variance noise supplied by the caller).
public struct DDPMScheduler: Scheduler {
    public let configuration: SchedulerConfiguration
    public let schedule: NoiseSchedule
    public let timesteps: [Int]

    public init(configuration c: SchedulerConfiguration, steps: Int) throws {
        try c.validate()
        try c.checkSteps(steps)
        configuration = c
        schedule = try NoiseSchedule(c)
        timesteps = try DDIMScheduler.spacedTimesteps(c, steps: steps, source: "DDPMScheduler")
    }

    public func coefficients(step index: Int) -> SchedulerStepCoefficients {
        let c = configuration, t = timesteps[index]
        let prev = index + 1 < timesteps.count ? timesteps[index + 1] : -1
        let a = schedule.alphasCumprod[t]
        let aPrev: Float = prev >= 0 ? schedule.alphasCumprod[prev] : 1
        let b = 1 - a, bPrev = 1 - aPrev
        let currentAlpha = a / aPrev, currentBeta = 1 - currentAlpha
        var sigma: Float = 0
        if t > 0 {
            switch c.varianceType {
            case .fixedLarge: sigma = currentBeta.squareRoot()
            case .fixedSmallLog: sigma = exp(0.5 * log(max((1 - aPrev) / (1 - a) * currentBeta, 1e-20)))
            case .fixedSmall: sigma = max((1 - aPrev) / (1 - a) * currentBeta, 1e-20).squareRoot()
            }
        }
        return SchedulerStepCoefficients(
            prediction: c.prediction, sqrtAlphaProduct: a.squareRoot(), sqrtBetaProduct: b.squareRoot(),
            clipRange: c.clipSample ? Float(c.clipSampleRange) : nil,
            originalSample: (aPrev.squareRoot() * currentBeta) / b, epsilon: 0,
            sample: currentAlpha.squareRoot() * bPrev / b, noise: sigma)
    }
}
