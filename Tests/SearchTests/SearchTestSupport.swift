// The search tests' stand-ins: synthetic latencies, a synthetic fitness with a hidden optimum, and
// that fitness as a whole evaluator (no device).
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
    func fitness(_ c: Candidate, samples: Int) throws -> Double {
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

/// The synthetic scorer as a whole evaluator: plans outside the space score by their share of
/// full steps, statistics are one-dimensional, and a batch takes 1 ms per full step.
final class SyntheticEvaluator: SearchEvaluator {
    let scorer = SyntheticScorer()
    var calls: [String] { scorer.calls }
    /// The final race's judge (nil: the synthetic rFID on more images).
    var judgement: ((Candidate, Int) -> Double)?
    func fitness(_ c: Candidate, samples: Int) throws -> Double { try scorer.fitness(c, samples: samples) }
    func judge(_ c: Candidate, samples: Int, by: Fitness) throws -> Double { try judgement?(c, samples) ?? scorer.fitness(c, samples: samples) }
    func rfid(plan: StepPlan, samples: Int) throws -> (rfid: Double, statistics: FeatureStatistics) {
        let r = 1 - Double(plan.fullSteps) / Double(plan.actions.count) + 1 / Double(samples)
        return (r, FeatureStatistics(mu: [r], sigma: [1]))
    }
    func statistics(_ c: Candidate, samples: Int) throws -> FeatureStatistics { FeatureStatistics(mu: [try fitness(c, samples: samples)], sigma: [1]) }
    func teacherStatistics(samples: Int) throws -> FeatureStatistics { FeatureStatistics(mu: [0], sigma: [1]) }
    func timeRun(_ plan: StepPlan, images: Int) throws -> Double { (0.001 * Double(plan.fullSteps) + 0.0001 * Double(plan.partialSteps)) * Double(images) }
    func imageStrip(_ plan: StepPlan, images: Int) throws -> Data? { PNG.encode(width: images, height: 1, channels: 1, pixels: Array(repeating: UInt8(plan.fullSteps % 256), count: images)) }
    var stepsRun: Int { calls.count }
    var stepsShared: Int { 0 }
    var teacherSeconds: Double { 0 }
    /// (A stand-in: the plan's null fraction.)
    func pairedDistance(plan: StepPlan, samples: Int) throws -> Double? { Double(plan.nullSteps) / Double(plan.actions.count) }
}
