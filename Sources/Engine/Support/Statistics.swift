// Summary statistics of measurements (timings are noisy on shared machines: report medians).
import Foundation

/// The median of `values` (the mean of the two middle ones for an even count); NaN for none.
public func median(_ values: [Double]) -> Double {
    let v = values.sorted()
    guard !v.isEmpty else { return .nan }
    return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
}

/// The smallest and largest of `values`.
public func spread(_ values: [Double]) -> (min: Double, max: Double) { (values.min() ?? .nan, values.max() ?? .nan) }

/// Kendall's τ-b between two rankings of the same items (ties count for neither order; NaN when
/// either side is all ties or there are fewer than 2 items).
public func kendallTau(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "Kendall's τ needs paired values")
    var concordant = 0.0, discordant = 0.0, tiesA = 0.0, tiesB = 0.0
    for i in a.indices {
        for j in a.indices where j > i {
            let x = a[i] - a[j], y = b[i] - b[j]
            if x == 0 && y == 0 { continue }
            if x == 0 { tiesA += 1 } else if y == 0 { tiesB += 1 } else if (x > 0) == (y > 0) { concordant += 1 } else { discordant += 1 }
        }
    }
    let denominator = ((concordant + discordant + tiesA) * (concordant + discordant + tiesB)).squareRoot()
    return denominator == 0 ? .nan : (concordant - discordant) / denominator
}
