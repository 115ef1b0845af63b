// The evolution: within budget, deterministic, memoised, improving; resumes to the same result;
// its baselines are members; the final race; shards merge to the result of one process.
import Engine
import Foundation
import GPUKernels
import Search
import Testing
import TestSupport

@Suite struct EvolutionTests {
    let sampler = PlanSampler(scheduler: .ddim, steps: 100)

    func makeSearch(seed: UInt64, scorer: CandidateScorer, resume: SearchState? = nil, grids: [Int] = [], solvers: [SolverChoice] = [],
                    speedup: Double = 2.5, finalSamples: Int? = nil, judge: Fitness = .rfid) throws -> EvolutionarySearch {
        let space = try SearchSpace(sampler: sampler, segmentCounts: [5, 10, 20, 25], branchCount: 6, grids: grids, solvers: solvers)
        let settings = SearchSettings(speedup: speedup, samples: 16, screenSamples: 8, population: 6, children: 8, generations: 8,
                                      seed: seed, segmentCounts: [5, 10, 20, 25], grids: grids, solvers: solvers,
                                      finalSamples: finalSamples, finalJudge: judge)
        return try EvolutionarySearch(settings: settings, space: space, cost: CostModel(latencies: try syntheticLatencies(), sampler: sampler),
                                      scorer: scorer, resume: resume)
    }

    @Test func deterministicWithinBudgetMemoisedAndImproving() throws {
        let seed = freshSeed()
        let s1 = SyntheticScorer(), s2 = SyntheticScorer()
        let a = try makeSearch(seed: seed, scorer: s1), b = try makeSearch(seed: seed, scorer: s2)
        try a.run(); try b.run()
        #expect(a.state.complete && a.state.generations.count == 9)
        #expect(a.state.population == b.state.population && Set(a.state.records.keys) == Set(b.state.records.keys), "seed \(seed)")
        #expect(s1.calls == s2.calls)
        #expect(Set(s1.calls).count == s1.calls.count, "a (plan, samples) pair is scored once")
        for r in a.state.records.values {
            #expect(r.predictedMs <= a.state.budget + 1e-9, "\(r.candidate.key) costs \(r.predictedMs) > \(a.state.budget)")
        }
        #expect(a.state.generations.map(\.bestFitness) == a.state.generations.map(\.bestFitness).sorted(by: >), "elitist selection never loses the best")
        // Improving is a property of most seeds, not all: a first generation whose baseline is
        // already good can hold for 8 generations (1 seed in 400 measured, e.g. 3244247412570229054:
        // DDIM 25 stays best while children reach 0.288 against its 0.286). Two of three fresh
        // searches must improve; a search that never improves fails this every time.
        var stuck: [UInt64] = []
        for s in [seed, freshSeed(), freshSeed()] {
            let search = s == seed ? a : try makeSearch(seed: s, scorer: SyntheticScorer())
            if s != seed { try search.run() }
            let first = search.state.generations[0].bestFitness, last = search.state.generations.last!.bestFitness
            if !(last < first) { stuck.append(s) }
        }
        #expect(stuck.count <= 1, "the search improved nothing for seeds \(stuck)")
        // Children are screened on 8 samples; only some reach 16.
        let screenedOnly = a.state.records.values.filter { $0.score(8) != nil && $0.score(16) == nil }
        #expect(!screenedOnly.isEmpty, "successive halving promoted every child")
    }

    @Test func resumedSearchEqualsUninterrupted() throws {
        let seed = freshSeed()
        let whole = try makeSearch(seed: seed, scorer: SyntheticScorer())
        try whole.run()
        let scorer = SyntheticScorer()
        let first = try makeSearch(seed: seed, scorer: scorer)
        first.shouldStop = { scorer.calls.count >= 17 }   // mid-generation
        #expect(try first.run() == .stopped)
        #expect(!first.state.complete)
        // Through JSON, as the results file carries it.
        let data = try JSONEncoder().encode(first.state)
        let saved = try JSONDecoder().decode(SearchState.self, from: data)
        let second = try makeSearch(seed: seed, scorer: scorer, resume: saved)
        try second.run()
        #expect(second.state.population == whole.state.population, "seed \(seed)")
        #expect(Set(second.state.records.keys) == Set(whole.state.records.keys))
        #expect(second.state.rngState == whole.state.rngState)
        // More generations (or another time limit) continue a finished search.
        var longer = second.state
        longer.settings.generations += 2
        let third = try EvolutionarySearch(settings: longer.settings, space: second.space, cost: second.cost, scorer: scorer, resume: second.state)
        #expect(!third.state.complete)
        try third.run()
        #expect(third.state.complete && third.state.generations.count == second.state.generations.count + 2)
        // Other settings are refused.
        var other = saved
        other.settings.population += 1
        #expect(throws: ModelError.self) { try makeSearch(seed: seed, scorer: scorer, resume: other) }
    }
}

