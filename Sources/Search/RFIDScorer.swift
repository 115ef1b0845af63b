// The search's scorer: a candidate becomes its plan (on the teacher's grid or a coarser one) and is
// scored by the engine's one rFID evaluator, with the candidate's segment starts as the steps where
// sampler states are shared between plans with the same prefix. `flexiffusion rfid PLAN --seed S`
// gives the same number for the same plan, teacher, seed and sample count.
import Engine
import Foundation
import GPUKernels

public final class RFIDScorer: SearchEvaluator {
    public let evaluator: RFIDEvaluator
    /// What `fitness(_:samples:)` scores candidates by.
    public let fitness: Fitness

    /// Real data's statistics, for the fid fitness or judge (read at the first use).
    let reference: (() throws -> FeatureStatistics)?
    private var referenceStatistics: FeatureStatistics?

    public init(evaluator: RFIDEvaluator, fitness: Fitness = .rfid, reference: (() throws -> FeatureStatistics)? = nil) {
        self.evaluator = evaluator; self.fitness = fitness; self.reference = reference
    }

    /// The teacher's sampler: candidates' plans are made on it (or a coarser grid of it).
    public var teacherSampler: PlanSampler { evaluator.teacher.sampler }
    public var stepsRun: Int { evaluator.stepsRun }
    public var stepsShared: Int { evaluator.stepsShared }
    public var teacherSeconds: Double { evaluator.teacherSeconds }

    /// The sampler of a candidate's grid (nil: the teacher's), on the evaluator's UNet.
    public func sampler(grid: Int?) throws -> Sampler {
        try evaluator.pipeline.sampler(for: grid.map { teacherSampler.with(steps: $0) } ?? teacherSampler)
    }

    /// The steps where `c`'s segments after the first start.
    func boundaries(_ c: Candidate, steps: Int) -> [Int] {
        let lengths = StepPlan.segmentLengths(steps: steps, count: c.count)
        return (1..<max(1, c.count)).map { lengths[0..<$0].reduce(0, +) }
    }

    /// The candidate's fitness: rFID, the paired feature distance or FID against real data (`fitness`).
    public func fitness(_ c: Candidate, samples: Int) throws -> Double { try judge(c, samples: samples, by: fitness) }

    /// `c`'s score by `measure` on `samples` images.
    public func judge(_ c: Candidate, samples: Int, by measure: Fitness) throws -> Double {
        let plan = try c.plan(teacherSampler)
        let starts = boundaries(c, steps: plan.actions.count)
        switch measure {
        case .rfid, .clip: return try evaluator.rfid(plan: plan, samples: samples, boundaries: starts, counted: true).rfid
        case .paired: return try evaluator.pairedDistance(plan: plan, samples: samples, boundaries: starts, counted: true)
        case .fid:
            return try frechetDistance(try evaluator.statistics(plan: plan, samples: samples, boundaries: starts, counted: true), try realStatistics())
        }
    }

    /// `c`'s CLIP score minus the teacher's on the same images (nil without a CLIP judge); from the
    /// images its features come from.
    public func clipGap(_ c: Candidate, samples: Int) throws -> Double? {
        guard evaluator.clip != nil else { return nil }
        let plan = try c.plan(teacherSampler)
        let mine = try evaluator.clipScores(plan: plan, samples: samples, boundaries: boundaries(c, steps: plan.actions.count), counted: true)
        return CLIPScore.metric(mine) - CLIPScore.metric(try evaluator.teacherCLIPScores(samples: samples))
    }

    /// CLIP score of any plan's images (nil without a CLIP judge).
    public func clipScore(plan: StepPlan, samples: Int) throws -> Double? {
        guard evaluator.clip != nil else { return nil }
        return CLIPScore.metric(try evaluator.clipScores(plan: plan, samples: samples))
    }

    /// CLIP score of the teacher's images (nil without a CLIP judge).
    public func teacherCLIPScore(samples: Int) throws -> Double? {
        guard evaluator.clip != nil else { return nil }
        return CLIPScore.metric(try evaluator.teacherCLIPScores(samples: samples))
    }

    /// The reference statistics of the fid fitness.
    public func realStatistics() throws -> FeatureStatistics {
        if let referenceStatistics { return referenceStatistics }
        guard let reference else { throw ModelError("FID against real data as the search's measure needs real images (none were given)") }
        let s = try reference()
        referenceStatistics = s
        return s
    }

    /// The paired feature distance of any plan (features reused where computed before).
    public func pairedDistance(plan: StepPlan, samples: Int) throws -> Double? { try evaluator.pairedDistance(plan: plan, samples: samples) }

    /// rFID and statistics of any plan (a baseline): a plan equal to a scored candidate's reuses its features.
    public func rfid(plan: StepPlan, samples: Int) throws -> (rfid: Double, statistics: FeatureStatistics) {
        try evaluator.rfid(plan: plan, samples: samples)
    }

    /// Statistics of candidate `c` on `samples` images (after `fitness` computed them, no new work).
    public func statistics(_ c: Candidate, samples: Int) throws -> FeatureStatistics {
        try evaluator.statistics(plan: try c.plan(teacherSampler), samples: samples)
    }

    /// The teacher's statistics on `samples` images.
    public func teacherStatistics(samples: Int) throws -> FeatureStatistics { try evaluator.teacherStatistics(samples: samples) }

    /// One row of `images` images of `plan` from the fitness seed, as PNG.
    public func imageStrip(_ plan: StepPlan, images: Int) throws -> Data? {
        let pipeline = evaluator.pipeline, shape = pipeline.imageShape
        var samples: [Float] = []
        try pipeline.generateImages(plan: plan, noise: GenerationNoise(seed: evaluator.seed), count: images) { samples += $1 }
        let g = PNG.grid(samples, count: images, channels: shape[0], height: shape[1], width: shape[2], columns: images)
        return PNG.encode(width: g.width, height: g.height, channels: shape[0], pixels: g.pixels)
    }

    /// Seconds to generate `images` images of `plan` from the noise of seed + 99, read back to the
    /// host as `generate` reads them (the search has run its kernels before).
    public func timeRun(_ plan: StepPlan, images: Int) throws -> Double {
        try evaluator.pipeline.timeGeneration(plan: plan, noise: GenerationNoise(seed: evaluator.seed &+ 99), count: images)
    }

}
