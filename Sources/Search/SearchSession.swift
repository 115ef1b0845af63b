// A whole `flexiffusion search` as a library call: resume checks, latencies (from the results file,
// the latency table, or measured now), the evolutionary search with a results file rewritten after
// every evaluation, shards and their merge, the baselines, timing rounds, the report and its
// picture. Progress is a typed event whose handler may stop the search; how it ended is a value.
// The evaluator is a protocol, so that all of it runs with an analytic scorer and no device.
import Engine
import Foundation

/// What the session needs of the engine: candidate and plan scores, statistics and batch timings.
public protocol SearchEvaluator: CandidateScorer {
    /// rFID and statistics of any plan (a baseline); a plan equal to a scored candidate's reuses its work.
    func rfid(plan: StepPlan, samples: Int) throws -> (rfid: Double, statistics: FeatureStatistics)
    /// Statistics of candidate `c` on `samples` images (after `rfid(c, samples:)`).
    func statistics(_ c: Candidate, samples: Int) throws -> FeatureStatistics
    /// The teacher's statistics on `samples` images.
    func teacherStatistics(samples: Int) throws -> FeatureStatistics
    /// Seconds to generate `images` images with `plan` from fresh noise, samples read back as
    /// `generate` reads them (its kernels compiled before).
    func timeRun(_ plan: StepPlan, images: Int) throws -> Double
    /// Sampler steps run and skipped by shared prefixes for candidates; seconds of teacher batches.
    var stepsRun: Int { get }
    var stepsShared: Int { get }
    var teacherSeconds: Double { get }
    /// A PNG of one row of `images` images of `plan` from the fitness seed (nil: no images, e.g. no device).
    func imageStrip(_ plan: StepPlan, images: Int) throws -> Data?
    /// The paired feature distance of any plan (nil: not available).
    func pairedDistance(plan: StepPlan, samples: Int) throws -> Double?
}

extension SearchEvaluator {
    public func imageStrip(_ plan: StepPlan, images: Int) throws -> Data? { nil }
    public func pairedDistance(plan: StepPlan, samples: Int) throws -> Double? { nil }
}

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
    public var resume = false
    public var mode: Mode = .search
    /// Who made the search (checked when a results file is continued).
    public var modelName: String, modelKey: String, device: String, features: String
    public var branchCount: Int

    public init(target: Target, teacher: PlanSampler, batch: Int, out: URL, modelName: String, modelKey: String,
                device: String, features: String, branchCount: Int) {
        self.target = target; self.teacher = teacher; self.batch = batch; self.out = out
        self.modelName = modelName; self.modelKey = modelKey; self.device = device; self.features = features; self.branchCount = branchCount
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
        var c = segmentCounts.filter { $0 >= 1 && $0 <= teacher.steps }
        if divisorsOnly { c = c.filter { teacher.steps % $0 == 0 } }
        guard !c.isEmpty else { throw ModelError("the segment counts \(segmentCounts) leave none for \(teacher.steps) steps") }
        return c
    }

    /// The solvers searched besides the teacher's scheduler, for a search continuing `previous` (if any).
    public func searchedSolvers(previous: SearchSettings? = nil) throws -> [SolverChoice] {
        if let solvers { return solvers }
        if let previous { return try (previous.solvers ?? []).map(SolverChoice.init(parsing:)) }
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
            let d = Self.ddimSteps(steps: teacher.evaluations, target: target)
            let wanted = [steps / 2, d] + (withSolvers ? [Int((1.5 * Double(d)).rounded()), 2 * d] : [])
            return Array(Set(wanted)).filter { $0 >= 1 && $0 < steps }.sorted(by: >)
        case .steps(let list):
            guard !list.isEmpty, list.allSatisfy({ (1..<steps).contains($0) }) else {
                throw ModelError("grids \(list): give step counts below the teacher's \(steps)")
            }
            return Array(Set(list)).sorted(by: >)
        }
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

