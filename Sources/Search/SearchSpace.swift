// Flexiffusion's segment-wise search space: the teacher's T steps cut into N equal segments, each
// [full, partial × (k − 1) at branch b, null × (L − k)] with its own k and b. Plain DDIM on the
// teacher's grid (every k = 1) and DeepCache's uniform 1:L caching (every k = L, one branch) are
// members, so the search can start from them and never end worse than them.
// Besides the teacher's grid, the space may hold coarser DDIM grids (G < T evenly spaced timesteps,
// as DDIM with G steps places them), cut into segments the same way: plain DDIM with G steps on its
// own grid (N = G, every k = 1) — the usual "fewer steps" baseline, which the teacher's grid holds
// only with uneven jumps — and DeepCache on DDIM-G are members too.
// A grid may also run on another solver than the teacher's (DPM-Solver++, UniPC, …: the `solvers`
// of the space): plain UniPC with G steps and DeepCache on it are members then, so the search
// cannot end worse than switching the solver, and caching on a solver's grid is searched with it.
// A solver's grid may also carry an explicit timestep list (as Align Your Steps schedules do): with
// a scheduler configuration, mutation moves single timesteps of a solver grid, starting from its
// spacing's, so the search chooses where the few steps of a fast plan fall, not only how many.
import Engine
import Foundation

/// One segment's genes: active steps k (1 full + k − 1 partial) and the cached branch of its partial steps.
public struct SegmentGene: Codable, Hashable, Sendable {
    public var active: Int
    public var branch: Int
    public init(active: Int, branch: Int) { self.active = active; self.branch = branch }
}

/// A sampler a grid may run on instead of the teacher's scheduler: a kind, for a multistep solver
/// its order, and a timestep spacing other than the model's config's. Written "unipc2",
/// "dpmsolver++2", "euler", "ddim", "unipc3-trailing".
public struct SolverChoice: Codable, Hashable, Sendable, CustomStringConvertible {
    public var scheduler: SchedulerKind
    public var order: Int?
    /// The timestep spacing (nil: the scheduler config's).
    public var spacing: TimestepSpacing?

    public init(_ scheduler: SchedulerKind, order: Int? = nil, spacing: TimestepSpacing? = nil) throws {
        guard [.ddim, .dpmsolverPlusPlus, .dpmsolver, .unipc, .euler].contains(scheduler) else {
            throw ModelError("the search cannot choose \(scheduler) (ddim, dpmsolver++, dpmsolver, unipc or euler)")
        }
        self.scheduler = scheduler
        self.order = scheduler.isMultistep ? (order ?? 2) : nil
        self.spacing = spacing
        if let o = self.order, !(1...3).contains(o) { throw ModelError("solver order must be 1, 2 or 3, not \(o)") }
        if order != nil && !scheduler.isMultistep { throw ModelError("\(scheduler) has no solver order") }
    }

    /// "unipc2", "unipc" (order 2), "dpmsolver++3", "ddim", "unipc3-trailing" (a spacing after the dash).
    public init(parsing text: String) throws {
        let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let solver = parts.first ?? ""
        let digits = solver.reversed().prefix { $0.isNumber }
        let name = String(solver.dropLast(digits.count))
        guard let kind = SchedulerKind(rawValue: name) else {
            throw ModelError("unknown solver \"\(text)\" (e.g. unipc2, dpmsolver++2, dpmsolver++3, euler, ddim, unipc3-trailing)")
        }
        var spacing: TimestepSpacing? = nil
        if parts.count == 2 {
            guard let s = TimestepSpacing(rawValue: parts[1]) else {
                throw ModelError("unknown spacing \"\(parts[1])\" in solver \"\(text)\" (\(TimestepSpacing.names))")
            }
            spacing = s
        }
        try self.init(kind, order: digits.isEmpty ? nil : Int(String(digits.reversed())), spacing: spacing)
    }

