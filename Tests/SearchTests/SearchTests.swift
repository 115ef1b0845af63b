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
        let lengths = StepPlan.segmentLengths(steps: c.grid ?? 100, count: c.count)
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
    let sampler = PlanSampler(scheduler: .ddim, steps: 100)

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

    @Test(arguments: [([], []), ([50, 37], []), ([50, 10], SolverChoice.usual)])
    func mutationAndCrossoverStayInTheSpaceAndRepairMeetsTheBudget(grids: [Int], solvers: [SolverChoice]) throws {
        let space = try SearchSpace(sampler: sampler, segmentCounts: [5, 10, 20, 25], branchCount: 6, grids: grids, solvers: solvers)
        let cost = CostModel(latencies: try syntheticLatencies(), sampler: sampler)
        let budget = cost.teacherCost / 2.5
        var rng = SplitMix64(seed: freshSeed())
        var gridChanges = 0, solverChanges = 0, seenGrids = Set<Int?>(), seenSolvers = Set<SolverChoice?>()
        for _ in 0..<300 {
            let a = space.random(using: &rng), b = space.random(using: &rng)
            let m = space.mutate(a, probability: 0.25, using: &rng), x = space.crossover(a, b, using: &rng)
            #expect(space.contains(a) && space.contains(m) && space.contains(x))
            #expect(m != a, "a mutation changes something")
            #expect(x.grid == a.grid && x.count == a.count, "a child of crossover has its first parent's grid and N")
            #expect(x.solver == a.solver, "a child of crossover runs on its first parent's solver")
            if m.grid != a.grid { gridChanges += 1 }
            if m.solver != a.solver { solverChanges += 1; #expect(m.segments == a.segments && m.grid == a.grid, "a solver change keeps the segments") }
            seenGrids.insert(a.grid); seenSolvers.insert(a.solver)
            if let r = try cost.repair(x, budget: budget, space: space, using: &rng) {
                #expect(try cost.cost(r) <= budget && space.contains(r) && r.count == x.count && r.grid == x.grid && r.solver == x.solver)
                let onSampler = try r.plan(sampler).sampler
                #expect(onSampler.steps == (x.grid ?? 100))
                #expect(onSampler.scheduler == (x.solver?.scheduler ?? .ddim) && onSampler.order == x.solver?.order)
            }
        }
        #expect(seenSolvers.count == solvers.count + 1, "random candidates reach every solver")
        #expect(solvers.isEmpty ? solverChanges == 0 : solverChanges > 0, "mutations change the solver only when there are others")
        #expect(seenGrids.count == grids.count + 1, "random candidates reach every grid")
        #expect(grids.isEmpty ? gridChanges == 0 : gridChanges > 0, "mutations move between grids only when there are several")
    }

    /// Other solvers: plain UniPC with G steps and DeepCache on DPM-Solver++ are members with their own
    /// plans; keys name the solver; the teacher's own scheduler has one spelling (no solver field).
    @Test func solversHoldPlainSolversAndDeepCacheOnThem() throws {
        let unipc = try SolverChoice(parsing: "unipc2"), dpm = try SolverChoice(parsing: "dpmsolver++")
        let space = try SearchSpace(sampler: sampler, segmentCounts: Array(4...20), branchCount: 6, grids: [20, 10],
                                    solvers: [unipc, dpm, try SolverChoice(parsing: "ddim")])
        #expect(space.solvers == [unipc, dpm], "the teacher's own scheduler is not another solver")
        let plain = space.ddim(segments: 10, grid: 10, solver: unipc)
        #expect(space.contains(plain) && plain.key.hasPrefix("unipc2:G10:N10:"))
        #expect(try plain.plan(sampler) == StepPlan(sampler: PlanSampler(scheduler: .unipc, steps: 10, order: 2), actions: Array(repeating: .full, count: 10),
                                                   description: try plain.plan(sampler).description))
        let dc = space.deepCache(segments: 10, branch: 3, grid: 20, solver: dpm)
        let dcPlan = try dc.plan(sampler), reference = try StepPlan.deepCacheUniform(PlanSampler(scheduler: .dpmsolverPlusPlus, steps: 20, order: 2), interval: 2, branch: 3)
        #expect(space.contains(dc) && dcPlan.sampler == reference.sampler && dcPlan.actions == reference.actions)
        #expect(space.ddim(segments: 10, grid: 10, solver: try SolverChoice(parsing: "ddim")) == space.ddim(segments: 10, grid: 10))
        #expect(!space.contains(Candidate(segments: plain.segments, grid: 10, solver: try SolverChoice(parsing: "unipc3"))), "a solver outside the space is not a member")
        #expect(plain.key != space.ddim(segments: 10, grid: 10).key)
        // Through JSON (results files), and older files without a solver.
        #expect(try JSONDecoder().decode(Candidate.self, from: JSONEncoder().encode(plain)) == plain)
        for bad in ["lms", "ddim2", "unipc4", "pndm"] {
            #expect(throws: ModelError.self, "\(bad)") { try SolverChoice(parsing: bad) }
        }
        // A teacher with eta > 0 keeps its own family.
        #expect(throws: ModelError.self) { try SearchSpace(sampler: PlanSampler(scheduler: .ddim, steps: 100, eta: 0.5), segmentCounts: [5], branchCount: 6, solvers: [unipc]) }
    }

    /// The timestep spacing is part of the solver gene: "unipc3-trailing" is another solver, its
    /// plans carry the spacing, and it keys, prints and parses as written.
    @Test func spacingIsPartOfTheSolverGene() throws {
        let trailing = try SolverChoice(parsing: "unipc3-trailing"), plain = try SolverChoice(parsing: "unipc3")
        #expect(trailing.spacing == .trailing && trailing.order == 3 && trailing.description == "unipc3-trailing" && plain.spacing == nil)
        #expect(try SolverChoice(parsing: "ddim-leading").spacing == .leading)
        for bad in ["unipc3-sideways", "unipc-", "-trailing"] {
            #expect(throws: ModelError.self, "\(bad)") { try SolverChoice(parsing: bad) }
        }
        let space = try SearchSpace(sampler: sampler, segmentCounts: Array(4...20), branchCount: 6, grids: [10], solvers: [plain, trailing])
        #expect(space.solvers == [plain, trailing], "the same solver with another spacing is another choice")
        let c = space.ddim(segments: 10, grid: 10, solver: trailing)
        #expect(space.contains(c) && c.key.hasPrefix("unipc3-trailing:G10:N10:") && c.key != space.ddim(segments: 10, grid: 10, solver: plain).key)
        #expect(try c.plan(sampler).sampler == PlanSampler(scheduler: .unipc, steps: 10, order: 3, spacing: .trailing))
        #expect(try JSONDecoder().decode(Candidate.self, from: JSONEncoder().encode(c)) == c)
        // The teacher's own scheduler with a spacing is not the teacher.
        #expect(try SolverChoice(parsing: "ddim-trailing").isSampler(sampler) == false)
    }

    /// A PNDM teacher (Stable Diffusion's scheduler; PLMS evaluates G + 1 times on G steps) beside

    /// Timestep genes: with the model's scheduler configuration, mutation moves one timestep of a
    /// solver grid at a time (from the spacing's list on), keeping the list strictly decreasing within
    /// the training timesteps; the list keys, plans and round-trips; a list equal to the spacing's is
    /// no list; solver changes keep it where the other solver takes one; without the configuration,
    /// or on DDIM grids, no list appears.
    @Test func mutationMovesSolverTimesteps() throws {
        let config = SchedulerConfiguration()
        let unipc = try SolverChoice(parsing: "unipc3"), dpm = try SolverChoice(parsing: "dpmsolver++2")
        let space = try SearchSpace(sampler: sampler, segmentCounts: Array(4...20), branchCount: 6, grids: [5, 8], solvers: [unipc, dpm], timesteps: config)
        #expect(space.searchesTimesteps)
        let plain = space.ddim(segments: 5, grid: 5, solver: unipc)
        let spaced = try #require(space.timesteps(of: plain))
        #expect(spaced == [999, 799, 599, 400, 200], "the solvers' default spacing (linspace)")
        var rng = SplitMix64(seed: freshSeed())
        var moved = 0
        for _ in 0..<400 {
            let child = space.mutate(plain, probability: 0.25, using: &rng)
            #expect(space.contains(child), "\(child.key)")
            guard let t = child.timesteps else { continue }
            moved += 1
            #expect(child.solver != nil && child.grid == plain.grid && child.segments == plain.segments, "a timestep move keeps the rest: \(child.key)")
            #expect(t.count == 5 && zip(t, t.dropFirst()).allSatisfy { $0 > $1 } && t.allSatisfy { (0..<1000).contains($0) })
            #expect(zip(t, spaced).filter { $0 != $1 }.count == 1, "one timestep moves: \(t)")
            #expect(t != spaced, "a list equal to the spacing's is no list")
            #expect(child.key.contains("@" + t.map(String.init).joined(separator: ".") + ":G5:N5:"))
            let plan = try child.plan(sampler)
            #expect(plan.sampler.timesteps == t && plan.sampler.spacing == nil && plan.sampler.order == child.solver!.order)
            #expect(try plan.sampler.scheduler(configuration: config).timesteps == t)
            #expect(try JSONDecoder().decode(Candidate.self, from: JSONEncoder().encode(child)) == child)
        }
        #expect(moved > 20, "mutation moves timesteps (\(moved) of 400)")
        // Children of a moved candidate: segment mutations keep its list, timestep moves keep its
        // segments, and a switch to another solver that takes timesteps keeps the list.
        let once = try #require((0..<200).lazy.map { _ in space.mutate(plain, probability: 0.25, using: &rng) }.first { $0.timesteps != nil })
        var switched = 0
        for _ in 0..<300 {
            let child = space.mutate(once, probability: 0.25, using: &rng)
            #expect(space.contains(child), "\(child.key)")
            if child.solver == once.solver && child.grid == once.grid && child.count == once.count {
                #expect(child.timesteps == once.timesteps || child.segments == once.segments, "\(child.key) from \(once.key)")
            }
            if child.solver == dpm { switched += 1; #expect(child.timesteps == once.timesteps) }
        }
        #expect(switched > 0)
        // DDIM grids and spaces without the configuration have none.
        let noTimesteps = try SearchSpace(sampler: sampler, segmentCounts: Array(4...20), branchCount: 6, grids: [5, 8], solvers: [unipc, dpm])
        #expect(!noTimesteps.searchesTimesteps && !noTimesteps.contains(once), "a list outside a space that searches none")
        let ddim = space.ddim(segments: 5, grid: 5)
        for _ in 0..<100 {
            #expect(space.mutate(ddim, probability: 0.25, using: &rng).timesteps == nil)
            #expect(noTimesteps.mutate(plain, probability: 0.25, using: &rng).timesteps == nil)
        }
        #expect(Candidate(segments: ddim.segments, grid: 5, timesteps: [900, 700, 500, 300, 100]).timesteps == nil, "no list without a solver")
        // A list that is not strictly decreasing, or out of range, is not a member.
        #expect(!space.contains(plain.with(timesteps: [800, 800, 480, 320, 160])) && !space.contains(plain.with(timesteps: [1000, 640, 480, 320, 160])))
        #expect(space.contains(plain.with(timesteps: [999, 640, 480, 320, 0])))
        // A list makes the solver's spacing moot: one key per plan, a member where the solver is searched on some spacing.
        let trailing = try SolverChoice(parsing: "unipc3-trailing")
        let onTrailing = Candidate(segments: plain.segments, grid: 5, solver: trailing, timesteps: [999, 640, 480, 320, 0])
        #expect(onTrailing.solver == unipc && onTrailing.key == plain.with(timesteps: [999, 640, 480, 320, 0]).key)
        let trailingOnly = try SearchSpace(sampler: sampler, segmentCounts: Array(4...20), branchCount: 6, grids: [5], solvers: [trailing], timesteps: config)
        #expect(trailingOnly.contains(onTrailing) && !trailingOnly.contains(plain))
    }
    /// solvers that evaluate G times: segments divide each candidate's own evaluations, members stay
    /// members through random draws, mutation, crossover and repair, and their plans run.
    @Test func pndmTeacherSegmentsItsEvaluations() throws {
        let pndm = PlanSampler(scheduler: .pndm, steps: 50, skipPRKSteps: true)
        #expect(pndm.evaluations == 51)
        let space = try SearchSpace(sampler: pndm, segmentCounts: Array(4...50), branchCount: 6, grids: [25, 15], solvers: SolverChoice.usual)
        #expect(space.actions(grid: 15) == 16 && space.actions(grid: 15, solver: SolverChoice.usual[0]) == 15)
        #expect(space.counts(grid: 15).contains(16) && space.counts(grid: 15).contains(15))
        // Plain PNDM with 15 steps: 16 segments of one full step, every action full.
        let plain = space.ddim(segments: 16, grid: 15)
        let plainActions = try plain.plan(pndm).actions
        #expect(space.contains(plain) && plainActions == Array(repeating: .full, count: 16))
        // A solver's plain 15 steps: 15 segments; 16 would not fit its 15 evaluations.
        let unipc = try SolverChoice(parsing: "unipc2")
        #expect(space.contains(space.ddim(segments: 15, grid: 15, solver: unipc)))
        #expect(!space.contains(Candidate(segments: plain.segments, grid: 15, solver: unipc)))
        // DeepCache 1:3 on the teacher's 51 evaluations is DeepCache's own plan.
        let dc = space.deepCache(segments: 17, branch: 2)
        let dcActions = try dc.plan(pndm).actions, reference = try StepPlan.deepCacheUniform(pndm, interval: 3, branch: 2).actions
        #expect(space.contains(dc) && dcActions == reference)
        // Moving plain PNDM-15 onto a solver refits it to 15 segments.
        let moved = space.fitted(Candidate(segments: plain.segments, grid: 15, solver: unipc))
        #expect(space.contains(moved) && moved.count == 15)
        let cost = CostModel(latencies: try syntheticLatencies(), sampler: pndm)
        #expect(cost.teacherCost == 51 * 100, "the teacher costs its 51 evaluations")
        var rng = SplitMix64(seed: freshSeed())
        for _ in 0..<300 {
            let a = space.random(using: &rng), b = space.random(using: &rng)
            let m = space.mutate(a, probability: 0.25, using: &rng), x = space.crossover(a, b, using: &rng)
            for c in [a, b, m, x] {
                #expect(space.contains(c), "\(c.key)")
                let plan = try c.plan(pndm)
                #expect(plan.actions.count == plan.sampler.evaluations, "\(c.key)")
            }
            if let r = try cost.repair(x, budget: cost.teacherCost / 3, space: space, using: &rng) { #expect(space.contains(r), "\(r.key)") }
        }
    }

    @Test func coarserGridsHoldDDIMAndDeepCacheOnTheirOwnTimesteps() throws {
        let space = try SearchSpace(sampler: sampler, segmentCounts: Array(4...30), branchCount: 6, grids: [37, 50, 100])
        #expect(space.grids == [100, 50, 37])
        #expect(space.counts(grid: 37) == Array(4...30) + [37] && space.counts(grid: 100) == Array(4...30))
        // Plain DDIM with 37 steps on its own timesteps (not the teacher's 100-step grid).
        let ddim = space.ddim(segments: 37, grid: 37)
        #expect(space.contains(ddim) && ddim.key.hasPrefix("G37:N37:"))
        let plan = try ddim.plan(sampler), reference = try StepPlan.ddim(steps: 37)
        #expect(plan.sampler == reference.sampler && plan.actions == reference.actions)
        // DeepCache 1:2 on DDIM-50.
        let dc = space.deepCache(segments: 25, branch: 2, grid: 50)
        #expect(space.contains(dc) && dc.key.hasPrefix("G50:N25:"))
        let dcPlan = try dc.plan(sampler), dcReference = try StepPlan.deepCacheUniform(PlanSampler(scheduler: .ddim, steps: 50), interval: 2, branch: 2)
        #expect(dcPlan.sampler == dcReference.sampler && dcPlan.actions == dcReference.actions)
        // The teacher's grid has one spelling; grids and counts outside the space are not members.
        #expect(space.ddim(segments: 25, grid: 100) == space.ddim(segments: 25) && space.ddim(segments: 25).grid == nil)
        #expect(!space.contains(Candidate(segments: space.ddim(segments: 25).segments, grid: 100)))
        #expect(!space.contains(Candidate(segments: Array(repeating: SegmentGene(active: 1, branch: 0), count: 40), grid: 40)), "40 is not a grid")
        #expect(!space.contains(Candidate(segments: Array(repeating: SegmentGene(active: 1, branch: 0), count: 36), grid: 37)), "36 segments: not a count of grid 37")
        #expect(ddim.key != Candidate(segments: ddim.segments).key, "the same genes on another grid are another plan")
        #expect(throws: ModelError.self) { try SearchSpace(sampler: sampler, segmentCounts: [5], branchCount: 6, grids: [120]) }
        // Older results files (no grid) read as the teacher's grid.
        let old = try JSONDecoder().decode(Candidate.self, from: Data(#"{"segments": [{"active": 2, "branch": 1}]}"#.utf8))
        #expect(old.grid == nil && old.key == "N1:2b1")
    }

    @Test func paretoFront() throws {
        func r(_ s: Double, _ f: Double) -> SearchRecord {
            SearchRecord(candidate: Candidate(segments: [SegmentGene(active: Int(s * 10), branch: 0)]), origin: .random, generation: 0,
                         predictedMs: 1, predictedSpeedup: s, rfid: ["8": f])
        }
        let front = EvolutionarySearch.paretoFront([r(2, 5), r(3, 6), r(2.5, 4), r(3, 9), r(1.5, 4.5), r(2.6, 7)], samples: 8)
        #expect(front.map(\.predictedSpeedup) == [3, 2.5], "(2.5, 4) dominates (2, 5), (1.5, 4.5) and (2.6, 7) does not beat (3, 6)")
    }

    /// The x axis is labelled at round values (0.80, 1.60, 2.39 … was the complaint), and the legend's
    /// longest name fits inside the picture at 7.3 px a character.
    @Test func paretoPlotTicksAndLegend() throws {
        let long = "deepcache N=2 branch 2 on DDIM 10"
        let svg = ParetoPlot.svg(candidates: [(2.63, 3.1), (3.05, 2.2)], front: [], best: (3.05, 2.2),
                                 baselines: [(long, 2.84, 5), ("teacher", 1, 0)], target: 2.7, title: "t")
        let width = Double(svg.components(separatedBy: " width=\"")[1].prefix { $0 != "\"" })!
        let labels = svg.split(separator: "\n").filter { $0.hasPrefix("<text") && $0.contains("text-anchor=\"middle\">") && $0.contains("y=\"441.0\"") }
            .compactMap { Double($0.split(separator: ">")[1].split(separator: "<")[0]) }
        #expect(labels.count >= 4 && labels.count <= 9, "\(labels)")
        let step = labels[1] - labels[0]
        #expect([0.1, 0.2, 0.25, 0.5, 1].contains { abs(step - $0) < 1e-9 }, "tick step \(step)")
        #expect(labels.allSatisfy { abs(($0 / step).rounded() * step - $0) < 1e-9 }, "\(labels)")
        let line = svg.split(separator: "\n").first { $0.contains(">\(long)</text>") }!
        let x = Double(line.components(separatedBy: "<text x=\"")[1].prefix { $0 != "\"" })!
        #expect(x + 7.3 * Double(long.count) <= width, "legend text from \(x) in a picture \(width) wide")
    }

    /// The picture's rFID axis keeps plans near the target apart when one candidate is far off, and
    /// puts the teacher (rFID 0) on the axis.
    @Test func paretoPlotKeepsNearbyPlansApart() throws {
        let svg = ParetoPlot.svg(candidates: [(2.7, 1.0), (2.7, 2.0), (6, 190)], front: [], best: nil,
                                 baselines: [("teacher", 1, 0)], target: 2.7, title: "t")
        // Candidates are the grey circles, in order.
        let ys = svg.split(separator: "\n").filter { $0.hasPrefix("<circle") }.compactMap { line -> Double? in
            guard let r = line.range(of: "cy=\"") else { return nil }
            return Double(line[r.upperBound...].prefix { $0 != "\"" })
        }
        #expect(ys.count == 3)
        if ys.count == 3 {
            #expect(ys[0] - ys[1] > 20, "rFID 1 and 2 are \(ys[0] - ys[1]) px apart beside a candidate at 190")
            #expect(ys[2] < ys[1] && ys[2] >= 40, "the far candidate is highest, inside the plot")
        }
        #expect(svg.contains("<rect x=\"\(String(format: "%.1f", 70 + (1 - 0.8) / (6.2 - 0.8) * 480 - 5))\" y=\"420.0\""), "the teacher sits on the axis (y = 425)")
        #expect(svg.contains("log scale"))
    }
}

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
            func rfid(_ c: Candidate, samples: Int) throws -> Double {
                c.key == "G40:N40:" + Array(repeating: "1", count: 40).joined(separator: ",") ? 0.01 : try base.rfid(c, samples: samples) + 0.05
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
            func rfid(_ c: Candidate, samples: Int) throws -> Double {
                c.key == "unipc2:G10:N10:" + Array(repeating: "1", count: 10).joined(separator: ",") ? 0.01 : try base.rfid(c, samples: samples) + 0.05
            }
        }
        final class PrefersCachedUniPC: CandidateScorer {
            let base = SyntheticScorer()
            func rfid(_ c: Candidate, samples: Int) throws -> Double {
                try base.rfid(c, samples: samples) + (c.solver?.scheduler == .unipc ? 0 : 0.5)
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
            func rfid(_ c: Candidate, samples: Int) throws -> Double {
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
        let spacedScore = try scorer.rfid(space.ddim(segments: 5, grid: 5, solver: solvers[0]), samples: 16)
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
            func rfid(_ c: Candidate, samples: Int) throws -> Double { try base.rfid(c, samples: samples) + (c.key == member ? 1 : 0) }
            func judge(_ c: Candidate, samples: Int, by: Fitness) throws -> Double {
                #expect(by == .fid)
                judged.append("\(c.key)@\(samples)")
                return c.key == member ? 0.001 : try base.rfid(c, samples: samples) + 1 / Double(c.count) + Double(samples) * 1e-6
            }
        }
        let seed = freshSeed()
        let scorer = JudgePrefersUniPC10()
        let a = try makeSearch(seed: seed, scorer: scorer, grids: [20, 10], solvers: SolverChoice.usual, speedup: 10, finalSamples: 256, judge: .fid)
        try a.run()
        let race = try #require(a.state.race)
        #expect(race.judge == "fid" && race.rungs.map(\.samples) == [64, 256], "\(race.rungs.map(\.samples))")
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
                records.merge(shard.state.records) { a, b in var m = a; m.rfid.merge(b.rfid) { x, _ in x }; return m }
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

@Suite struct RFIDScorerTests {
    /// The scorer over the engine's evaluator, for a teacher `steps` long on `sampler`, caching under `dir`.
    static func scorer(_ setup: (folder: ModelFolder, sampler: Sampler, features: FashionFeatureNet), teacher: PlanSampler? = nil,
                       seed: UInt64, dir: URL) throws -> RFIDScorer {
        let pipeline = try GenerationPipeline(unet: setup.sampler.unet, schedulerConfiguration: setup.folder.schedulerConfiguration())
        return RFIDScorer(evaluator: try RFIDEvaluator(pipeline: pipeline, extractor: setup.features,
                                                       teacher: StepPlan.teacher(teacher ?? setup.sampler.planSampler), seed: seed,
                                                       modelKey: RFIDEvaluator.modelKey(folder: setup.folder), cacheDirectory: dir))
    }

    /// A candidate resumed from another candidate's stored segment-boundary state scores exactly as
    /// when generated from the noise; promotion from screening reuses the first batch.
    @Test func sharedPrefixesGiveTheSameRFID() throws {
        let setup = try defaultModelSampler(batch: 3, steps: 12)
        let seed = freshSeed()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacher-features-\(seed)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = Candidate(segments: [SegmentGene(active: 3, branch: 1), SegmentGene(active: 2, branch: 4), SegmentGene(active: 1, branch: 0), SegmentGene(active: 2, branch: 2)])
        let b = Candidate(segments: [SegmentGene(active: 3, branch: 1), SegmentGene(active: 2, branch: 4), SegmentGene(active: 3, branch: 0), SegmentGene(active: 1, branch: 0)])
        let shared = try Self.scorer(setup, seed: seed, dir: dir)
        _ = try shared.rfid(a, samples: 6)
        let before = shared.stepsShared
        let viaPrefix = try shared.rfid(b, samples: 6)
        #expect(shared.stepsShared - before == 2 * 6, "b should resume both batches after a's first two segments (6 steps)")
        let fresh = try Self.scorer(setup, seed: seed, dir: dir)
        let direct = try fresh.rfid(b, samples: 6)
        #expect(fresh.stepsShared == 0 && fresh.teacherSeconds == 0, "the second scorer reads the teacher's features from the cache")
        #expect(abs(viaPrefix - direct) <= 1e-9 * max(1, abs(direct)), "rFID via a shared prefix \(viaPrefix) vs from noise \(direct) (seed \(seed))")
        #expect(direct > 0)
        // Screening then promotion: the second batch only.
        let promoted = try Self.scorer(setup, seed: seed, dir: dir)
        _ = try promoted.rfid(b, samples: 3)
        let run = promoted.stepsRun
        #expect(abs(try promoted.rfid(b, samples: 6) - direct) <= 1e-9 * max(1, abs(direct)))
        #expect(promoted.stepsRun - run == 12, "promotion generates one more batch")
        // The plan runs as `generate --plan` would: the teacher scores 0.
        #expect(try shared.rfid(plan: setup.sampler.teacherPlan, samples: 6).rfid <= 1e-6)
    }

    /// `flexiffusion rfid PLAN --seed S` (a fresh evaluator, no shared states) gives the search's score
    /// of the same plan at the same seed and sample count, for samplers that draw variance noise too.
    @Test(arguments: [PlanSampler(scheduler: .ddim, steps: 8, eta: 0.5), PlanSampler(scheduler: .ddpm, steps: 8), PlanSampler(scheduler: .ddim, steps: 8)])
    func rfidCommandEqualsTheSearchScore(teacher: PlanSampler) throws {
        let setup = try defaultModelSampler(batch: 3, steps: 8)
        let seed = freshSeed()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacher-features-rfid-\(seed)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let search = try Self.scorer(setup, teacher: teacher, seed: seed, dir: dir)
        let a = Candidate(segments: [SegmentGene(active: 2, branch: 1), SegmentGene(active: 1, branch: 0), SegmentGene(active: 2, branch: 3), SegmentGene(active: 1, branch: 0)])
        let b = Candidate(segments: [SegmentGene(active: 2, branch: 1), SegmentGene(active: 1, branch: 0), SegmentGene(active: 1, branch: 0), SegmentGene(active: 2, branch: 2)])
        _ = try search.rfid(a, samples: 5)
        let scored = try search.rfid(b, samples: 5)
        #expect(search.stepsShared > 0 || teacher.eta != 0 || teacher.scheduler == .ddpm)
        if teacher.eta != 0 || teacher.scheduler == .ddpm { #expect(search.stepsShared == 0, "states are shared only where no variance noise is drawn") }
        // As the rfid command does it: a new evaluator for the plan file's plan.
        let pipeline = try GenerationPipeline(unet: setup.sampler.unet, schedulerConfiguration: setup.folder.schedulerConfiguration())
        let command = try RFIDEvaluator(pipeline: pipeline, extractor: setup.features, teacher: StepPlan.teacher(teacher), seed: seed,
                                        modelKey: RFIDEvaluator.modelKey(folder: setup.folder), cacheDirectory: dir)
        let planFile = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(seed).json")
        defer { try? FileManager.default.removeItem(at: planFile) }
        try b.plan(teacher).write(to: planFile.path)
        let viaCommand = try command.rfid(plan: StepPlan.load(from: planFile), samples: 5).rfid
        #expect(viaCommand == scored, "rfid \(viaCommand) vs search \(scored) (\(teacher), seed \(seed))")
        #expect(scored > 0)
    }

    /// A candidate on another solver (UniPC on a 6-step grid, with a partial and a null step) runs its
    /// plan on that solver: the search's score equals `rfid` of the plan file, it shares no state with
    /// the same genes on DDIM, and it differs from them.
    @Test func solverCandidatesRunOnTheirSolver() throws {
        let setup = try defaultModelSampler(batch: 3, steps: 12)
        let seed = freshSeed()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacher-features-solver-\(seed)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let scorer = try Self.scorer(setup, seed: seed, dir: dir)
        let teacher = setup.sampler.planSampler
        let space = try SearchSpace(sampler: teacher, segmentCounts: [2, 3], branchCount: setup.sampler.unet.branchCount, grids: [6], solvers: SolverChoice.usual)
        let unipc = Candidate(segments: [SegmentGene(active: 2, branch: 2), SegmentGene(active: 1, branch: 0), SegmentGene(active: 2, branch: 1)],
                              grid: 6, solver: SolverChoice.usual[1])
        #expect(space.contains(unipc))
        let plan = try unipc.plan(teacher)
        #expect(plan.sampler == PlanSampler(scheduler: .unipc, steps: 6, order: 2) && plan.partialSteps == 2 && plan.nullSteps == 1)
        let scored = try scorer.rfid(unipc, samples: 5)
        let checker = try Self.scorer(setup, seed: seed, dir: dir)
        let viaPlan = try checker.rfid(plan: plan, samples: 5).rfid
        #expect(abs(scored - viaPlan) <= 1e-9 * max(1, viaPlan) && scored > 0, "search \(scored) vs plan \(viaPlan) (seed \(seed))")
        let onDDIM = Candidate(segments: unipc.segments, grid: 6)
        let before = scorer.stepsShared
        let ddimScore = try scorer.rfid(onDDIM, samples: 5)
        #expect(scorer.stepsShared == before && abs(ddimScore - scored) > 1e-6, "DDIM \(ddimScore) vs UniPC \(scored)")
    }

    /// Candidates on a coarser grid run on that grid's own DDIM timesteps (as a separately built
    /// sampler of that many steps does), share prefixes among themselves, and never with the same
    /// genes on the teacher's grid.
    @Test func coarserGridCandidatesRunOnTheirOwnTimesteps() throws {
        let setup = try defaultModelSampler(batch: 3, steps: 12)
        let sampler = setup.sampler
        let seed = freshSeed()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacher-features-grid-\(seed)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let scorer = try Self.scorer(setup, seed: seed, dir: dir)
        let space = try SearchSpace(sampler: sampler.teacherPlan.sampler, segmentCounts: [2, 3, 4], branchCount: sampler.unet.branchCount, grids: [8])
        // DDIM with 8 steps on its own grid, as a member and as a baseline on a sampler built apart.
        let ddim = space.ddim(segments: 8, grid: 8)
        let member = try scorer.rfid(ddim, samples: 6)
        let checker = try Self.scorer(setup, seed: seed, dir: dir)
        let baseline = try checker.rfid(plan: try StepPlan.ddim(steps: 8), samples: 6).rfid
        #expect(abs(member - baseline) <= 1e-9 * max(1, abs(baseline)), "member \(member) vs baseline \(baseline) (seed \(seed))")
        #expect(try scorer.sampler(grid: 8).scheduler.timesteps == DDIMScheduler(configuration: setup.folder.schedulerConfiguration(), steps: 8).timesteps)
        #expect(member > 0)
        // Two candidates on the 8-step grid with the same first segment share it (2 steps × 2 batches).
        let a = Candidate(segments: [SegmentGene(active: 2, branch: 1), SegmentGene(active: 1, branch: 0), SegmentGene(active: 2, branch: 3), SegmentGene(active: 1, branch: 0)], grid: 8)
        let b = Candidate(segments: [SegmentGene(active: 2, branch: 1), SegmentGene(active: 2, branch: 2), SegmentGene(active: 1, branch: 0), SegmentGene(active: 2, branch: 0)], grid: 8)
        #expect(space.contains(a) && space.contains(b))
        _ = try scorer.rfid(a, samples: 6)
        let before = scorer.stepsShared
        let viaPrefix = try scorer.rfid(b, samples: 6)
        #expect(scorer.stepsShared - before == 2 * 2)
        let fresh = try Self.scorer(setup, seed: seed, dir: dir)
        let direct = try fresh.rfid(b, samples: 6)
        #expect(abs(viaPrefix - direct) <= 1e-9 * max(1, abs(direct)), "rFID via a shared prefix \(viaPrefix) vs from noise \(direct)")
        // The same genes on the teacher's 12-step grid: another plan, nothing shared with the 8-step ones.
        let onTeacher = Candidate(segments: b.segments)
        let sharedBefore = scorer.stepsShared
        let other = try scorer.rfid(onTeacher, samples: 6)
        #expect(scorer.stepsShared == sharedBefore && abs(other - direct) > 1e-6, "teacher grid \(other) vs 8-step grid \(direct)")
    }
}

/// The synthetic scorer as a whole evaluator: plans outside the space score by their share of
/// full steps, statistics are one-dimensional, and a batch takes 1 ms per full step.
final class SyntheticEvaluator: SearchEvaluator {
    let scorer = SyntheticScorer()
    var calls: [String] { scorer.calls }
    /// The final race's judge (nil: the synthetic rFID on more images).
    var judgement: ((Candidate, Int) -> Double)?
    func rfid(_ c: Candidate, samples: Int) throws -> Double { try scorer.rfid(c, samples: samples) }
    func judge(_ c: Candidate, samples: Int, by: Fitness) throws -> Double { try judgement?(c, samples) ?? scorer.rfid(c, samples: samples) }
    func rfid(plan: StepPlan, samples: Int) throws -> (rfid: Double, statistics: FeatureStatistics) {
        let r = 1 - Double(plan.fullSteps) / Double(plan.actions.count) + 1 / Double(samples)
        return (r, FeatureStatistics(mu: [r], sigma: [1]))
    }
    func statistics(_ c: Candidate, samples: Int) throws -> FeatureStatistics { FeatureStatistics(mu: [try rfid(c, samples: samples)], sigma: [1]) }
    func teacherStatistics(samples: Int) throws -> FeatureStatistics { FeatureStatistics(mu: [0], sigma: [1]) }
    func timeRun(_ plan: StepPlan, images: Int) throws -> Double { (0.001 * Double(plan.fullSteps) + 0.0001 * Double(plan.partialSteps)) * Double(images) }
    func imageStrip(_ plan: StepPlan, images: Int) throws -> Data? { PNG.encode(width: images, height: 1, channels: 1, pixels: Array(repeating: UInt8(plan.fullSteps % 256), count: images)) }
    var stepsRun: Int { calls.count }
    var stepsShared: Int { 0 }
    var teacherSeconds: Double { 0 }
    /// (A stand-in: the plan's null fraction.)
    func pairedDistance(plan: StepPlan, samples: Int) throws -> Double? { Double(plan.nullSteps) / Double(plan.actions.count) }
}

@Suite struct SearchSessionTests {
    let teacher = PlanSampler(scheduler: .ddim, steps: 100)

    func configuration(_ dir: URL, seed: UInt64, mode: SearchConfiguration.Mode = .search, resume: Bool = false,
                       margin: Double = 0.08) -> SearchConfiguration {
        var c = SearchConfiguration(target: .speedup(2.5), teacher: teacher, batch: 8, out: dir.appendingPathComponent("search.json"),
                                    modelName: "synthetic", modelKey: "k", device: "d", features: "f", branchCount: 6)
        c.samples = 16; c.screenSamples = 8; c.population = 6; c.children = 8; c.generations = 4; c.seed = seed
        c.segmentCounts = [5, 10, 20, 25]; c.mode = mode; c.resume = resume; c.margin = margin; c.measureRounds = 2
        return c
    }

    /// Counts latency measurements.
    final class Counter { var n = 0 }

    func session(_ c: SearchConfiguration, _ evaluator: SearchEvaluator, dir: URL, measured: Counter) -> SearchSession {
        SearchSession(configuration: c, evaluator: evaluator,
                      latencies: LatencySource(table: dir.appendingPathComponent("latency.json"), fingerprint: "x") {
                          measured.n += 1
                          return try syntheticLatencies()
                      })
    }

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("search-session-\(freshSeed())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A search by the paired distance: the best entry carries its score as `paired` and its rFID from
    /// the same plan; every entry has both; a results file does not continue with the other fitness.
    @Test func pairedFitnessReportsBothMeasures() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let seed = freshSeed()
        var c = configuration(dir, seed: seed)
        c.fitness = .paired; c.generations = 1
        let outcome = try session(c, SyntheticEvaluator(), dir: dir, measured: Counter()).run()
        guard case .finished(let result) = outcome else { Issue.record("outcome \(outcome)"); return }
        let best = result.entries[0]
        #expect(best.paired == result.best.score(c.samples), "the paired fitness is the best entry's paired distance")
        #expect(best.rfid == (try SyntheticEvaluator().rfid(plan: best.plan!, samples: c.samples)).rfid)
        #expect(result.entries.allSatisfy { $0.rfid != nil && $0.paired != nil } && result.teacher.paired == 0)
        #expect(result.report.state.settings.fitness == "paired")
        var other = configuration(dir, seed: seed, resume: true)
        other.generations = 2
        #expect(throws: ModelError.self) { _ = try session(other, SyntheticEvaluator(), dir: dir, measured: Counter()).run() }
    }

    /// A search with a final race whose judge prefers plain DDIM-37: it becomes the best entry, the
    /// evolution's own best is reported beside it, the contenders carry their race scores, and the
    /// page says how the result was chosen.
    @Test func finalRaceChoosesTheReportedBest() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = configuration(dir, seed: freshSeed())
        c.generations = 2; c.finalSamples = 64; c.finalJudge = .fid
        let evaluator = SyntheticEvaluator()
        let ddim37 = "G37:N37:" + Array(repeating: "1", count: 37).joined(separator: ",")
        evaluator.judgement = { candidate, samples in candidate.key == ddim37 ? 0.5 : 1 + Double(candidate.count) / 100 }
        let outcome = try session(c, evaluator, dir: dir, measured: Counter()).run()
        guard case .finished(let result) = outcome else { Issue.record("outcome \(outcome)"); return }
        #expect(result.best.candidate.key == ddim37 && result.entries[0].key == ddim37)
        #expect(result.entries[0].raceScore == 0.5 && result.entries[0].raceSamples == 64)
        let first = try #require(result.entries.first { $0.name == "best on 16 images" })
        #expect(first.key == result.report.state.population.first && first.raceScore != nil)
        #expect(result.report.state.race?.rungs.map(\.samples) == [64])
        let page = try String(contentsOf: result.html, encoding: .utf8)
        #expect(page.contains("final race: fid") && page.contains("winner of a final race"))
        let saved = try SearchReport.load(from: c.out)
        #expect(saved.best?.key == ddim37 && saved.best?.raceScore == 0.5 && saved.bestPlan == result.report.bestPlan)
        let contenders = try #require(saved.race)
        #expect(contenders.map(\.key) == saved.state.race?.rungs[0].ranking && contenders.allSatisfy { $0.plan != nil && $0.raceSamples == 64 })
    }

    /// A whole search: latencies measured once into the table (then read from it), the report with
    /// the baselines and measured speed-ups, the picture; an interrupted search resumes to the same result.
    @Test func runsReportsAndResumes() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let seed = freshSeed()
        let measured = Counter()
        var events: [String] = []
        let whole = try session(configuration(dir, seed: seed), SyntheticEvaluator(), dir: dir, measured: measured).run { event in
            if case .latencies(let origin, _) = event { events.append("\(origin)") }
            return .proceed
        }
        guard case .finished(let result) = whole else { Issue.record("outcome \(whole)"); return }
        #expect(events == ["measuredNow"])
        #expect(result.entries.map(\.name).first == "best" && result.entries.contains { $0.name == "ddim 37 steps" })
        #expect(result.entries.contains { $0.name.hasPrefix("deepcache") })
        #expect(result.entries.contains { $0.name == "dpmsolver++ 2M 37 steps" && $0.plan?.sampler.scheduler == .dpmsolverPlusPlus })
        #expect(result.entries.allSatisfy { $0.measuredSpeedup != nil && $0.predictedSpeedup >= 2.5 * 1.08 - 1e-9 })
        let ddim = result.entries.first { $0.name == "ddim 37 steps" }!
        #expect(abs(ddim.measuredSpeedup! - 100.0 / 37) < 1e-9 && ddim.measuredRange!.allSatisfy { abs($0 - 100.0 / 37) < 1e-9 })
        #expect(FileManager.default.fileExists(atPath: result.svg.path))
        #expect(result.entries.contains { $0.name == "unipc2 37 steps" && $0.plan?.sampler == PlanSampler(scheduler: .unipc, steps: 37, order: 2) })
        // The page: every entry in the table, the teacher's and every entry's images, the picture inline.
        let page = try String(contentsOf: result.html, encoding: .utf8)
        #expect(page.hasPrefix("<!DOCTYPE html>") && page.contains("<svg") && page.components(separatedBy: "data:image/png;base64,").count == result.entries.count + 2)
        for e in result.entries { #expect(page.contains(">\(e.name)</td>"), "\(e.name) in the page's table") }
        let saved = try SearchReport.load(from: dir.appendingPathComponent("search.json"))
        #expect(saved.bestPlan == result.report.bestPlan && saved.state.complete && saved.baselines.count == result.entries.count - 1)
        let bestPopulation = saved.state.population

        // Stopped mid-search by its handler, then resumed (latencies from the results file, none measured).
        let other = try tempDir()
        defer { try? FileManager.default.removeItem(at: other) }
        try FileManager.default.copyItem(at: dir.appendingPathComponent("latency.json"), to: other.appendingPathComponent("latency.json"))
        let evaluator = SyntheticEvaluator()
        events = []
        let stopped = try session(configuration(other, seed: seed), evaluator, dir: other, measured: measured).run { event in
            if case .latencies(let origin, _) = event { events.append("\(origin)") }
            return evaluator.calls.count >= 17 ? .stop : .proceed
        }
        guard case .interrupted(let scored) = stopped else { Issue.record("outcome \(stopped)"); return }
        #expect(scored >= 1 && events.count == 1 && events[0].hasPrefix("table"), "\(events)")
        #expect(!(try SearchReport.load(from: other.appendingPathComponent("search.json"))).state.complete)
        let resumed = try session(configuration(other, seed: seed, resume: true), evaluator, dir: other, measured: measured).run()
        guard case .finished(let again) = resumed else { Issue.record("outcome \(resumed)"); return }
        #expect(again.report.state.population == bestPopulation, "seed \(seed)")
        #expect(measured.n == 1, "latencies are measured once, then read from the table or the results file")
        // A results file continues only with its own margin and identity.
        #expect(throws: ModelError.self) { _ = try session(configuration(other, seed: seed, resume: true, margin: 0.1), evaluator, dir: other, measured: measured).run() }
        var faster = configuration(other, seed: seed, resume: true)
        faster.target = .speedup(3)
        do { _ = try session(faster, evaluator, dir: other, measured: measured).run(); Issue.record("another target continued the file") }
        catch let e as ModelError { #expect(e.message.contains("was searched for 2.5×") && e.message.contains("3×"), "\(e.message)") }
        var foreign = configuration(other, seed: seed, resume: true)
        foreign.modelKey = "another"
        #expect(throws: ModelError.self) { _ = try session(foreign, evaluator, dir: other, measured: measured).run() }
        // A new search over a finished results file keeps that file beside it, stopped or not.
        var kept: URL? = nil
        let restart = try session(configuration(other, seed: seed), evaluator, dir: other, measured: measured).run { event in
            if case .replacing(_, let k) = event { kept = k }
            return .stop
        }
        guard case .interrupted = restart else { Issue.record("outcome \(restart)"); return }
        #expect(kept?.lastPathComponent == "search.previous.json")
        let previous = try SearchReport.load(from: other.appendingPathComponent("search.previous.json"))
        #expect(previous.state.complete && previous.bestPlan == again.report.bestPlan, "the finished search is kept")
    }

    /// Shards over two evaluators, merged after each phase, end where one process ends; the shard
    /// refuses to start before a merge created the results file.
    @Test func shardsAndMergeMatchOneProcess() throws {
        let dir = try tempDir(), one = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir); try? FileManager.default.removeItem(at: one) }
        let seed = freshSeed()
        let measured = Counter()
        guard case .finished(let single) = try session(configuration(one, seed: seed), SyntheticEvaluator(), dir: one, measured: measured).run() else {
            Issue.record("single run did not finish"); return
        }
        #expect(throws: ModelError.self) { _ = try session(configuration(dir, seed: seed, mode: .shard(index: 0, count: 2)), SyntheticEvaluator(), dir: dir, measured: measured).run() }
        var complete = false, rounds = 0
        while !complete && rounds < 100 {
            rounds += 1
            let merged = try session(configuration(dir, seed: seed, mode: .merge), SyntheticEvaluator(), dir: dir, measured: measured).run()
            guard case .merged(_, let done, _, _) = merged else { Issue.record("outcome \(merged)"); return }
            complete = done
            if done { break }
            for i in 0..<2 {
                let shard = try session(configuration(dir, seed: seed, mode: .shard(index: i, count: 2)), SyntheticEvaluator(), dir: dir, measured: measured).run()
                guard case .shardScored(let scored, let missing, _) = shard else { Issue.record("outcome \(shard)"); return }
                #expect(scored <= (missing + 1) / 2)
            }
        }
        #expect(complete, "the sharded search does not finish")
        guard case .finished(let result) = try session(configuration(dir, seed: seed, resume: true), SyntheticEvaluator(), dir: dir, measured: measured).run() else {
            Issue.record("the report after the shards did not finish"); return
        }
        #expect(result.report.state.population == single.report.state.population, "seed \(seed)")
        #expect(result.report.bestPlan == single.report.bestPlan)
    }
}
