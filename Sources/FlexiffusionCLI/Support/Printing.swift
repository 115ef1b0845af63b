// What commands print: aligned tables, JSON, messages on standard error, milliseconds, and the
// timing helpers of the benchmarks (medians of wall-clock runs, kernel timings by name).
import Foundation
import Engine
import GPUKernels

/// Left-aligned columns separated by two spaces; the first row is the header.
func renderTable(_ rows: [[String]], rightAlign: Set<Int> = []) -> String {
    let widths = (0..<(rows.map(\.count).max() ?? 0)).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
    return rows.enumerated().map { (ri, row) in
        let line = row.enumerated().map { (c, cell) in
            let pad = String(repeating: " ", count: widths[c] - cell.count)
            return rightAlign.contains(c) ? pad + cell : cell + pad
        }.joined(separator: "  ")
        let trimmed = String(line.reversed().drop(while: { $0 == " " }).reversed())
        return ri == 0 ? trimmed + "\n" + String(repeating: "-", count: trimmed.count) : trimmed
    }.joined(separator: "\n")
}

/// Prints `object` as pretty JSON with sorted keys and unescaped slashes.
func printJSON(_ object: Any) throws {
    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
}

/// A line to standard error.
func say(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

func formatMilliseconds(_ ms: Double) -> String {
    String(format: ms < 1 ? "%.3f" : ms < 10 ? "%.2f" : "%.1f", ms)
}

/// Milliseconds with three significant digits or more (GPU kernels take fractions of a millisecond).
/// Timings summed by name, most expensive first.
func timingsByName(_ timings: [KernelTiming]) -> [(name: String, calls: Int, ms: Double)] {
    var byName: [String: (calls: Int, ns: UInt64)] = [:]
    for t in timings { byName[t.name, default: (0, 0)].calls += 1; byName[t.name, default: (0, 0)].ns += t.nanoseconds }
    return byName.map { ($0.key, $0.value.calls, Double($0.value.ns) / 1e6) }.sorted { $0.ms > $1.ms }
}

/// The first `limit` rows of `timingsByName` as a table with each one's share of the total.
func timingTable(_ rows: [(name: String, calls: Int, ms: Double)], header: String, limit: Int) -> String {
    let total = rows.map(\.ms).reduce(0, +)
    var table = [[header, "calls", "ms", "share"]]
    for r in rows.prefix(limit) {
        table.append([r.name, "\(r.calls)", formatMilliseconds(r.ms), String(format: "%.1f%%", 100 * r.ms / max(total, 1e-9))])
    }
    return renderTable(table, rightAlign: [1, 2, 3])
}

/// Median of wall-clock milliseconds over `repeats` runs of `body`, after one warm-up run.
func medianMilliseconds(repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    try body()
    var times: [Double] = []
    for _ in 0..<max(1, repeats) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
    }
    return median(times)
}
