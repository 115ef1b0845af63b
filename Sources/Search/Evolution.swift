// Evolutionary search over the segment-wise space: (μ + λ) selection under a latency constraint,
// mutation and crossover, every scored candidate memoised, successive halving (children are
// screened on the first `screenSamples` images; only those that would enter the population are
// scored on all `samples`), shards (a process scores its slice of a phase). Deterministic for a
// seed: the generator's state is saved with every generation, so a resumed search continues
// exactly as an uninterrupted one would. The final race after the generations is FinalRace.swift;
// what the state holds, SearchState.swift.
import Engine
import Foundation

/// Scores candidates: the fitness (rFID against the teacher by default) on the first `samples` images of a fixed seed set.
public protocol CandidateScorer: AnyObject {
    func fitness(_ c: Candidate, samples: Int) throws -> Double
    /// The final race's score of `c` on `samples` images (`by`: the race's judge; for clip, rFID).
    func judge(_ c: Candidate, samples: Int, by: Fitness) throws -> Double
    /// `c`'s CLIP score minus the teacher's on the same `samples` images (nil: no CLIP model).
    func clipGap(_ c: Candidate, samples: Int) throws -> Double?
}

extension CandidateScorer {
    public func judge(_ c: Candidate, samples: Int, by: Fitness) throws -> Double { try fitness(c, samples: samples) }
    public func clipGap(_ c: Candidate, samples: Int) throws -> Double? { nil }
}

/// One scoring a phase asks for: `candidate` on `samples` images (`origin` and `generation` for a
/// record made by it).
struct Evaluation {
    var candidate: Candidate, origin: CandidateOrigin, generation: Int, samples: Int
}

public final class EvolutionarySearch {
    public internal(set) var state: SearchState
    public let space: SearchSpace
    public let cost: CostModel
    let scorer: CandidateScorer
    /// Polled between evaluations; true stops the search (the state stays consistent).
    public var shouldStop: () -> Bool = { false }
    /// Called after every evaluation and generation, e.g. to save the state and draw progress.
    public var onUpdate: (SearchState, SearchUpdate) throws -> Void = { _, _ in }
    private var generationStart = 0.0, clockBase = 0.0

    /// What changed in the state.
    public enum SearchUpdate: Sendable {
        /// A candidate was scored on `samples` images (its fitness).
        case evaluated(key: String, samples: Int, score: Double)
        /// A contender of the final race was judged on `samples` images.
        case judged(key: String, samples: Int, score: Double)
        /// The final race starts a rung: `contenders` plans on `samples` images.
        case rung(samples: Int, contenders: Int)
        /// Generation `index` (0: the initial population) was selected.
        case generation(index: Int)
        /// The search ended (all generations, or the time limit).
        case done
    }

    /// How `run()` ended.
    public enum Outcome: Equatable, Sendable {
        /// Every generation ran, or the time limit was reached: the state is complete.
        case complete
        /// `shouldStop` asked to stop; the state is consistent and can be resumed.
        case stopped
        /// With `shard` set: this process scored `scored` of the phase's `missing` unscored plans.
        case shardScored(scored: Int, missing: Int)
    }

    /// Unwinds `run()` from inside an evaluation (never leaves this type).
    private enum Unwind: Error { case stopped, shard(scored: Int, missing: Int) }

    /// A new search, or one resumed from `resume` (which must have the same settings).
    public init(settings: SearchSettings, space: SearchSpace, cost: CostModel, scorer: CandidateScorer, resume: SearchState? = nil) throws {
        try settings.validate()
        guard Set(space.grids.dropFirst()) == Set(settings.grids ?? []) else {
            throw ModelError("the settings' grids (\(settings.grids ?? [])) are not the space's coarser grids (\(Array(space.grids.dropFirst())))")
        }
        guard space.solvers == settings.solvers else {
            throw ModelError("the settings' solvers (\(settings.solvers)) are not the space's (\(space.solvers))")
        }
        self.space = space; self.cost = cost; self.scorer = scorer
        if var resume {
            // The time limit and the number of generations may change (to give a search more time);
            // anything else would make a different search.
            // The final race runs after the generations on memoised scores, so it may change too.
            var same = resume.settings
            same.maxSeconds = settings.maxSeconds; same.generations = settings.generations
            same.finalSamples = settings.finalSamples; same.judge = settings.judge; same.clipTolerance = settings.clipTolerance
            if resume.race.map({ $0.judge != settings.judge || $0.rungs.last?.samples != settings.finalSamples
                                 || (settings.judge == .clip && resume.settings.clipTolerance != settings.clipTolerance) }) ?? false { resume.race = nil }
            guard same == settings else {
                let named = settings.differences(from: same)
                throw ModelError("the results file was searched with " + (named.isEmpty ? "other settings" : named.joined(separator: ", "))
                                 + "; resume with the file's options, or start a new file")
            }
            resume.settings = settings
            if resume.generations.count <= settings.generations { resume.complete = false; resume.race = nil }
            state = resume
        } else {
            // (A hair over the exact quotient: a plan priced exactly at the target, such as DDIM with
            // T / X steps, is not lost to rounding.)
            state = SearchState(settings: settings, budget: cost.teacherCost / settings.speedup * (1 + 1e-9), rngState: settings.seed)
        }
    }