    /// DPM-Solver++ (2M) and UniPC (bh2, order 2): what users pick instead of DDIM (the report's baselines).
    public static let usual = [try! SolverChoice(.dpmsolverPlusPlus, order: 2), try! SolverChoice(.unipc, order: 2)]

    /// The search's default solvers: the usual ones, UniPC of order 3, which ranked first at 9 steps
    /// on the default model (1,024 images: FID 82.2 against UniPC 2's 84.1; docs/experiments/search-experiment.md),
    /// and UniPC 3 and DPM-Solver++ 2 with trailing timesteps, whatever the config's spacing: on the
    /// default model (config: leading) trailing took UniPC 3's rFID from 23.6 to 15.0 at 5 steps and
    /// DPM-Solver++'s from 7.0 to 4.2 at 10 (512 images).
    public static let searchedByDefault = usual + [try! SolverChoice(.unipc, order: 3), try! SolverChoice(.unipc, order: 3, spacing: .trailing),
                                                   try! SolverChoice(.dpmsolverPlusPlus, order: 2, spacing: .trailing)]

    public var description: String { scheduler.rawValue + (order.map(String.init) ?? "") + (spacing.map { "-\($0)" } ?? "") }

    /// The same solver on the config's spacing.
    public var withoutSpacing: SolverChoice { var c = self; c.spacing = nil; return c }

    /// The sampler with `steps` steps (eta 0), at image-to-image's `strength` where one is given.
    public func sampler(steps: Int, strength: Double? = nil) -> PlanSampler {
        PlanSampler(scheduler: scheduler, steps: steps, order: order, spacing: spacing, strength: strength)
    }

    /// Whether grids may run on other solvers beside `teacher`: not when it has an eta or an explicit
    /// timestep list, which another solver would not carry (not the same family of plans).
    public static func canRunBeside(_ teacher: PlanSampler) -> Bool { teacher.eta == 0 && teacher.timesteps == nil }

    /// Whether `sampler` is this choice (kind, order and spacing).
    public func isSampler(_ sampler: PlanSampler) -> Bool {
        sampler.scheduler == scheduler && sampler.order == order && sampler.spacing == spacing
    }
}

/// A point of the search space. Canonical: a segment without partial steps (k = 1) has branch 0,
/// a candidate on the teacher's grid has no `grid`, and one on the teacher's scheduler no `solver`
/// (`SearchSpace` makes them so).
public struct Candidate: Codable, Hashable, Sendable, CustomStringConvertible {
    public private(set) var segments: [SegmentGene]
    /// The grid the segments divide: nil for the teacher's, else G < T steps on their own timesteps.
    public private(set) var grid: Int?
    /// The solver the grid runs on: nil for the teacher's scheduler.
    public private(set) var solver: SolverChoice?
    /// The solver grid's explicit timesteps, first to last, instead of its spacing (nil: the spacing's;
    /// with a list, the solver has no spacing).
    public private(set) var timesteps: [Int]?

    public init(segments: [SegmentGene], grid: Int? = nil, solver: SolverChoice? = nil, timesteps: [Int]? = nil) {
        self.segments = segments.map { $0.active <= 1 ? SegmentGene(active: $0.active, branch: 0) : $0 }
        self.grid = grid
        self.timesteps = solver == nil ? nil : timesteps
        // (An explicit list makes the solver's spacing moot: one key per plan.)
        self.solver = self.timesteps == nil ? solver : solver?.withoutSpacing
    }

    /// The same grid, solver and timesteps with other segments.
    public func with(segments: [SegmentGene]) -> Candidate { Candidate(segments: segments, grid: grid, solver: solver, timesteps: timesteps) }

    /// The same grid and segments with other timesteps (nil: the spacing's).
    public func with(timesteps: [Int]?) -> Candidate { Candidate(segments: segments, grid: grid, solver: solver, timesteps: timesteps) }

    public var count: Int { segments.count }

    /// A short, unique text form: "N10:3b1,1,2b0,…" (k, then b where k > 1), "G50:N25:…" on a DDIM-50
    /// grid, "unipc2:G10:N10:…" on a UniPC grid, "unipc3@820.600.400.180:G4:N4:…" on explicit timesteps.
    public var key: String { head + prefixKey(count) }

