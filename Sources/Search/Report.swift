// The search's results file and its picture: the best plan (usable by `generate --plan` as it is),
// the Pareto front, the baselines, and the whole search state (for --resume).
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
    public var plan: StepPlan?

    public init(name: String, key: String, predictedSpeedup: Double, measuredSpeedup: Double? = nil, rfid: Double? = nil,
                fid: Double? = nil, plan: StepPlan? = nil) {
        self.name = name; self.key = key; self.predictedSpeedup = predictedSpeedup; self.measuredSpeedup = measuredSpeedup
        self.rfid = rfid; self.fid = fid; self.plan = plan
    }

    enum CodingKeys: String, CodingKey {
        case name, key, predictedSpeedup = "predicted_speedup", measuredSpeedup = "measured_speedup", measuredRange = "measured_speedup_range"
        case rfid, paired, fid, raceScore = "race_score", raceSamples = "race_samples", plan
    }
}

public struct SearchReport: VersionedJSONFile, Sendable {
    public static let format = "flexiffusion-search"
    public static let version = 1
    public static let kind = "flexiffusion search results file"
    public var format = SearchReport.format
    public var version = SearchReport.version
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
    public var state: SearchState

    public init(model: String, modelKey: String, device: String, sampler: PlanSampler, batch: Int, features: String,
                latencies: StepLatencies, state: SearchState) {
        self.model = model; self.modelKey = modelKey; self.device = device; self.sampler = sampler; self.batch = batch
        self.features = features; self.latencies = latencies; self.state = state
    }

    enum CodingKeys: String, CodingKey {
        case format, version, model, modelKey = "model_key", device, sampler, batch, features, latencies
        case bestPlan = "best_plan", best, pareto, baselines, race, teacher, requestedSpeedup = "requested_speedup", margin, stepsRun = "steps_run", stepsShared = "steps_shared", state
    }
}

extension ReportEntry {
    /// Takes the final race's score of this entry's plan, on the most images it was judged on.
    mutating func setRace(_ state: SearchState) {
        guard state.race != nil, let race = state.records[key]?.race,
              let most = race.keys.compactMap(Int.init).max() else { return }
        raceScore = race[String(most)]; raceSamples = most
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
        let paired = state.settings.fitness == Fitness.paired.rawValue
        var e = ReportEntry(name: name, key: r.candidate.key, predictedSpeedup: r.predictedSpeedup, rfid: paired ? nil : r.score(samples), plan: plan)
        e.paired = paired ? r.score(samples) : nil
        e.setRace(state)
        return e
    }
}

/// An SVG of rFID against predicted speed-up: every scored candidate, the Pareto front, the best
/// plan, and the baselines. The rFID axis is logarithmic in 1 + rFID, so that the plans near the
/// target (rFID ~1) stay apart when a far candidate scores in the hundreds, and the teacher (0) fits.
public enum ParetoPlot {
    public static func svg(candidates: [(speedup: Double, rfid: Double)], front: [(speedup: Double, rfid: Double)],
                           best: (speedup: Double, rfid: Double)?, baselines: [(name: String, speedup: Double, rfid: Double)],
                           target: Double, requested: Double? = nil, title: String,
                           yLabel: String = "rFID against the teacher") -> String {
        // (The legend's column is as wide as its longest name: 12-px sans-serif text is ~6.5 px a
        // character on average, up to ~7.3 with capitals and wide digits, so the column is sized at 7.5.)
        let charWidth = 6.5
        let longest = (baselines.map(\.name) + ["search candidates"]).map(\.count).max() ?? 0
        let right = max(210.0, 44 + 7.5 * Double(longest)), w = 550 + right, h = 480.0, left = 70.0, top = 40.0, bottom = 55.0
        let all = candidates + front + baselines.map { ($0.speedup, $0.rfid) } + (best.map { [$0] } ?? [])
        let xs = all.map(\.speedup) + [target, 1], ys = all.map(\.rfid).filter { $0.isFinite } + [0]
        let x0 = max(0, (xs.min() ?? 1) - 0.2), x1 = (xs.max() ?? 3) + 0.2
        let y1 = max(1e-6, (ys.max() ?? 1) * 1.08)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (w - left - right) }
        func py(_ y: Double) -> Double { h - bottom - log1p(min(max(y, 0), y1)) / log1p(y1) * (h - top - bottom) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" viewBox="0 0 \(Int(w)) \(Int(h))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(w / 2 - right / 2 + left / 2))" y="22" text-anchor="middle" font-size="14">\(esc(title))</text>
            <line x1="\(f(left))" y1="\(f(h - bottom))" x2="\(f(w - right))" y2="\(f(h - bottom))" stroke="black"/>
            <line x1="\(f(left))" y1="\(f(top))" x2="\(f(left))" y2="\(f(h - bottom))" stroke="black"/>
            <text x="\(f((left + w - right) / 2))" y="\(f(h - 15))" text-anchor="middle">predicted speed-up over the teacher (×)</text>
            <text x="18" y="\(f((top + h - bottom) / 2))" text-anchor="middle" transform="rotate(-90 18 \(f((top + h - bottom) / 2)))">\(esc(yLabel)) (log scale; lower is better)</text>

