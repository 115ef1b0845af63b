// A search's results as one static HTML page (no server, no scripts, images inline): the front and
// every baseline in a table with their sample sizes and the timing rounds' spread, the picture of the
// front, and the teacher's, the best plan's and each baseline's images from the same seeds side by
// side, so that a reader sees what a figure means.
import Engine
import Foundation

public enum HTMLReport {
    /// One row of images: a plan's name and a PNG strip of its images (the same seeds for every row).
    public struct Strip: Sendable {
        public var name: String, png: Data
        public init(name: String, png: Data) { self.name = name; self.png = png }
    }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func number(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "–" }

    /// The page for `report` (after the search finished), with the picture `svg` and image `strips`
    /// of `images` seeds from `seed`.
    public static func render(report: SearchReport, svg: String, strips: [Strip], images: Int, seed: UInt64) -> String {
        let samples = report.state.settings.samples
        let target = report.state.settings.speedup
        let timed = report.teacher?.measuredSpeedup != nil
        let race = report.state.race
        let clip = report.teacher?.clip != nil
        var rows = ""
        func row(_ e: ReportEntry, emphasis: Bool = false) {
            let plan = e.plan.map { "\($0.sampler) — \($0.fullSteps) full, \($0.partialSteps) partial, \($0.nullSteps) null<br><code>\(esc($0.compact))</code>" } ?? ""
            let measured = e.measuredSpeedup.map { m in
                String(format: "%.2f×", m) + (e.measuredRange.map { r in String(format: " <small>(%.2f–%.2f)</small>", r[0], r[1]) } ?? "")
            } ?? "–"
            rows += "<tr\(emphasis ? " class=\"best\"" : "")><td>\(esc(e.name))</td><td>\(number(e.predictedSpeedup, "%.2f×"))</td><td>\(measured)</td>"
                + "<td>\(number(e.rfid, "%.3f"))</td><td>\(number(e.paired, "%.3f"))</td><td>\(number(e.fid, "%.2f"))</td>"
                + (clip ? "<td>\(number(e.clip, "%.3f"))</td>" : "")
                + (race == nil ? "" : "<td>\(number(e.raceScore, "%.3f"))\(e.raceSamples.map { " <small>(\($0))</small>" } ?? "")"
                   + (e.raceCLIPGap.map { String(format: " <small>ΔCLIP %+.3f</small>", $0) } ?? "") + "</td>")
                + "<td class=\"plan\">\(plan)</td></tr>\n"
        }
        if let teacher = report.teacher { row(teacher) }
        if let best = report.best { row(best, emphasis: true) }
        for b in report.baselines { row(b) }
        var front = ""
        for e in report.pareto.sorted(by: { $0.predictedSpeedup < $1.predictedSpeedup }) {
            let measured = e.measuredSpeedup.map { String(format: "%.2f×", $0) } ?? "–"
            front += "<tr><td><code>\(esc(e.key))</code></td><td>\(number(e.predictedSpeedup, "%.2f×"))</td><td>\(measured)</td><td>\(number(e.rfid, "%.3f"))</td>"
                + "<td class=\"plan\"><code>\(esc(e.plan?.compact ?? ""))</code></td></tr>\n"
        }
        var gallery = ""
        for s in strips {
            gallery += "<tr><th>\(esc(s.name))</th><td><img alt=\"\(esc(s.name))\" src=\"data:image/png;base64,\(s.png.base64EncodedString())\"></td></tr>\n"
        }
        let settings = report.state.settings
        func judgeText(_ judge: Fitness, _ settings: SearchSettings) -> String {
            switch judge {
            case .fid: return "FID against real data (the search's own reference set)"
            case .clip: return String(format: "rFID among the plans whose CLIP score stays within %g of the teacher's (the others rank after them)", settings.clipTolerance)
            default: return judge.rawValue
            }
        }
        let solvers = ([report.sampler.scheduler.rawValue] + settings.solvers.map(\.description)).joined(separator: ", ")
        let grids = ([report.sampler.steps] + (settings.grids ?? [])).map(String.init).joined(separator: ", ")
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>flexiffusion search: \(esc(report.model))</title>
            <style>
            body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
            table { border-collapse: collapse; margin: 1em 0; }
            th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
            td.plan { font-size: 85%; } tr.best td { background: #fff3e0; font-weight: bold; }
            img { image-rendering: pixelated; height: 96px; } code { font-size: 90%; word-break: break-all; }
            small, .note { color: #666; }
            </style></head><body>
            <h1>flexiffusion search: \(esc(report.model))</h1>
            \(report.prompts.map { p in "<p>Prompts: \(esc(p.file)) (\(p.count) prompts; image i from prompt i mod \(p.count)), negative prompt \(p.negativePrompt.map { "“\(esc($0))”" } ?? "none"), guidance scale \(p.guidanceScale).</p>" } ?? "")
            <p>Teacher: \(esc(report.sampler.description)), every step full. Target: \(String(format: "%.2f", report.requestedSpeedup ?? target))× \
            (searched at \(String(format: "%.2f", target))× with a \(String(format: "%.0f", (report.margin ?? 0) * 100)) % margin), \
            predicted from the latency table of \(esc(report.device)) at batch \(report.batch). Space: grids of \(grids) steps on \(esc(solvers)), \
            \(settings.segmentCounts.count) segment counts. Fitness: \(settings.fitness == .paired ? "the paired feature distance to the teacher's image from the same noise" : "rFID against the teacher") \
            (\(esc(report.features)) features) on \(samples) images of seed \(settings.seed); \
            \(report.state.records.count) plans scored in \(String(format: "%.0f", report.state.elapsedSeconds)) s.</p>
            <h2>The best plan and the baselines</h2>
            <table><tr><th>plan</th><th>predicted</th><th>measured\(timed ? " <small>(median, range of the timing rounds)</small>" : "")</th>\
            <th>rFID <small>(\(samples) images)</small></th><th>paired distance <small>(\(samples) images)</small></th><th>FID real <small>(\(samples) images)</small></th>\
            \(clip ? "<th>CLIP score <small>(\(samples) images)</small></th>" : "")\
            \(race.map { "<th>final race: \($0.judge) <small>(images)</small></th>" } ?? "")<th>sampler and steps</th></tr>
            \(rows)</table>
            \(race.map { r in "<p>The result is the winner of a final race by \(esc(judgeText(r.judge, settings))): " + r.rungs.map { "\($0.ranking.count) plans on \($0.samples) images" }.joined(separator: ", then the better half, ") + ".</p>" } ?? "")
            <p class="note">rFID and FID here are on \(samples) images: they scatter from draw to draw (on the default model around 10×, rFID on 64 \
            images has a standard deviation of about 20 % between draws); `flexiffusion bench fitness` and scripts/experiments/plan_fid_check.py make \
            1,000–10,000-image figures of chosen plans.</p>
            <h2>Images from the same \(images) seeds (from seed \(seed))</h2>
            <table>\(gallery)</table>
            <h2>The front</h2>
            \(svg)
            <table><tr><th>candidate</th><th>predicted</th><th>measured</th><th>rFID <small>(\(samples))</small></th><th>actions <small>(F full, digit partial at that branch, . null)</small></th></tr>
            \(front)</table>
            </body></html>

            """
    }
}