    /// "N10:", "G50:N25:" or "unipc2:G10:N10:": the solver (and its timesteps), grid and segment
    /// count, which every prefix key starts with.
    public var head: String {
        (solver.map { "\($0)" + (timesteps.map { "@" + $0.map(String.init).joined(separator: ".") } ?? "") + ":" } ?? "")
            + (grid.map { "G\($0):" } ?? "") + "N\(count):"
    }

    /// The key of the first `n` segments (prefix sharing: equal keys reach the same state).
    public func prefixKey(_ n: Int) -> String {
        segments.prefix(n).map { $0.active > 1 ? "\($0.active)b\($0.branch)" : "\($0.active)" }.joined(separator: ",")
    }

    public var description: String { key }

    /// The sampler the plan runs on: the teacher's, or the same scheduler with `grid` steps, or the
    /// candidate's solver with `grid` (or the teacher's) steps.
    public func sampler(_ teacher: PlanSampler) -> PlanSampler {
        if let solver, let timesteps {
            return PlanSampler(scheduler: solver.scheduler, steps: timesteps.count, order: solver.order, timesteps: timesteps, strength: teacher.strength)
        }
        if let solver { return solver.sampler(steps: grid ?? teacher.steps, strength: teacher.strength) }
        return grid.map { teacher.with(steps: $0) } ?? teacher
    }

    /// The step plan for the teacher's `sampler` (on this candidate's grid).
    public func plan(_ sampler: PlanSampler) throws -> StepPlan {
        try StepPlan.segments(self.sampler(sampler), intervals: segments.map(\.active), branches: segments.map(\.branch))
    }
}

/// Which candidates exist for one teacher and model.
public struct SearchSpace: Sendable {
    public let sampler: PlanSampler
    /// Allowed numbers of segments (divisors of the step count by default).
    public let segmentCounts: [Int]
    /// The model's cache branches (partial steps may use 0..<branchCount).
    public let branchCount: Int
    /// Step counts of the DDIM grids, the teacher's (T) first, then coarser ones, descending.
    public let grids: [Int]
    /// Solvers the grids may run on besides the teacher's scheduler.
    public let solvers: [SolverChoice]
    /// The scheduler configuration whose timesteps solver grids start from when mutation moves them
    /// (nil: solver grids keep their spacing's timesteps).
    public let timestepConfiguration: SchedulerConfiguration?

    /// `grids`: coarser DDIM grids besides the teacher's (each 1…T − 1; T itself is always in);
    /// `solvers`: other samplers for the grids (the teacher's own is left out); `timesteps`: the
    /// model's scheduler configuration, to search explicit timesteps of solver grids (nil: none).
    public init(sampler: PlanSampler, segmentCounts: [Int], branchCount: Int, grids: [Int] = [], solvers: [SolverChoice] = [],
                timesteps: SchedulerConfiguration? = nil) throws {
        guard !segmentCounts.isEmpty else { throw ModelError("no segment counts to search") }
        let most = sampler.strength == nil ? sampler.steps : sampler.evaluations   // (image-to-image: the kept evaluations)
        for n in segmentCounts where n < 1 || n > most {
            throw ModelError("\(n) segments: must be 1…\(most) for a \(sampler)")
        }
        for g in grids where g < 1 || g > sampler.steps {
            throw ModelError("a grid of \(g) steps: must be 1…\(sampler.steps) for a \(sampler.steps)-step teacher")
        }
        guard branchCount > 0 else { throw ModelError("the model has no cache branches") }
        self.sampler = sampler
        self.segmentCounts = Array(Set(segmentCounts)).sorted()
        self.branchCount = branchCount
        self.grids = [sampler.steps] + Array(Set(grids).subtracting([sampler.steps])).sorted(by: >)
        var unique: [SolverChoice] = []
        for s in solvers where !s.isSampler(sampler) && !unique.contains(s) { unique.append(s) }
        if !SolverChoice.canRunBeside(sampler), !unique.isEmpty {
            throw ModelError("other solvers are searched only beside a teacher with eta 0 and spaced timesteps")
        }
        self.solvers = unique
        self.timestepConfiguration = unique.contains(where: { $0.scheduler.takesTimesteps }) ? timesteps : nil
    }