extension EvolutionTests {
    /// With coarser grids, DDIM with 40 steps on its own timesteps (the DDIM baseline at 2.5×, priced
    /// exactly at the budget) starts in the population, so a scorer that ranks it first gets it back
    /// as the best plan; the search stays deterministic, in budget and in the space.
    @Test func ownGridDDIMIsAMemberSoTheSearchNeverEndsWorse() throws {
        final class PrefersDDIM40: CandidateScorer {
            let base = SyntheticScorer()
            func fitness(_ c: Candidate, samples: Int) throws -> Double {
                c.key == "G40:N40:" + Array(repeating: "1", count: 40).joined(separator: ",") ? 0.01 : try base.fitness(c, samples: samples) + 0.05
            }
        }
        let seed = freshSeed()
        let a = try makeSearch(seed: seed, scorer: PrefersDDIM40(), grids: [50, 40])
        let b = try makeSearch(seed: seed, scorer: PrefersDDIM40(), grids: [50, 40])
        try a.run(); try b.run()
        #expect(a.best?.candidate == a.space.ddim(segments: 40, grid: 40), "seed \(seed): best \(a.best?.candidate.key ?? "none")")
        #expect(a.state.records[a.space.ddim(segments: 40, grid: 40).key]?.origin == .ddim)
        #expect(a.state.population == b.state.population && Set(a.state.records.keys) == Set(b.state.records.keys), "seed \(seed)")
        for r in a.state.records.values {
            #expect(a.space.contains(r.candidate) && r.predictedMs <= a.state.budget, "\(r.candidate.key)")
        }
        #expect(a.state.records.values.contains { $0.candidate.grid == 50 }, "the search visits the DDIM-50 grid")
        // A results file's grids must be the space's.
        #expect(throws: ModelError.self) { try makeSearch(seed: seed, scorer: SyntheticScorer(), resume: a.state, grids: [50]) }
    }

