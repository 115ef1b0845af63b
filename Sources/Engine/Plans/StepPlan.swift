// A step plan: for every step of a sampler, whether it runs the whole UNet (full), only the shallow
// path above a skip branch with the cached deep feature (partial, DeepCache's shallow path), or no
// network at all (null: the scheduler update reuses the last model output). Plans are data, read by
// `Sampler.run(plan:)`; the builders below make the segment-wise plans of Flexiffusion, DeepCache's
// uniform and non-uniform caching, and plain DDIM with fewer steps.
//
// Branch numbering (one convention everywhere): branch m is index m of the UNet's skip stack, counted
// from the shallowest: 0 = conv_in's output, then each down-block layer's output and each downsampler's
// output, in the order the down path produces them (`UNet.branchCount` = the stack's size). A partial
// step at branch m runs conv_in, the down layers up to the one producing skip m, then the up path from
// the resnet that concatenates skip m, fed with the feature that entered that resnet at the last full
// step. Branch 0 is the cheapest partial step, the last branch skips only the mid block.
// With L = layers_per_block, DeepCache's numberings map as:
//   - DeepCache's DDPM code (`--branch b`, ddpm/models/deepcache_diffusion.py): m = b + 1;
//   - DeepCache's diffusers pipelines (`cache_layer_id` = down-block index i, `cache_block_id` = layer j
//     within it, j = L meaning its downsampler): m = i·(L + 1) + j + 1.
import Foundation

/// What one sampler step computes.
public enum StepAction: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The whole UNet.
    case full
    /// The shallow path above skip branch `branch`, joined with the feature cached at the last full step.
    case partial(branch: Int)
    /// No network evaluation: the scheduler update reuses the last model output.
    case null

    /// "full", "partial:M" or "null" — the form used in plan files.
    public var description: String {
        switch self {
        case .full: return "full"
        case .partial(let m): return "partial:\(m)"
        case .null: return "null"
        }
    }

    public init(parsing text: String) throws {
        switch text {
        case "full": self = .full
        case "null": self = .null
        default:
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == "partial", let m = Int(parts[1]), m >= 0 else {
                throw ModelError("unknown step action \"\(text)\" (expected \"full\", \"partial:BRANCH\" or \"null\")")
            }
            self = .partial(branch: m)
        }
    }

    /// The branch of a partial step.
    public var branch: Int? { if case .partial(let m) = self { return m } else { return nil } }
}

/// The samplers plans run on (as plan files and `--scheduler` name them).
public enum SchedulerKind: String, NamedChoice {
    case ddim, ddpm
    /// DPMSolverMultistepScheduler with algorithm_type dpmsolver++ (data prediction) or dpmsolver (noise prediction).
    case dpmsolverPlusPlus = "dpmsolver++", dpmsolver
    /// UniPCMultistepScheduler (predictor and corrector).
    case unipc
    /// EulerDiscreteScheduler (no churn).
    case euler
    /// PNDMScheduler: Runge–Kutta warm-up then PLMS, or PLMS only (`skip_prk_steps`).
    case pndm

    /// Whether the sampler keeps a history of model outputs (and has a solver order).
    public var isMultistep: Bool { self == .dpmsolverPlusPlus || self == .dpmsolver || self == .unipc }

    /// Whether the sampler takes an explicit timestep list (diffusers' `set_timesteps(timesteps=…)`;
    /// for UniPC, whose `set_timesteps` has no such argument, the timesteps and their σ set after it).
    public var takesTimesteps: Bool { self == .dpmsolverPlusPlus || self == .dpmsolver || self == .euler || self == .unipc }

    /// The kind diffusers' scheduler class `name` (a config's `_class_name`) is, with the settings that
    /// choose between kinds; nil for classes not implemented here.
    public static func named(className name: String, configuration c: SchedulerConfiguration) -> SchedulerKind? {
        switch name {
        case "DDIMScheduler": return .ddim
        case "DDPMScheduler": return .ddpm
        case "DPMSolverMultistepScheduler": return c.algorithmType == .dpmsolver ? .dpmsolver : .dpmsolverPlusPlus
        case "UniPCMultistepScheduler": return .unipc
        case "EulerDiscreteScheduler": return .euler
        case "PNDMScheduler": return .pndm
        default: return nil
        }
    }
}

