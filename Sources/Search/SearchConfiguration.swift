// What a search is asked to do (the options of `flexiffusion search`, as a value) and its one
// validator, and where the search's step latencies come from.
import Engine
import Foundation

/// Everything a search is asked to do (what `flexiffusion search`'s options say).
public struct SearchConfiguration: Sendable {
    public enum Target: Sendable, Equatable { case speedup(Double), latencyMs(Double) }
    public enum Grids: Sendable, Equatable { case auto, none, steps([Int]) }
    public enum Mode: Sendable, Equatable { case search, shard(index: Int, count: Int), merge }

    public var target: Target
    /// Plans must be predicted (1 + margin) × the requested speed-up.
    public var margin = 0.08
    /// The teacher's sampler (DDIM, every step full).
    public var teacher: PlanSampler
    public var batch: Int
    public var samples = 64
    /// Images children are screened on (nil: one batch).
    public var screenSamples: Int?
    public var population = 8, children = 8, generations = 6
    public var mutationProbability = 0.25, crossoverFraction = 0.25
    public var seed: UInt64 = 0
    /// Segment counts N (filtered to 1…steps, and to divisors of the steps with `divisorsOnly`).
    public var segmentCounts: [Int] = Array(4...50)
    public var divisorsOnly = false
    public var grids: Grids = .auto
    /// Other solvers the grids may run on (nil: DPM-Solver++ 2M and UniPC 2 and 3 beside a teacher with
    /// eta 0 and spaced timesteps, else none — or, when continuing a results file, the file's).
    public var solvers: [SolverChoice]?
    public var useMACs = false
    /// What the search minimises (the evaluator must score by it too).
    public var fitness = Fitness.rfid
    /// The final race: successive halving of the contenders up to this many images (nil: none),
    /// judged by `finalJudge` (the evaluator must know the real data for fid).
    public var finalSamples: Int?
    public var finalJudge = Fitness.rfid
    /// The clip judge's distance from the teacher's CLIP score.
    public var clipTolerance = 0.1
    /// Whether mutation moves solver grids' timesteps (explicit lists, as Align Your Steps gives
    /// them), starting from `schedulerConfiguration`'s spacing; when continuing a results file, its own choice.
    public var searchTimesteps = true
    /// The model's scheduler configuration (nil: solver grids keep their spacing's timesteps).
    public var schedulerConfiguration: SchedulerConfiguration?
    /// Start no generation that would end after this many minutes (nil: no limit).
    public var maxMinutes: Double?
    /// Timed rounds of each plan beside a teacher batch (0: none).
    public var measureRounds = 1
    public var measureFront = false
    /// The results file, the picture and the page (nil: the results file's stem with .svg, .html).
    public var out: URL
    public var svg: URL?
    public var html: URL?
    /// Images per plan on the page.
    public var htmlImages = 8
    /// A text-to-image search's prompt set, recorded in the results file and on its page.
    public var prompts: PromptRecord?
    /// The files the search reads (prompts, real images, the latency table, the model's folder): no
    /// output may be one of them.
    public var inputs: [NamedPath] = []
    public var resume = false
    public var mode: Mode = .search
    /// Who made the search (checked when a results file is continued; the model's key may be set
    /// after `validate`, once the pipeline is loaded).
    public var modelName: String, modelKey: String, device: String, features: String
    public var branchCount: Int

    public init(target: Target, teacher: PlanSampler, batch: Int, out: URL, modelName: String, modelKey: String,
                device: String, features: String, branchCount: Int) {
        self.target = target; self.teacher = teacher; self.batch = batch; self.out = out
        self.modelName = modelName; self.modelKey = modelKey; self.device = device; self.features = features; self.branchCount = branchCount
    }

    /// Images children are screened on: `screenSamples`, else one batch (at most `samples`).
    public var screen: Int { screenSamples ?? min(batch, samples) }

    /// The one check of what a search is asked to do: `flexiffusion search` asks it before any work,
    /// the session again before it starts or continues a search (option names in parentheses, as the
    /// command line gives them).
    public func validate() throws {
        func refuse(_ message: String) -> ModelError { ModelError(argument: message) }
        guard (0..<1).contains(margin) else { throw refuse("the margin (--margin \(margin)): give a fraction in [0, 1), e.g. 0.08") }
        guard batch > 0 else { throw refuse("the batch (--batch \(batch)) must be positive") }
        switch target {
        case .speedup(let x):
            guard x.isFinite && x > 1 else { throw refuse("the speed-up (--speedup \(x)) must be a number above 1: a plan faster than the teacher") }
        case .latencyMs(let ms):
            guard ms > 0 && ms.isFinite else { throw refuse("the latency (--latency-ms \(ms)) must be a positive number of milliseconds") }
            guard !useMACs else { throw refuse("a latency target (--latency-ms) needs measured latencies; price by MACs (--macs) with a speed-up target (--speedup)") }
        }
        guard fitness != .fid else {
            throw refuse("FID against real data (--fitness fid) needs many images: it judges the final race (--final-judge fid), with the fitness rfid or paired")
        }
        if let f = finalSamples, f <= samples {
            throw refuse("the final race's images (--final-samples \(f)) must be more than the fitness's (--samples \(samples)), or 0 for no final race")
        }
        if let m = maxMinutes, !(m > 0) { throw refuse("the time limit (--max-minutes \(m)) must be positive") }
        guard (0...1000).contains(measureRounds) else { throw refuse("the timed rounds (--measure-rounds \(measureRounds)): 0…1,000 (at most 1,000)") }
        try SearchSettings.check(samples: samples, screenSamples: screen, population: population, children: children, generations: generations,
                                 mutationProbability: mutationProbability, crossoverFraction: crossoverFraction)
        _ = try counts()
        if case .steps(let list) = grids { _ = try coarserGrids(list) }
        try checkFiles()
    }

