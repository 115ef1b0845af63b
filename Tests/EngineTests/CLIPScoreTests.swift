// CLIP score against transformers and Pillow: a random-weight CLIPModel at ViT-L/14's layout (reduced
// width; scripts/goldens/make_clip_goldens.py) — CLIPImageProcessor's pixel values of three PNGs
// (no resize, a grey upscale, an RGB downscale: Pillow's bicubic byte for byte), both towers'
// projected embeddings (relative L2 ≤ 1e-4 on every GEMM path) and the per-pair scores (≤ 1e-3 of
// 100·cos); Pillow's filter on random sizes against a direct float evaluation; the folder's errors.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct CLIPScoreTests {
    static let dir = goldens.appendingPathComponent("clip-vit-l14-layout")

    static func pngs() throws -> [Image8] {
        let folder = dir.appendingPathComponent("images")
        return try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".png") }.sorted().map { name in
            let set = try ImageSet.load(folder.appendingPathComponent(name).path)
            return Image8(modelSpace: set.values[...], channels: set.channels, height: set.height, width: set.width)
        }
    }

    @Test func pixelValuesEqualCLIPImageProcessor() throws {
        let golden = try SafeTensorsFile(path: Self.dir.appendingPathComponent("golden.safetensors").path)
        let want = try golden.floats("pixel_values"), images = try Self.pngs()
        #expect(images.map { "\($0.width)×\($0.height)×\($0.channels)" } == ["224×224×3", "150×100×1", "260×300×3"])
        let processing = try CLIPImageProcessing.load(from: Self.dir.appendingPathComponent("preprocessor_config.json"))
        // (Foundation's JSON reader on Linux gives 1/255 within an ulp or two, not always 1/255 itself.)
        var defaults = CLIPImageProcessing(); defaults.rescaleFactor = processing.rescaleFactor
        #expect(processing == defaults && abs(processing.rescaleFactor! * 255 - 1) < 1e-14)
        #expect(CLIPImageProcessing.resizedSize(height: 100, width: 150, shortestEdge: 224) == (224, 336))
        #expect(CLIPImageProcessing.resizedSize(height: 300, width: 260, shortestEdge: 224) == (258, 224))
        let plane = 3 * 224 * 224
        for (i, im) in images.enumerated() {
            let got = processing.pixelValues(im)
            #expect(got.height == 224 && got.width == 224)
            // (The golden is float16: 2^-10 relative. One 8-bit level is 1/255/std ≈ 0.0146.)
            expectClose(got.values, Array(want[(i * plane)..<((i + 1) * plane)]), atol: 3e-3, rtol: 1e-3, "pixel values of image \(i)")
        }
    }

    @Test(arguments: gemmPaths())
    func embeddingsAndScoresMatchTransformers(path: GemmPath) throws {
        let golden = try SafeTensorsFile(path: Self.dir.appendingPathComponent("golden.safetensors").path)
        let model = try CLIPModel(path: Self.dir.path, stream: ComputeStream(gemm: path), batch: 2)
        #expect(model.config.vision.patchSize == 14 && model.config.vision.positions == 257 && model.config.text.eosTokenID == 2)
        #expect(model.tokenizer == nil)
        // Three images through a batch of 2: two forward passes.
        let images = try model.imageEmbeddings(try Self.pngs())
        let (e1, w1) = relativeL2(images.flatMap { $0 }, try golden.floats("image_embeds"))
        #expect(e1 <= 1e-4, "image_embeds via \(path): relative L2 \(e1) at [\(w1)]")
        let flat = try golden.floats("input_ids")
        let ids = stride(from: 0, to: flat.count, by: 77).map { flat[$0 ..< $0 + 77].map { Int($0) } }
        let texts = try model.textEmbeddings(ids: ids)
        let (e2, w2) = relativeL2(texts.flatMap { $0 }, try golden.floats("text_embeds"))
        #expect(e2 <= 1e-4, "text_embeds via \(path): relative L2 \(e2) at [\(w2)]")
        let scores = zip(images, texts).map { CLIPScore.pairScore($0, $1) }
        let want = try golden.floats("scores").map(Double.init)
        for (g, w) in zip(scores, want) { #expect(abs(g - w) <= 1e-3, "score \(g) against transformers' \(w) via \(path)") }
        #expect(CLIPScore.metric(scores) == max(0, scores.reduce(0, +) / 3))
        #expect(CLIPScore.metric([-5, 3]) == 0 && CLIPScore.metric([30, 20]) == 25)
    }

    /// Pillow's fixed-point filter against the same filter evaluated in Double (rounded once): they
    /// differ by at most one level per pass, on random sizes up and down.
    @Test func bicubicResizeIsPillowsFilter() throws {
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        for _ in 0..<6 {
            let (w, h) = (Int.random(in: 3...40, using: &rng), Int.random(in: 3...40, using: &rng))
            let (ow, oh) = (Int.random(in: 1...60, using: &rng), Int.random(in: 1...60, using: &rng))
            let im = Image8(width: w, height: h, channels: 1, pixels: (0..<(w * h)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            let got = im.resizedBicubic(width: ow, height: oh)
            // Reference: separable, Double, with Pillow's support, centre and normalisation.
            func weights(_ inSize: Int, _ outSize: Int, _ o: Int) -> (Int, [Double]) {
                let scale = Double(inSize) / Double(outSize), fs = max(scale, 1), support = 2 * fs, centre = (Double(o) + 0.5) * scale
                let lo = max(0, Int(centre - support + 0.5)), hi = min(inSize, Int(centre + support + 0.5))
                var k = (lo..<hi).map { x -> Double in
                    let t = abs((Double(x) - centre + 0.5) / fs)
                    return t < 1 ? (1.5 * t - 2.5) * t * t + 1 : t < 2 ? (((t - 5) * t + 8) * t - 4) * -0.5 : 0
                }
                let s = k.reduce(0, +); k = k.map { $0 / s }
                return (lo, k)
            }
            var mid = [Double](repeating: 0, count: ow * h)
            for y in 0..<h {
                for x in 0..<ow {
                    let (lo, k) = ow == w ? (x, [1.0]) : weights(w, ow, x)
                    let v = k.enumerated().reduce(0) { $0 + $1.element * Double(im.pixels[y * w + lo + $1.offset]) }
                    mid[y * ow + x] = min(255, max(0, v.rounded()))
                }
            }
            for y in 0..<oh {
                let (lo, k) = oh == h ? (y, [1.0]) : weights(h, oh, y)
                for x in 0..<ow {
                    let v = min(255, max(0, k.enumerated().reduce(0) { $0 + $1.element * mid[(lo + $1.offset) * ow + x] }.rounded()))
                    #expect(abs(Double(got.pixels[y * ow + x]) - v) <= 2, "\(w)×\(h) → \(ow)×\(oh) at (\(x), \(y)): \(got.pixels[y * ow + x]) vs \(v) (seed \(seed))")
                }
            }
        }
        // Same size: the image itself, as Pillow's resize returns a copy.
        let im = Image8(width: 5, height: 4, channels: 3, pixels: (0..<60).map { UInt8($0 * 4) })
        #expect(im.resizedBicubic(width: 5, height: 4) == im)
    }

    @Test func badFoldersAreRefused() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("clip-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let stream = try ComputeStream()
        expectError(containing: ["does not exist"]) { _ = try CLIPModel(path: tmp.appendingPathComponent("none").path, stream: stream, batch: 1) }
        for name in ["config.json", "model.safetensors", "preprocessor_config.json"] {
            try FileManager.default.copyItem(at: Self.dir.appendingPathComponent(name), to: tmp.appendingPathComponent(name))
        }
        var config = try String(contentsOf: tmp.appendingPathComponent("config.json"), encoding: .utf8)
        let good = config
        config = config.replacingOccurrences(of: "\"model_type\": \"clip\"", with: "\"model_type\": \"siglip\"")
        try config.write(to: tmp.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        expectError(containing: ["model_type siglip", "not a CLIP model"]) { _ = try CLIPModel(path: tmp.path, stream: stream, batch: 1) }
        config = good.replacingOccurrences(of: "\"patch_size\": 14", with: "\"patch_size\": 15")
        try config.write(to: tmp.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        expectError(containing: ["image_size 224", "patch_size 15"]) { _ = try CLIPModel(path: tmp.path, stream: stream, batch: 1) }
        config = good.replacingOccurrences(of: "\"num_hidden_layers\": 3", with: "\"num_hidden_layers\": 4")
        try config.write(to: tmp.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        expectError(containing: ["missing tensor", "vision_model.encoder.layers.3"]) { _ = try CLIPModel(path: tmp.path, stream: stream, batch: 1) }
        try good.write(to: tmp.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        var processor = try String(contentsOf: tmp.appendingPathComponent("preprocessor_config.json"), encoding: .utf8)
        processor = processor.replacingOccurrences(of: "\"resample\": 3", with: "\"resample\": 2")
        try processor.write(to: tmp.appendingPathComponent("preprocessor_config.json"), atomically: true, encoding: .utf8)
        expectError(containing: ["resample = 2", "bicubic"]) { _ = try CLIPModel(path: tmp.path, stream: stream, batch: 1) }
        try FileManager.default.removeItem(at: tmp.appendingPathComponent("preprocessor_config.json"))
        let model = try CLIPModel(path: tmp.path, stream: stream, batch: 1)   // (CLIP's defaults without one)
        expectError(containing: ["no tokenizer files"]) { _ = try model.tokenIDs(["a shoe"]) }
    }
}
