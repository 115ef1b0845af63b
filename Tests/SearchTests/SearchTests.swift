// The search: its space holds DDIM and DeepCache exactly; the evolution respects the budget, is
// deterministic, memoises, improves, and resumes to the same result; the Pareto front; the engine's
// scorer gives the same rFID with shared prefixes as without.
import Engine
import Foundation
import GPUKernels
import Search
import Testing
import TestSupport

/// A latency table entry with partial steps at 6 branches costing 0.1…0.9 of a full step.
func syntheticLatencies() throws -> StepLatencies {
    let json = """
        {"model": "synthetic", "model_fingerprint": "x", "batch": 8, "height": 28, "width": 28, "gemm": "none", "convolution": "none",
         "full_ms": 100, "partial_ms": {"0": 12, "1": 34, "2": 43, "3": 58, "4": 70, "5": 90}, "null_ms": 0.2, "scheduler_ms": 0.2,
         "full_macs": 1000, "partial_macs": {"0": 80, "1": 240, "2": 410, "3": 560, "4": 740, "5": 890}, "repeats": 1, "measured": "now"}
        """
    return try JSONDecoder().decode(StepLatencies.self, from: Data(json.utf8))
}

/// A deterministic stand-in for rFID: distance of each segment's active fraction and branch from a
/// hidden optimum (more active steps early, deep branches late), plus a sample-count term.
final class SyntheticScorer: CandidateScorer {
    var calls: [String] = []
    func rfid(_ c: Candidate, samples: Int) throws -> Double {
        calls.append("\(c.key)@\(samples)")
        let lengths = StepPlan.segmentLengths(steps: 100, count: c.count)
        var loss = 0.0
        for (i, g) in c.segments.enumerated() {
            let position = Double(i) / Double(c.count)
            let wantFraction = 0.6 - 0.4 * position, wantBranch = Double(Int(position * 6))
            loss += abs(Double(g.active) / Double(lengths[i]) - wantFraction) + 0.02 * abs(Double(g.branch) - wantBranch)
        }
        return loss / Double(c.count) + 1 / Double(samples) + 0.001 * Double(abs(c.count - 12))
    }
}

@Suite struct SearchSpaceTests {
    let sampler = PlanSampler(scheduler: "ddim", steps: 100)

    @Test func deepCacheAndDDIMAreMembers() throws {
        let space = try SearchSpace(sampler: sampler, segmentCounts: Array(4...50), branchCount: 6)
        for (n, b) in [(20, 0), (10, 3), (50, 5), (25, 1)] {
            let c = space.deepCache(segments: n, branch: b)
            #expect(space.contains(c))
            #expect(try c.plan(sampler).actions == StepPlan.deepCacheUniform(sampler, interval: 100 / n, branch: b).actions, "DeepCache 1:\(100 / n) at \(b)")
        }
        let ddim = try space.ddim(segments: 25).plan(sampler)
        #expect(ddim.fullSteps == 25 && ddim.partialSteps == 0)
        #expect(ddim.actions.enumerated().allSatisfy { $0.element == ($0.offset % 4 == 0 ? .full : .null) })
        #expect(!space.contains(Candidate(segments: Array(repeating: SegmentGene(active: 1, branch: 0), count: 3))), "3 segments are outside 4…50")
        #expect(!space.contains(Candidate(segments: Array(repeating: SegmentGene(active: 3, branch: 6), count: 10))), "branch 6 does not exist")
        #expect(SearchSpace.divisors(of: 100, in: 4...50) == [4, 5, 10, 20, 25, 50])
    }

    @Test func mutationAndCrossoverStayInTheSpaceAndRepairMeetsTheBudget() throws {
        let space = try SearchSpace(sampler: sampler, segmentCounts: [5, 10, 20, 25], branchCount: 6)
        let cost = CostModel(latencies: try syntheticLatencies(), sampler: sampler)
        let budget = cost.teacherCost / 2.5
        var rng = SplitMix64(seed: freshSeed())
        for _ in 0..<300 {
            let a = space.random(using: &rng), b = space.random(using: &rng)
            let m = space.mutate(a, probability: 0.25, using: &rng), x = space.crossover(a, b, using: &rng)
            #expect(space.contains(m) && space.contains(x))
            #expect(m != a, "a mutation changes something")
            if let r = try cost.repair(x, budget: budget, space: space, using: &rng) {
                #expect(try cost.cost(r) <= budget && space.contains(r) && r.count == x.count)
            }
        }
    }

    @Test func paretoFront() throws {
        func r(_ s: Double, _ f: Double) -> SearchRecord {
            SearchRecord(candidate: Candidate(segments: [SegmentGene(active: Int(s * 10), branch: 0)]), origin: "t", generation: 0,
                         predictedMs: 1, predictedSpeedup: s, rfid: ["8": f])
        }
        let front = EvolutionarySearch.paretoFront([r(2, 5), r(3, 6), r(2.5, 4), r(3, 9), r(1.5, 4.5), r(2.6, 7)], samples: 8)
        #expect(front.map(\.predictedSpeedup) == [3, 2.5], "(2.5, 4) dominates (2, 5), (1.5, 4.5) and (2.6, 7) does not beat (3, 6)")
    }
}

