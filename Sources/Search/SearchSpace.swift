// Flexiffusion's segment-wise search space: the teacher's T steps cut into N equal segments, each
// [full, partial × (k − 1) at branch b, null × (L − k)] with its own k and b. Plain DDIM on the
// teacher's grid (every k = 1) and DeepCache's uniform 1:L caching (every k = L, one branch) are
// members, so the search can start from them and never end worse than them.
import Engine
import Foundation

/// One segment's genes: active steps k (1 full + k − 1 partial) and the cached branch of its partial steps.
public struct SegmentGene: Codable, Hashable, Sendable {
    public var active: Int
    public var branch: Int
    public init(active: Int, branch: Int) { self.active = active; self.branch = branch }
}

/// A point of the search space. Canonical: a segment without partial steps (k = 1) has branch 0.
public struct Candidate: Codable, Hashable, Sendable, CustomStringConvertible {
    public private(set) var segments: [SegmentGene]

    public init(segments: [SegmentGene]) {
        self.segments = segments.map { $0.active <= 1 ? SegmentGene(active: $0.active, branch: 0) : $0 }
    }

    public var count: Int { segments.count }

    /// A short, unique text form: "N10:3b1,1,2b0,…" (k, then b where k > 1).
    public var key: String { "N\(count):" + prefixKey(count) }

    /// The key of the first `n` segments (prefix sharing: equal keys reach the same state).
    public func prefixKey(_ n: Int) -> String {
        segments.prefix(n).map { $0.active > 1 ? "\($0.active)b\($0.branch)" : "\($0.active)" }.joined(separator: ",")
    }

    public var description: String { key }

    /// The step plan for `sampler` (whose steps the segments divide).
    public func plan(_ sampler: PlanSampler) throws -> StepPlan {
        try StepPlan.segments(sampler, intervals: segments.map(\.active), branches: segments.map(\.branch))
    }
}

/// Which candidates exist for one teacher and model.
public struct SearchSpace: Sendable {
    public let sampler: PlanSampler
    /// Allowed numbers of segments (divisors of the step count by default).
    public let segmentCounts: [Int]
    /// The model's cache branches (partial steps may use 0..<branchCount).
    public let branchCount: Int

    public init(sampler: PlanSampler, segmentCounts: [Int], branchCount: Int) throws {
        guard !segmentCounts.isEmpty else { throw ModelError("no segment counts to search") }
        for n in segmentCounts where n < 1 || n > sampler.steps {
            throw ModelError("\(n) segments: must be 1…\(sampler.steps) for a \(sampler.steps)-step sampler")
        }
        guard branchCount > 0 else { throw ModelError("the model has no cache branches") }
        self.sampler = sampler
        self.segmentCounts = Array(Set(segmentCounts)).sorted()
        self.branchCount = branchCount
    }

    /// The divisors of `steps` within `range` (the paper's choice of N).
    public static func divisors(of steps: Int, in range: ClosedRange<Int>) -> [Int] {
        (max(1, range.lowerBound)...max(1, min(range.upperBound, steps))).filter { steps % $0 == 0 }
    }

    public func lengths(_ n: Int) -> [Int] { StepPlan.segmentLengths(steps: sampler.steps, count: n) }

    /// Whether `c` lies in this space.
    public func contains(_ c: Candidate) -> Bool {
        guard segmentCounts.contains(c.count) else { return false }
        return zip(c.segments, lengths(c.count)).allSatisfy { g, l in (1...l).contains(g.active) && (0..<branchCount).contains(g.branch) }
    }

    /// Plain DDIM with `n` steps on the teacher's grid: every segment one full step then nulls.
    public func ddim(segments n: Int) -> Candidate {
        Candidate(segments: Array(repeating: SegmentGene(active: 1, branch: 0), count: n))
    }

    /// DeepCache uniform with interval L = T / n at `branch`: every step active.
    public func deepCache(segments n: Int, branch: Int) -> Candidate {
        Candidate(segments: lengths(n).map { SegmentGene(active: $0, branch: branch) })
    }

    public func random(using rng: inout some RandomNumberGenerator) -> Candidate {
        let n = segmentCounts.randomElement(using: &rng)!
        return Candidate(segments: lengths(n).map {
            SegmentGene(active: Int.random(in: 1...$0, using: &rng), branch: Int.random(in: 0..<branchCount, using: &rng))
        })
    }

    /// Each segment's k or b changes with `probability` (at least one gene changes), mostly by one
    /// step; rarely (when there is a choice) N changes instead, keeping each segment's active fraction.
    public func mutate(_ c: Candidate, probability: Double, using rng: inout some RandomNumberGenerator) -> Candidate {
        if segmentCounts.count > 1, Double.random(in: 0..<1, using: &rng) < 0.15 {
            let n = segmentCounts.filter { $0 != c.count }.randomElement(using: &rng)!
            let old = lengths(c.count), new = lengths(n)
            return Candidate(segments: new.enumerated().map { i, l in
                let j = min(c.count - 1, i * c.count / n)
                let fraction = Double(c.segments[j].active) / Double(old[j])
                return SegmentGene(active: max(1, min(l, Int((fraction * Double(l)).rounded()))), branch: c.segments[j].branch)
            })
        }
        var segments = c.segments
        let lengths = lengths(c.count)
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
        return Candidate(segments: segments)
    }

    /// Uniform crossover of two parents with the same N (each segment from either); for different N,
    /// the first parent's segments up to a random cut, then the second's fractions rescaled.
    public func crossover(_ a: Candidate, _ b: Candidate, using rng: inout some RandomNumberGenerator) -> Candidate {
        if a.count == b.count {
            return Candidate(segments: zip(a.segments, b.segments).map { Bool.random(using: &rng) ? $0 : $1 })
        }
        let cut = Int.random(in: 1..<max(2, a.count), using: &rng)
        let la = lengths(a.count), lb = lengths(b.count)
        return Candidate(segments: la.indices.map { i in
            if i < cut { return a.segments[i] }
            let j = min(b.count - 1, i * b.count / a.count)
            let fraction = Double(b.segments[j].active) / Double(lb[j])
            return SegmentGene(active: max(1, min(la[i], Int((fraction * Double(la[i])).rounded()))), branch: b.segments[j].branch)
        })
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
        useMACs ? Double(sampler.steps * latencies.fullMACs) : Double(sampler.steps) * latencies.fullMs
    }

    public func speedup(_ c: Candidate) throws -> Double { teacherCost / (try cost(c)) }

    /// `c` made to cost at most `budget`: random segments lose active steps (or move their partial
    /// steps to a shallower, cheaper branch) until it fits. Nil when even DDIM at that N does not fit.
    public func repair(_ c: Candidate, budget: Double, space: SearchSpace, using rng: inout some RandomNumberGenerator) throws -> Candidate? {
        var x = c
        guard try cost(space.ddim(segments: c.count)) <= budget else { return nil }
        while try cost(x) > budget {
            var segments = x.segments
            let reducible = segments.indices.filter { segments[$0].active > 1 }
            let i = reducible.randomElement(using: &rng)!
            if segments[i].branch > 0 && Double.random(in: 0..<1, using: &rng) < 0.3 {
                segments[i].branch -= 1
            } else {
                segments[i].active -= 1
            }
            x = Candidate(segments: segments)
        }
        return x
    }
}
