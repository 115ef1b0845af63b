// The search space: it holds DDIM, DeepCache, coarser grids and other solvers exactly (so the
// search can start from them and never end worse); mutation moves timesteps; the Pareto front and its picture.
import Engine
import Foundation
import GPUKernels
import Search
import Testing
import TestSupport

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
                         predictedMs: 1, predictedSpeedup: s, fitness: [8: f])
        }
        let front = ParetoFront.of([r(2, 5), r(3, 6), r(2.5, 4), r(3, 9), r(1.5, 4.5), r(2.6, 7)], samples: 8)
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
        // The fitness axis starts at "0", not "0.00"; eight baselines get eight colours.
        #expect(svg.contains("text-anchor=\"end\">0</text>") && !svg.contains(">0.00</text>"))
        let many = ParetoPlot.svg(candidates: [], front: [], best: nil, baselines: (0..<8).map { ("b\($0)", 2 + Double($0) / 10, Double($0)) },
                                  target: 2.7, title: "t")
        let fills = many.split(separator: "\n").filter { $0.hasPrefix("<rect x") && $0.contains("width=\"10\"") && !$0.contains("<text") }
            .compactMap { $0.components(separatedBy: "fill=\"").dropFirst().first?.prefix { $0 != "\"" } }
        #expect(Set(fills).count == 8, "\(fills)")
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
