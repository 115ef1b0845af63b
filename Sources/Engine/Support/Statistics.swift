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