            """
        // x ticks at round values: the step of 1, 2, 2.5 or 5 × 10^k that gives 4–8 of them.
        let span = x1 - x0, magnitude = pow(10, floor(log10(span / 5)))
        let step = [1.0, 2.0, 2.5, 5.0, 10.0].map { $0 * magnitude }.first { span / $0 <= 8 } ?? 10 * magnitude
        let decimals = (0...3).first { d in let v = step * pow(10, Double(d)); return abs(v - v.rounded()) < 1e-6 } ?? 3
        var xv = (x0 / step).rounded(.up) * step
        while xv <= x1 + 1e-9 * step {
            s += "<text x=\"\(f(px(xv)))\" y=\"\(f(h - bottom + 16))\" text-anchor=\"middle\">\(String(format: "%.\(decimals)f", xv))</text>\n"
            s += "<line x1=\"\(f(px(xv)))\" y1=\"\(f(h - bottom))\" x2=\"\(f(px(xv)))\" y2=\"\(f(h - bottom + 4))\" stroke=\"black\"/>\n"
            xv += step
        }
        // 0, 1, 2, 5, 10, 20, 50, … up to the top (quarters of it when it is below 2).
        var ticks: [Double] = [0]
        if y1 < 2 {
            ticks += (1...4).map { y1 * Double($0) / 4 }
        } else {
            for e in 0...6 { for m in [1.0, 2.0, 5.0] where m * pow(10, Double(e)) <= y1 { ticks.append(m * pow(10, Double(e))) } }
        }
        for yv in ticks {
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(py(yv) + 4))\" text-anchor=\"end\">\(String(format: yv < 10 ? "%.2f" : "%.0f", yv))</text>\n"
            s += "<line x1=\"\(f(left))\" y1=\"\(f(py(yv)))\" x2=\"\(f(w - right))\" y2=\"\(f(py(yv)))\" stroke=\"#eee\"/>\n"
        }
        s += "<line x1=\"\(f(px(target)))\" y1=\"\(f(top))\" x2=\"\(f(px(target)))\" y2=\"\(f(h - bottom))\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n"
        let label = "target \(String(format: "%.2f", target))×\(requested.map { $0 < target ? String(format: " (%.2f× + margin)", $0) : "" } ?? "")"
        // (Right of the line where it fits in the plot, else left of it.)
        let fitsRight = px(target) + 4 + charWidth * Double(label.count) <= w - right
        s += "<text x=\"\(f(px(target) + (fitsRight ? 4 : -4)))\" y=\"\(f(top + 12))\" fill=\"#c33\" text-anchor=\"\(fitsRight ? "start" : "end")\">\(label)</text>\n"
        for c in candidates where c.rfid.isFinite {
            s += "<circle cx=\"\(f(px(c.speedup)))\" cy=\"\(f(py(c.rfid)))\" r=\"3\" fill=\"#999\" fill-opacity=\"0.6\"/>\n"
        }
        let points = front.filter { $0.rfid.isFinite }.sorted { $0.speedup < $1.speedup }.map { "\(f(px($0.speedup))),\(f(py($0.rfid)))" }
        if !points.isEmpty {
            s += "<polyline points=\"\(points.joined(separator: " "))\" fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\"/>\n"
        }
        let colours = ["#e08a00", "#2a9d3a", "#8e44ad", "#555"]
        var legend = [("search candidates", "#999"), ("Pareto front", "#1f5fbf")]
        for (i, b) in baselines.enumerated() where b.rfid.isFinite {
            let c = colours[i % colours.count], x = px(b.speedup), y = py(b.rfid)
            s += "<rect x=\"\(f(x - 5))\" y=\"\(f(y - 5))\" width=\"10\" height=\"10\" fill=\"\(c)\"/>\n"
            legend.append((b.name, c))
        }
        if let best, best.rfid.isFinite {
            s += "<circle cx=\"\(f(px(best.speedup)))\" cy=\"\(f(py(best.rfid)))\" r=\"7\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2.5\"/>\n"
            legend.append(("best plan", "#d62728"))
        }
        for (i, (name, colour)) in legend.enumerated() {
            let y = top + 10 + Double(i) * 20
            s += "<rect x=\"\(f(w - right + 12))\" y=\"\(f(y - 8))\" width=\"10\" height=\"10\" fill=\"\(colour)\"/>"
            s += "<text x=\"\(f(w - right + 28))\" y=\"\(f(y + 1))\">\(esc(name))</text>\n"
        }
        return s + "</svg>\n"
    }
}

/// What one shard scored: merged into the search by `--merge`.
public struct ShardFile: VersionedJSONFile, Sendable {
    public static let format = "flexiffusion-search-shard"
    public static let version = 1
    public static let kind = "flexiffusion search shard file"
    public var format = ShardFile.format
    public var version = ShardFile.version
    public var shard: Int, count: Int
    public var records: [String: SearchRecord]

    public init(shard: Int, count: Int, records: [String: SearchRecord]) {
        self.shard = shard; self.count = count; self.records = records
    }
}