    /// Whether mutation moves solver grids' timesteps.
    public var searchesTimesteps: Bool { timestepConfiguration != nil }

    /// The timesteps `c`'s sampler runs at (its explicit list, else its spacing's; nil where the
    /// configuration cannot make its scheduler).
    public func timesteps(of c: Candidate) -> [Int]? {
        if let t = c.timesteps { return t }
        guard let config = timestepConfiguration else { return nil }
        // (The whole schedule's, also at an image-to-image strength, which keeps only its end.)
        return try? c.sampler(sampler).fromNoise.scheduler(configuration: config).timesteps
    }

    /// `c` with the timestep list `new` (strictly decreasing within the training timesteps, as the
    /// caller keeps it); canonical: a list equal to the spacing's is dropped.
    func moved(_ c: Candidate, timesteps new: [Int]) -> Candidate {
        let spaced = timesteps(of: c.with(timesteps: nil))
        return c.with(timesteps: new == spaced ? nil : new)
    }

    /// One timestep of `c`'s solver grid moved towards a neighbour (or the ends of the training
    /// timesteps) by up to half the gap, at least 1; nil when none can move.
    func timestepMove(_ c: Candidate, using rng: inout some RandomNumberGenerator) -> Candidate? {
        guard let solver = c.solver, solver.scheduler.takesTimesteps, let config = timestepConfiguration,
              var t = timesteps(of: c), !t.isEmpty else { return nil }
        let top = config.numTrainTimesteps - 1
        // Room above and below each timestep (strictly decreasing, within 0…T − 1).
        let moves = t.indices.flatMap { i -> [(Int, Int)] in
            let above = (i == 0 ? top + 1 : t[i - 1]) - t[i] - 1, below = t[i] - (i == t.count - 1 ? -1 : t[i + 1]) - 1
            return (above > 0 ? [(i, above)] : []) + (below > 0 ? [(i, -below)] : [])
        }
        guard let (i, room) = moves.randomElement(using: &rng) else { return nil }
        let size = Int.random(in: 1...max(1, (abs(room) + 1) / 2), using: &rng)
        t[i] += room > 0 ? size : -size
        return moved(c, timesteps: t)
    }

    /// The canonical solver field for `s` (nil for the teacher's scheduler).
    public func solverField(_ s: SolverChoice?) -> SolverChoice? { s.flatMap { $0.isSampler(sampler) ? nil : $0 } }

    /// Every solver a grid may run on: nil (the teacher's), then `solvers`.
    public var solverChoices: [SolverChoice?] { [nil] + solvers.map { $0 } }

    /// The canonical grid field for a grid of `g` steps (nil for the teacher's).
    public func gridField(_ g: Int) -> Int? { g == sampler.steps ? nil : g }

    /// Model evaluations (plan actions) of a grid of `g` steps on `solver` (nil: the teacher's
    /// scheduler): its steps, except for PNDM (one more with PLMS alone).
    public func actions(grid g: Int, solver: SolverChoice? = nil) -> Int {
        (solver.map { $0.sampler(steps: g, strength: sampler.strength) } ?? sampler.with(steps: g)).evaluations
    }

    /// The step count of `c`'s grid (the teacher's when it has none).
    public func gridSteps(_ c: Candidate) -> Int { c.grid ?? sampler.steps }

    /// The model evaluations of `c`'s sampler: how many actions its segments divide.
    public func actions(_ c: Candidate) -> Int { actions(grid: gridSteps(c), solver: c.solver) }