/// The sampler a plan is made for.
public struct PlanSampler: Codable, Hashable, Sendable, CustomStringConvertible {
    /// The most sampler steps any plan may have (no scheduler trains for more timesteps).
    public static let maxSteps = 1_000_000

    public var scheduler: SchedulerKind
    /// Number of inference steps (`num_inference_steps`).
    public var steps: Int
    /// DDIM's eta.
    public var eta: Float
    /// A multistep solver's order (1…3; nil for single-step schedulers, 2 when a file leaves it out).
    public var order: Int?
    /// PNDM's `skip_prk_steps` (nil for other schedulers; true, as Stable Diffusion sets it, when a file leaves it out).
    public var skipPRKSteps: Bool?
    /// An explicit timestep list, first to last (as Align Your Steps schedules give them), instead of
    /// the configuration's spacing: `steps` values, strictly decreasing (DPM-Solver, UniPC and Euler only).
    public var timesteps: [Int]?
    /// The timestep spacing instead of the scheduler config's (`timestep_spacing`, as
    /// `from_config(config, timestep_spacing=…)` sets it); nil: the config's.
    public var spacing: TimestepSpacing?
    /// Image-to-image's strength (0…1): the run keeps the last int(steps·strength) steps of the
    /// schedule (ImageToImageScheduler.swift); nil: a run from noise.
    public var strength: Double?

    public init(scheduler: SchedulerKind = .ddim, steps: Int, eta: Float = 0, order: Int? = nil, skipPRKSteps: Bool? = nil,
                timesteps: [Int]? = nil, spacing: TimestepSpacing? = nil, strength: Double? = nil) {
        self.scheduler = scheduler; self.steps = steps; self.eta = eta
        self.order = scheduler.isMultistep ? (order ?? 2) : nil
        self.skipPRKSteps = scheduler == .pndm ? (skipPRKSteps ?? true) : nil
        self.timesteps = timesteps
        self.spacing = spacing
        self.strength = strength
    }

    /// The number of model evaluations, one plan action each: the steps, except for PNDM (N + 1
    /// with skip_prk_steps, N + 9 with the Runge–Kutta warm-up); with a strength, those left from
    /// its first step.
    public var evaluations: Int {
        let all = scheduler == .pndm ? PNDMScheduler.evaluations(steps: steps, skipPRKSteps: skipPRKSteps ?? true) : steps
        guard let strength, let begin = try? ImageToImageStrength.beginStep(steps: steps, strength: strength) else { return all }
        return all - begin
    }

    /// The step count whose run at this sampler's strength keeps `evaluations` steps (the smallest; the
    /// count itself without a strength): how an image-to-image search turns an evaluation budget into a grid.
    public func steps(keeping evaluations: Int) -> Int {
        guard let strength, strength > 0 else { return evaluations }
        var g = max(1, Int((Double(evaluations) / strength).rounded(.up)) - 1)
        while min(Int(Double(g) * strength), g) < evaluations { g += 1 }
        return g
    }

    /// Whether a run of `steps` steps at this sampler's strength keeps any step (always without one).
    public func keepsAStep(steps: Int) -> Bool { strength.map { min(Int(Double(steps) * $0), steps) >= 1 } ?? true }

    /// The same sampler for a run from noise (no strength).
    public var fromNoise: PlanSampler { var s = self; s.strength = nil; return s }

