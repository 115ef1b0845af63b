// Fréchet distance against pytorch-fid's scipy computation (Goldens/frechet.*, written by
// scripts/goldens/make_fid_goldens.py), statistics on device against float64 host statistics, and
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
        let itself = try frechetDistance(a, a)
        #expect(itself >= 0 && itself <= 1e-7 * max(1, a.sigma.enumerated().filter { $0.offset % (d + 1) == 0 }.map(\.element).reduce(0, +)))
    }

    /// Kendall's τ-b as scipy.stats.kendalltau computes it (ties included), and the paired feature
    /// distance as a mean of per-row squared distances.
    @Test func rankAgreementAndPairedDistance() throws {
        #expect(abs(kendallTau([1, 2, 3, 4], [1, 3, 2, 4]) - 0.6666666666666669) < 1e-12)
        #expect(abs(kendallTau([1, 2, 2, 3, 5], [1, 3, 2, 3, 4]) - 0.8888888888888888) < 1e-12, "scipy's τ-b with ties")
        var rng = SplitMix64(seed: freshSeed())
        let v = (0..<20).map { _ in Double.random(in: 0..<1, using: &rng) }
        #expect(kendallTau(v, v) == 1 && kendallTau(v, v.map { -$0 }) == -1)
        #expect(kendallTau([1, 1, 1], [1, 2, 3]).isNaN, "no order on one side")
        let a = (0..<12).map { _ in Float.random(in: -1..<1, using: &rng) }, b = (0..<12).map { _ in Float.random(in: -1..<1, using: &rng) }
        let want = (0..<3).map { r in (0..<4).map { k in pow(Double(a[r * 4 + k]) - Double(b[r * 4 + k]), 2) }.reduce(0, +) }.reduce(0, +) / 3
        #expect(abs(RFIDEvaluator.pairedDistance(a, b, dims: 4) - want) <= 1e-12 * want)
        #expect(RFIDEvaluator.pairedDistance(a, a, dims: 4) == 0)
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
        // Not a covariance: a negative variance, or a non-symmetric matrix.
        for (sigma, fragment) in [([-1.0, 0, 0, 1], "negative variance"), ([1.0, 0.5, -0.5, 1], "not symmetric")] {
            let file = dir.appendingPathComponent("sigma-\(freshSeed()).npz")
            defer { try? FileManager.default.removeItem(at: file) }
            try NumPy.saveNPZ([("mu", NumPyArray(shape: [2], values: [0.3, -1])), ("sigma", NumPyArray(shape: [2, 2], values: sigma))], to: file.path)
            expectError(containing: [fragment, "sigma"]) { _ = try FeatureStatistics.loadNPZ(file.path) }
        }
    }
}

@Suite struct FeatureNetTests {
    /// The engine's feature network reproduces PyTorch's features and logits (scripts/tools/train_feature_net.py).
    @Test func matchesPyTorch() throws {
        let golden = try SafeTensorsFile(path: goldens.appendingPathComponent("feature-net.safetensors").path)
        let n = golden.tensors["images"]!.shape[0]
        let net = try FashionFeatureNet(folder: DefaultModel.featureNetFolder(), stream: ComputeStream(), batch: n)
        let images = try net.stream.upload(try golden.floats("images"))
        let features = try net.stream.buffer((n + 3) * net.dims)
        try net.extract(images, into: features, row: 3)
        let got = try net.stream.download(features).suffix(n * net.dims)
        expectClose(Array(got), try golden.floats("features"), atol: 1e-4, rtol: 1e-4, "features")
        expectClose(try net.logits(images), try golden.floats("logits"), atol: 1e-4, rtol: 1e-4, "logits")
    }

    /// ≥ 90 % accuracy on the Fashion-MNIST test set, classified on the engine (needs Debian's dataset-fashion-mnist).
    @Test func classifiesTheTestSet() throws {
        let path = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
        let images = try ImageSet.load(path)
        #expect(images.count == 10_000 && images.height == 28)
        let batch = 500
        let net = try FashionFeatureNet(folder: DefaultModel.featureNetFolder(), stream: ComputeStream(), batch: batch)
        let buffer = try net.stream.buffer(batch * images.imageSize)
        var predictions: [Int] = []
        for start in stride(from: 0, to: images.count, by: batch) {
            try buffer.write(Array(images.values[(start * images.imageSize)..<((start + batch) * images.imageSize)]), queue: net.stream.queue)
            let logits = try net.logits(buffer)
            for i in 0..<batch { predictions.append((0..<10).max { logits[i * 10 + $0] < logits[i * 10 + $1] }!) }
        }
        let labels = try ImageSet.loadIDXLabels("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
        let accuracy = Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(labels.count)
        #expect(accuracy >= 0.90, "test accuracy \(accuracy)")
        let recorded = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: DefaultModel.featureNetFolder()).appendingPathComponent("config.json"))) as! [String: Any]
        #expect(abs(accuracy - (recorded["test_accuracy"] as! Double)) < 0.002, "engine \(accuracy), recorded \(recorded["test_accuracy"]!)")
    }

    /// FID through the image loaders: two halves of the test set are close; the test set against noise is far.
    @Test func fidOfImageSets() throws {
        let images = try ImageSet.load("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", limit: 2000)
        let fid = try FIDStatistics(extractor: FashionFeatureNet(folder: DefaultModel.featureNetFolder(), stream: ComputeStream(), batch: 64))
        let half = images.count / 2
        let a = ImageSet(count: half, channels: 1, height: 28, width: 28, values: Array(images.values.prefix(half * 784)))
        let b = ImageSet(count: half, channels: 1, height: 28, width: 28, values: Array(images.values.suffix(half * 784)))
        var rng = SeededGenerator(seed: freshSeed())
        let noise = ImageSet(count: 300, channels: 1, height: 28, width: 28, values: randomArray(300 * 784, &rng))
        let sa = try fid.statistics(of: a), sb = try fid.statistics(of: b), sn = try fid.statistics(of: noise)
        // Device statistics against float64 host statistics of the same features are checked in
        // PoolingTests; here: the ordering FID must give.
        let same = try frechetDistance(sa, sb), far = try frechetDistance(sa, sn)
        #expect(same >= 0 && same < 0.1 * far, "halves \(same), noise \(far)")
        #expect(throws: ModelError.self) { try fid.statistics(of: ImageSet(count: 2, channels: 3, height: 28, width: 28, values: randomArray(2 * 3 * 784, &rng))) }
    }
}