    /// Segment counts on a grid of `g` steps: the teacher's are `segmentCounts`; a coarser grid's are
    /// those that fit, and its actions on each sampler (the plain sampler with G steps: G, or G + 1 for PNDM).
    public func counts(grid g: Int) -> [Int] {
        // (At image-to-image's strength a grid keeps fewer actions than steps: counts stop there.)
        let a = actions(grid: g), most = min(g, a)
        return g == sampler.steps ? segmentCounts : Array(Set(segmentCounts.filter { $0 <= most } + [most, a])).filter { $0 >= 1 }.sorted()
    }

    /// Every (grid, segment count) pair of the space.
    public var shapes: [(grid: Int, count: Int)] { grids.flatMap { g in counts(grid: g).map { (g, $0) } } }

    /// The divisors of `steps` within `range` (the paper's choice of N).
    public static func divisors(of steps: Int, in range: ClosedRange<Int>) -> [Int] {
        (max(1, range.lowerBound)...max(1, min(range.upperBound, steps))).filter { steps % $0 == 0 }
    }

    /// Lengths of `n` segments on the teacher's grid, or on a grid of `grid` steps (on `solver`, nil: the teacher's scheduler).
    public func lengths(_ n: Int, grid: Int? = nil, solver: SolverChoice? = nil) -> [Int] {
        StepPlan.segmentLengths(steps: actions(grid: grid ?? sampler.steps, solver: solver), count: n)
    }

    /// Lengths of `c`'s segments.
    public func lengths(_ c: Candidate) -> [Int] { lengths(c.count, grid: c.grid, solver: c.solver) }

    /// `c` made to fit its sampler's actions (where solvers' evaluations differ, as PNDM's from the
    /// others'): at most one segment per action, each segment's k within its length. Others unchanged.
    public func fitted(_ c: Candidate) -> Candidate {
        if c.count > actions(c) { return reshaped(c, grid: gridSteps(c), count: actions(c), solver: c.solver) }
        let l = lengths(c)
        guard zip(c.segments, l).contains(where: { $0.active > $1 }) else { return c }
        return c.with(segments: zip(c.segments, l).map { SegmentGene(active: min($0.active, $1), branch: $0.branch) })
    }

    /// Whether `c` lies in this space.
    public func contains(_ c: Candidate) -> Bool {
        let g = gridSteps(c)
        guard c.grid != sampler.steps, grids.contains(g), counts(grid: g).contains(c.count), c.count <= actions(c) else { return false }
        // (A solver on an explicit list is a searched solver on any spacing.)
        guard c.solver == nil || solvers.contains(c.solver!) || (c.timesteps != nil && solvers.map(\.withoutSpacing).contains(c.solver!)) else { return false }
        // (A list is one the solver's scheduler takes: the checks of plans and schedulers themselves.)
        if let t = c.timesteps {
            guard t.count == g, let config = timestepConfiguration, (try? c.sampler(sampler).scheduler(configuration: config)) != nil else { return false }
        }
        return zip(c.segments, lengths(c)).allSatisfy { g, l in (1...l).contains(g.active) && (0..<branchCount).contains(g.branch) }
    }

    /// Plain DDIM (or `solver`) with `n` full steps on a grid of `grid` steps (default the teacher's):
    /// every segment one full step then nulls. With n = grid, the sampler with n steps on its own timesteps.
    public func ddim(segments n: Int, grid: Int? = nil, solver: SolverChoice? = nil) -> Candidate {
        Candidate(segments: Array(repeating: SegmentGene(active: 1, branch: 0), count: n), grid: grid.flatMap(gridField), solver: solverField(solver))
    }

    /// DeepCache uniform with interval L = G / n at `branch` on a grid of G steps (default the teacher's): every step active.
    public func deepCache(segments n: Int, branch: Int, grid: Int? = nil, solver: SolverChoice? = nil) -> Candidate {
        Candidate(segments: lengths(n, grid: grid, solver: solver).map { SegmentGene(active: $0, branch: branch) }, grid: grid.flatMap(gridField), solver: solverField(solver))
    }