    enum CodingKeys: String, CodingKey {
        case scheduler, steps, eta, order, skipPRKSteps = "skip_prk_steps", timesteps, spacing = "timestep_spacing", strength
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decode(SchedulerKind.self, forKey: .scheduler), order = try c.decodeIfPresent(Int.self, forKey: .order)
        let skip = try c.decodeIfPresent(Bool.self, forKey: .skipPRKSteps)
        if order != nil && !kind.isMultistep { throw ModelError("a solver order applies to multistep solvers only (the sampler is \(kind))") }
        if skip != nil && kind != .pndm { throw ModelError("skip_prk_steps applies to pndm only (the sampler is \(kind))") }
        self.init(scheduler: kind, steps: try c.decode(Int.self, forKey: .steps),
                  eta: try c.decodeIfPresent(Float.self, forKey: .eta) ?? 0, order: order, skipPRKSteps: skip,
                  timesteps: try c.decodeIfPresent([Int].self, forKey: .timesteps),
                  spacing: try c.decodeIfPresent(TimestepSpacing.self, forKey: .spacing),
                  strength: try c.decodeIfPresent(Double.self, forKey: .strength))
    }

    /// The same scheduler, eta, order, PNDM mode and spacing with `steps` steps (a coarser grid; an
    /// explicit timestep list does not carry over).
    public func with(steps: Int) -> PlanSampler {
        PlanSampler(scheduler: scheduler, steps: steps, eta: eta, order: order, skipPRKSteps: skipPRKSteps, spacing: spacing, strength: strength)
    }

    /// "ddim 50 steps", "ddim 50 steps, eta 0.5", "dpmsolver++ 20 steps, order 2", "pndm 50 steps (PLMS, 51 evaluations)".
    public var description: String {
        "\(scheduler) \(steps) steps" + (eta != 0 ? ", eta \(eta)" : "") + (order.map { ", order \($0)" } ?? "")
            + (skipPRKSteps.map { " (\($0 ? "PLMS" : "PRK + PLMS"), \(evaluations) evaluations)" } ?? "")
            + (timesteps.map { ", timesteps \($0.map(String.init).joined(separator: ","))" } ?? "")
            + (spacing.map { ", \($0) spacing" } ?? "")
            + (strength.map { ", strength \($0) (\(evaluations) evaluations)" } ?? "")
    }

    /// Checks what the sampler settings must satisfy.
    public func validate() throws {
        guard steps > 0 else { throw ModelError("sampler steps must be positive, not \(steps)") }
        guard steps <= Self.maxSteps else { throw ModelError("\(steps) sampler steps: more than any scheduler trains for (at most 1,000,000)") }
        guard eta >= 0, eta <= 1 else { throw ModelError("eta must be in [0, 1] (DDIM's range: above 1 its noise exceeds the step's variance), not \(eta)") }
        if scheduler != .ddim && eta != 0 { throw ModelError("eta applies to DDIM only (the sampler is \(scheduler))") }
        if let order, !(1...3).contains(order) { throw ModelError("solver order must be 1, 2 or 3, not \(order)") }
        if order != nil && !scheduler.isMultistep { throw ModelError("a solver order applies to multistep solvers only (the sampler is \(scheduler))") }
        if skipPRKSteps == false && steps < 4 { throw ModelError("pndm with Runge–Kutta steps needs at least 4 steps, not \(steps)") }
        if let timesteps {
            guard scheduler.takesTimesteps else {
                throw ModelError("explicit timesteps work with dpmsolver++, dpmsolver, euler and unipc, not \(scheduler)")
            }
            guard timesteps.count == steps else { throw ModelError("\(timesteps.count) timesteps for \(steps) steps") }
            guard timesteps.last! >= 0, zip(timesteps, timesteps.dropFirst()).allSatisfy({ $0 > $1 }) else {
                throw ModelError("timesteps \(timesteps) must be strictly decreasing and ≥ 0")
            }
            if let spacing { throw ModelError("explicit timesteps and a \(spacing) spacing exclude each other") }
        }
        if let strength { _ = try ImageToImageStrength.beginStep(steps: steps, strength: strength) }
    }

