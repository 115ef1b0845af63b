// The engine's scorer: the same rFID with shared prefixes as without, candidates on their solvers
// and grids, on the default model (PoCL in CI).
import Engine
import Foundation
import GPUKernels
import Search
import Testing
import TestSupport

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
        _ = try shared.fitness(a, samples: 6)
        let before = shared.stepsShared
        let viaPrefix = try shared.fitness(b, samples: 6)
        #expect(shared.stepsShared - before == 2 * 6, "b should resume both batches after a's first two segments (6 steps)")
        let fresh = try Self.scorer(setup, seed: seed, dir: dir)
        let direct = try fresh.fitness(b, samples: 6)
        #expect(fresh.stepsShared == 0 && fresh.teacherSeconds == 0, "the second scorer reads the teacher's features from the cache")
        #expect(abs(viaPrefix - direct) <= 1e-9 * max(1, abs(direct)), "rFID via a shared prefix \(viaPrefix) vs from noise \(direct) (seed \(seed))")
        #expect(direct > 0)
        // Screening then promotion: the second batch only.
        let promoted = try Self.scorer(setup, seed: seed, dir: dir)
        _ = try promoted.fitness(b, samples: 3)
        let run = promoted.stepsRun
        #expect(abs(try promoted.fitness(b, samples: 6) - direct) <= 1e-9 * max(1, abs(direct)))
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
        _ = try search.fitness(a, samples: 5)
        let scored = try search.fitness(b, samples: 5)
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
        let scored = try scorer.fitness(unipc, samples: 5)
        let checker = try Self.scorer(setup, seed: seed, dir: dir)
        let viaPlan = try checker.rfid(plan: plan, samples: 5).rfid
        #expect(abs(scored - viaPlan) <= 1e-9 * max(1, viaPlan) && scored > 0, "search \(scored) vs plan \(viaPlan) (seed \(seed))")
        let onDDIM = Candidate(segments: unipc.segments, grid: 6)
        let before = scorer.stepsShared
        let ddimScore = try scorer.fitness(onDDIM, samples: 5)
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
        let member = try scorer.fitness(ddim, samples: 6)
        let checker = try Self.scorer(setup, seed: seed, dir: dir)
        let baseline = try checker.rfid(plan: try StepPlan.ddim(steps: 8), samples: 6).rfid
        #expect(abs(member - baseline) <= 1e-9 * max(1, abs(baseline)), "member \(member) vs baseline \(baseline) (seed \(seed))")
        #expect(try scorer.sampler(grid: 8).scheduler.timesteps == DDIMScheduler(configuration: setup.folder.schedulerConfiguration(), steps: 8).timesteps)
        #expect(member > 0)
        // Two candidates on the 8-step grid with the same first segment share it (2 steps × 2 batches).
        let a = Candidate(segments: [SegmentGene(active: 2, branch: 1), SegmentGene(active: 1, branch: 0), SegmentGene(active: 2, branch: 3), SegmentGene(active: 1, branch: 0)], grid: 8)
        let b = Candidate(segments: [SegmentGene(active: 2, branch: 1), SegmentGene(active: 2, branch: 2), SegmentGene(active: 1, branch: 0), SegmentGene(active: 2, branch: 0)], grid: 8)
        #expect(space.contains(a) && space.contains(b))
        _ = try scorer.fitness(a, samples: 6)
        let before = scorer.stepsShared
        let viaPrefix = try scorer.fitness(b, samples: 6)
        #expect(scorer.stepsShared - before == 2 * 2)
        let fresh = try Self.scorer(setup, seed: seed, dir: dir)
        let direct = try fresh.fitness(b, samples: 6)
        #expect(abs(viaPrefix - direct) <= 1e-9 * max(1, abs(direct)), "rFID via a shared prefix \(viaPrefix) vs from noise \(direct)")
        // The same genes on the teacher's 12-step grid: another plan, nothing shared with the 8-step ones.
        let onTeacher = Candidate(segments: b.segments)
        let sharedBefore = scorer.stepsShared
        let other = try scorer.fitness(onTeacher, samples: 6)
        #expect(scorer.stepsShared == sharedBefore && abs(other - direct) > 1e-6, "teacher grid \(other) vs 8-step grid \(direct)")
    }
}