    var now: Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    var elapsed: Double { clockBase + now - generationStart }

    /// The best candidate so far: the final race's winner once it has run, else the best by the fitness on every sample.
    public var best: SearchRecord? { (state.race?.winner ?? state.population.first).flatMap { state.records[$0] } }

    /// The best of the population by the fitness on every sample (the evolution's result, before any race).
    public var bestBeforeRace: SearchRecord? { state.population.first.flatMap { state.records[$0] } }

    /// Scores `c` on `samples` images unless memoised.
    @discardableResult
    func evaluate(_ c: Candidate, origin: CandidateOrigin, generation: Int, samples: Int, race: Bool = false) throws -> Double {
        if race {
            let clip = state.settings.judge == .clip
            if let s = state.records[c.key]?.raceScore(samples), !clip || state.records[c.key]?.clipGap(samples) != nil { return s }
            if shouldStop() { throw Unwind.stopped }
            let score = try scorer.judge(c, samples: samples, by: state.settings.judge)
            if clip {
                guard let gap = try scorer.clipGap(c, samples: samples) else {
                    throw ModelError("the clip judge needs CLIP scores: a CLIP model (--clip DIR) for a text-to-image search")
                }
                state.records[c.key]!.clipGap = (state.records[c.key]!.clipGap ?? [:]).adding([samples: gap])
            }
            state.records[c.key]!.race = (state.records[c.key]!.race ?? [:]).adding([samples: score])
            state.elapsedSeconds = elapsed
            try onUpdate(state, .judged(key: c.key, samples: samples, score: score))
            return score
        }
        if let s = state.records[c.key]?.score(samples) { return s }
        if shouldStop() { throw Unwind.stopped }
        let score = try scorer.fitness(c, samples: samples)
        var record = try state.records[c.key] ?? SearchRecord(candidate: c, origin: origin, generation: generation,
                                                              predictedMs: cost.cost(c), predictedSpeedup: cost.speedup(c))
        record.fitness[samples] = score
        state.records[c.key] = record
        state.elapsedSeconds = elapsed
        try onUpdate(state, .evaluated(key: c.key, samples: samples, score: score))
        return score
    }

    /// Raises active counts at random while the candidate stays within the budget.
    func fill(_ c: Candidate, using rng: inout SplitMix64) throws -> Candidate {
        var x = c
        let lengths = space.lengths(c)
        for _ in 0..<(4 * c.count) {
            var s = x.segments
            let open = s.indices.filter { s[$0].active < lengths[$0] }
            guard let i = open.randomElement(using: &rng) else { break }
            s[i].active += 1
            if s[i].active == 2 { s[i].branch = Int.random(in: 0..<space.branchCount, using: &rng) }
            let y = c.with(segments: s)
            if try cost.cost(y) <= state.budget { x = y }
        }
        return x
    }

