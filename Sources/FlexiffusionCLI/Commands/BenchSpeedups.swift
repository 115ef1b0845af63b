// `flexiffusion bench speedups`: measured speed-ups of plan files over the teacher, on any sampler,
// in rounds that alternate the teacher with the plans (the figures a budget table quotes).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct BenchSpeedups: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "speedups",
        abstract: "Measured speed-ups of plans over the teacher: median and range over rounds.",
        discussion: """
            Each round times the teacher (--teacher, default DDIM with 100 steps), then every plan once, then \
            the teacher again, each making --images images from the same noise and reading them back as \
            `generate` does; a plan's speed-up in a round is the mean of the round's two teacher times over \
            its own, so that a machine whose speed drifts slows both sides alike. The table gives each plan's \
            median seconds and the median speed-up over --rounds rounds with its range. Plans run on their own \
            samplers (any scheduler, explicit timesteps, partial and null steps). Every plan and the teacher \
            run once untimed first, so kernel compilation is left out.
            """)

    @OptionGroup var scoringOptions: ScoringOptions
    @Argument(help: "Plan files (or search results files: their best plan).") var plans: [String]
    @Option(help: "Images per timed run.") var images = 64
    @Option(help: "Images per forward pass (the search times plans at its --batch).") var batch = 32
    @Option(help: "Rounds (each: the teacher, every plan, the teacher).") var rounds = 5
    @Option(help: "Seed of the noise.") var seed: UInt64 = 0
    @Flag(help: "Print the table as JSON.") var json = false

    func run() throws {
        guard !plans.isEmpty else { throw ValidationError("give at least one plan file") }
        guard images > 0, batch > 0, rounds > 0 else { throw ValidationError("--images, --batch and --rounds must be positive") }
        try checkImageCount(images, option: "--images")
        let scoring = try PlanScoring(scoringOptions, plans: plans, batch: batch, seed: seed)
        let pipeline = scoring.evaluator.pipeline, noise = GenerationNoise(seed: seed)
        let progress = ProgressLine("bench speedups", interval: 5)
        let (teacherSeconds, timings) = try SpeedupTiming.measure(scoring.plans, against: scoring.teacher, rounds: rounds, teacherTiming: .aroundEachRound,
                                                                   warmUp: true, time: { try pipeline.timeGeneration(plan: $0, noise: noise, count: images) },
                                                                   roundDone: { progress.update($0, of: rounds, unit: "rounds") })
        progress.finish()
        var table = [["plan", "sampler", "full/partial/null", "median s", "speed-up", "range"]]
        table.append(["teacher", scoring.teacher.sampler.description, "\(scoring.teacher.fullSteps)/\(scoring.teacher.partialSteps)/\(scoring.teacher.nullSteps)", String(format: "%.2f", median(teacherSeconds)), "1.00", "–"])
        var rows: [[String: Any]] = []
        for ((path, p), m) in zip(zip(plans, scoring.plans), timings) {
            table.append([path, p.sampler.description, "\(p.fullSteps)/\(p.partialSteps)/\(p.nullSteps)", String(format: "%.2f", m.medianSeconds),
                          String(format: "%.2f", m.median), String(format: "%.2f–%.2f", m.range.min, m.range.max)])
            rows.append(["plan": path, "sampler": p.sampler.description, "full": p.fullSteps, "partial": p.partialSteps, "null": p.nullSteps,
                         "seconds": m.seconds, "ratios": m.ratios, "median_seconds": m.medianSeconds, "speedup": m.median,
                         "speedup_min": m.range.min, "speedup_max": m.range.max])
        }
        if json {
            try printJSON(["device": scoring.stream.device.name, "images": images, "batch": batch, "rounds": rounds, "seed": seed,
                           "teacher": ["sampler": scoring.teacher.sampler.description, "seconds": teacherSeconds, "median_seconds": median(teacherSeconds)],
                           "plans": rows])
        } else {
            print(renderTable(table, rightAlign: [3, 4]))
            print("\(rounds) rounds of \(images) images (batch \(batch)) on \(scoring.stream.device.name); medians over rounds")
        }
    }
}
