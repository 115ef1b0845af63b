// The search's results file and shard files: the best plan (usable by `generate --plan` as it is),
// the Pareto front, the baselines, the final race's contenders, the teacher, and the whole search
// state (SearchState.swift) for --resume. docs/specs/search-format.md describes the file.
import Engine
import Foundation

/// One plan in the report: the best, a Pareto point, a baseline, the teacher.
public struct ReportEntry: Codable, Equatable, Sendable {
    public var name: String
    public var key: String
    public var predictedSpeedup: Double
    public var measuredSpeedup: Double?
    /// The smallest and largest ratio over the timing rounds (the spread around the median).
    public var measuredRange: [Double]?
    public var rfid: Double?
    /// The paired feature distance to the teacher's images from the same noise (nil where not computed).
    public var paired: Double?
    /// FID against real data on the same samples (nil without real statistics).
    public var fid: Double?
    /// The final race's score on the most images this plan was judged on (nil: not a contender).
    public var raceScore: Double?
    public var raceSamples: Int?
    /// With the clip judge: the plan's CLIP score minus the teacher's on the race's images.
    public var raceCLIPGap: Double?
    /// CLIP score on the same samples as rFID (nil: no CLIP model).
    public var clip: Double?
    public var plan: StepPlan?

    public init(name: String, key: String, predictedSpeedup: Double, measuredSpeedup: Double? = nil, rfid: Double? = nil,
                fid: Double? = nil, plan: StepPlan? = nil) {
        self.name = name; self.key = key; self.predictedSpeedup = predictedSpeedup; self.measuredSpeedup = measuredSpeedup
        self.rfid = rfid; self.fid = fid; self.plan = plan
    }

    enum CodingKeys: String, CodingKey {
        case name, key, predictedSpeedup = "predicted_speedup", measuredSpeedup = "measured_speedup", measuredRange = "measured_speedup_range"
        case rfid, paired, fid, raceScore = "race_score", raceSamples = "race_samples", raceCLIPGap = "race_clip_gap", clip = "clip_score", plan
    }
}

/// The prompt set a text-to-image search scored its images over (what its model key covers).
public struct PromptRecord: Codable, Equatable, Sendable {
    /// The prompts file as given, and how many prompts it held.
    public var file: String
    public var count: Int
    public var negativePrompt: String?
    public var guidanceScale: Float

    public init(file: String, count: Int, negativePrompt: String?, guidanceScale: Float) {
        self.file = file; self.count = count; self.negativePrompt = negativePrompt; self.guidanceScale = guidanceScale
    }

    enum CodingKeys: String, CodingKey { case file, count, negativePrompt = "negative_prompt", guidanceScale = "guidance_scale" }
}

public struct SearchReport: VersionedJSONFile, Sendable {
    public static let format = "flexiffusion-search"
    /// 2: records' and generation logs' scores are "fitness" and "best_fitness" (1 said "rfid" and
    /// "best_rfid" whatever the fitness was); version 1 files are read as before.
    public static let version = 2
    public static let oldestReadableVersion = 1
    public static let kind = "flexiffusion search results file"
    public var format = SearchReport.format
    public var version = SearchReport.version
    /// (Version 1's scores were read under their old names: written back as version 2.)
    public mutating func migrate() { version = Self.version }
    public var model: String
    public var modelKey: String
    public var device: String
    public var sampler: PlanSampler
    public var batch: Int
    public var features: String
    /// The latency table entry the costs come from.
    public var latencies: StepLatencies
    /// The best plan found, as `generate --plan` reads it (also accepted from this file directly).
    public var bestPlan: StepPlan?
    public var best: ReportEntry?
    public var pareto: [ReportEntry] = []
    public var baselines: [ReportEntry] = []
    /// The final race's contenders, in the first rung's order (nil: no race).
    public var race: [ReportEntry]?
    public var teacher: ReportEntry?
    /// The speed-up asked for, and the margin the search added to it (state.settings.speedup is the sum).
    public var requestedSpeedup: Double?
    public var margin: Double?
    public var stepsRun = 0, stepsShared = 0
    /// A text-to-image search's prompt set (nil for a pixel model; files made before it was recorded have none).
    public var prompts: PromptRecord?
    public var state: SearchState

    public init(model: String, modelKey: String, device: String, sampler: PlanSampler, batch: Int, features: String,
                latencies: StepLatencies, state: SearchState) {
        self.model = model; self.modelKey = modelKey; self.device = device; self.sampler = sampler; self.batch = batch
        self.features = features; self.latencies = latencies; self.state = state
    }

    enum CodingKeys: String, CodingKey {
        case format, version, model, modelKey = "model_key", device, sampler, batch, features, latencies
        case bestPlan = "best_plan", best, pareto, baselines, race, teacher, requestedSpeedup = "requested_speedup", margin, stepsRun = "steps_run", stepsShared = "steps_shared", prompts, state
    }
}

extension ReportEntry {
    /// Takes the final race's score of this entry's plan, on the most images it was judged on.
    mutating func setRace(_ state: SearchState) {
        guard state.race != nil, let race = state.records[key]?.race,
              let most = race.counts.last else { return }
        raceScore = race[most]; raceSamples = most
        raceCLIPGap = state.records[key]?.clipGap(most)
    }
}

extension SearchReport {
    /// Records the search's best so far (its entry and plan), as the file carries it between evaluations.
    mutating func setBest(_ best: SearchRecord?, samples: Int) throws {
        guard let best else { return }
        self.best = entry(best, name: "best", samples: samples)
        bestPlan = try best.candidate.plan(sampler)
    }

    /// An entry for a scored record with its fitness on `samples` images as its rFID or paired
    /// distance (whichever the search minimised), and its race score where it has one.
    func entry(_ r: SearchRecord, name: String, samples: Int, plan: StepPlan? = nil) -> ReportEntry {
        let paired = state.settings.fitness == .paired
        var e = ReportEntry(name: name, key: r.candidate.key, predictedSpeedup: r.predictedSpeedup, rfid: paired ? nil : r.score(samples), plan: plan)
        e.paired = paired ? r.score(samples) : nil
        e.setRace(state)
        return e
    }
}

/// What one shard scored: merged into the search by `--merge`.
public struct ShardFile: VersionedJSONFile, Sendable {
    public static let format = "flexiffusion-search-shard"
    /// 2: its records are version 2's (see SearchReport); version 1 files are read as before.
    public static let version = 2
    public static let oldestReadableVersion = 1
    public static let kind = "flexiffusion search shard file"
    public var format = ShardFile.format
    public var version = ShardFile.version
    public mutating func migrate() { version = Self.version }
    public var shard: Int, count: Int
    public var records: [String: SearchRecord]

    public init(shard: Int, count: Int, records: [String: SearchRecord]) {
        self.shard = shard; self.count = count; self.records = records
    }
}
