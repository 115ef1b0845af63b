// `flexiffusion generate`: sample images with DDIM or DDPM and write a PNG grid, PNG files and/or
// the final samples as a tensor file.
import ArgumentParser
import Engine
import Foundation
import GPUKernels

enum SchedulerKind: String, ExpressibleByArgument, CaseIterable { case ddim, ddpm }

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate images with a diffusers UNet and DDIM or DDPM sampling.",
        discussion: """
            The scheduler's settings come from the model folder's scheduler config when it has one (as \
            diffusers' `XScheduler.from_config` would build it), else diffusers' defaults. Initial noise is \
            drawn from --seed (see Sources/Engine/Noise.swift for the exact generator), the same on every \
            run and device, unless --noise gives it. Outputs are written to temporary files and renamed, \
            so an error never leaves a partial file.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @Option(help: "Diffusers pipeline or UNet folder (default: \(DefaultModel.summary)).") var model: String?
    @Option(help: "ddim or ddpm (default: ddim, or the plan's).") var scheduler: SchedulerKind?
    @Option(help: "Sampling steps (default: 50 for DDIM, 1000 for DDPM, or the plan's).") var steps: Int?
    @Option(help: "DDIM's eta (default: 0, deterministic, or the plan's).") var eta: Float?
    @Option(help: "Step plan (from `flexiffusion plan` or the search): which steps are full, partial or null. Sets the sampler, steps and eta.") var plan: String?
    @Option(help: "Number of images (default: 64, or the noise file's batch).") var count: Int?
    @Option(help: "Images per forward pass.") var batch = 64
    @Option(help: "Seed of the initial noise.") var seed: UInt64 = 0
    @Option(help: "safetensors file with the initial noise as tensor `sample` [N, C, H, W].") var noise: String?
    @Option(name: .customLong("output-tensor"), help: "Write the final samples in model space ([-1, 1]) as tensor `sample`.") var outputTensor: String?
    @Option(help: "Write one PNG grid of all images here (default: samples.png when no other output is given).") var out: String?
    @Option(name: .customLong("out-dir"), help: "Write one PNG per image into this folder.") var outDir: String?

    func run() throws {
        let model = try self.model ?? DefaultModel.folder()
        let folder = try ModelFolder(path: model)
        let config = try UNetConfiguration.load(from: folder.configURL)
        guard config.outChannels == config.inChannels else {
            throw ModelError("\(model): out_channels \(config.outChannels) differs from in_channels \(config.inChannels); sampling needs a model that predicts the sample's shape")
        }
        let schedulerConfig = try folder.schedulerConfiguration()
        var stepPlan: StepPlan? = nil
        if let plan {
            let p = try StepPlan.load(from: URL(fileURLWithPath: plan))
            do { try p.validate(branchCount: config.branchCount) } catch let e as ModelError { throw ModelError("\(plan): \(e.message)") }
            if let scheduler, scheduler.rawValue != p.sampler.scheduler { throw ValidationError("--scheduler \(scheduler) differs from the plan's \(p.sampler.scheduler)") }
            if let steps, steps != p.sampler.steps { throw ValidationError("--steps \(steps) differs from the plan's \(p.sampler.steps)") }
            if let eta, eta != p.sampler.eta { throw ValidationError("--eta \(eta) differs from the plan's \(p.sampler.eta)") }
            stepPlan = p
        }
        let scheduler = stepPlan.map { SchedulerKind(rawValue: $0.sampler.scheduler)! } ?? self.scheduler ?? .ddim
        let eta = stepPlan?.sampler.eta ?? self.eta ?? 0
        let steps = stepPlan?.sampler.steps ?? self.steps ?? (scheduler == .ddim ? 50 : schedulerConfig.numTrainTimesteps)
        let sched = try PlanSampler(scheduler: scheduler.rawValue, steps: steps, eta: eta).scheduler(configuration: schedulerConfig)
        if scheduler == .ddpm && eta != 0 { throw ValidationError("--eta applies to DDIM only") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }

        // The initial noise: from the file, or from the seed.
        var initial: [Float]
        var shape: [Int]
        if let noise {
            let file = try SafeTensorsFile(path: noise)
            guard let info = file.tensors["sample"] else { throw ModelError("\(noise): no tensor `sample`") }
            guard info.shape.count == 4, info.shape[1] == config.inChannels, info.shape.allSatisfy({ $0 > 0 }) else {
                throw ModelError("\(noise): `sample` has shape \(info.shape); the model needs [N, \(config.inChannels), H, W]")
            }
            if let count, count != info.shape[0] { throw ValidationError("--count \(count) differs from the noise file's \(info.shape[0]) images") }
            shape = info.shape
            initial = try file.floats("sample")
        } else {
            guard let side = config.sampleSize else { throw ModelError("the model's config has no sample_size; give --noise") }
            let n = count ?? 64
            guard n > 0 else { throw ValidationError("--count must be positive") }
            shape = [n, config.inChannels, side, side]
            var g = GaussianNoise(seed: seed)
            initial = g.fill(shape.reduce(1, *))
        }
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        guard c == 1 || c == 3 || (out == nil && outDir == nil && outputTensor != nil) else {
            throw ValidationError("PNG output needs 1 or 3 channels; the model has \(c) (use --output-tensor)")
        }
        let gridPath = out ?? (outDir == nil && outputTensor == nil ? "samples.png" : nil)
        for path in [gridPath, outputTensor].compactMap({ $0 }) {
            let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
            guard FileManager.default.isWritableFile(atPath: dir) else { throw ValidationError("cannot write \(path): folder \(dir) does not exist or is not writable") }
        }
        if let outDir {
            try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        }

        let stream = try ComputeStream(device: try OpenCLRuntime.select(deviceOptions.device))
        let per = min(batch, n)
        let unet = try UNet(config: config, weights: WeightStore(file: SafeTensorsFile(path: folder.weightsURL.path)),
                            stream: stream, batch: per, height: h, width: w)
        let sampler = try Sampler(unet: unet, scheduler: sched)
        if let stepPlan { try sampler.prepare(stepPlan) }
        var variance = GaussianNoise(seed: seed &+ 0x5DEECE66D)
        let label = "\(scheduler) \(steps) steps" + (stepPlan.map { " (\($0.fullSteps) full, \($0.partialSteps) partial, \($0.nullSteps) null)" } ?? "")
        let progress = ProgressBar(total: sched.timesteps.count * ((n + per - 1) / per), label: label)
        let image = c * h * w
        var result: [Float] = []
        result.reserveCapacity(n * image)
        var start = 0
        while start < n {
            let take = min(per, n - start)
            var chunk = Array(initial[(start * image)..<((start + take) * image)])
            // A last, smaller batch is padded with zeros (the UNet's batch is fixed) and the extra outputs dropped.
            if take < per { chunk += Array(repeating: 0, count: (per - take) * image) }
            let x = try sampler.run(noise: chunk, plan: stepPlan, noiseSource: &variance) { _, _ in progress.advance() }
            result += x.prefix(take * image)
            start += take
        }
        progress.finish()

        if let outputTensor { try SafeTensorsWriter.write([("sample", shape, result)], to: outputTensor) }
        if let gridPath {
            let g = PNG.grid(result, count: n, channels: c, height: h, width: w)
            try writeAtomically(PNG.encode(width: g.width, height: g.height, channels: c, pixels: g.pixels), to: gridPath)
        }
        if let outDir {
            for i in 0..<n {
                let px = (0..<(h * w)).flatMap { p in (0..<c).map { ch in PNG.pixels(result[(i * c + ch) * h * w + p]) } }
                try writeAtomically(PNG.encode(width: w, height: h, channels: c, pixels: px),
                                    to: URL(fileURLWithPath: outDir).appendingPathComponent(String(format: "%05d.png", i)).path)
            }
        }
        let wrote = [gridPath, outDir.map { "\($0)/ (\(n) PNGs)" }, outputTensor].compactMap { $0 }.joined(separator: ", ")
        FileHandle.standardError.write("\(n) images, \(label), \(String(format: "%.1f", progress.elapsed)) s on \(stream.device.name): wrote \(wrote)\n".data(using: .utf8)!)
    }
}

/// A progress bar with steps per second on a terminal (standard error); silent otherwise.
final class ProgressBar {
    let total: Int, label: String
    let interactive = isatty(2) != 0
    let start = DispatchTime.now().uptimeNanoseconds
    var done = 0
    init(total: Int, label: String) { self.total = total; self.label = label }
    var elapsed: Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

    func advance() {
        done += 1
        guard interactive else { return }
        let width = 30, filled = width * done / max(1, total)
        let rate = Double(done) / max(elapsed, 1e-9)
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        FileHandle.standardError.write(String(format: "\r%@ %@ %d/%d  %.1f steps/s  ETA %.0f s ", label, bar, done, total, rate, eta).data(using: .utf8)!)
    }

    func finish() { if interactive { FileHandle.standardError.write("\n".data(using: .utf8)!) } }
}
