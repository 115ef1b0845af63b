// Test support shared by the test targets: the device under test, seeded random inputs, the
// atol + rtol·|ref| comparison, and the check that an error names what it should.
import Foundation
import Engine
import GPUKernels
import Testing

/// The device the tests run on: $FLEXIFFUSION_DEVICE, else the default (PoCL's CPU device in CI).
public func testDevice() throws -> DeviceInfo { try OpenCLRuntime.select() }

/// The GEMM paths the test device supports (host-blas only on CPU devices).
public func gemmPaths() -> [GemmPath] {
    guard let d = try? testDevice() else { return [] }
    return GemmPath.allCases.filter { $0.runs(on: d) }
}

/// A seeded generator (SplitMix64), so that a failure can be replayed from its printed seed.
public typealias SeededGenerator = SplitMix64

/// A fresh seed per call (printed with every failure).
public func freshSeed() -> UInt64 { UInt64.random(in: 1...UInt64.max) }

public func randomArray(_ n: Int, _ rng: inout SeededGenerator, in range: ClosedRange<Float> = -1...1) -> [Float] {
    (0..<n).map { _ in Float.random(in: range, using: &rng) }
}

/// Records an issue unless |actual − expected| ≤ atol + rtol·|expected| everywhere; the message
/// names the worst element and the first few mismatches.
public func expectClose(_ actual: [Float], _ expected: [Float], atol: Float, rtol: Float, _ what: String,
                 seed: UInt64? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual.count == expected.count else {
        Issue.record("\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    var worst = -1, worstExcess: Float = -.infinity
    var mismatches: [Int] = []
    for i in expected.indices {
        let tol = atol + rtol * abs(expected[i])
        let diff = abs(actual[i] - expected[i])
        let excess = diff.isNaN ? .infinity : diff - tol
        if excess > worstExcess { worstExcess = excess; worst = i }
        if !(diff <= tol) { mismatches.append(i) }
    }
    if !mismatches.isEmpty {
        let first = mismatches.prefix(5).map { "[\($0)] got \(actual[$0]) want \(expected[$0])" }.joined(separator: ", ")
        Issue.record("""
            \(what): \(mismatches.count)/\(expected.count) elements outside atol \(atol) + rtol \(rtol)·|ref|; \
            worst [\(worst)] got \(actual[worst]) want \(expected[worst]) (|diff| \(abs(actual[worst] - expected[worst]))); \
            first: \(first)\(seed.map { "; seed \($0)" } ?? "")
            """, sourceLocation: sourceLocation)
    }
}

/// The embedded default model on the default device: a DDIM sampler with `steps` steps for batches
/// of `batch`, and the domain feature network for the same batch (rFID and search tests).
public func defaultModelSampler(batch: Int, steps: Int) throws -> (folder: ModelFolder, sampler: Sampler, features: FashionFeatureNet) {
    let folder = try ModelFolder(path: DefaultModel.folder())
    let config = try UNetConfiguration.load(from: folder.configURL)
    let stream = try ComputeStream()
    let unet = try UNet(config: config, weights: WeightStore(file: SafeTensorsFile(path: folder.weightsURL.path)),
                        stream: stream, batch: batch, height: 28, width: 28)
    let scheduler = try DDIMScheduler(configuration: SchedulerConfiguration.load(from: folder.schedulerConfigURL!), steps: steps)
    return (folder, try Sampler(unet: unet, scheduler: scheduler),
            try FashionFeatureNet(folder: DefaultModel.featureNetFolder(), stream: stream, batch: batch))
}

/// Runs `body`, which must throw an error whose description contains every one of `needles`.
public func expectError(containing needles: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("no error; expected one mentioning \(needles)", sourceLocation: sourceLocation)
    } catch {
        let text = "\(error)"
        for n in needles where !text.contains(n) {
            Issue.record("error «\(text)» does not mention «\(n)»", sourceLocation: sourceLocation)
        }
    }
}