/// What a session reports while it runs.
public enum SearchEvent {
    public enum LatencyOrigin: Sendable { case resultsFile, table(measured: String), measuredNow }
    /// The latencies used, and where they came from (`table` names the file).
    case latencies(LatencyOrigin, table: URL)
    /// The search starts (or continues): its constraint and space.
    case started(SearchStart)
    /// The results file is replaced by a new search; the file it held was moved to `keptAs` (when it
    /// could be).
    case replacing(URL, keptAs: URL?)
    /// After every evaluation and generation.
    case progress(SearchProgress)
    case scoringBaselines(ddimSteps: Int)
    /// Timing rounds: each plan generates the `images` fitness images beside the teacher.
    case timing(rounds: Int, plans: Int, images: Int)
    /// No real images: FID against real data is left out.
    case noRealData
}

public struct SearchStart: Sendable {
    public var target: Double, requested: Double, margin: Double, budget: Double, useMACs: Bool
    public var teacher: PlanSampler, batch: Int, segmentCounts: [Int], grids: [Int], solvers: [SolverChoice], branches: Int
    public var samples: Int, screenSamples: Int, seed: UInt64, device: String
    /// Whether mutation moves solver grids' timesteps.
    public var timesteps = false
}

public struct SearchProgress: Sendable {
    /// Generations selected so far (1 after the initial population) and the last one's index.
    public var generationsDone: Int, generations: Int
    public var bestRFID: Double?
    public var scored: Int
    public var elapsed: Double
    /// Seconds left, from the time per generation so far and the time limit (nil before generation 0).
    public var eta: Double?
    public var update: EvolutionarySearch.SearchUpdate
}

/// What a progress handler says.
public enum SearchControl: Sendable { case proceed, stop }

/// One plan of the final report, with its plan for timing.
public struct SearchResult {
    public var report: SearchReport
    public var entries: [ReportEntry]
    public var teacher: ReportEntry
    public var best: SearchRecord
    public var ddimSteps: Int
    /// Whether the best plan is the DDIM baseline itself.
    public var bestIsDDIM: Bool
    public var scored: Int
    public var seconds: Double
    public var teacherSeconds: Double
    public var svg: URL
    public var html: URL
}

public enum SearchOutcome {
    case finished(SearchResult)
    /// Stopped by the progress handler; the results file holds `scored` plans and can be resumed.
    case interrupted(scored: Int)
    /// A shard scored `scored` of its phase's `missing` plans into `file` (0 of 0: the search is complete).
    case shardScored(scored: Int, missing: Int, file: URL)
    /// Shard files merged: the search is complete, or `missing` plans wait in its next phase.
    case merged(files: Int, complete: Bool, generation: Int, missing: Int)
}

public final class SearchSession {
    public let configuration: SearchConfiguration
    public let evaluator: SearchEvaluator
    let latencySource: LatencySource
    let realStatistics: () throws -> FeatureStatistics?

    /// `realStatistics` gives the statistics of real images for FID (nil: none).
    public init(configuration: SearchConfiguration, evaluator: SearchEvaluator, latencies: LatencySource,
                realStatistics: @escaping () throws -> FeatureStatistics? = { nil }) {
        self.configuration = configuration; self.evaluator = evaluator; self.latencySource = latencies; self.realStatistics = realStatistics
    }

    public func run(_ handler: (SearchEvent) -> SearchControl = { _ in .proceed }) throws -> SearchOutcome {
        try withoutActuallyEscaping(handler) { try run(reporting: $0) }
    }

