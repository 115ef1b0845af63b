// The sampling loop against diffusers' DDIMPipeline loop, determinism of the seeded noise, and PNG output.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct SamplerTests {
    /// 10 DDIM steps (eta 0) from the same noise as diffusers: relative L2 ≤ 1e-3 on the final sample.
    @Test func ddimMatchesDiffusersLoop() throws {
        let dir = goldens.appendingPathComponent("cifar-layout")
        let golden = try SafeTensorsFile(path: dir.appendingPathComponent("ddim10.safetensors").path)
        let shape = golden.tensors["noise"]!.shape
        let unet = try UNet(folder: ModelFolder(path: dir.path), stream: ComputeStream(), batch: shape[0], height: shape[2], width: shape[3])
        let sampler = try Sampler(unet: unet, scheduler: DDIMScheduler(configuration: SchedulerConfiguration(), steps: 10))
        var unused = NoiseStreams(seed: 0).variance(images: 0..<shape[0], imageSize: shape[1] * shape[2] * shape[3])
        let got = try sampler.run(noise: try golden.floats("noise"), noiseSource: &unused)
        let want = try golden.floats("sample")
        let (err, worst) = relativeL2(got, want)
        #expect(err <= 1e-3, "DDIM 10 steps: relative L2 \(err); worst [\(worst)] got \(got[worst]) want \(want[worst])")
    }

    @Test func seededNoiseIsDeterministicAndGaussian() {
        var a = GaussianNoise(seed: 42), b = GaussianNoise(seed: 42), c = GaussianNoise(seed: 43)
        let x = a.fill(20_000), y = b.fill(20_000), z = c.fill(20_000)
        #expect(x == y)
        #expect(x != z)
        let mean = x.reduce(0, +) / Float(x.count)
        let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(x.count)
        #expect(abs(mean) < 0.03 && abs(variance - 1) < 0.05, "mean \(mean), variance \(variance)")
        // The definition is part of the format: pin the first values.
        var d = GaussianNoise(seed: 0)
        let first = d.fill(2)
        #expect(first.allSatisfy { $0.isFinite && abs($0) < 6 })
        // Skip-ahead: the stream from any position equals the stream drawn up to it.
        for position in [0, 1, 2, 7, 784, 785, 19_999] {
            var g = GaussianNoise(seed: 42, position: position)
            #expect(g.fill(1)[0] == x[position], "position \(position)")
        }
    }

    /// Image i's noise (initial and variance) is the same whatever batch it is generated in: a
    /// 7-image DDPM run in batches of 3 equals one in batches of 4, and image 5 alone.
    @Test func imagesDoNotDependOnTheBatch() throws {
        let folder = try ModelFolder(path: DefaultModel.folder())
        let config = try UNetConfiguration.load(from: folder.configURL)
        let stream = try ComputeStream()
        let scheduler = try folder.schedulerConfiguration()
        let plan = StepPlan.teacher(PlanSampler(scheduler: .ddpm, steps: 4))
        let noise = GenerationNoise(seed: freshSeed())
        func run(batch: Int, count: Int, images: Range<Int>? = nil) throws -> [Float] {
            let unet = try UNet(folder: folder, stream: stream, batch: batch, height: 28, width: 28)
            let pipeline = try GenerationPipeline(unet: unet, schedulerConfiguration: scheduler)
            var out: [Float] = []
            try pipeline.generate(plan: plan, noise: noise, count: count) { out += try $0.download() }
            return out
        }
        let size = config.inChannels * 28 * 28
        let three = try run(batch: 3, count: 7), four = try run(batch: 4, count: 7)
        #expect(three.count == 7 * size)
        expectClose(three, four, atol: 1e-4, rtol: 1e-4, "batches of 3 vs 4 (seed \(noise.seed))")
        // A DDPM run from another seed differs (the variance noise is drawn).
        var other: [Float] = []
        let unet = try UNet(folder: folder, stream: stream, batch: 4, height: 28, width: 28)
        try GenerationPipeline(unet: unet, schedulerConfiguration: scheduler)
            .generate(plan: plan, noise: GenerationNoise(seed: noise.seed &+ 1), count: 4) { other += try $0.download() }
        #expect(zip(other, four).map { abs($0 - $1) }.max()! > 0.1)
        // Stopping from the progress handler ends the run after that step, with no batch delivered.
        var batches = 0
        let done = try GenerationPipeline(unet: unet, schedulerConfiguration: scheduler)
            .generate(plan: plan, noise: noise, count: 8, progress: { $0.stepsDone == 2 ? .stop : .proceed }) { _ in batches += 1 }
        #expect(!done && batches == 0)
    }

    /// NaN in the initial noise (as in a bad --noise file) is reported with the images it reached,
    /// never handed on as samples.
    @Test func nonFiniteSamplesAreAnError() throws {
        let folder = try ModelFolder(path: DefaultModel.folder())
        let config = try UNetConfiguration.load(from: folder.configURL)
        let unet = try UNet(folder: folder, stream: ComputeStream(), batch: 2, height: 28, width: 28)
        let pipeline = try GenerationPipeline(unet: unet, schedulerConfiguration: try folder.schedulerConfiguration())
        var rng = SplitMix64(seed: freshSeed())
        var initial = (0..<(3 * config.inChannels * 28 * 28)).map { _ in Float.random(in: -1..<1, using: &rng) }
        initial[2 * config.inChannels * 28 * 28 + 5] = .nan   // image 2, in the second batch
        var delivered = 0
        expectError(containing: ["images 2…2", "non-finite", "image 2"]) {
            try pipeline.generate(plan: StepPlan.teacher(PlanSampler(scheduler: .ddim, steps: 2)), noise: GenerationNoise(seed: 0, initial: initial),
                                  count: 3) { delivered += try $0.download().count }
        }
        #expect(delivered == 2 * config.inChannels * 28 * 28, "the first batch, all finite, is delivered")
    }

    @Test func pngHasValidStructure() throws {
        var rng = SeededGenerator(seed: freshSeed())
        let images = randomArray(2 * 3 * 5 * 7, &rng, in: -1.2...1.2)
        let g = PNG.grid(images, count: 2, channels: 3, height: 5, width: 7)
        #expect(g.width == 2 * 9 + 2 && g.height == 5 + 4)
        let png = [UInt8](PNG.encode(width: g.width, height: g.height, channels: 3, pixels: g.pixels))
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        #expect(Array(png.suffix(12)) == [0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82])
        #expect(PNG.pixels(-1) == 0 && PNG.pixels(1) == 255 && PNG.pixels(0) == 128 && PNG.pixels(7) == 255)
        // The first image's top-left pixel lands inside the border, converted as diffusers converts.
        let first = g.pixels[((2 * g.width) + 2) * 3]
        #expect(first == PNG.pixels(images[0]))
    }

    /// Outputs written batch by batch (what generate does, holding one batch) are the files written
    /// at once: grid, PNG folder and tensor, byte for byte; an unfinished writer leaves no file.
    @Test func outputsWrittenByBatchEqualOutputsWrittenAtOnce() throws {
        var rng = SeededGenerator(seed: freshSeed())
        let shape = [5, 3, 4, 6], samples = randomArray(5 * 3 * 4 * 6, &rng, in: -1.2...1.2)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-writer-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func outputs(_ tag: String) -> SampleOutputs {
            SampleOutputs(grid: dir.appendingPathComponent("\(tag).png").path, folder: dir.appendingPathComponent(tag).path,
                          tensor: dir.appendingPathComponent("\(tag).safetensors").path)
        }
        let once = outputs("once"), batched = outputs("batched")
        try once.prepare(channels: 3); try batched.prepare(channels: 3)
        try once.write(samples, shape: shape)
        let writer = try SampleWriter(batched, shape: shape)
        let size = 3 * 4 * 6
        for images in [0..<2, 2..<4, 4..<5] { try writer.append(samples[(images.lowerBound * size)..<(images.upperBound * size)], images: images) }
        try writer.finish()
        for (a, b) in [(once.grid!, batched.grid!), (once.tensor!, batched.tensor!)] + (0..<5).map({ i in
            (once.folder! + String(format: "/%05d.png", i), batched.folder! + String(format: "/%05d.png", i)) }) {
            #expect(try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b)), "\(b)")
        }
        #expect(try SafeTensorsFile(path: batched.tensor!).floats("sample") == samples)
        // Dropped before finish() (a failed or interrupted run): no tensor file, no temporary, none of
        // the folder's PNGs it wrote — and the files that were there before stay.
        let unfinished = SampleOutputs(folder: dir.appendingPathComponent("unfinished").path,
                                       tensor: dir.appendingPathComponent("unfinished.safetensors").path)
        try FileManager.default.createDirectory(atPath: unfinished.folder!, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: unfinished.folder! + "/notes.txt"))
        try unfinished.prepare(channels: 3)
        do { let w = try SampleWriter(unfinished, shape: shape); try w.append(samples[..<(2 * size)], images: 0..<2) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains("unfinished.") }.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: unfinished.folder!) == ["notes.txt"])
        // A folder the writer made is gone again; a folder of PNGs from before is refused before any work.
        let fresh = SampleOutputs(folder: dir.appendingPathComponent("fresh").path)
        try fresh.prepare(channels: 3)
        do { let w = try SampleWriter(fresh, shape: shape); try w.append(samples[..<(2 * size)], images: 0..<2) }
        #expect(!FileManager.default.fileExists(atPath: fresh.folder!))
        expectError(containing: ["holds 5 PNG files from before"]) { try batched.prepare(channels: 3) }
    }

    /// No output may be an input or another output, or replace a search's results: refused before any work.
    @Test func outputsThatWouldClobberAreRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-clobber-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        try Data("a\n".utf8).write(to: URL(fileURLWithPath: path("prompts.txt")))
        try FileManager.default.createSymbolicLink(atPath: path("link.png"), withDestinationPath: path("prompts.txt"))
        expectError(containing: ["--out", "is --prompts", "would replace it"]) {
            try SampleOutputs(grid: path("link.png")).prepare(channels: 1, inputs: [NamedPath("--prompts", path("prompts.txt"))])
        }
        expectError(containing: ["same file"]) {
            try SampleOutputs(tensor: path("x.safetensors")).prepare(channels: 1, also: [NamedPath("--output-latents", dir.path + "/./x.safetensors")])
        }
        expectError(containing: ["give it a .png name"]) { try SampleOutputs(grid: path("x.jpg")).prepare(channels: 1) }
        expectError(containing: ["give a file name"]) { try SampleOutputs(grid: "-").prepare(channels: 1) }
        expectError(containing: ["does not exist"]) { try SampleOutputs(grid: path("nodir/x.png")).prepare(channels: 1) }
        try Data(#"{"format": "flexiffusion-search", "version": 2}"#.utf8).write(to: URL(fileURLWithPath: path("s.json")))
        expectError(containing: ["holds a search's results"]) { try OutputCheck.check(outputs: [NamedPath("--out", path("s.json"))], inputs: []) }
        try OutputCheck.check(outputs: [NamedPath("--out", path("s.json"))], inputs: [], ownResults: [path("s.json")])
        // A model folder's own files are not replaced; a picture left there is not the model's.
        try FileManager.default.createDirectory(atPath: path("model"), withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: path("model/config.json")))
        try Data("png".utf8).write(to: URL(fileURLWithPath: path("model/old.png")))
        expectError(containing: ["is a file of --model"]) {
            try OutputCheck.check(outputs: [NamedPath("--out", path("model/config.json"))], inputs: [NamedPath("--model", path("model"))])
        }
        try OutputCheck.check(outputs: [NamedPath("--out", path("model/old.png"))], inputs: [NamedPath("--model", path("model"))])
        expectError(containing: ["is a file of A"]) {
            try OutputCheck.check(outputs: [NamedPath("--save-stats", path("model/old.png"))], inputs: [NamedPath("A", path("model"))])
        }
        let lock = try FileLock(for: path("s.json"), what: "search")
        expectError(containing: ["being written by another search", "process \(getpid())"]) { _ = try FileLock(for: path("s.json"), what: "search") }
        #expect(FileManager.default.fileExists(atPath: lock.path), "a refused lock leaves the holder's lock file")
        lock.release()
        #expect(!FileManager.default.fileExists(atPath: lock.path))
        _ = try FileLock(for: path("s.json"), what: "search")
    }
}