    /// `c` with this sampler's spacing, where it names one (as a key the file gave).
    public func configuration(_ c: SchedulerConfiguration) -> SchedulerConfiguration {
        guard let spacing else { return c }
        var c = c
        c.timestepSpacing = spacing
        c.presentKeys.insert(SchedulerConfiguration.CodingKeys.timestepSpacing.rawValue)
        return c
    }

    /// This sampler's scheduler (with a strength, its image-to-image part: `ImageToImageScheduler`).
    public func scheduler(configuration: SchedulerConfiguration) throws -> any Scheduler {
        try validate()
        guard let strength else { return try fullScheduler(configuration: configuration) }
        let begin = try ImageToImageStrength.beginStep(steps: steps, strength: strength)
        if scheduler == .pndm {
            // (PNDM's state machine runs on the kept evaluations alone: the suffix is its whole schedule.)
            let suffix = try PNDMScheduler(configuration: self.configuration(configuration), steps: steps, skipPRKSteps: skipPRKSteps, begin: begin)
            return ImageToImageScheduler(base: suffix, begin: begin, offset: 0, planSampler: self)
        }
        var base = try fromNoise.fullScheduler(configuration: configuration)
        switch base {
        case var s as DPMSolverMultistepScheduler: s.beginIndex = begin; base = s
        case var s as UniPCMultistepScheduler: s.beginIndex = begin; base = s
        default: break
        }
        return ImageToImageScheduler(base: base, begin: begin, offset: begin, planSampler: self)
    }

    /// The scheduler of a run from noise.
    func fullScheduler(configuration: SchedulerConfiguration) throws -> any Scheduler {
        let configuration = self.configuration(configuration)
        switch scheduler {
        case .ddpm: return try DDPMScheduler(configuration: configuration, steps: steps)
        case .ddim: return try DDIMScheduler(configuration: configuration, steps: steps, eta: eta)
        case .dpmsolverPlusPlus: return try DPMSolverMultistepScheduler(configuration: configuration, steps: steps, algorithm: .dpmsolverPlusPlus, order: order, timesteps: timesteps)
        case .dpmsolver: return try DPMSolverMultistepScheduler(configuration: configuration, steps: steps, algorithm: .dpmsolver, order: order, timesteps: timesteps)
        case .unipc: return try UniPCMultistepScheduler(configuration: configuration, steps: steps, order: order, timesteps: timesteps)
        case .euler: return try EulerDiscreteScheduler(configuration: configuration, steps: steps, timesteps: timesteps)
        case .pndm: return try PNDMScheduler(configuration: configuration, steps: steps, skipPRKSteps: skipPRKSteps)
        }
    }
}

/// A sampler, its step count, and one action per step. On disk: JSON with `format`, `version`,
/// `sampler`, `description` and `actions` (strings, see `StepAction.description`).
public struct StepPlan: VersionedJSONFile, Equatable, Sendable {
    public static let format = "flexiffusion-step-plan"
    public static let version = 1
    public static let kind = "step plan"

    public var sampler: PlanSampler
    public var actions: [StepAction]
    /// How the plan was made (free text, e.g. the builder and its arguments).
    public var description: String

    public init(sampler: PlanSampler, actions: [StepAction], description: String = "") {
        self.sampler = sampler; self.actions = actions; self.description = description
    }

    enum CodingKeys: String, CodingKey { case format, version, sampler, description, actions }

