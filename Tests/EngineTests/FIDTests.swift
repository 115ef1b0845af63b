// Fréchet distance against pytorch-fid's scipy computation (Goldens/frechet.*, written by
// scripts/make_fid_goldens.py), statistics on device against float64 host statistics, and
// pytorch-fid's .npz statistics files.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct FIDTests {
    static let cases: [[String: Any]] = {
        let data = try! Data(contentsOf: goldens.appendingPathComponent("frechet.json"))
        return (try! JSONSerialization.jsonObject(with: data) as! [String: Any])["cases"] as! [[String: Any]]
    }()

    /// FID from float64 statistics of the golden features equals scipy's to 1e-6 relative.
    @Test(arguments: cases.map { $0["name"] as! String })
    func frechetMatchesScipy(name: String) throws {
        let c = FIDTests.cases.first { $0["name"] as! String == name }!
        let file = try SafeTensorsFile(path: goldens.appendingPathComponent("frechet.safetensors").path)
        let d = c["dims"] as! Int
        let a = try FeatureStatistics(features: file.floats("\(name).a"), count: c["n_a"] as! Int, dims: d)
        let b = try FeatureStatistics(features: file.floats("\(name).b"), count: c["n_b"] as! Int, dims: d)
        let want = c["fid"] as! Double
        let got = try frechetDistance(a, b)
        #expect(abs(got - want) <= 1e-6 * abs(want), "\(name): FID \(got), scipy \(want), relative \(abs(got - want) / abs(want))")
        // Symmetric in its arguments, zero against itself.
        #expect(abs(try frechetDistance(b, a) - got) <= 1e-7 * abs(got))
        #expect(abs(try frechetDistance(a, a)) <= 1e-7 * max(1, a.sigma.enumerated().filter { $0.offset % (d + 1) == 0 }.map(\.element).reduce(0, +)))
    }

    @Test func npzStatisticsRoundTrip() throws {
        // The golden was written by np.savez_compressed (deflated), as pytorch-fid's save_fid_stats does.
        let stats = try FeatureStatistics.loadNPZ(goldens.appendingPathComponent("frechet.npz").path)
        let file = try SafeTensorsFile(path: goldens.appendingPathComponent("frechet.safetensors").path)
        let direct = try FeatureStatistics(features: file.floats("full_rank_16.a"), count: 300, dims: 16)
        #expect(stats.dims == 16)
        for i in 0..<16 { #expect(abs(stats.mu[i] - direct.mu[i]) <= 1e-12 + 1e-9 * abs(direct.mu[i])) }
        for i in 0..<(16 * 16) { #expect(abs(stats.sigma[i] - direct.sigma[i]) <= 1e-12 + 1e-9 * abs(direct.sigma[i])) }
        // Our writer (stored entries) reads back exactly.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("stats-\(freshSeed()).npz").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try direct.saveNPZ(path)
        let back = try FeatureStatistics.loadNPZ(path)
        #expect(back.mu == direct.mu && back.sigma == direct.sigma)
    }

    @Test func npzErrorsNameTheProblem() throws {
        let dir = FileManager.default.temporaryDirectory
        let bad = dir.appendingPathComponent("bad-\(freshSeed()).npz")
        try Data("not a zip at all, just some text".utf8).write(to: bad)
        defer { try? FileManager.default.removeItem(at: bad) }
        let e1 = #expect(throws: ModelError.self) { try FeatureStatistics.loadNPZ(bad.path) }
        #expect(e1?.message.contains("not a .npz") == true)
        let other = dir.appendingPathComponent("other-\(freshSeed()).npz")
        try NumPy.saveNPZ([("features", NumPyArray(shape: [2], values: [1, 2]))], to: other.path)
        defer { try? FileManager.default.removeItem(at: other) }
        let e2 = #expect(throws: ModelError.self) { try FeatureStatistics.loadNPZ(other.path) }
        #expect(e2?.message.contains("`mu` and `sigma`") == true)
        let a = FeatureStatistics(mu: [0, 0], sigma: [1, 0, 0, 1]), b = FeatureStatistics(mu: [0], sigma: [1])
        #expect(throws: ModelError.self) { try frechetDistance(a, b) }
    }
}
