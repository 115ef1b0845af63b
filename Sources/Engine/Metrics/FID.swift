// Feature statistics (mean, unbiased covariance) and the Fréchet distance between two Gaussians,
// as pytorch-fid's calculate_frechet_distance defines FID:
//   ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂),
// in float64. tr √(Σ₁Σ₂) is computed in its symmetric form Σᵢ √λᵢ(√Σ₁ Σ₂ √Σ₁) with LAPACK's dsyevd
// (OpenBLAS): Σ₁Σ₂ is similar to √Σ₁Σ₂√Σ₁, which is symmetric positive semi-definite, so the two
// traces are equal; the symmetric form stays real and finite for singular covariances (fewer samples
// than dimensions), where pytorch-fid's sqrtm needs its 1e-6·I offset. Agreement with scipy: ≤ 1e-8
// relative on the goldens (scripts/goldens/make_fid_goldens.py), rank-deficient cases included.
import Foundation
import GPUKernels

/// Mean and covariance of a feature set: what FID compares.
public struct FeatureStatistics: Equatable, Sendable {
    public var mu: [Double]
    /// dims × dims, row-major.
    public var sigma: [Double]
    public var dims: Int { mu.count }
    /// Number of feature vectors the statistics came from (nil when read from a file).
    public var count: Int?

    public init(mu: [Double], sigma: [Double], count: Int? = nil) {
        precondition(sigma.count == mu.count * mu.count, "sigma must be \(mu.count)×\(mu.count)")
        self.mu = mu; self.sigma = sigma; self.count = count
    }

    /// Statistics of `count` feature vectors of `dims` values each (row-major), in float64.
    public init(features: [Float], count n: Int, dims d: Int) throws {
        guard n >= 2 else { throw ModelError("need at least 2 feature vectors for a covariance, not \(n)") }
        precondition(features.count >= n * d, "features: \(features.count) values for \(n)×\(d)")
        var mean = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mean[j] += Double(features[i * d + j]) } }
        for j in 0..<d { mean[j] /= Double(n) }
        var centred = [Double](repeating: 0, count: n * d)
        for i in 0..<n { for j in 0..<d { centred[i * d + j] = Double(features[i * d + j]) - mean[j] } }
        var cov = [Double](repeating: 0, count: d * d)
        try centred.withUnsafeBufferPointer { x in
            try cov.withUnsafeMutableBufferPointer { c in
                try HostBLAS.dgemm(transA: true, transB: false, m: d, n: d, k: n, alpha: 1 / Double(n - 1),
                                   a: x.baseAddress!, lda: d, b: x.baseAddress!, ldb: d, beta: 0, c: c.baseAddress!, ldc: d)
            }
        }
        self.init(mu: mean, sigma: cov, count: n)
    }

    // MARK: pytorch-fid's .npz statistics

    /// Reads `mu` and `sigma` from a .npz file (as pytorch-fid's `--save-stats` writes them).
    public static func loadNPZ(_ path: String) throws -> FeatureStatistics {
        let arrays = try NumPy.loadNPZ(path)
        guard let mu = arrays["mu"], let sigma = arrays["sigma"] else {
            throw ModelError("\(path): a statistics file needs arrays `mu` and `sigma` (has \(arrays.keys.sorted().joined(separator: ", ")))")
        }
        let d = mu.values.count
        guard mu.shape == [d], sigma.shape == [d, d] else {
            throw ModelError("\(path): mu has shape \(mu.shape) and sigma \(sigma.shape); expected [d] and [d, d]")
        }
        guard mu.values.allSatisfy(\.isFinite), sigma.values.allSatisfy(\.isFinite) else {
            throw ModelError("\(path): mu or sigma holds non-finite values")
        }
        // A covariance: symmetric (to float precision) with non-negative variances — else FID is meaningless (it gave −239).
        let s = sigma.values, scale = max(s.map(abs).max() ?? 0, 1e-300)
        for i in 0..<d {
            guard s[i * d + i] >= 0 else { throw ModelError("\(path): sigma[\(i)][\(i)] = \(s[i * d + i]) is a negative variance: not a covariance matrix") }
            for j in (i + 1)..<max(i + 1, d) where abs(s[i * d + j] - s[j * d + i]) > 1e-6 * scale {
                throw ModelError("\(path): sigma is not symmetric (sigma[\(i)][\(j)] = \(s[i * d + j]), sigma[\(j)][\(i)] = \(s[j * d + i])): not a covariance matrix")
            }
        }
        return FeatureStatistics(mu: mu.values, sigma: sigma.values)
    }

    /// Writes `mu` and `sigma` (float64) as pytorch-fid reads them.
    public func saveNPZ(_ path: String) throws {
        try NumPy.saveNPZ([("mu", NumPyArray(shape: [dims], values: mu)),
                           ("sigma", NumPyArray(shape: [dims, dims], values: sigma))], to: path)
    }
}