    public init(from decoder: Decoder) throws {
        // (Also checked here, not only by `load`: plans sit inside search results files too.)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try Self.checkHeader(["format": try c.decodeIfPresent(String.self, forKey: .format) as Any,
                              "version": try c.decodeIfPresent(Int.self, forKey: .version) as Any])
        sampler = try c.decode(PlanSampler.self, forKey: .sampler)
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        let raw = try c.decode([String].self, forKey: .actions)
        actions = try raw.enumerated().map { i, text in
            do { return try StepAction(parsing: text) } catch let e as ModelError { throw ModelError("step \(i): \(e.message)") }
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(StepPlan.format, forKey: .format)
        try c.encode(StepPlan.version, forKey: .version)
        try c.encode(sampler, forKey: .sampler)
        try c.encode(description, forKey: .description)
        try c.encode(actions.map(\.description), forKey: .actions)
    }

    // MARK: Reading, writing, checking

    /// Reads and checks a plan file (structure only; `validate(branchCount:)` checks it against a model).
    /// A `flexiffusion search` results file gives its best plan.
    public static func load(from url: URL) throws -> StepPlan {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelError("cannot read step plan \(url.path): \(error.localizedDescription)")
        }
        do {
            var plan: StepPlan
            if let raw = try? JSONSerialization.jsonObject(with: data) as? [String: Any], raw["format"] as? String == "flexiffusion-search" {
                if let key = duplicateJSONKey(in: data) { throw ModelError("the key \"\(key)\" stands twice (readers would disagree on its value)") }
                guard let best = raw["best_plan"], !(best is NSNull) else {
                    let scored = ((raw["state"] as? [String: Any])?["records"] as? [String: Any])?.count ?? 0
                    throw ModelError(scored == 0 ? "the search has not scored a plan yet (no best_plan)"
                        : "the search stopped before its first generation was chosen (\(scored) plans scored, no best_plan yet): continue it with `flexiffusion search --resume` and the same options")
                }
                // (JSONSerialization traps on a top-level value that is not an object or array.)
                guard best is [String: Any] else { throw ModelError("best_plan is not a step plan (a JSON object)") }
                plan = try decode(try JSONSerialization.data(withJSONObject: best))
            } else {
                plan = try decode(data)
            }
            try plan.validate()
            return plan
        } catch let e as ModelError { throw ModelError("\(url.path): \(e.message)") }
    }

    /// Reads a plan file and checks it against a model (`validate(branchCount:schedulerConfiguration:)`);
    /// errors name the file. What `generate` runs, `plan show` and `rfid` accept, and nothing else.
    public static func load(from url: URL, branchCount: Int, schedulerConfiguration: SchedulerConfiguration) throws -> StepPlan {
        let plan = try load(from: url)
        do { try plan.validate(branchCount: branchCount, schedulerConfiguration: schedulerConfiguration) } catch let e as ModelError {
            throw ModelError("\(url.path): \(e.message)")
        }
        return plan
    }

    /// Writes the plan (to a temporary file, then renamed).
    public func write(to path: String) throws { try write(to: URL(fileURLWithPath: path)) }

    /// Checks what a plan must satisfy on its own and, given `branchCount`, against a model.
    public func validate(branchCount: Int? = nil) throws {
        try sampler.validate()
        guard actions.count == sampler.evaluations else {
            throw ModelError("the plan has \(actions.count) actions for \(sampler) (\(sampler.evaluations) model evaluations)")
        }
        guard actions.first == .full else { throw ModelError("step 0 is \(actions.first!), but the first step must be full") }
        if let branchCount {
            for (i, a) in actions.enumerated() {
                if let m = a.branch, m >= branchCount {
                    throw ModelError("step \(i): branch \(m) does not exist; the model has branches 0…\(branchCount - 1)")
                }
            }
        }
    }

    /// Checks the plan against a model: its branches, and that its sampler can be built on the model's
    /// scheduler config (the steps and any explicit timesteps within its training timesteps, settings
    /// the scheduler supports), as sampling builds it.
    public func validate(branchCount: Int, schedulerConfiguration: SchedulerConfiguration) throws {
        try validate(branchCount: branchCount)
        _ = try sampler.scheduler(configuration: schedulerConfiguration)
    }

    /// Checks that the plan fits a sampler of `scheduler` with `steps` steps.
    public func validate(scheduler: SchedulerKind, steps: Int) throws {
        guard sampler.scheduler == scheduler, sampler.steps == steps else {
            throw ModelError("the plan is for \(sampler.scheduler) with \(sampler.steps) steps, the sampler is \(scheduler) with \(steps) steps")
        }
    }

    /// Checks that the plan fits `other` (scheduler, steps and order).
    public func validate(sampler other: PlanSampler) throws {
        try validate(scheduler: other.scheduler, steps: other.steps)
        guard sampler.order == other.order, sampler.skipPRKSteps == other.skipPRKSteps, sampler.timesteps == other.timesteps,
              sampler.spacing == other.spacing else {
            throw ModelError("the plan is for \(sampler), the sampler is \(other)")
        }
    }

    // MARK: Summaries

    public var fullSteps: Int { actions.filter { $0 == .full }.count }
    public var nullSteps: Int { actions.filter { $0 == .null }.count }
    public var partialSteps: Int { actions.count - fullSteps - nullSteps }
    /// Every branch a partial step uses.
    public var branches: Set<Int> { Set(actions.compactMap(\.branch)) }

    /// For each step, the branches a full step there must cache: those of the partial steps before the next full step.
    public var captures: [Set<Int>] {
        var out = Array(repeating: Set<Int>(), count: actions.count)
        var pending = Set<Int>()
        for i in actions.indices.reversed() {
            switch actions[i] {
            case .partial(let m): pending.insert(m)
            case .full: out[i] = pending; pending = []
            case .null: break
            }
        }
        return out
    }

    /// "F" full, "N" null, the branch digit (or "[12]") for partial steps: a one-line picture of the plan.
    public var compact: String {
        actions.map { a in
            switch a {
            case .full: return "F"
            case .null: return "."
            case .partial(let m): return m < 10 ? "\(m)" : "[\(m)]"
            }
        }.joined()
    }

    // MARK: Builders

    /// Every step full: the teacher.
    public static func teacher(_ sampler: PlanSampler) -> StepPlan {
        StepPlan(sampler: sampler, actions: Array(repeating: .full, count: sampler.evaluations), description: "teacher: every step full")
    }

    /// Plain DDIM with `steps` steps, all full (the same as `teacher` for that sampler).
    public static func ddim(steps: Int, eta: Float = 0) throws -> StepPlan {
        guard steps > 0 else { throw ModelError("steps must be positive, not \(steps)") }
        var p = teacher(PlanSampler(scheduler: .ddim, steps: steps, eta: eta))
        p.description = "ddim: \(steps) steps, all full"
        return p
    }

    /// The lengths of `count` equal segments of `steps` steps (the first `steps % count` one longer).
    public static func segmentLengths(steps: Int, count: Int) -> [Int] {
        (0..<count).map { steps / count + ($0 < steps % count ? 1 : 0) }
    }

    /// Flexiffusion's segment-wise plan: the sampler's steps cut into `intervals.count` equal
    /// segments; segment i is one full step, `intervals[i] − 1` partial steps at `branches[i]`, then
    /// null steps to its end. `intervals[i]` (the active steps) is 1…the segment's length.
    public static func segments(_ sampler: PlanSampler, intervals: [Int], branches: [Int]) throws -> StepPlan {
        let n = intervals.count
        guard n > 0, n <= sampler.evaluations else { throw ModelError("need 1…\(sampler.evaluations) segments, not \(n)") }
        guard branches.count == n else { throw ModelError("\(branches.count) branches for \(n) segments") }
        var actions: [StepAction] = []
        for (i, length) in segmentLengths(steps: sampler.evaluations, count: n).enumerated() {
            let active = intervals[i]
            guard (1...length).contains(active) else {
                throw ModelError("segment \(i) has \(length) steps; its interval (active steps) must be 1…\(length), not \(active)")
            }
            guard branches[i] >= 0 else { throw ModelError("segment \(i): branch must be ≥ 0, not \(branches[i])") }
            actions.append(.full)
            actions += Array(repeating: .partial(branch: branches[i]), count: active - 1)
            actions += Array(repeating: .null, count: length - active)
        }
        return StepPlan(sampler: sampler, actions: actions,
                        description: "segments: \(n), intervals \(intervals.map(String.init).joined(separator: ",")), branches \(branches.map(String.init).joined(separator: ","))")
    }

    /// DeepCache's uniform 1:N caching: a full step every `interval` steps, partial steps at `branch` between.
    public static func deepCacheUniform(_ sampler: PlanSampler, interval: Int, branch: Int) throws -> StepPlan {
        guard interval >= 1 else { throw ModelError("interval must be ≥ 1, not \(interval)") }
        guard branch >= 0 else { throw ModelError("branch must be ≥ 0, not \(branch)") }
        let actions: [StepAction] = (0..<sampler.evaluations).map { $0 % interval == 0 ? .full : .partial(branch: branch) }
        return StepPlan(sampler: sampler, actions: actions, description: "deepcache uniform: interval \(interval), branch \(branch)")
    }

    /// DeepCache's non-uniform caching: ⌈T/N⌉ full steps packed around step `center`, at
    /// `[0] + unique(int(real((linspace((−c)^(1/p), (T−c)^(1/p), k+1))^p)))[1:−1] + c`, lowering p by
    /// 0.02 until that gives k steps — DeepCache's `sample_from_quad_center`, complex powers of the
    /// negative start included (Python's `(-c) ** (1/p)` is complex, NumPy keeps the real part).
    public static func deepCacheNonUniform(_ sampler: PlanSampler, interval: Int, branch: Int,
                                           center: Int, power: Double) throws -> StepPlan {
        guard interval >= 1 else { throw ModelError("interval must be ≥ 1, not \(interval)") }
        guard branch >= 0 else { throw ModelError("branch must be ≥ 0, not \(branch)") }
        let T = sampler.evaluations
        guard (0..<T).contains(center) else { throw ModelError("center must be a step, 0…\(T - 1), not \(center)") }
        let k = (T + interval - 1) / interval
        let (full, used) = try quadCenterSteps(total: T, count: k, center: center, power: power)
        let fullSet = Set(full)
        let actions: [StepAction] = (0..<T).map { fullSet.contains($0) ? .full : .partial(branch: branch) }
        return StepPlan(sampler: sampler, actions: actions,
                        description: "deepcache non-uniform: interval \(interval), branch \(branch), center \(center), power \(String(format: "%.2f", used))")
    }

    /// DeepCache's `sample_from_quad_center(total, count, center, pow)`: the full steps and the power used.
    public static func quadCenterSteps(total: Int, count: Int, center: Int, power: Double) throws -> ([Int], Double) {
        guard count >= 1, count <= total else { throw ModelError("cannot place \(count) full steps in \(total) steps") }
        var p = power
        while p > 1 {
            // (−c)^(1/p) as a complex number (principal branch), the end point real.
            let c = Double(center)
            let startMagnitude = pow(c, 1 / p), startAngle = c > 0 ? Double.pi / p : 0
            let start = (re: startMagnitude * cos(startAngle), im: startMagnitude * sin(startAngle))
            let end = pow(Double(total - center), 1 / p)
            var values: [Int32] = []
            for i in 0...count {
                // NumPy's linspace: start + i·step, the last point exactly the end.
                let step = (re: (end - start.re) / Double(count), im: -start.im / Double(count))
                var x = (re: start.re + Double(i) * step.re, im: start.im + Double(i) * step.im)
                if i == count { x = (end, 0) }
                let r = (x.re * x.re + x.im * x.im).squareRoot()
                let real = r == 0 ? 0 : pow(r, p) * cos(p * atan2(x.im, x.re))
                values.append(Int32(real.rounded(.towardZero)))
            }
            let unique = Array(Set(values)).sorted()
            let inner = unique.count > 2 ? unique[1..<(unique.count - 1)].map { Int($0) + center } : []
            let steps = [0] + inner
            if steps.count == count { return (steps, p) }
            p -= 0.02
        }
        throw ModelError("no power in (1, \(power)] places \(count) full steps around step \(center) of \(total); lower the center or the interval")
    }
}