@Suite struct RFIDTests {
    /// rFID: the teacher against itself is 0, its features are cached under their own key and reused,
    /// and a plan's score equals the Fréchet distance of features taken from the pipeline's samples
    /// on the host (10 images in batches of 4: the last batch is filled from the stream).
    @Test func rfidPipeline() throws {
        let (folder, sampler, net) = try defaultModelSampler(batch: 4, steps: 10)
        let stream = net.stream
        let seed = freshSeed()
        let pipeline = try GenerationPipeline(unet: sampler.unet, schedulerConfiguration: folder.schedulerConfiguration())
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacher-\(seed)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = try RFIDEvaluator.modelKey(folder: folder)
        let evaluator = try RFIDEvaluator(pipeline: pipeline, extractor: net, teacher: sampler.teacherPlan, seed: seed, modelKey: key, cacheDirectory: dir)
        #expect(!evaluator.teacherCached(samples: 10))
        let teacher = try evaluator.teacherStatistics(samples: 10)
        #expect(teacher.count == 10 && teacher.dims == 128 && evaluator.teacherSeconds > 0)
        let again = try RFIDEvaluator(pipeline: pipeline, extractor: net, teacher: sampler.teacherPlan, seed: seed, modelKey: key, cacheDirectory: dir)
        #expect(again.teacherCached(samples: 10) && !again.teacherCached(samples: 13))
        #expect(try again.teacherStatistics(samples: 10) == teacher && again.teacherSeconds == 0)
        let other = try RFIDEvaluator(pipeline: pipeline, extractor: net, teacher: sampler.teacherPlan, seed: seed &+ 1, modelKey: key, cacheDirectory: dir)
        #expect(other.teacherKey != evaluator.teacherKey && !other.teacherCached(samples: 10))

        #expect(try evaluator.rfid(plan: sampler.teacherPlan, samples: 10).rfid < 1e-6)
        let plan = try StepPlan.deepCacheUniform(PlanSampler(steps: 10), interval: 5, branch: 0)
        let score = try evaluator.rfid(plan: plan, samples: 10).rfid
        #expect(score > 1e-2, "a cheap plan should differ from the teacher: rFID \(score)")
        // A plan on a sampler of its own (DDIM with 5 steps) is scored against the 10-step teacher, not
        // against its own steps all full (which gave it 0 before the teacher was explicit).
        let fewer = try evaluator.rfid(plan: StepPlan.ddim(steps: 5), samples: 10).rfid
        #expect(fewer > 1e-2, "DDIM 5 against the 10-step teacher: rFID \(fewer)")

        // The same images through the pipeline's sink, their features on the host.
        var features: [Float] = []
        let rows = try stream.buffer(4 * 128)
        try pipeline.generate(plan: plan, noise: GenerationNoise(seed: seed), count: 10) { batch in
            try net.extract(batch.output, into: rows, row: 0)
            features += try stream.download(rows).prefix(batch.images.count * 128)
        }
        let host = try FeatureStatistics(features: features, count: 10, dims: 128)
        #expect(abs(try frechetDistance(host, teacher) - score) <= 1e-6 * score + 1e-9)
    }
}

@Suite struct ImageSourceTests {
    /// Our PNG writer's output decodes to the same pixels (grey and RGB), in model space.
    @Test(arguments: [1, 3]) func pngRoundTrip(channels: Int) throws {
        var rng = SeededGenerator(seed: freshSeed())
        let (w, h) = (13, 7)
        let pixels = (0..<(w * h * channels)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let png = [UInt8](PNG.encode(width: w, height: h, channels: channels, pixels: pixels))
        let (c, gh, gw, values) = try PNGDecoder.decode(png, name: "test.png")
        #expect(c == channels && gh == h && gw == w)
        for p in 0..<(w * h) { for ch in 0..<channels {
            #expect(values[ch * w * h + p] == Float(pixels[p * channels + ch]) / 127.5 - 1)
        } }
        #expect(throws: ModelError.self) { try PNGDecoder.decode(Array(png.prefix(png.count / 2)), name: "half.png") }
    }
}
