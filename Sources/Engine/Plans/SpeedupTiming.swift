// Measured speed-ups of step plans over a teacher plan, in rounds that alternate them, so that a
// machine whose speed drifts over minutes slows both sides of each ratio alike.
import Foundation

/// One plan's timings: seconds per round and its speed-up over the teacher in each round.
public struct MeasuredSpeedup: Sendable, Equatable {
    public var seconds: [Double]
    public var ratios: [Double]
    /// The median over rounds of the teacher's seconds over this plan's in the same round.
    public var median: Double { Engine.median(ratios) }
    public var range: (min: Double, max: Double) { spread(ratios) }
    public var medianSeconds: Double { Engine.median(seconds) }
}

public enum SpeedupTiming {
    /// Where the teacher is timed in a round.
    public enum Teacher: Sendable {
        /// Beside every plan (teacher, plan, teacher, plan, …): each ratio is of two adjacent runs.
        /// Costs one teacher run per plan and round.
        case besideEachPlan
        /// Once before the round's plans and once after; each plan's ratio is over the mean of the
        /// two. Costs two teacher runs a round, however many plans.
        case aroundEachRound
    }

    /// Times `plans` against `teacher` over `rounds` rounds with `time` (seconds of one run), after
    /// `warmUp` untimed runs of each (kernels compile on first use). `roundDone(r)` after round r
    /// (1-based). Returns the teacher's seconds (every timed run) and each plan's timings.
    public static func measure(_ plans: [StepPlan], against teacher: StepPlan, rounds: Int, teacherTiming: Teacher,
                               warmUp: Bool = false, time: (StepPlan) throws -> Double,
                               roundDone: ((Int) -> Void)? = nil) throws -> (teacherSeconds: [Double], plans: [MeasuredSpeedup]) {
        guard rounds > 0 else { throw ModelError("timing needs at least one round, not \(rounds)") }
        if warmUp {
            _ = try time(teacher)
            for p in plans { _ = try time(p) }
        }
        var teacherSeconds: [Double] = []
        var out = Array(repeating: MeasuredSpeedup(seconds: [], ratios: []), count: plans.count)
        for r in 0..<rounds {
            switch teacherTiming {
            case .besideEachPlan:
                for (i, p) in plans.enumerated() {
                    let t = try time(teacher)
                    teacherSeconds.append(t)
                    let s = try time(p)
                    out[i].seconds.append(s); out[i].ratios.append(t / s)
                }
            case .aroundEachRound:
                let before = try time(teacher)
                let seconds = try plans.map { try time($0) }
                let after = try time(teacher)
                teacherSeconds += [before, after]
                for i in plans.indices {
                    out[i].seconds.append(seconds[i]); out[i].ratios.append((before + after) / 2 / seconds[i])
                }
            }
            roundDone?(r + 1)
        }
        return (teacherSeconds, out)
    }
}