    func run(reporting handler: @escaping (SearchEvent) -> SearchControl) throws -> SearchOutcome {
        let c = configuration
        guard c.margin >= 0 && c.margin < 1 else { throw ModelError("margin \(c.margin): give a fraction in [0, 1), e.g. 0.08") }
        guard c.batch > 0, c.samples >= 2 else { throw ModelError("samples must be at least 2 and the batch positive") }
        let screen = c.screenSamples ?? min(c.batch, c.samples)
        guard screen >= 2, screen <= c.samples else { throw ModelError("screen samples (\(screen)) must be 2…samples (\(c.samples))") }
        if let f = c.finalSamples, f <= c.samples {
            throw ModelError("the final race's images (\(f)) must be more than the fitness's \(c.samples) (0 turns the race off)")
        }
        guard c.fitness != .fid else { throw ModelError("FID against real data is a judge for the final race (many images), not the fitness of every plan: use rfid or paired") }
        if case .latencyMs = c.target, c.useMACs { throw ModelError("a latency target needs measured latencies; price by MACs with a speed-up target") }
        let counts = try c.counts()
        let distributed = c.mode != .search
        let exists = FileManager.default.fileExists(atPath: c.out.path)
        let previous = c.resume || (distributed && exists) ? try SearchReport.load(from: c.out) : nil
        if let previous {
            if (previous.margin ?? 0) != c.margin {
                throw ModelError("\(c.out.path) was searched with margin \(previous.margin ?? 0) (files made before the margin existed have 0); continue it with that margin")
            }
            if previous.modelKey != c.modelKey || previous.device != c.device || previous.features != c.features
                || previous.batch != c.batch || previous.sampler != c.teacher {
                throw ModelError("\(c.out.path) was made for another model, device, feature network, batch or teacher; start a new file")
            }
        }
        if case .shard = c.mode, previous == nil {
            throw ModelError("\(c.out.path) does not exist: create it first with a merge (same options), so that every shard uses its latencies")
        }
        if !c.resume && !distributed && exists {
            // The earlier results are kept beside it (one generation back), not lost at the first evaluation.
            let kept = URL(fileURLWithPath: c.stem + ".previous.json")
            try? FileManager.default.removeItem(at: kept)
            let moved = (try? FileManager.default.moveItem(at: c.out, to: kept)) != nil
            _ = handler(.replacing(c.out, keptAs: moved ? kept : nil))
        }

        // Latencies: the results file's, else the table's, else measured now and added to the table.
        let latencies: StepLatencies
        if let previous {
            latencies = previous.latencies
            _ = handler(.latencies(.resultsFile, table: latencySource.table))
        } else {
            let table = try LatencyTable.load(from: latencySource.table, missingOK: true)
            if let e = table.lookup(device: c.device, fingerprint: latencySource.fingerprint, batch: latencySource.batch ?? c.batch) {
                latencies = e
                _ = handler(.latencies(.table(measured: e.measured), table: latencySource.table))
            } else {
                _ = handler(.latencies(.measuredNow, table: latencySource.table))
                latencies = try latencySource.measure()
                try LatencyTable.insert(latencies, device: c.device, into: latencySource.table)
            }
        }
        let cost = CostModel(latencies: latencies, sampler: c.teacher, useMACs: c.useMACs)
        let requested: Double
        switch c.target {
        case .speedup(let x): requested = x
        case .latencyMs(let ms): requested = cost.teacherCost / ms
        }
        guard requested > 1 else { throw ModelError("the target (\(String(format: "%.2f", requested))× the teacher) must be faster than the teacher") }
        if let previous, let had = previous.requestedSpeedup, abs(had - requested) > 1e-9 * had {
            throw ModelError("\(c.out.path) was searched for \(String(format: "%g", had))× (this run asks \(String(format: "%g", requested))×); continue it with that target, or start a new file")
        }
        let target = requested * (1 + c.margin)
        let solvers = try c.searchedSolvers(previous: previous?.state.settings)
        let coarse = try c.gridSteps(target: target, withSolvers: !solvers.isEmpty)
        if let previous, Set(previous.state.settings.grids ?? []) != Set(coarse) {
            let had = previous.state.settings.grids.map { $0.map(String.init).joined(separator: ",") } ?? "none"
            throw ModelError("\(c.out.path) was searched with grids \(had) (files made before grids existed have none); continue it with those")
        }
        let searchTimesteps = previous.map { $0.state.settings.timesteps ?? false } ?? c.searchTimesteps
        let space = try SearchSpace(sampler: c.teacher, segmentCounts: counts, branchCount: c.branchCount, grids: coarse, solvers: solvers,
                                    timesteps: searchTimesteps ? c.schedulerConfiguration : nil)
        let settings = SearchSettings(speedup: target, samples: c.samples, screenSamples: screen, population: c.population, children: c.children,
                                      generations: c.generations, mutationProbability: c.mutationProbability, crossoverFraction: c.crossoverFraction,
                                      seed: c.seed, segmentCounts: counts, grids: coarse, solvers: space.solvers, fitness: c.fitness, useMACs: c.useMACs,
                                      maxSeconds: c.maxMinutes.map { $0 * 60 }, finalSamples: c.finalSamples, finalJudge: c.finalJudge,
                                      timesteps: space.searchesTimesteps)
        let search = try EvolutionarySearch(settings: settings, space: space, cost: cost, scorer: evaluator, resume: previous?.state)
        var report = SearchReport(model: c.modelName, modelKey: c.modelKey, device: c.device, sampler: c.teacher, batch: c.batch,
                                  features: c.features, latencies: latencies, state: search.state)
        report.requestedSpeedup = requested; report.margin = c.margin
        // (A resumed search adds to the steps its file counted before.)
        let (stepsBefore, sharedBefore) = (previous?.stepsRun ?? 0, previous?.stepsShared ?? 0)
        report.stepsRun = stepsBefore; report.stepsShared = sharedBefore

        switch c.mode {
        case .shard(let index, let count): return try runShard(search, index: index, count: count)
        case .merge: return try runMerge(search, report: &report)
        case .search: break
        }

        _ = handler(.started(SearchStart(target: target, requested: requested, margin: c.margin, budget: search.state.budget, useMACs: c.useMACs,
                                         teacher: c.teacher, batch: c.batch, segmentCounts: counts, grids: space.grids, solvers: space.solvers, branches: c.branchCount,
                                         samples: c.samples, screenSamples: screen, seed: c.seed, device: c.device, timesteps: space.searchesTimesteps)))
        var stopRequested = false
        search.shouldStop = { stopRequested }
        let started = Date()
        search.onUpdate = { [unowned search] state, update in
            report.state = state
            report.stepsRun = stepsBefore + self.evaluator.stepsRun; report.stepsShared = sharedBefore + self.evaluator.stepsShared
            try report.setBest(search.best, samples: c.samples)
            try report.write(to: c.out)
            let g = state.generations.count, total = settings.generations + 1
            let elapsed = Date().timeIntervalSince(started)
            var eta: Double? = nil
            if g > 0 {
                eta = max(0, elapsed / Double(g) * Double(total - g))
                if let limit = settings.maxSeconds { eta = min(eta!, max(0, limit - state.elapsedSeconds)) }
            }
            let progress = SearchProgress(generationsDone: min(g, total), generations: total, bestRFID: report.best?.rfid ?? report.best?.paired,
                                          scored: state.records.count, elapsed: elapsed, eta: eta, update: update)
            if handler(.progress(progress)) == .stop { stopRequested = true }
        }
        if try search.run() == .stopped { return .interrupted(scored: search.state.records.count) }
        guard let best = search.best else { throw ModelError("the search scored no plan") }
        return .finished(try finish(search, best: best, report: report, target: target, requested: requested,
                                      before: (stepsBefore, sharedBefore), handler: handler))
    }

