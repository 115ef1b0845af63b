// FID's Inception-v3 on the engine. The resize against F.interpolate and the graph's plumbing (random
// weights) run everywhere; parity with the TorchScript network (Goldens/inception.safetensors, written
// by scripts/goldens/make_inception_goldens.py) needs the converted weights (scripts/tools/convert_inception.py;
// ~87 MB, never committed) and is reported as skipped, with the reason, where they are absent.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct InceptionTests {
    static let golden = try! SafeTensorsFile(path: goldens.appendingPathComponent("inception.safetensors").path)
    static let weightsPresent = FileManager.default.fileExists(
        atPath: URL(fileURLWithPath: InceptionV3FID.defaultFolder()).appendingPathComponent("model.safetensors").path)

    /// The resize kernel against PyTorch's F.interpolate(bilinear, align_corners=False).
    @Test(arguments: [("resize_a", 13, 11), ("resize_b", 61, 47)])
    func resizeMatchesPyTorch(_ name: String, _ oh: Int, _ ow: Int) throws {
        let s = try ComputeStream(device: testDevice())
        let info = Self.golden.tensors["\(name)_input"]!
        let (n, c, h, w) = (info.shape[0], info.shape[1], info.shape[2], info.shape[3])
        let y = try s.buffer(n * c * oh * ow)
        try s.resizeBilinear(try s.upload(try Self.golden.floats("\(name)_input")), output: y, batch: n, channels: c,
                             height: h, width: w, outChannels: c, outHeight: oh, outWidth: ow)
        expectClose(try s.download(y), try Self.golden.floats("\(name)_output"), atol: 1e-6, rtol: 1e-5, "\(name) vs F.interpolate", seed: 0)
    }

    /// With random weights: features are finite, ReLU-averaged (≥ 0) and differ between images; a
    /// batch run in chunks reads each chunk's own images and writes each image's row (swapping the
    /// halves of the batch swaps the feature rows, written at any row offset).
    @Test func chunksReadAndWriteTheirOwnImages() throws {
        let s = try ComputeStream(device: testDevice())
        let images = try Self.golden.floats("grey_images")   // 4 × 1 × 28 × 28
        let net = try InceptionV3FID(weights: WeightStore(randomSeed: 7), fingerprint: "random", stream: s,
                                     batch: 4, channels: 1, height: 28, width: 28, chunk: 2)
        #expect(net.chunk == 2)
        let half = 2 * 28 * 28
        let swapped = Array(images[half...]) + Array(images[..<half])
        let a = try s.buffer(4 * 2048), b = try s.buffer(6 * 2048)
        try net.extract(try s.upload(images), into: a, row: 0)
        try net.extract(try s.upload(swapped), into: b, row: 2)
        let fa = try s.download(a), fb = Array(try s.download(b)[(2 * 2048)...])
        #expect(fa.allSatisfy { $0.isFinite && $0 >= 0 })
        let rows = (0..<4).map { Array(fa[($0 * 2048)..<(($0 + 1) * 2048)]) }
        for i in 1..<4 {
            // Random deep networks map images close together; different images still differ well above rounding.
            #expect(zip(rows[0], rows[i]).map { abs($0 - $1) }.max()! > 1e-5 * rows[0].map(abs).max()!, "images 0 and \(i) gave the same features")
        }
        // Each chunk runs the same launches on the same shapes: the rows are bit-identical.
        expectClose(fb, Array(fa[(2 * 2048)...]) + Array(fa[..<(2 * 2048)]), atol: 0, rtol: 0, "swapped halves at row 2", seed: 7)
    }

    @Test func missingWeightsAndBadInputAreClearErrors() throws {
        let s = try ComputeStream(device: testDevice())
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("no-inception-\(UUID().uuidString)")
        #expect(throws: ModelError.self) {
            try InceptionV3FID(folder: empty.path, stream: s, batch: 2, channels: 1, height: 28, width: 28)
        }
        do {
            _ = try InceptionV3FID(folder: empty.path, stream: s, batch: 2, channels: 1, height: 28, width: 28)
        } catch let e as ModelError {
            #expect(e.message.contains("convert_inception.py"), "the error should say how to make the weights: \(e.message)")
        }
        #expect(throws: ModelError.self) {
            try InceptionV3FID(weights: WeightStore(randomSeed: 1), fingerprint: "", stream: s, batch: 2, channels: 4, height: 28, width: 28)
        }
    }

    /// Features of real images (Fashion-MNIST, grey and colour) within 1e-3 relative (L2, per image)
    /// of the TorchScript network's, resize included.
    @Test(.enabled(if: weightsPresent, "no converted Inception-v3 weights at \(InceptionV3FID.defaultFolder()): run scripts/tools/convert_inception.py (see its header) to enable this parity test"),
          arguments: ["grey", "rgb"])
    func featuresMatchTorchScript(_ kind: String) throws {
        let s = try ComputeStream(device: testDevice())
        let info = Self.golden.tensors["\(kind)_images"]!
        let (n, c, h, w) = (info.shape[0], info.shape[1], info.shape[2], info.shape[3])
        let net = try InceptionV3FID(folder: InceptionV3FID.defaultFolder(), stream: s, batch: n, channels: c, height: h, width: w)
        let features = try s.buffer(n * 2048)
        try net.extract(try s.upload(try Self.golden.floats("\(kind)_images")), into: features, row: 0)
        let got = try s.download(features), want = try Self.golden.floats("\(kind)_features")
        var worst = 0.0
        for i in 0..<n {
            let g = got[(i * 2048)..<((i + 1) * 2048)].map(Double.init), r = want[(i * 2048)..<((i + 1) * 2048)].map(Double.init)
            let err = zip(g, r).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot() / r.map { $0 * $0 }.reduce(0, +).squareRoot()
            worst = max(worst, err)
            #expect(err <= 1e-3, "\(kind) image \(i): relative L2 error \(err) against the TorchScript features")
        }
        print("Inception-v3 parity (\(kind), \(n) images \(c)×\(h)×\(w), \(s.device.name)): worst relative L2 error \(worst)")
    }
}