/// Replaces an n×n matrix by (M + Mᵀ)/2: products that are symmetric in exact arithmetic differ in
/// the last bits, and the eigen-decomposition wants a symmetric matrix.
func symmetrize(_ m: inout [Double], n: Int) {
    for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { let v = (m[i * n + j] + m[j * n + i]) / 2; m[i * n + j] = v; m[j * n + i] = v } }
}

/// The eigenvalues (and `vectors`) of a symmetric matrix; LAPACK's failure to converge (extreme values
/// in a statistics file) is an error about the statistics.
private func eigen(_ m: inout [Double], n: Int, vectors: Bool) throws -> [Double] {
    do { return try HostBLAS.symmetricEigen(&m, n: n, vectors: vectors) } catch let e as OpenCLError where e.call == "dsyevd_" && e.detail?.hasPrefix("did not converge") == true {
        throw ModelError("Fréchet distance: the covariance's eigendecomposition \(e.detail!); the statistics hold extreme values")
    }
}

/// FID between two feature distributions (see the top of this file).
public func frechetDistance(_ a: FeatureStatistics, _ b: FeatureStatistics) throws -> Double {
    guard a.dims == b.dims else { throw ModelError("feature dimensions differ: \(a.dims) and \(b.dims)") }
    let d = a.dims
    // √Σ₁ = V diag(√max(λ, 0)) Vᵀ; dsyevd leaves eigenvector j in row j (row-major view).
    var vectors = a.sigma
    let lambda = try eigen(&vectors, n: d, vectors: true)
    var scaled = vectors
    for j in 0..<d {
        let s = max(lambda[j], 0).squareRoot()
        for i in 0..<d { scaled[j * d + i] *= s }
    }
    var root = [Double](repeating: 0, count: d * d), product = root, m = root
    try vectors.withUnsafeBufferPointer { v in
        try scaled.withUnsafeBufferPointer { s in
            try root.withUnsafeMutableBufferPointer { r in
                try HostBLAS.dgemm(transA: true, transB: false, m: d, n: d, k: d, alpha: 1, a: v.baseAddress!, lda: d,
                                   b: s.baseAddress!, ldb: d, beta: 0, c: r.baseAddress!, ldc: d)
            }
        }
    }
    // M = √Σ₁ Σ₂ √Σ₁, symmetrised against rounding.
    try root.withUnsafeBufferPointer { r in
        try b.sigma.withUnsafeBufferPointer { s2 in
            try product.withUnsafeMutableBufferPointer { p in
                try HostBLAS.dgemm(transA: false, transB: false, m: d, n: d, k: d, alpha: 1, a: r.baseAddress!, lda: d,
                                   b: s2.baseAddress!, ldb: d, beta: 0, c: p.baseAddress!, ldc: d)
            }
        }
        try product.withUnsafeBufferPointer { p in
            try m.withUnsafeMutableBufferPointer { out in
                try HostBLAS.dgemm(transA: false, transB: false, m: d, n: d, k: d, alpha: 1, a: p.baseAddress!, lda: d,
                                   b: r.baseAddress!, ldb: d, beta: 0, c: out.baseAddress!, ldc: d)
            }
        }
    }
    symmetrize(&m, n: d)
    let mu = try eigen(&m, n: d, vectors: false)
    let traceRoot = mu.reduce(0) { $0 + max($1, 0).squareRoot() }
    var meanTerm = 0.0, traces = 0.0
    for i in 0..<d {
        let diff = a.mu[i] - b.mu[i]
        meanTerm += diff * diff
        traces += a.sigma[i * d + i] + b.sigma[i * d + i]
    }
    // (A distance is never below 0: of a set against itself, rounding left about −3e-4, which printed
    // as "FID -0.0003".)
    return max(0, meanTerm + traces - 2 * traceRoot)
}
