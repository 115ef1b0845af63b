// `flexiffusion bench fitness`: how well a small-sample fitness ranks plans. Every plan and the
// teacher make --count images from one seed; the judges are rFID on all of them and FID against real
// data; each chunk of --chunk images (a different draw of the same size as the search's fitness)
// ranks the plans by rFID and by the paired feature distance, and Kendall's τ says how often a
// chunk's order of two plans is the judge's.
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct BenchFitness: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fitness",
        abstract: "Kendall's τ of small-sample rFID and paired feature distance against large-sample judges, over a set of plans.",
        discussion: """
            The plans (files, or search results files: their best plan) and the teacher generate --count images \
            from --seed. Judges: rFID on all --count images, and FID against real data (--real; default for the \
            default model: the Fashion-MNIST test set). Each of the count / chunk chunks ranks the plans by \
            rFID and by the paired feature distance (the mean over images of the squared feature distance to \
            the teacher's image from the same noise) on its images; τ is averaged over chunks. A τ of 1 is the \
            judge's order in every chunk; (1 + τ) / 2 is the fraction of plan pairs a chunk orders as the judge.
            """)

    @OptionGroup var scoringOptions: ScoringOptions
    @Argument(help: "Plan files (at least 3).") var plans: [String]
    @Option(help: "Images per plan (the judges' sample).") var count = 1024
    @Option(help: "Images per chunk (the fitness's sample).") var chunk = 64
    @Option(help: "Seed of the noise.") var seed: UInt64 = 1000
    @Option(help: "Images per forward pass.") var batch = 32
    @Option(help: "Real images for FID (IDX, .npz statistics or image folder).") var real: String?
    @Flag(help: "Print the results as JSON.") var json = false

    func run() throws {
        guard plans.count >= 3 else { throw ValidationError("give at least 3 plan files to rank") }
        try checkImageCount(count, option: "--count")
        try checkImageCount(chunk, option: "--chunk")
        guard chunk >= 2, count >= 2 * chunk else { throw ValidationError("--chunk must be at least 2 and --count at least two chunks") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        let scoring = try PlanScoring(scoringOptions, plans: plans, batch: batch, seed: seed)
        let (teacher, loaded, extractor, evaluator) = (scoring.teacher, scoring.plans, scoring.extractor, scoring.evaluator)
        let dims = extractor.dims
        let progress = ProgressLine("teacher (\(teacher.sampler))")
        let teacherRows = try evaluator.teacherFeatures(samples: count)
        progress.finish()
        let realPath = scoringOptions.prompts.prompts == nil ? realImages(real, model: scoringOptions.model.model) : real
        let realStatistics = try realPath.map { try FIDStatistics(extractor: extractor).cachedStatistics(of: $0) }

        let chunks = count / chunk
        func rows(_ all: [Float], _ j: Int) -> [Float] { Array(all[(j * chunk * dims)..<((j + 1) * chunk * dims)]) }
        let teacherChunks = try (0..<chunks).map { try FeatureStatistics(features: rows(teacherRows, $0), count: chunk, dims: dims) }
        let teacherAll = try FeatureStatistics(features: teacherRows, count: count, dims: dims)
        var judgeRFID: [Double] = [], judgeFID: [Double] = [], judgePaired: [Double] = []
        var chunkRFID: [[Double]] = [], chunkPaired: [[Double]] = []   // [plan][chunk]
        let plansProgress = ProgressLine("plans")
        for (i, plan) in loaded.enumerated() {
            let f = try evaluator.features(plan: plan, samples: count)
            let all = try FeatureStatistics(features: f, count: count, dims: dims)
            judgeRFID.append(try frechetDistance(all, teacherAll))
            judgePaired.append(RFIDEvaluator.pairedDistance(f, teacherRows, dims: dims))
            if let realStatistics { judgeFID.append(try frechetDistance(all, realStatistics)) }
            chunkRFID.append(try (0..<chunks).map { try frechetDistance(FeatureStatistics(features: rows(f, $0), count: chunk, dims: dims), teacherChunks[$0]) })
            chunkPaired.append((0..<chunks).map { RFIDEvaluator.pairedDistance(rows(f, $0), rows(teacherRows, $0), dims: dims) })
            plansProgress.update(i + 1, of: loaded.count, unit: "plans")
        }
        plansProgress.finish()

        // τ of each chunk's ranking against a judge, averaged over chunks.
        func tau(_ perChunk: [[Double]], _ judge: [Double]) -> (mean: Double, min: Double, max: Double) {
            let taus = (0..<chunks).map { j in kendallTau(perChunk.map { $0[j] }, judge) }
            return (taus.reduce(0, +) / Double(taus.count), taus.min()!, taus.max()!)
        }
        func meanSD(_ v: [Double]) -> (Double, Double) {
            let m = v.reduce(0, +) / Double(v.count)
            return (m, (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(max(1, v.count - 1))).squareRoot())
        }
        var judges: [(String, [Double])] = [("rFID \(count)", judgeRFID)]
        if !judgeFID.isEmpty { judges.append(("FID real \(count)", judgeFID)) }
        let taus = judges.map { name, judge in (name, tau(chunkRFID, judge), tau(chunkPaired, judge)) }
        if json {
            try printJSON([
                "count": count, "chunk": chunk, "chunks": chunks, "seed": seed, "teacher": teacher.sampler.description, "features": scoringOptions.features.name(forText: scoring.scored.isTextToImage),
                "plans": loaded.indices.map { i -> [String: Any] in
                    var row: [String: Any] = ["plan": plans[i], "sampler": loaded[i].sampler.description, "rfid": judgeRFID[i], "paired": judgePaired[i],
                                              "chunk_rfid_mean": meanSD(chunkRFID[i]).0, "chunk_rfid_sd": meanSD(chunkRFID[i]).1,
                                              "chunk_paired_mean": meanSD(chunkPaired[i]).0, "chunk_paired_sd": meanSD(chunkPaired[i]).1]
                    if !judgeFID.isEmpty { row["fid_real"] = judgeFID[i] }
                    return row
                },
                "kendall_tau": taus.map { ["judge": $0.0, "rfid": $0.1.mean, "rfid_min": $0.1.min, "rfid_max": $0.1.max,
                                           "paired": $0.2.mean, "paired_min": $0.2.min, "paired_max": $0.2.max] },
            ])
            return
        }
        var table = [["plan", "rFID \(count)", judgeFID.isEmpty ? nil : "FID real \(count)", "paired \(count)",
                      "rFID \(chunk) (mean ± sd)", "paired \(chunk) (mean ± sd)"].compactMap { $0 }]
        for i in loaded.indices {
            let (rm, rs) = meanSD(chunkRFID[i]), (pm, ps) = meanSD(chunkPaired[i])
            table.append([plans[i], String(format: "%.3f", judgeRFID[i]), judgeFID.isEmpty ? nil : String(format: "%.2f", judgeFID[i]),
                          String(format: "%.3f", judgePaired[i]), String(format: "%.3f ± %.3f", rm, rs), String(format: "%.3f ± %.3f", pm, ps)].compactMap { $0 })
        }
        print(renderTable(table, rightAlign: Set(1..<table[0].count)))
        print("")
        print("Kendall's τ of each \(chunk)-image chunk's ranking against the judge, mean over \(chunks) chunks (range):")
        for (name, r, p) in taus {
            print(String(format: "  %@: rFID %.3f (%.2f…%.2f), paired distance %.3f (%.2f…%.2f)", name, r.mean, r.min, r.max, p.mean, p.min, p.max))
        }
    }
}
