// The Pareto front of a search (non-dominated plans by predicted speed-up and fitness) and its
// picture, an SVG of every scored candidate, the front, the best plan and the baselines.
import Engine
import Foundation

public enum ParetoFront {
    /// The non-dominated records by (predicted speed-up ↑, fitness on `samples` images ↓), fastest first.
    public static func of(_ records: [SearchRecord], samples: Int) -> [SearchRecord] {
        let scored = records.filter { $0.score(samples) != nil }
        return scored.filter { r in
            !scored.contains { o in
                o.predictedSpeedup >= r.predictedSpeedup && o.score(samples)! <= r.score(samples)!
                    && (o.predictedSpeedup > r.predictedSpeedup || o.score(samples)! < r.score(samples)!)
            }
        }.sorted { $0.predictedSpeedup > $1.predictedSpeedup }
    }
}

/// An SVG of the fitness (rFID, or the paired distance) against predicted speed-up: every scored
/// candidate, the Pareto front, the best plan, and the baselines. The fitness axis is logarithmic in
/// 1 + score, so that the plans near the target (scores ~1) stay apart when a far candidate scores in
/// the hundreds, and the teacher (0) fits.
public enum ParetoPlot {
    public static func svg(candidates: [(speedup: Double, score: Double)], front: [(speedup: Double, score: Double)],
                           best: (speedup: Double, score: Double)?, baselines: [(name: String, speedup: Double, score: Double)],
                           target: Double, requested: Double? = nil, title: String,
                           yLabel: String = "rFID against the teacher") -> String {
        // (The legend's column is as wide as its longest name: 12-px sans-serif text is ~6.5 px a
        // character on average, up to ~7.3 with capitals and wide digits, so the column is sized at 7.5.)
        let charWidth = 6.5
        let longest = (baselines.map(\.name) + ["search candidates"]).map(\.count).max() ?? 0
        let right = max(210.0, 44 + 7.5 * Double(longest)), w = 550 + right, h = 480.0, left = 70.0, top = 40.0, bottom = 55.0
        let all = candidates + front + baselines.map { ($0.speedup, $0.score) } + (best.map { [$0] } ?? [])
        let xs = all.map(\.speedup) + [target, 1], ys = all.map(\.score).filter { $0.isFinite } + [0]
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
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(py(yv) + 4))\" text-anchor=\"end\">\(yv == 0 ? "0" : String(format: yv < 10 ? "%.2f" : "%.0f", yv))</text>\n"
            s += "<line x1=\"\(f(left))\" y1=\"\(f(py(yv)))\" x2=\"\(f(w - right))\" y2=\"\(f(py(yv)))\" stroke=\"#eee\"/>\n"
        }
        s += "<line x1=\"\(f(px(target)))\" y1=\"\(f(top))\" x2=\"\(f(px(target)))\" y2=\"\(f(h - bottom))\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n"
        let label = "target \(String(format: "%.2f", target))×\(requested.map { $0 < target ? String(format: " (%.2f× + margin)", $0) : "" } ?? "")"
        // (Right of the line where it fits in the plot, else left of it.)
        let fitsRight = px(target) + 4 + charWidth * Double(label.count) <= w - right
        s += "<text x=\"\(f(px(target) + (fitsRight ? 4 : -4)))\" y=\"\(f(top + 12))\" fill=\"#c33\" text-anchor=\"\(fitsRight ? "start" : "end")\">\(label)</text>\n"
        for c in candidates where c.score.isFinite {
            s += "<circle cx=\"\(f(px(c.speedup)))\" cy=\"\(f(py(c.score)))\" r=\"3\" fill=\"#999\" fill-opacity=\"0.6\"/>\n"
        }
        let points = front.filter { $0.score.isFinite }.sorted { $0.speedup < $1.speedup }.map { "\(f(px($0.speedup))),\(f(py($0.score)))" }
        if !points.isEmpty {
            s += "<polyline points=\"\(points.joined(separator: " "))\" fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\"/>\n"
        }
        // (Ten colours apart from the candidates' grey, the front's blue and the best plan's red; past
        // ten baselines they repeat, with a ring, so that no two legend entries look alike.)
        let colours = ["#e08a00", "#2a9d3a", "#8e44ad", "#555555", "#17becf", "#bcbd22", "#e377c2", "#8c564b", "#000000", "#9edae5"]
        var legend = [("search candidates", "#999"), ("Pareto front", "#1f5fbf")]
        var ringed: Set<String> = []
        for (i, b) in baselines.enumerated() where b.score.isFinite {
            let c = colours[i % colours.count], x = px(b.speedup), y = py(b.score), ring = i >= colours.count
            s += "<rect x=\"\(f(x - 5))\" y=\"\(f(y - 5))\" width=\"10\" height=\"10\" fill=\"\(c)\"\(ring ? " stroke=\"#d62728\" stroke-width=\"2\"" : "")/>\n"
            legend.append((b.name, c))
            if ring { ringed.insert(b.name) }
        }
        if let best, best.score.isFinite {
            s += "<circle cx=\"\(f(px(best.speedup)))\" cy=\"\(f(py(best.score)))\" r=\"7\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2.5\"/>\n"
            legend.append(("best plan", "#d62728"))
        }
        for (i, (name, colour)) in legend.enumerated() {
            let y = top + 10 + Double(i) * 20
            s += "<rect x=\"\(f(w - right + 12))\" y=\"\(f(y - 8))\" width=\"10\" height=\"10\" fill=\"\(colour)\"\(ringed.contains(name) ? " stroke=\"#d62728\" stroke-width=\"2\"" : "")/>"
            s += "<text x=\"\(f(w - right + 28))\" y=\"\(f(y + 1))\">\(esc(name))</text>\n"
        }
        return s + "</svg>\n"
    }
}