    /// A random candidate: a grid, then a segment count on it, then every segment's genes (and a solver, when there are others).
    public func random(using rng: inout some RandomNumberGenerator) -> Candidate {
        let g = grids.randomElement(using: &rng)!
        let n = counts(grid: g).randomElement(using: &rng)!
        let segments = lengths(n, grid: g).map {
            SegmentGene(active: Int.random(in: 1...$0, using: &rng), branch: Int.random(in: 0..<branchCount, using: &rng))
        }
        // (No draw without other solvers: the same candidates as before solvers existed.)
        let solver = solvers.isEmpty ? nil : solverChoices.randomElement(using: &rng)!
        return fitted(Candidate(segments: segments, grid: gridField(g), solver: solver))
    }

    /// `c`'s genes carried to `n` segments on a grid of `g` steps, each segment keeping the active
    /// fraction and branch of the segment at the same relative position.
    func reshaped(_ c: Candidate, grid g: Int, count n: Int, solver: SolverChoice?) -> Candidate {
        let n = min(n, actions(grid: g, solver: solver))
        // (A candidate relabelled to a solver with fewer actions than its segments: its lengths on the teacher's scheduler.)
        let old = c.count <= actions(c) ? lengths(c) : lengths(c.count, grid: c.grid)
        let new = lengths(n, grid: g, solver: solver)
        return Candidate(segments: new.enumerated().map { i, l in
            let j = min(c.count - 1, i * c.count / n)
            let fraction = Double(c.segments[j].active) / Double(max(1, old[j]))
            return SegmentGene(active: max(1, min(l, Int((fraction * Double(l)).rounded()))), branch: c.segments[j].branch)
        }, grid: gridField(g), solver: solver, timesteps: g == gridSteps(c) && solver == c.solver ? c.timesteps : nil)
    }

    /// Each segment's k or b changes with `probability` (at least one gene changes), mostly by one
    /// step; rarely (when there is a choice) N or the grid changes instead, keeping each segment's
    /// active fraction, or the solver changes, keeping the segments (and the timesteps, where the
    /// other solver takes them), or (when the space searches timesteps) one timestep of a solver grid moves.
    public func mutate(_ c: Candidate, probability: Double, using rng: inout some RandomNumberGenerator) -> Candidate {
        if !solvers.isEmpty && Double.random(in: 0..<1, using: &rng) < 0.1 {
            let other = solverChoices.filter { $0 != c.solver }.randomElement(using: &rng)!
            let kept = other?.scheduler.takesTimesteps == true ? c.timesteps : nil
            return fitted(Candidate(segments: c.segments, grid: c.grid, solver: other, timesteps: kept))
        }
        // (No draw without timestep genes: the same candidates as before they existed.)
        if searchesTimesteps, c.solver?.scheduler.takesTimesteps == true, Double.random(in: 0..<1, using: &rng) < 0.25,
           let m = timestepMove(c, using: &rng) {
            return m
        }
        let g = gridSteps(c)
        let others = shapes.filter { $0.grid != g || $0.count != c.count }
        // (Segments of one step have no genes to change: plain DDIM on its own grid changes shape.)
        let fixed = lengths(c).allSatisfy { $0 == 1 }
        if !others.isEmpty, fixed || Double.random(in: 0..<1, using: &rng) < 0.15 {
            // Half the time another N on the same grid (where there is one), else any other shape.
            let sameGrid = others.filter { $0.grid == g }
            // (One grid draws nothing more: the same choices as before grids existed.)
            let pool = grids.count > 1 && !sameGrid.isEmpty && Bool.random(using: &rng) ? sameGrid : others
            let pick = pool.randomElement(using: &rng)!
            return reshaped(c, grid: pick.grid, count: pick.count, solver: c.solver)
        }
        var segments = c.segments
        let lengths = lengths(c)
        var changed = false
        // Mostly small steps (k ± 1, the next branch), sometimes a jump anywhere in the gene's range.
        // (A space of one-step segments has nothing to change: give up after a while.)
        var attempts = 0
        while !changed && attempts < 100 {
            attempts += 1
            for i in segments.indices where Double.random(in: 0..<1, using: &rng) < probability {
                let local = Double.random(in: 0..<1, using: &rng) < 0.7
                if Bool.random(using: &rng) || segments[i].active == 1 {
                    let k = local ? min(lengths[i], max(1, segments[i].active + (Bool.random(using: &rng) ? 1 : -1)))
                                  : Int.random(in: 1...lengths[i], using: &rng)
                    changed = changed || k != segments[i].active
                    segments[i].active = k
                } else {
                    let b = local ? min(branchCount - 1, max(0, segments[i].branch + (Bool.random(using: &rng) ? 1 : -1)))
                                  : Int.random(in: 0..<branchCount, using: &rng)
                    changed = changed || b != segments[i].branch
                    segments[i].branch = b
                }
            }
        }
        return c.with(segments: segments)
    }

