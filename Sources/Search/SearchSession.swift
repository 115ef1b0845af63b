// A whole `flexiffusion search` as a library call, in numbered steps: the configuration's one check,
// resume checks, latencies (from the results file, the latency table, or measured now), the space
// and settings, the evolutionary search with a results file rewritten after every evaluation,
// shards and their merge, then the report (SearchReportBuilder: the baselines, timing rounds, the
// file, its picture and page). Progress is a typed event whose handler may stop the search; how it
// ended is a value. The evaluator is a protocol, so that all of it runs with an analytic scorer and
// no device.
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
    /// CLIP score of any plan's images, and of the teacher's (nil: no CLIP model).
    func clipScore(plan: StepPlan, samples: Int) throws -> Double?
    func teacherCLIPScore(samples: Int) throws -> Double?
}

extension SearchEvaluator {
    public func imageStrip(_ plan: StepPlan, images: Int) throws -> Data? { nil }
    public func pairedDistance(plan: StepPlan, samples: Int) throws -> Double? { nil }
    public func clipScore(plan: StepPlan, samples: Int) throws -> Double? { nil }
    public func teacherCLIPScore(samples: Int) throws -> Double? { nil }
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
    /// The best fitness so far (rFID or the paired distance, as the search minimises).
    public var bestFitness: Double?
    public var scored: Int
    public var elapsed: Double
    /// Seconds left, from the time per generation so far and the time limit (nil before generation 0).
    public var eta: Double?
    public var update: EvolutionarySearch.SearchUpdate

    public init(generationsDone: Int, generations: Int, bestFitness: Double?, scored: Int, elapsed: Double, eta: Double?,
                update: EvolutionarySearch.SearchUpdate) {
        self.generationsDone = generationsDone; self.generations = generations; self.bestFitness = bestFitness
        self.scored = scored; self.elapsed = elapsed; self.eta = eta; self.update = update
    }
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
        // 1. What was asked, checked once (the command asked the same before any work); the results
        // file (a shard's own file) locked against a second process writing it.
        try c.validate()
        let counts = try c.counts()
        var written = c.out.path
        if case .shard(let index, let count) = c.mode { written = c.shardFile(index, of: count).path }
        let lock = try FileLock(for: written, what: "search")
        defer { lock.release() }
        // 2. The results file to continue (a resume, shards, a merge), or the one to replace.
        let previous = try previousResults()
        // 3. Latencies and the target.
        let latencies = try stepLatencies(previous: previous, handler: handler)
        let cost = CostModel(latencies: latencies, sampler: c.teacher, useMACs: c.useMACs)
        let requested: Double
        switch c.target {
        case .speedup(let x): requested = x
        case .latencyMs(let ms): requested = cost.teacherCost / ms
        }
        guard requested > 1 else {
            throw ModelError(argument: "the target (\(String(format: "%.2f", requested))× the teacher) must be faster than the teacher (--latency-ms below the teacher's \(String(format: "%.1f", cost.teacherCost)) ms)")
        }
        if let previous, let had = previous.requestedSpeedup, abs(had - requested) > 1e-9 * had {
            throw ModelError("\(c.out.path) was searched for \(String(format: "%g", had))× (this run asks \(String(format: "%g", requested))×); continue it with that target, or start a new file")
        }
        let target = requested * (1 + c.margin)
        // 4. The space and the evolution's settings (a continued file keeps its solvers, grids and timestep genes).
        let solvers = try c.searchedSolvers(previous: previous?.state.settings)
        if let previous, let asked = c.solvers, asked != previous.state.settings.solvers {
            let had = previous.state.settings.solvers.map(\.description).joined(separator: ",")
            throw ModelError("\(c.out.path) was searched with --solvers \(had.isEmpty ? "none" : had) (this run asks \(asked.isEmpty ? "none" : asked.map(\.description).joined(separator: ","))); continue it with those, or start a new file")
        }
        let coarse = try c.gridSteps(target: target, withSolvers: !solvers.isEmpty)
        if let previous, Set(previous.state.settings.grids ?? []) != Set(coarse) {
            let had = previous.state.settings.grids.map { $0.map(String.init).joined(separator: ",") } ?? "none"
            throw ModelError("\(c.out.path) was searched with grids \(had) (files made before grids existed have none); continue it with those")
        }
        let searchTimesteps = previous?.state.settings.timesteps ?? c.searchTimesteps
        let space = try SearchSpace(sampler: c.teacher, segmentCounts: counts, branchCount: c.branchCount, grids: coarse, solvers: solvers,
                                    timesteps: searchTimesteps ? c.schedulerConfiguration : nil)
        var settings = SearchSettings(speedup: target, samples: c.samples, screenSamples: c.screen, population: c.population, children: c.children,
                                      generations: c.generations, mutationProbability: c.mutationProbability, crossoverFraction: c.crossoverFraction,
                                      seed: c.seed, segmentCounts: counts, grids: coarse, solvers: space.solvers, fitness: c.fitness, useMACs: c.useMACs,
                                      maxSeconds: c.maxMinutes.map { $0 * 60 }, finalSamples: c.finalSamples, finalJudge: c.finalJudge,
                                      timesteps: space.searchesTimesteps)
        settings.clipTolerance = c.clipTolerance
        let search = try EvolutionarySearch(settings: settings, space: space, cost: cost, scorer: evaluator, resume: previous?.state)
        var report = SearchReport(model: c.modelName, modelKey: c.modelKey, device: c.device, sampler: c.teacher, batch: c.batch,
                                  features: c.features, latencies: latencies, state: search.state)
        report.requestedSpeedup = requested; report.margin = c.margin; report.prompts = c.prompts
        // (A resumed search adds to the steps its file counted before.)
        let before = (run: previous?.stepsRun ?? 0, shared: previous?.stepsShared ?? 0)
        report.stepsRun = before.run; report.stepsShared = before.shared