    /// With other solvers, plain UniPC with 10 steps (the solver baseline at 10×) and DeepCache on the
    /// solvers start in the population, so a scorer that ranks UniPC-10 first gets it back as the best;
    /// a scorer that prefers UniPC but not its plain 10 steps finds another plan on UniPC.
    @Test func solverBaselinesAreMembersSoTheSearchNeverEndsWorse() throws {
        final class PrefersUniPC10: CandidateScorer {
            let base = SyntheticScorer()
            func fitness(_ c: Candidate, samples: Int) throws -> Double {
                c.key == "unipc2:G10:N10:" + Array(repeating: "1", count: 10).joined(separator: ",") ? 0.01 : try base.fitness(c, samples: samples) + 0.05
            }
        }
        final class PrefersCachedUniPC: CandidateScorer {
            let base = SyntheticScorer()
            func fitness(_ c: Candidate, samples: Int) throws -> Double {
                try base.fitness(c, samples: samples) + (c.solver?.scheduler == .unipc ? 0 : 0.5)
            }
        }
        let seed = freshSeed()
        let unipc = try SolverChoice(parsing: "unipc2")
        let a = try makeSearch(seed: seed, scorer: PrefersUniPC10(), grids: [20, 10], solvers: SolverChoice.usual, speedup: 10)
        try a.run()
        let member = a.space.ddim(segments: 10, grid: 10, solver: unipc)
        #expect(a.best?.candidate == member, "seed \(seed): best \(a.best?.candidate.key ?? "none")")
        #expect(a.state.records[member.key]?.origin == .solver)
        #expect(a.state.records.values.contains { $0.origin == .deepcache && $0.candidate.solver != nil }, "DeepCache on the other solvers starts too")
        for r in a.state.records.values { #expect(a.space.contains(r.candidate) && r.predictedMs <= a.state.budget, "\(r.candidate.key)") }
        let b = try makeSearch(seed: seed, scorer: PrefersCachedUniPC(), grids: [20, 10], solvers: SolverChoice.usual, speedup: 10)
        try b.run()
        #expect(b.best?.candidate.solver == unipc && b.best?.candidate != member, "seed \(seed): best \(b.best?.candidate.key ?? "none")")
        // A results file's solvers must be the space's.
        #expect(throws: ModelError.self) { try makeSearch(seed: seed, scorer: SyntheticScorer(), resume: a.state, grids: [20, 10], speedup: 10) }
    }

    /// Timestep genes in the evolution: a scorer that rewards plain UniPC-5 for timesteps near a
    /// hidden list gets a list nearer to it than the spacing's, and every generation makes children
    /// even when the population is all plain solvers on one grid (their crossovers give only plans
    /// scored before; crossovers once took every try then, and generations stopped making children).
    @Test func searchMovesTimestepsTowardsBetterOnes() throws {
        final class PrefersTimesteps: CandidateScorer {
            let wanted = [900, 700, 420, 250, 60]
            let spaced = [999, 799, 599, 400, 200]
            func fitness(_ c: Candidate, samples: Int) throws -> Double {
                guard c.solver != nil, c.grid == 5, c.segments.allSatisfy({ $0.active == 1 }) else { return 10 }
                return Double(zip(c.timesteps ?? spaced, wanted).map { abs($0 - $1) }.reduce(0, +)) / 1000 + 1 / Double(samples)
            }
        }
        let seed = freshSeed()
        let solvers = [try SolverChoice(parsing: "unipc2")]
        let space = try SearchSpace(sampler: sampler, segmentCounts: [5], branchCount: 6, grids: [5], solvers: solvers, timesteps: SchedulerConfiguration())
        let settings = SearchSettings(speedup: 19, samples: 16, screenSamples: 8, population: 6, children: 8, generations: 8,
                                      seed: seed, segmentCounts: [5], grids: [5], solvers: solvers, timesteps: true)
        let scorer = PrefersTimesteps()
        let search = try EvolutionarySearch(settings: settings, space: space, cost: CostModel(latencies: try syntheticLatencies(), sampler: sampler),
                                            scorer: scorer, resume: nil)
        try search.run()
        let best = try #require(search.best)
        let spacedScore = try scorer.fitness(space.ddim(segments: 5, grid: 5, solver: solvers[0]), samples: 16)
        #expect(best.candidate.timesteps != nil && best.score(16)! < spacedScore, "seed \(seed): best \(best.candidate.key)")
        for g in search.state.generations.dropFirst() { #expect(!g.evaluated.isEmpty, "seed \(seed): generation \(g.generation) made no children") }
        for r in search.state.records.values { #expect(space.contains(r.candidate) && r.predictedMs <= search.state.budget, "\(r.candidate.key)") }
        #expect(try best.candidate.plan(sampler).sampler.timesteps == best.candidate.timesteps)
    }

    /// The final race: the population and generation 0's plain members are judged on 4× the images,
    /// the better half on 16× (the last rung), and the best there is the result — here plain UniPC-10,
    /// which the fitness on 16 images ranks out of the population. Every (plan, images) is judged
    /// once, the race is deterministic, a race stopped midway resumes to the same result, and another
    /// last rung on resume reruns the race on the memoised scores.
    @Test func finalRaceJudgesContendersOnMoreImages() throws {
        final class JudgePrefersUniPC10: CandidateScorer {
            let base = SyntheticScorer()
            var judged: [String] = []
            let member = "unipc2:G10:N10:" + Array(repeating: "1", count: 10).joined(separator: ",")
            func fitness(_ c: Candidate, samples: Int) throws -> Double { try base.fitness(c, samples: samples) + (c.key == member ? 1 : 0) }
            func judge(_ c: Candidate, samples: Int, by: Fitness) throws -> Double {
                #expect(by == .fid)
                judged.append("\(c.key)@\(samples)")
                return c.key == member ? 0.001 : try base.fitness(c, samples: samples) + 1 / Double(c.count) + Double(samples) * 1e-6
            }
        }
        let seed = freshSeed()
        let scorer = JudgePrefersUniPC10()
        let a = try makeSearch(seed: seed, scorer: scorer, grids: [20, 10], solvers: SolverChoice.usual, speedup: 10, finalSamples: 256, judge: .fid)
        try a.run()
        let race = try #require(a.state.race)
        #expect(race.judge == .fid && race.rungs.map(\.samples) == [64, 256], "\(race.rungs.map(\.samples))")
        let contenders = a.raceContenders()
        #expect(Set(race.rungs[0].ranking) == Set(contenders) && contenders.contains(scorer.member))
        #expect(Set(a.state.population).isSubset(of: Set(contenders)))
        #expect(race.rungs[1].ranking.count == max(2, (contenders.count + 1) / 2))
        #expect(Set(race.rungs[1].ranking) == Set(race.rungs[0].ranking.prefix(race.rungs[1].ranking.count)), "the better half goes on")
        #expect(race.rungs.allSatisfy { $0.scores == $0.scores.sorted() })
        #expect(race.winner == scorer.member && a.best?.candidate.key == scorer.member, "seed \(seed): \(race.winner)")
        #expect(a.bestBeforeRace?.candidate.key != scorer.member)
        #expect(Set(scorer.judged).count == scorer.judged.count, "a (plan, images) pair is judged once")
        #expect(a.state.records[scorer.member]?.raceScore(256) == 0.001)
        // Deterministic, and resumable midway (through JSON, as the results file carries it).
        let again = JudgePrefersUniPC10()
        let first = try makeSearch(seed: seed, scorer: again, grids: [20, 10], solvers: SolverChoice.usual, speedup: 10, finalSamples: 256, judge: .fid)
        first.shouldStop = { again.judged.count >= 3 }
        #expect(try first.run() == .stopped)
        #expect(first.state.race == nil && !first.state.complete)
        let saved = try JSONDecoder().decode(SearchState.self, from: try JSONEncoder().encode(first.state))
        let second = try makeSearch(seed: seed, scorer: again, resume: saved, grids: [20, 10], solvers: SolverChoice.usual, speedup: 10,
                                    finalSamples: 256, judge: .fid)
        try second.run()
        #expect(second.state.race == race && again.judged.sorted() == scorer.judged.sorted(), "seed \(seed)")
        // Another last rung on resume: the race runs again, judging only what is new.
        let before = again.judged.count
        let third = try makeSearch(seed: seed, scorer: again, resume: second.state, grids: [20, 10], solvers: SolverChoice.usual, speedup: 10,
                                   finalSamples: 1024, judge: .fid)
        try third.run()
        #expect(third.state.race?.rungs.map(\.samples) == [64, 256, 1024])
        #expect(again.judged.count - before == third.state.race!.rungs[2].ranking.count, "only the 1024-image rung is new")
        // No race: the evolution's best is the result.
        let plain = try makeSearch(seed: seed, scorer: JudgePrefersUniPC10(), grids: [20, 10], solvers: SolverChoice.usual, speedup: 10)
        try plain.run()
        #expect(plain.state.race == nil && plain.best?.candidate.key == plain.state.population.first)
    }

    /// The clip judge: rFID decides among the contenders whose CLIP score stays within the tolerance of
    /// the teacher's; a plan with the best rFID but a CLIP score 0.5 away ranks after all of them (on
    /// every rung it is judged on), so another plan wins. The gaps are kept in the records and the race
    /// log; resumed with a wider tolerance, the race runs again on the memoised scores (no pair judged
    /// twice; only plans that now reach a later rung are judged there) and that plan wins.
    @Test func clipJudgeKeepsPlansNearTheTeachersCLIPScore() throws {
        final class StraysFromCLIP: CandidateScorer {
            let base = SyntheticScorer()
            var judged: [String] = []
            let member = "unipc2:G10:N10:" + Array(repeating: "1", count: 10).joined(separator: ",")
            func fitness(_ c: Candidate, samples: Int) throws -> Double { try base.fitness(c, samples: samples) + (c.key == member ? 1 : 0) }
            func judge(_ c: Candidate, samples: Int, by: Fitness) throws -> Double {
                #expect(by == .clip)
                judged.append("\(c.key)@\(samples)")
                return c.key == member ? 0.001 : try base.fitness(c, samples: samples) + 1 / Double(c.count)
            }
            func clipGap(_ c: Candidate, samples: Int) throws -> Double? {
                c.key == member ? -0.5 : Double(FNV1a.of(c.key) % 100) / 1000   // (0 to 0.099: within 0.1)
            }
        }
        func search(_ scorer: StraysFromCLIP, seed: UInt64, tolerance: Double, resume: SearchState? = nil) throws -> EvolutionarySearch {
            let space = try SearchSpace(sampler: sampler, segmentCounts: [5, 10, 20, 25], branchCount: 6, grids: [20, 10], solvers: SolverChoice.usual)
            var settings = SearchSettings(speedup: 10, samples: 16, screenSamples: 8, population: 6, children: 8, generations: 8, seed: seed,
                                          segmentCounts: [5, 10, 20, 25], grids: [20, 10], solvers: SolverChoice.usual, finalSamples: 256, finalJudge: .clip)
            settings.clipTolerance = tolerance
            return try EvolutionarySearch(settings: settings, space: space, cost: CostModel(latencies: try syntheticLatencies(), sampler: sampler),
                                          scorer: scorer, resume: resume)
        }
        let seed = freshSeed(), scorer = StraysFromCLIP()
        let a = try search(scorer, seed: seed, tolerance: 0.1)
        try a.run()
        let race = try #require(a.state.race)
        #expect(race.judge == .clip && race.rungs[0].ranking.contains(scorer.member))
        for rung in race.rungs {
            let gaps = try #require(rung.clipGaps)
            #expect(gaps.count == rung.ranking.count)
            for (key, gap) in zip(rung.ranking, gaps) { #expect(a.state.records[key]?.clipGap(rung.samples) == gap) }
            if let i = rung.ranking.firstIndex(of: scorer.member) {
                #expect(i == rung.ranking.count - 1, "the plan 0.5 from the teacher's CLIP score ranks last on \(rung.samples) images (seed \(seed))")
                #expect(rung.scores[i] == rung.scores.min())
            }
        }
        #expect(race.winner != scorer.member && a.best?.candidate.key == race.winner, "seed \(seed)")
        let state = try JSONDecoder().decode(SearchState.self, from: try JSONEncoder().encode(a.state))
        #expect(state.settings.clipTolerance == 0.1 && state.records[scorer.member]?.clipGap(64) == -0.5)
        let wider = try search(scorer, seed: seed, tolerance: 1, resume: state)
        try wider.run()
        #expect(Set(scorer.judged).count == scorer.judged.count, "a new tolerance judges no (plan, images) pair again")
        #expect(wider.state.race?.winner == scorer.member, "seed \(seed)")
    }

    /// Two shards score disjoint halves of each phase; a coordinator merges their records and
    /// advances: the result equals one process's, and no plan is scored twice.
    @Test func shardsMergeToTheSameResult() throws {
        let seed = freshSeed()
        let single = SyntheticScorer()
        let whole = try makeSearch(seed: seed, scorer: single)
        try whole.run()
        let scorers = [SyntheticScorer(), SyntheticScorer()]
        var state: SearchState? = nil
        var rounds = 0
        while !(state?.complete ?? false) {
            rounds += 1
            #expect(rounds < 100, "sharded search does not finish")
            if rounds >= 100 { break }
            var records: [String: SearchRecord] = [:]
            for i in 0..<2 {
                let shard = try makeSearch(seed: seed, scorer: scorers[i], resume: state)
                shard.shard = (i, 2)
                if case let .shardScored(scored, missing) = try shard.run() { #expect(scored <= (missing + 1) / 2) }
                records.merge(shard.state.records) { a, b in var m = a; m.fitness = m.fitness.adding(b.fitness); return m }
            }
            let coordinator = try makeSearch(seed: seed, scorer: SyntheticScorer(), resume: state)
            coordinator.merge(records)
            coordinator.shard = (0, 0)
            try coordinator.run()
            state = coordinator.state
        }
        #expect(state?.population == whole.state.population, "seed \(seed)")
        #expect(Set(state?.records.keys ?? [:].keys) == Set(whole.state.records.keys))
        #expect((scorers[0].calls + scorers[1].calls).sorted() == single.calls.sorted(), "each plan scored once, by one shard")
        #expect(!scorers[0].calls.isEmpty && !scorers[1].calls.isEmpty)
    }
}
