// `flexiffusion fid` (FID between two image sets or statistics files) and `flexiffusion rfid`
// (plans scored against the teacher's samples from the same noise).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct FIDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fid",
        abstract: "FID between two image sets or pytorch-fid statistics files.",
        discussion: """
            A and B are each a folder of PNG files, a .safetensors file with tensor `sample` [N, C, H, W] in \
            model space ([-1, 1], as `generate --output-tensor` writes), an MNIST-style IDX file (.gz or not, \
            e.g. /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz), or a .npz with `mu` and `sigma` \
            (pytorch-fid's statistics). Features are extracted on the device; the mean and covariance are \
            computed there; the Fréchet distance is float64 on the host (LAPACK). --save-stats FILE writes \
            A's statistics as pytorch-fid does (then B may be left out).
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var featureOptions: FeatureOptions
    @Argument(help: "First image set or statistics file.") var a: String
    @Argument(help: "Second image set or statistics file.") var b: String?
    @Option(help: "Images per feature-extraction batch.") var batch = 32
    @Option(help: "Use at most this many images of each set.") var limit: Int?
    @Option(name: .customLong("save-stats"), help: "Write the statistics of A to this .npz file.") var saveStats: String?
    @Flag(help: "Print {\"fid\": …} as JSON.") var json = false

    func run() throws {
        guard b != nil || saveStats != nil else { throw ValidationError("give two sets (A B), or one with --save-stats FILE") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        if let saveStats {
            try OutputCheck.check(outputs: [NamedPath("--save-stats", saveStats)], inputs: NamedPath.given([("A", a), ("B", b)]))
        }
        // (One feature network per image size: sets of other sizes or channels are resized to it, as the help says.)
        var stream: ComputeStream? = nil
        var engines: [[Int]: FIDStatistics] = [:]
        func stats(_ path: String) throws -> FeatureStatistics {
            if path.hasSuffix(".npz") { return try FeatureStatistics.loadNPZ(path) }
            let images = try ImageSet.load(path, limit: limit)
            let shape = [images.channels, images.height, images.width]
            if engines[shape] == nil {
                if stream == nil { stream = try ComputeStream(device: try OpenCLRuntime.select(deviceOptions.device)) }
                engines[shape] = try FIDStatistics(extractor: try featureOptions.extractor(stream: stream!, batch: batch, channels: images.channels,
                                                                                            height: images.height, width: images.width))
            }
            let progress = ProgressLine("features of \(path)")
            defer { progress.finish() }
            return try engines[shape]!.statistics(of: images) { progress.update($0, of: $1, unit: "images") }
        }
        let first = try stats(a)
        if let saveStats { try first.saveNPZ(saveStats) }
        guard let b else {
            FileHandle.standardError.write("wrote the statistics of \(a) (\(first.count.map { "\($0) images, " } ?? "")\(first.dims)-d) to \(saveStats!)\n".data(using: .utf8)!)
            return
        }
        let second = try stats(b)
        let fid = try frechetDistance(first, second)
        if json {
            print(String(format: "{\"fid\": %.10g}", fid))
        } else {
            print(String(format: "FID %.4f", fid) + "  (\(featureOptions.name()) features, \(first.dims)-d; \(first.count.map(String.init) ?? "stats") vs \(second.count.map(String.init) ?? "stats") images)")
        }
    }
}

struct RFIDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rfid",
        abstract: "Score step plans by rFID: FID of their samples against the teacher's from the same noise.",
        discussion: """
            Every plan runs on its own sampler; the teacher (--teacher, default DDIM with 100 steps, every step \
            full) runs from the same noise. The teacher's features are computed once and cached \
            (~/.cache/flexiffusion/teacher-features/, keyed by the model's bytes, the teacher, seed, batch and \
            feature network). The search scores plans with the same code: a plan from a search results file \
            gets the score the search gave it, for the same --teacher, --seed, --batch, --count and features. \
            A Stable Diffusion pipeline folder is scored over a prompt set (--prompts FILE: image i from prompt \
            i mod n, --negative-prompt, --guidance-scale) on its decoded images; its teacher is the folder's \
            scheduler at 50 steps unless --teacher says otherwise. With --clip DIR, each plan's images and the \
            teacher's are also scored by CLIP score against their prompts (as `flexiffusion clipscore` scores \
            them, from the same images the features come from; the teacher's scores are cached beside its \
            features).
            """)

    @OptionGroup var scoringOptions: ScoringOptions
    @OptionGroup var clipOptions: CLIPOptions
    @Argument(help: "Plan files (or search results files: their best plan).") var plans: [String]
    @Option(help: "Images per plan.") var count = 256
    @Option(help: "Seed of the noise (as `generate --seed`).") var seed: UInt64 = 0
    @Option(help: "Images per forward pass.") var batch = 32
    @Flag(help: "Print the results as JSON.") var json = false

    func run() throws {
        guard !plans.isEmpty else { throw ValidationError("give at least one plan file") }
        guard count >= 2 else { throw ValidationError("--count must be at least 2") }
        try checkImageCount(count, option: "--count")
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        let scoring = try PlanScoring(scoringOptions, plans: plans, batch: batch, seed: seed, clip: clipOptions)
        let (teacher, loaded, stream, evaluator) = (scoring.teacher, scoring.plans, scoring.stream, scoring.evaluator)
        let cached = evaluator.teacherCached(samples: count)
        let teacherProgress = ProgressLine("teacher (\(teacher.sampler))")
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = try evaluator.teacherStatistics(samples: count) { teacherProgress.update($0, of: $1, unit: "images") }
        let teacherCLIP = try evaluator.clip.map { _ in CLIPScore.metric(try evaluator.teacherCLIPScores(samples: count)) }
        teacherProgress.finish()
        let teacherSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        var rows: [[String: Any]] = []
        for (p, path) in zip(loaded, plans) {
            let progress = ProgressLine(path)
            let score = try evaluator.rfid(plan: p, samples: count) { progress.update($0, of: $1, unit: "images") }.rfid
            let clip = try teacherCLIP.map { _ in CLIPScore.metric(try evaluator.clipScores(plan: p, samples: count)) }
            progress.finish()
            let cost = Double(p.fullSteps) / Double(teacher.fullSteps)
            var row: [String: Any] = ["plan": path, "rfid": score, "seconds": progress.elapsed, "sampler": p.sampler.description,
                                      "full": p.fullSteps, "partial": p.partialSteps, "null": p.nullSteps, "full_steps_vs_teacher": cost]
            if let clip, let teacherCLIP { row["clip_score"] = clip; row["clip_score_vs_teacher"] = clip - teacherCLIP }
            rows.append(row)
            if !json {
                let clipText = clip.map { c in String(format: "  CLIP %.3f (%+.3f)", c, c - teacherCLIP!) } ?? ""
                print(String(format: "%@  rFID %.4f%@  (%@: %d full, %d partial, %d null; %.1f s)", path, score, clipText, p.sampler.description,
                             p.fullSteps, p.partialSteps, p.nullSteps, progress.elapsed))
            }
        }
        let note = "against the teacher \(teacher.sampler) (\(teacher.fullSteps) full steps) on \(count) images from seed \(seed), batch \(batch), \(scoringOptions.features.name(forText: scoring.scored.isTextToImage)) features"
        if json {
            var teacherRow: [String: Any] = ["sampler": teacher.sampler.description, "cached": cached, "seconds": teacherSeconds]
            if let teacherCLIP { teacherRow["clip_score"] = teacherCLIP }
            try printJSON(["device": stream.device.name, "count": count, "seed": seed, "batch": batch, "features": scoringOptions.features.name(forText: scoring.scored.isTextToImage),
                           "teacher": teacherRow, "plans": rows])
        } else {
            print(String(format: "rFID %@; teacher features %@ (%.1f s) on %@", note, cached ? "cached" : "computed", teacherSeconds, stream.device.name))
            if let teacherCLIP, let clip = evaluator.clip {
                print(String(format: "CLIP score of the teacher's images %.3f (%d images; %@); plans' beside their rFID, with the difference",
                             teacherCLIP, count, clip.model.root.lastPathComponent))
            }
        }
    }
}