    /// The Pareto front, the baselines, FID against real data, measured speed-ups, the report and picture.
    func finish(_ search: EvolutionarySearch, best: SearchRecord, report: SearchReport, target: Double, requested: Double,
                before: (run: Int, shared: Int), handler: (SearchEvent) -> SearchControl) throws -> SearchResult {
        let c = configuration, samples = c.samples, steps = c.teacher.steps, evaluations = c.teacher.evaluations
        var report = report
        let records = Array(search.state.records.values)
        let front = EvolutionarySearch.paretoFront(records, samples: samples)
        // Every entry carries both measures: its rFID (the score itself with the rFID fitness, else
        // computed from the same features) and its paired distance (the score with the paired fitness).
        let byPaired = c.fitness == .paired
        func rfidOf(_ r: SearchRecord, _ plan: StepPlan) throws -> Double? { byPaired ? try evaluator.rfid(plan: plan, samples: samples).rfid : r.score(samples) }
        func pairedOf(_ r: SearchRecord?, _ plan: StepPlan) throws -> Double? {
            if byPaired, let s = r?.score(samples) { return s }
            return try evaluator.pairedDistance(plan: plan, samples: samples)
        }
        func fitnessOf(_ e: ReportEntry) -> Double { (byPaired ? e.paired : e.rfid) ?? .nan }
        report.pareto = try front.map {
            let plan = try $0.candidate.plan(c.teacher)
            var e = ReportEntry(name: $0.origin.rawValue, key: $0.candidate.key, predictedSpeedup: $0.predictedSpeedup, rfid: try rfidOf($0, plan), plan: plan)
            e.paired = try pairedOf($0, plan)
            return e
        }
        let real = try realStatistics()
        if real == nil { _ = handler(.noRealData) }
        func fid(_ s: FeatureStatistics) throws -> Double? { try real.map { try frechetDistance(s, $0) } }
        func withPaired(_ e: ReportEntry, _ r: SearchRecord? = nil) throws -> ReportEntry {
            var e = e
            e.paired = try pairedOf(r, e.plan!)
            return e
        }

        let bestPlan = try best.candidate.plan(c.teacher)
        var entries: [(entry: ReportEntry, plan: StepPlan)] = []
        entries.append((try withPaired(ReportEntry(name: "best", key: best.candidate.key, predictedSpeedup: best.predictedSpeedup, rfid: try rfidOf(best, bestPlan),
                                                   fid: try fid(evaluator.statistics(best.candidate, samples: samples)), plan: bestPlan), best), bestPlan))
        // The evolution's own best, where the final race chose another plan.
        if let first = search.bestBeforeRace, first.candidate.key != best.candidate.key {
            let plan = try first.candidate.plan(c.teacher)
            entries.append((try withPaired(ReportEntry(name: "best on \(samples) images", key: first.candidate.key, predictedSpeedup: first.predictedSpeedup,
                                                       rfid: try rfidOf(first, plan), fid: try fid(evaluator.statistics(first.candidate, samples: samples)), plan: plan), first), plan))
        }
        // Plain DDIM with as many steps as the speed-up allows, on its own timestep grid (a member
        // of the space when that step count is one of its grids: then its scores are reused).
        let ddimSteps = SearchConfiguration.ddimSteps(steps: evaluations, target: target)
        let ddimPlan = try StepPlan.ddim(steps: ddimSteps, eta: c.teacher.eta)
        let ddimMember = search.space.ddim(segments: ddimSteps, grid: ddimSteps)
        let ddimKey = search.space.contains(ddimMember) ? ddimMember.key : "ddim-\(ddimSteps)"
        _ = handler(.scoringBaselines(ddimSteps: ddimSteps))
        let ddim = try evaluator.rfid(plan: ddimPlan, samples: samples)
        entries.append((try withPaired(ReportEntry(name: "ddim \(ddimSteps) steps", key: ddimKey, predictedSpeedup: Double(evaluations) / Double(ddimSteps),
                                                   rfid: ddim.rfid, fid: try fid(ddim.statistics), plan: ddimPlan)), ddimPlan))
        // DPM-Solver++ (2M) and UniPC (2) with the same number of model evaluations: what users switch
        // to instead of a plan (members of the space when the search runs other solvers and the step
        // count is one of its grids; else the search can lose to them, and the report shows it).
        if SolverChoice.canRunBeside(c.teacher) {
            for s in SolverChoice.usual where !s.isSampler(c.teacher) {
                let plan = StepPlan.teacher(s.sampler(steps: ddimSteps))
                let member = search.space.ddim(segments: ddimSteps, grid: ddimSteps, solver: s)
                let scored = try evaluator.rfid(plan: plan, samples: samples)
                // ("dpmsolver++ 2M 9 steps", "unipc2 9 steps")
                let name = s.scheduler == .dpmsolverPlusPlus ? "dpmsolver++ \(s.order!)M" : s.description
                entries.append((try withPaired(ReportEntry(name: "\(name) \(ddimSteps) steps",
                                                           key: search.space.contains(member) ? member.key : "\(s)-\(ddimSteps)",
                                                           predictedSpeedup: Double(evaluations) / Double(ddimSteps), rfid: scored.rfid,
                                                           fid: try fid(scored.statistics), plan: plan)), plan))
            }
        }
        // DeepCache uniform: the best-scored member that meets the target (scored in generation 0),
        // on the teacher's grid or a coarser one, on any solver of the space.
        if let dc = records.filter({ $0.origin == .deepcache && $0.score(samples) != nil }).min(by: { $0.score(samples)! < $1.score(samples)! }) {
            let onSampler = dc.candidate.sampler(c.teacher), g = onSampler.steps
            let L = dc.candidate.segments[0].active, b = dc.candidate.segments[0].branch
            let plan = try dc.candidate.plan(c.teacher)   // (deepCacheUniform(onSampler, interval: L, branch: b): its segments are L long)
            let on = dc.candidate.solver.map { " on \($0) \(g)" } ?? (g == steps ? "" : " on \(c.teacher.scheduler == .ddim ? "DDIM" : c.teacher.scheduler.rawValue) \(g)")
            entries.append((try withPaired(ReportEntry(name: "deepcache N=\(L) branch \(b)" + on, key: dc.candidate.key,
                                                       predictedSpeedup: dc.predictedSpeedup, rfid: try rfidOf(dc, plan),
                                                       fid: try fid(evaluator.statistics(dc.candidate, samples: samples)), plan: plan), dc), plan))
        }
        let teacherPlan = StepPlan.teacher(c.teacher)
        var teacherEntry = ReportEntry(name: "teacher", key: "teacher", predictedSpeedup: 1, rfid: 0,
                                       fid: try fid(evaluator.teacherStatistics(samples: samples)), plan: nil)
        teacherEntry.paired = entries[0].entry.paired == nil ? nil : 0
        if c.measureRounds > 0 {
            // Rounds alternate the teacher with every plan, each generating all the fitness images
            // (every batch, samples read back: a whole run but for start-up); a plan's speed-up is the
            // median over rounds of (teacher seconds / plan seconds) in the same round, which cancels
            // slow drift, with the rounds' range beside it.
            var timed = entries.map(\.plan)
            if c.measureFront { timed += report.pareto.map { $0.plan! } }
            _ = handler(.timing(rounds: c.measureRounds, plans: timed.count, images: samples))
            let timings = try SpeedupTiming.measure(timed, against: teacherPlan, rounds: c.measureRounds, teacherTiming: .besideEachPlan) {
                try evaluator.timeRun($0, images: samples)
            }.plans
            teacherEntry.measuredSpeedup = 1
            func measured(_ e: inout ReportEntry, _ m: MeasuredSpeedup) { e.measuredSpeedup = m.median; e.measuredRange = [m.range.min, m.range.max] }
            for i in entries.indices { measured(&entries[i].entry, timings[i]) }
            if c.measureFront {
                for i in report.pareto.indices { measured(&report.pareto[i], timings[entries.count + i]) }
            }
        }
        for i in entries.indices { entries[i].entry.setRace(search.state) }
        report.best = entries[0].entry
        report.bestPlan = bestPlan
        report.state = search.state
        report.race = try search.state.race?.rungs.first?.ranking.map { key in
            let r = search.state.records[key]!
            return report.entry(r, name: r.origin.rawValue, samples: samples, plan: try r.candidate.plan(c.teacher))
        }
        report.baselines = entries.dropFirst().map(\.entry)
        report.teacher = teacherEntry
        report.stepsRun = before.run + evaluator.stepsRun; report.stepsShared = before.shared + evaluator.stepsShared
        try report.write(to: c.out)
        let picture = ParetoPlot.svg(
            candidates: records.compactMap { r in r.score(samples).map { (r.predictedSpeedup, $0) } },
            front: front.map { ($0.predictedSpeedup, $0.score(samples)!) },
            best: (best.predictedSpeedup, best.score(samples)!),
            baselines: entries.dropFirst().map { ($0.entry.name, $0.entry.predictedSpeedup, fitnessOf($0.entry)) } + [("teacher", 1, 0)],
            target: target, requested: requested, title: "flexiffusion search: \(c.modelName), \(steps)-step DDIM, \(samples) samples",
            yLabel: byPaired ? "paired feature distance to the teacher" : "rFID against the teacher")
        try writeAtomically(Data(picture.utf8), to: c.svgURL.path)
        // The page: the teacher's, the best plan's and each baseline's images from the same seeds.
        var strips: [HTMLReport.Strip] = []
        for (name, plan) in [("teacher", teacherPlan)] + entries.map({ ($0.entry.name, $0.plan) }) {
            if let png = try evaluator.imageStrip(plan, images: c.htmlImages) { strips.append(HTMLReport.Strip(name: name, png: png)) }
        }
        let page = HTMLReport.render(report: report, svg: picture, strips: strips, images: c.htmlImages, seed: c.seed)
        try writeAtomically(Data(page.utf8), to: c.htmlURL.path)
        return SearchResult(report: report, entries: entries.map(\.entry), teacher: teacherEntry, best: best, ddimSteps: ddimSteps,
                            bestIsDDIM: best.candidate.key == ddimKey, scored: records.count, seconds: search.state.elapsedSeconds,
                            teacherSeconds: evaluator.teacherSeconds, svg: c.svgURL, html: c.htmlURL)
    }