    /// Uniform crossover of two parents with the same grid and N (each segment from either); else
    /// the first parent's segments up to a random cut, then the second's fractions rescaled (on the
    /// first parent's grid and N). The child runs on the first parent's solver and timesteps (on the
    /// same grid and solver, either parent's timesteps).
    public func crossover(_ a: Candidate, _ b: Candidate, using rng: inout some RandomNumberGenerator) -> Candidate {
        if a.count == b.count && a.grid == b.grid {
            let child = fitted(a.with(segments: zip(a.segments, b.segments).map { Bool.random(using: &rng) ? $0 : $1 }))
            // (Either parent's timesteps, where they differ on the same solver; no draw otherwise.)
            if a.solver == b.solver && a.timesteps != b.timesteps && Bool.random(using: &rng) { return child.with(timesteps: b.timesteps) }
            return child
        }
        let cut = Int.random(in: 1..<max(2, a.count), using: &rng)
        let carried = reshaped(b, grid: gridSteps(a), count: a.count, solver: a.solver)
        return fitted(a.with(segments: a.segments.indices.map { i in i < cut ? a.segments[i] : carried.segments[i] }))
    }
}

/// Predicted latency from a `profile` table: the sum of the plan's step latencies.
public struct CostModel: Sendable {
    public let latencies: StepLatencies
    public let sampler: PlanSampler
    /// Price plans by network MACs instead of measured milliseconds.
    public let useMACs: Bool

    public init(latencies: StepLatencies, sampler: PlanSampler, useMACs: Bool = false) {
        self.latencies = latencies; self.sampler = sampler; self.useMACs = useMACs
    }

    /// The cost of one batch of `c` (milliseconds, or MACs when `useMACs`).
    public func cost(_ c: Candidate) throws -> Double {
        let plan = try c.plan(sampler)
        let p = try latencies.cost(of: plan)
        return useMACs ? Double(p.macs) : p.milliseconds
    }

    /// The teacher's cost (every step full).
    public var teacherCost: Double {
        useMACs ? Double(sampler.evaluations * latencies.fullMACs) : Double(sampler.evaluations) * latencies.fullMs
    }

    public func speedup(_ c: Candidate) throws -> Double { teacherCost / (try cost(c)) }

    /// `c` made to cost at most `budget`: random segments lose active steps (or move their partial
    /// steps to a shallower, cheaper branch) until it fits. Nil when even DDIM at that N does not fit.
    public func repair(_ c: Candidate, budget: Double, space: SearchSpace, using rng: inout some RandomNumberGenerator) throws -> Candidate? {
        var x = c
        guard try cost(space.ddim(segments: c.count, grid: c.grid, solver: c.solver)) <= budget else { return nil }
        while try cost(x) > budget {
            var segments = x.segments
            let reducible = segments.indices.filter { segments[$0].active > 1 }
            let i = reducible.randomElement(using: &rng)!
            if segments[i].branch > 0 && Double.random(in: 0..<1, using: &rng) < 0.3 {
                segments[i].branch -= 1
            } else {
                segments[i].active -= 1
            }
            x = x.with(segments: segments)
        }
        return x
    }
}