        // 5. A shard scores its slice; a merge advances the search on the shards' scores.
        switch c.mode {
        case .shard(let index, let count): return try runShard(search, index: index, count: count)
        case .merge: return try runMerge(search, report: &report)
        case .search: break
        }

        // 6. The generations and the final race, the results file rewritten after every evaluation.
        if !c.resume && previous == nil && FileManager.default.fileExists(atPath: c.out.path) {
            // The earlier results are kept beside it (one generation back), not lost at the first evaluation.
            let kept = URL(fileURLWithPath: c.stem + ".previous.json")
            try? FileManager.default.removeItem(at: kept)
            let moved = (try? FileManager.default.moveItem(at: c.out, to: kept)) != nil
            _ = handler(.replacing(c.out, keptAs: moved ? kept : nil))
        }
        _ = handler(.started(SearchStart(target: target, requested: requested, margin: c.margin, budget: search.state.budget, useMACs: c.useMACs,
                                         teacher: c.teacher, batch: c.batch, segmentCounts: counts, grids: space.grids, solvers: space.solvers, branches: c.branchCount,
                                         samples: c.samples, screenSamples: c.screen, seed: c.seed, device: c.device, timesteps: space.searchesTimesteps)))
        var stopRequested = false
        search.shouldStop = { stopRequested }
        let started = Date()
        search.onUpdate = { [unowned search] state, update in
            report.state = state
            report.stepsRun = before.run + self.evaluator.stepsRun; report.stepsShared = before.shared + self.evaluator.stepsShared
            try report.setBest(search.best, samples: c.samples)
            try report.write(to: c.out)
            let g = state.generations.count, total = settings.generations + 1
            let elapsed = Date().timeIntervalSince(started)
            var eta: Double? = nil
            if g > 0 {
                eta = max(0, elapsed / Double(g) * Double(total - g))
                if let limit = settings.maxSeconds { eta = min(eta!, max(0, limit - state.elapsedSeconds)) }
            }
            let progress = SearchProgress(generationsDone: min(g, total), generations: total, bestFitness: report.best?.rfid ?? report.best?.paired,
                                          scored: state.records.count, elapsed: elapsed, eta: eta, update: update)
            if handler(.progress(progress)) == .stop { stopRequested = true }
        }
        if try search.run() == .stopped { return .interrupted(scored: search.state.records.count) }
        guard let best = search.best else { throw ModelError("the search scored no plan") }

        // 7. The report: the front, the baselines, FID, measured speed-ups, the file, its picture and page.
        let builder = SearchReportBuilder(configuration: c, evaluator: evaluator, search: search, realStatistics: realStatistics)
        return .finished(try builder.finish(best: best, report: report, target: target, requested: requested, before: before, handler: handler))
    }

    /// The results file a resume, a shard or a merge continues (checked against this configuration);
    /// nil for a new search.
    func previousResults() throws -> SearchReport? {
        let c = configuration
        let distributed = c.mode != .search
        let exists = FileManager.default.fileExists(atPath: c.out.path)
        if case .shard = c.mode, !exists {
            throw ModelError("\(c.out.path) does not exist: create it first with a merge (same options), so that every shard uses its latencies")
        }
        guard c.resume || (distributed && exists) else { return nil }
        let previous = try SearchReport.load(from: c.out)
        if (previous.margin ?? 0) != c.margin {
            throw ModelError("\(c.out.path) was searched with margin \(previous.margin ?? 0) (files made before the margin existed have 0); continue it with that margin")
        }
        var differences: [String] = []
        if previous.modelKey != c.modelKey {
            differences.append("another model or what its images depend on (\(previous.model): its weights and configs, --precision; for a pipeline also --prompts, --negative-prompt, --guidance-scale and the image size)")
        }
        if previous.device != c.device { differences.append("the device \(previous.device) (this run: \(c.device))") }
        if previous.features != c.features { differences.append("--features \(previous.features) (this run: \(c.features))") }
        if previous.batch != c.batch { differences.append("--batch \(previous.batch) (this run: \(c.batch))") }
        if previous.sampler != c.teacher { differences.append("the teacher \(previous.sampler) (this run: \(c.teacher); --scheduler, --steps, --eta)") }
        if !differences.isEmpty {
            throw ModelError("\(c.out.path) was made with \(differences.joined(separator: ", ")); continue it with those, or start a new file")
        }
        return previous
    }

    /// The results file's latencies, else the table's, else measured now and added to the table.
    func stepLatencies(previous: SearchReport?, handler: (SearchEvent) -> SearchControl) throws -> StepLatencies {
        if let previous {
            _ = handler(.latencies(.resultsFile, table: latencySource.table))
            return previous.latencies
        }
        let table = try LatencyTable.load(from: latencySource.table, missingOK: true)
        if let e = table.lookup(device: configuration.device, fingerprint: latencySource.fingerprint, batch: latencySource.batch ?? configuration.batch) {
            _ = handler(.latencies(.table(measured: e.measured), table: latencySource.table))
            return e
        }
        _ = handler(.latencies(.measuredNow, table: latencySource.table))
        let latencies = try latencySource.measure()
        try LatencyTable.insert(latencies, device: configuration.device, into: latencySource.table)
        return latencies
    }

    /// One shard: score this slice of the first phase with unscored plans, into the shard file.
    func runShard(_ search: EvolutionarySearch, index: Int, count: Int) throws -> SearchOutcome {
        let file = configuration.shardFile(index, of: count)
        func signature(_ key: String, _ r: SearchRecord) -> String { "\(key)@\(r.fitness.counts)@\((r.race ?? [:]).counts)" }
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