    /// One shard: score this slice of the first phase with unscored plans, into the shard file.
    func runShard(_ search: EvolutionarySearch, index: Int, count: Int) throws -> SearchOutcome {
        let file = configuration.shardFile(index, of: count)
        func signature(_ key: String, _ r: SearchRecord) -> String { "\(key)@\(r.rfid.keys.sorted())@\((r.race ?? [:]).keys.sorted())" }
        let known = Set(search.state.records.map { signature($0.key, $0.value) })
        search.shard = (index, count)
        search.onUpdate = { state, _ in
            // Only what this shard scored travels in its file (the merge takes the union).
            let mine = state.records.filter { !known.contains(signature($0.key, $0.value)) }
            try ShardFile(shard: index, count: count, records: mine).write(to: file)
        }
        if case let .shardScored(scored, missing) = try search.run() { return .shardScored(scored: scored, missing: missing, file: file) }
        return .shardScored(scored: 0, missing: 0, file: file)
    }

    /// Merges every shard file beside the results file and advances the search without scoring anything.
    func runMerge(_ search: EvolutionarySearch, report: inout SearchReport) throws -> SearchOutcome {
        let stem = URL(fileURLWithPath: configuration.stem)
        let dir = stem.deletingLastPathComponent()
        let prefix = stem.lastPathComponent + ".shard-"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasPrefix(prefix) && $0.hasSuffix(".json") }.sorted()
        for name in files { search.merge(try ShardFile.load(from: dir.appendingPathComponent(name)).records) }
        search.shard = (0, 0)
        var missing = 0
        if case let .shardScored(_, m) = try search.run() { missing = m }
        report.state = search.state
        try report.setBest(search.best, samples: configuration.samples)
        try report.write(to: configuration.out)
        return .merged(files: files.count, complete: search.state.complete, generation: search.state.generations.count, missing: missing)
    }
}