    /// The files this search writes: the results file, its picture and page, the previous results
    /// it keeps (a new search over an existing file) — or, for a shard, its shard file.
    public var outputs: [NamedPath] {
        switch mode {
        case .shard(let index, let count): return [NamedPath("--shard \(index)/\(count)'s file", shardFile(index, of: count).path)]
        case .merge: return [NamedPath("--out", out.path)]
        case .search:
            let previous = resume || !FileManager.default.fileExists(atPath: out.path) ? [] : [NamedPath("--out's previous results", stem + ".previous.json")]
            return [NamedPath("--out", out.path), NamedPath("--svg", svgURL.path), NamedPath("--html", htmlURL.path)] + previous
        }
    }

    /// No output is an input or another output, or a search's results other than this search's own;
    /// every output's folder exists (checked before the search, not after it).
    func checkFiles() throws {
        var read = inputs
        if case .shard = mode { read.append(NamedPath("--out", out.path)) }
        try OutputCheck.check(outputs: outputs, inputs: read, ownResults: [out.path, stem + ".previous.json"])
    }

    /// The results file's path without .json.
    public var stem: String { out.path.hasSuffix(".json") ? String(out.path.dropLast(5)) : out.path }
    public var svgURL: URL { svg ?? URL(fileURLWithPath: stem + ".svg") }
    public var htmlURL: URL { html ?? URL(fileURLWithPath: stem + ".html") }
    public func shardFile(_ index: Int, of count: Int) -> URL { URL(fileURLWithPath: "\(stem).shard-\(index)-of-\(count).json") }

    /// Plain DDIM's step count for a target speed-up: as many full steps as it allows.
    public static func ddimSteps(steps: Int, target: Double) -> Int { max(1, Int((Double(steps) / target).rounded(.down))) }

    /// The segment counts searched.
    public func counts() throws -> [Int] {
        // (Image-to-image: segments divide the evaluations the strength keeps.)
        let span = teacher.strength == nil ? teacher.steps : teacher.evaluations
        var c = segmentCounts.filter { $0 >= 1 && $0 <= span }
        if divisorsOnly { c = c.filter { span % $0 == 0 } }
        guard !c.isEmpty else { throw ModelError("the segment counts \(segmentCounts) leave none for \(span) \(teacher.strength == nil ? "steps" : "kept evaluations")") }
        return c
    }

    /// The solvers searched besides the teacher's scheduler, for a search continuing `previous` (if any).
    public func searchedSolvers(previous: SearchSettings? = nil) throws -> [SolverChoice] {
        if let solvers { return solvers }
        if let previous { return previous.solvers }
        return SolverChoice.canRunBeside(teacher) ? SolverChoice.searchedByDefault : []
    }

    /// The coarser grids for a target speed-up (`target`, margin included): automatically T/2 and the
    /// plain sampler's step count d at the target, and with other solvers also 1.5·d and 2·d (grids
    /// where a solver's steps can be cached down to the budget).
    public func gridSteps(target: Double, withSolvers: Bool = false) throws -> [Int] {
        let steps = teacher.steps
        switch grids {
        case .none: return []
        case .auto:
            // (d counts evaluations; at an image-to-image strength the grid is the step count keeping them.)
            let d = Self.ddimSteps(steps: teacher.evaluations, target: target)
            let evaluations = [d] + (withSolvers ? [Int((1.5 * Double(d)).rounded()), 2 * d] : [])
            let wanted = [steps / 2] + evaluations.map { teacher.steps(keeping: $0) }
            return Array(Set(wanted)).filter { $0 >= 1 && $0 < steps && teacher.keepsAStep(steps: $0) }.sorted(by: >)
        case .steps(let list): return try coarserGrids(list)
        }
    }

    /// A list of coarser grids, checked: step counts below the teacher's, descending.
    func coarserGrids(_ list: [Int]) throws -> [Int] {
        let steps = teacher.steps
        guard !list.isEmpty, list.allSatisfy({ (1..<steps).contains($0) }) else {
            throw ModelError(argument: "grids \(list) (--grids): give step counts below the teacher's \(steps)")
        }
        if let g = list.first(where: { !teacher.keepsAStep(steps: $0) }) {
            throw ModelError(argument: "a grid of \(g) steps keeps no step at strength \(teacher.strength!) (--grids)")
        }
        return Array(Set(list)).sorted(by: >)
    }
}

/// Where a search's step latencies come from.
public struct LatencySource {
    public var table: URL
    public var fingerprint: String
    /// Measures them when the table has none for this device, model and batch.
    public var measure: () throws -> StepLatencies
    /// The UNet's batch the latencies are for, when it is not the search's image batch (twice it with
    /// classifier-free guidance).
    public var batch: Int?

    public init(table: URL, fingerprint: String, batch: Int? = nil, measure: @escaping () throws -> StepLatencies) {
        self.table = table; self.fingerprint = fingerprint; self.batch = batch; self.measure = measure
    }
}