    /// The starting population: DeepCache and DDIM members that fit the budget, then random fills.
    func initialCandidates(using rng: inout SplitMix64) throws -> [(Candidate, CandidateOrigin)] {
        var out: [(Candidate, CandidateOrigin)] = []
        var seen = Set<String>()
        func add(_ c: Candidate, _ origin: CandidateOrigin) {
            if seen.insert(c.key).inserted { out.append((c, origin)) }
        }
        // DeepCache uniform (every step active) at each grid and N where it fits; the best-fitting first.
        var deepCache: [(Candidate, Double)] = []
        // (Only N dividing the grid's steps: then the member is exactly DeepCache's 1:L plan.)
        for (g, n) in space.shapes where space.actions(grid: g) % n == 0 && n < space.actions(grid: g) {
            for b in 0..<space.branchCount {
                let c = space.deepCache(segments: n, branch: b, grid: g)
                let cc = try cost.cost(c)
                if cc <= state.budget { deepCache.append((c, cc)) }
            }
        }
        let bestFitting = deepCache.sorted(by: { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0.key < $1.0.key) }).map(\.0)
        for c in bestFitting.prefix(max(1, state.settings.population / 2)) { add(c, .deepcache) }
        // The same DeepCache members on every other solver, the two best-fitting of each.
        for s in space.solvers {
            for c in bestFitting.prefix(2) {
                // (Where the solver's actions on the grid split into the same N segments: PNDM evaluates once more than the others.)
                if space.actions(grid: space.gridSteps(c), solver: s) % c.count == 0 {
                    add(space.deepCache(segments: c.count, branch: c.segments[0].branch, grid: c.grid, solver: s), .deepcache)
                }
            }
        }
        // DDIM on the teacher's grid with the most steps that fit, and DDIM on each coarser grid's
        // own timesteps where it fits (the DDIM baseline when its step count is a grid).
        if let n = try space.segmentCounts.reversed().first(where: { try cost.cost(space.ddim(segments: $0)) <= state.budget }) {
            add(space.ddim(segments: n), .ddim)
        }
        for g in space.grids.dropFirst() {
            let plain = space.ddim(segments: space.actions(grid: g), grid: g)
            if try cost.cost(plain) <= state.budget { add(plain, .ddim) }
            // Every other solver with as many steps (the solver baselines when the step count is a grid;
            // they may fit where the teacher's scheduler does not: PNDM evaluates once more).
            // (Segments: the solver's actions on the grid — its steps, or fewer at an image-to-image strength.)
            for s in space.solvers {
                let n = min(g, space.actions(grid: g, solver: s))
                if try cost.cost(space.ddim(segments: n, grid: g, solver: s)) <= state.budget { add(space.ddim(segments: n, grid: g, solver: s), .solver) }
            }
        }
        var tries = 0
        while out.count < state.settings.population && tries < 1000 {
            tries += 1
            guard let r = try cost.repair(space.random(using: &rng), budget: state.budget, space: space, using: &rng) else { continue }
            add(try fill(r, using: &rng), .random)
        }
        return out
    }

    /// Runs generations until done, out of time, or stopped. With `shard` set, stops at the first
    /// phase with unscored plans after scoring its slice of them; a shard of count 0 scores nothing
    /// (advances a merged state as far as it goes).
    @discardableResult
    public func run() throws -> Outcome {
        do { try generations() } catch Unwind.stopped { return .stopped } catch let Unwind.shard(scored, missing) {
            return .shardScored(scored: scored, missing: missing)
        }
        return .complete
    }

    func generations() throws {
        clockBase = state.elapsedSeconds
        generationStart = now
        let settings = state.settings
        var rng = SplitMix64(seed: 0)
        rng.state = state.rngState
        if state.generations.isEmpty {
            let initial = try initialCandidates(using: &rng)
            guard initial.count >= 2 else {
                throw ModelError("fewer than 2 candidates reach a \(settings.speedup)× speed-up in this space: lower --speedup or widen --segments")
            }
            _ = try evaluatePhase(initial.map { Evaluation(candidate: $0.0, origin: $0.1, generation: 0, samples: settings.samples) })
            select(initial.map { $0.0.key }, generation: 0, evaluated: initial.map { $0.0.key }, rng: rng)
            try onUpdate(state, .generation(index: 0))
        }
        while state.generations.count <= settings.generations {
            let g = state.generations.count
            let last = state.generations.last!
            let perGeneration = last.generation == 0 ? last.seconds * Double(settings.children) / Double(max(1, last.evaluated.count)) : last.seconds
            // (Sharded searches replay in several processes: they must not decide by the clock.)
            if shard == nil, let limit = settings.maxSeconds, elapsed + perGeneration > limit { break }
            let started = elapsed
            rng.state = state.rngState
            let children = try makeChildren(using: &rng)
            // Successive halving: children whose screening score would place them in the population
            // (ranked with the population's own screening scores) are scored on every sample.
            let members = state.population.map {
                Evaluation(candidate: state.records[$0]!.candidate, origin: state.records[$0]!.origin, generation: g, samples: settings.screenSamples)
            }
            let screen = try evaluatePhase(children.map { Evaluation(candidate: $0.0, origin: $0.1, generation: g, samples: settings.screenSamples) } + members)
            let pool = zip(children.map(\.0.key) + state.population, screen).map { ($0, $1) }
            let promoted = Set(pool.sorted { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }.prefix(settings.population).map(\.0))
            _ = try evaluatePhase(children.filter { promoted.contains($0.0.key) }.map {
                Evaluation(candidate: $0.0, origin: $0.1, generation: g, samples: settings.samples)
            })
            select(state.population + children.map { $0.0.key }, generation: g, evaluated: children.map { $0.0.key }, rng: rng,
                   seconds: elapsed - started)
            try onUpdate(state, .generation(index: g))
        }
        try runRace()
        state.complete = true
        state.elapsedSeconds = elapsed
        try onUpdate(state, .done)
    }

    /// Which slice of each phase's unscored plans this process scores (index in 0..<count).
    public var shard: (index: Int, count: Int)? = nil


    /// Scores independent evaluations, in order (the race's scores with `race`).
    func evaluatePhase(_ items: [Evaluation], race: Bool = false) throws -> [Double] {
        if let shard {
            var seen = Set<String>()
            let missing = items.filter { e in
                let record = state.records[e.candidate.key]
                let done = race ? record?.raceScore(e.samples) != nil && (state.settings.judge != .clip || record?.clipGap(e.samples) != nil)
                    : record?.score(e.samples) != nil
                return !done && seen.insert("\(e.candidate.key)@\(e.samples)").inserted
            }
            if !missing.isEmpty {
                var scored = 0
                for (i, e) in missing.enumerated() where shard.count > 0 && i % shard.count == shard.index {
                    try evaluate(e.candidate, origin: e.origin, generation: e.generation, samples: e.samples, race: race)
                    scored += 1
                }
                throw Unwind.shard(scored: scored, missing: missing.count)
            }
        }
        return try items.map { try evaluate($0.candidate, origin: $0.origin, generation: $0.generation, samples: $0.samples, race: race) }
    }

    /// Adds scores from another process (a shard) to the memo.
    public func merge(_ records: [String: SearchRecord]) {
        for (key, r) in records {
            if var mine = state.records[key] {
                mine.fitness = mine.fitness.adding(r.fitness)
                if let race = r.race { mine.race = (mine.race ?? [:]).adding(race) }
                if let gap = r.clipGap { mine.clipGap = (mine.clipGap ?? [:]).adding(gap) }
                mine.generation = min(mine.generation, r.generation)
                state.records[key] = mine
            } else {
                state.records[key] = r
            }
        }
    }

    /// (μ + λ): the `population` best by the fitness on every sample (ties by key, for determinism).
    func select(_ keys: [String], generation: Int, evaluated: [String], rng: SplitMix64, seconds: Double? = nil) {
        let n = state.settings.samples
        let scored = Set(keys).compactMap { k in state.records[k]?.score(n).map { (k, $0) } }
        state.population = scored.sorted { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }.prefix(state.settings.population).map(\.0)
        state.rngState = rng.state
        state.generations.append(GenerationLog(generation: generation, evaluated: evaluated, population: state.population,
                                               bestFitness: state.population.first.flatMap { state.records[$0]?.score(n) } ?? .infinity,
                                               seconds: seconds ?? elapsed))
        state.elapsedSeconds = elapsed
    }

    /// Tournament of two from the population (ranked best first).
    func pick(using rng: inout SplitMix64) -> Candidate {
        let p = state.population
        let i = Int.random(in: 0..<p.count, using: &rng), j = Int.random(in: 0..<p.count, using: &rng)
        return state.records[p[min(i, j)]]!.candidate
    }

    /// New, distinct, in-budget children not scored before.
    func makeChildren(using rng: inout SplitMix64) throws -> [(Candidate, CandidateOrigin)] {
        let settings = state.settings
        var out: [(Candidate, CandidateOrigin)] = []
        // Plans scored in earlier generations (a resumed generation meets its own children again).
        let g = state.generations.count
        var seen = Set(state.records.filter { $0.value.generation < g }.keys)
        let crossovers = Int((Double(settings.children) * settings.crossoverFraction).rounded())
        var tries = 0
        while out.count < settings.children && tries < 50 * settings.children {
            tries += 1
            // (Crossovers get the first fifth of the tries: a population whose crossovers give only
            // plans scored before — plain solvers on one small grid — must still get mutants.)
            let crossing = out.count < crossovers && state.population.count >= 2 && tries <= 10 * settings.children
            var c: Candidate
            if crossing {
                c = space.crossover(pick(using: &rng), pick(using: &rng), using: &rng)
            } else {
                c = space.mutate(pick(using: &rng), probability: settings.mutationProbability, using: &rng)
            }
            guard var fitted = try cost.repair(c, budget: state.budget, space: space, using: &rng) else { continue }
            if Bool.random(using: &rng) { fitted = try fill(fitted, using: &rng) }
            c = fitted
            guard space.contains(c), seen.insert(c.key).inserted else { continue }
            out.append((c, crossing ? .crossover : .mutation))
        }
        return out
    }
}