@Suite struct EvolutionTests {
    let sampler = PlanSampler(scheduler: "ddim", steps: 100)

    func makeSearch(seed: UInt64, scorer: CandidateScorer, resume: SearchState? = nil) throws -> EvolutionarySearch {
        let space = try SearchSpace(sampler: sampler, segmentCounts: [5, 10, 20, 25], branchCount: 6)
        let settings = SearchSettings(speedup: 2.5, samples: 16, screenSamples: 8, population: 6, children: 8, generations: 8,
                                      seed: seed, segmentCounts: [5, 10, 20, 25])
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
        let first = a.state.generations[0].bestRFID, last = a.state.generations.last!.bestRFID
        #expect(last < first, "the search improved nothing: \(first) → \(last) (seed \(seed))")
        #expect(a.state.generations.map(\.bestRFID) == a.state.generations.map(\.bestRFID).sorted(by: >), "elitist selection never loses the best")
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
        #expect(throws: EvolutionarySearch.Stopped.self) { try first.run() }
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
                do { try shard.run() } catch let done as EvolutionarySearch.ShardDone {
                    #expect(done.scored <= (done.missing + 1) / 2)
                }
                records.merge(shard.state.records) { a, b in var m = a; m.rfid.merge(b.rfid) { x, _ in x }; return m }
            }
            let coordinator = try makeSearch(seed: seed, scorer: SyntheticScorer(), resume: state)
            coordinator.merge(records)
            coordinator.shard = (0, 0)
            do { try coordinator.run() } catch is EvolutionarySearch.ShardDone {}
            state = coordinator.state
        }
        #expect(state?.population == whole.state.population, "seed \(seed)")
        #expect(Set(state?.records.keys ?? [:].keys) == Set(whole.state.records.keys))
        #expect((scorers[0].calls + scorers[1].calls).sorted() == single.calls.sorted(), "each plan scored once, by one shard")
        #expect(!scorers[0].calls.isEmpty && !scorers[1].calls.isEmpty)
    }
}

@Suite struct RFIDScorerTests {
    /// A candidate resumed from another candidate's stored segment-boundary state scores exactly as
    /// when generated from the noise; promotion from screening reuses the first batch.
    @Test func sharedPrefixesGiveTheSameRFID() throws {
        let (folder, sampler, net) = try defaultModelSampler(batch: 3, steps: 12)
        let seed = freshSeed()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacher-features-\(seed)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = try RFIDEvaluator.modelKey(folder: folder)
        let a = Candidate(segments: [SegmentGene(active: 3, branch: 1), SegmentGene(active: 2, branch: 4), SegmentGene(active: 1, branch: 0), SegmentGene(active: 2, branch: 2)])
        let b = Candidate(segments: [SegmentGene(active: 3, branch: 1), SegmentGene(active: 2, branch: 4), SegmentGene(active: 3, branch: 0), SegmentGene(active: 1, branch: 0)])
        let shared = try RFIDScorer(sampler: sampler, extractor: net, seed: seed, modelKey: key, cacheDirectory: dir)
        _ = try shared.rfid(a, samples: 6)
        let before = shared.stepsShared
        let viaPrefix = try shared.rfid(b, samples: 6)
        #expect(shared.stepsShared - before == 2 * 6, "b should resume both batches after a's first two segments (6 steps)")
        let fresh = try RFIDScorer(sampler: sampler, extractor: net, seed: seed, modelKey: key, cacheDirectory: dir)
        let direct = try fresh.rfid(b, samples: 6)
        #expect(fresh.stepsShared == 0 && fresh.teacherSeconds == 0, "the second scorer reads the teacher's features from the cache")
        #expect(abs(viaPrefix - direct) <= 1e-9 * max(1, abs(direct)), "rFID via a shared prefix \(viaPrefix) vs from noise \(direct) (seed \(seed))")
        #expect(direct > 0)
        // Screening then promotion: the second batch only.
        let promoted = try RFIDScorer(sampler: sampler, extractor: net, seed: seed, modelKey: key, cacheDirectory: dir)
        _ = try promoted.rfid(b, samples: 3)
        let run = promoted.stepsRun
        #expect(abs(try promoted.rfid(b, samples: 6) - direct) <= 1e-9 * max(1, abs(direct)))
        #expect(promoted.stepsRun - run == 12, "promotion generates one more batch")
        // The plan runs as `generate --plan` would: the teacher scores 0.
        #expect(try shared.rfid(plan: sampler.teacherPlan, key: "teacher", samples: 6).rfid <= 1e-6)
    }
}
