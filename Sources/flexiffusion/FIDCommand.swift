// `flexiffusion fid` (FID between two image sets or statistics files) and `flexiffusion rfid`
// (plans scored against the teacher's samples from the same noise).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

/// `--features`: which network turns images into FID features.
struct FeatureOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Feature network: fashion (the embedded Fashion-MNIST classifier's 128-d penultimate layer, for 28×28 grey images), inception (FID's Inception-v3, 2048-d, from the folder scripts/convert_inception.py writes: $FLEXIFFUSION_INCEPTION or ~/.cache/flexiffusion/inception-v3-fid), or a folder holding either (config.json, model.safetensors).",
                               valueName: "fashion|inception|dir"))
    var features = "fashion"

    /// The network for batches of `batch` images of channels × height × width.
    func extractor(stream: ComputeStream, batch: Int, channels: Int, height: Int, width: Int) throws -> FeatureExtractor {
        func inception(_ folder: String) throws -> FeatureExtractor {
            try InceptionV3FID(folder: folder, stream: stream, batch: batch, channels: channels, height: height, width: width)
        }
        switch features {
        case "fashion": return try FashionFeatureNet(folder: DefaultModel.featureNetFolder(), stream: stream, batch: batch)
        case "inception": return try inception(InceptionV3FID.defaultFolder())
        default:
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: features, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--features \(features): not fashion, not inception and not a feature-network folder")
            }
            let config = URL(fileURLWithPath: features).appendingPathComponent("config.json")
            if let data = try? Data(contentsOf: config), let raw = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               raw["_class_name"] as? String == "InceptionV3FID" {
                return try inception(features)
            }
            return try FashionFeatureNet(folder: features, stream: stream, batch: batch)
        }
    }
}

/// Progress on a terminal, silent otherwise.
func reportProgress(_ label: String) -> (Int, Int) -> Void {
    let interactive = isatty(2) != 0
    return { done, total in
        guard interactive else { return }
        FileHandle.standardError.write("\r\(label) \(done)/\(total)\(done == total ? "\r\u{1B}[K" : "")".data(using: .utf8)!)
    }
}

struct FIDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fid",
        abstract: "FID between two image sets or pytorch-fid statistics files.",
        discussion: """
            A and B are each a folder of PNG files, a .safetensors file with tensor `sample` [N, C, H, W] in \
            model space ([-1, 1], as `generate --output-tensor` writes), an MNIST-style IDX file (.gz or not, \
            e.g. /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz), or a .npz with `mu` and `sigma` \
            (pytorch-fid's statistics). Features are extracted on the device; the mean and covariance are \
            computed there; the Fréchet distance is float64 on the host (LAPACK). --save-stats FILE writes \
            A's statistics as pytorch-fid does (then B may be left out).
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var featureOptions: FeatureOptions
    @Argument(help: "First image set or statistics file.") var a: String
    @Argument(help: "Second image set or statistics file.") var b: String?
    @Option(help: "Images per feature-extraction batch.") var batch = 64
    @Option(help: "Use at most this many images of each set.") var limit: Int?
    @Option(name: .customLong("save-stats"), help: "Write the statistics of A to this .npz file.") var saveStats: String?
    @Flag(help: "Print {\"fid\": …} as JSON.") var json = false

    func run() throws {
        guard b != nil || saveStats != nil else { throw ValidationError("give two sets (A B), or one with --save-stats FILE") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        var engine: FIDStatistics? = nil
        func stats(_ path: String) throws -> FeatureStatistics {
            if path.hasSuffix(".npz") { return try FeatureStatistics.loadNPZ(path) }
            let images = try ImageSet.load(path, limit: limit)
            if engine == nil {
                let stream = try ComputeStream(device: try OpenCLRuntime.select(deviceOptions.device))
                engine = try FIDStatistics(extractor: try featureOptions.extractor(stream: stream, batch: batch, channels: images.channels,
                                                                                    height: images.height, width: images.width))
            }
            return try engine!.statistics(of: images, progress: reportProgress("features of \(path):"))
        }
        let first = try stats(a)
        if let saveStats { try first.saveNPZ(saveStats) }
        guard let b else {
            FileHandle.standardError.write("wrote the statistics of \(a) (\(first.count.map { "\($0) images, " } ?? "")\(first.dims)-d) to \(saveStats!)\n".data(using: .utf8)!)
            return
        }
        let second = try stats(b)
        let fid = try frechetDistance(first, second)
        if json {
            print(String(format: "{\"fid\": %.10g}", fid))
        } else {
            print(String(format: "FID %.4f", fid) + "  (\(featureOptions.features) features, \(first.dims)-d; \(first.count.map(String.init) ?? "stats") vs \(second.count.map(String.init) ?? "stats") images)")
        }
    }
}

struct RFIDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rfid",
        abstract: "Score step plans by rFID: FID of their samples against the teacher's from the same noise.",
        discussion: """
            The teacher is the plans' sampler with every step full. Its feature statistics are computed \
            once and cached (~/.cache/flexiffusion/teacher-stats/, keyed by the model's bytes, the sampler, \
            seed, count and feature network). A plan's samples never leave the device: features and their \
            statistics are computed there.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var featureOptions: FeatureOptions
    @Argument(help: "Plan files (all for the same sampler).") var plans: [String]
    @Option(help: "Diffusers pipeline or UNet folder (default: \(DefaultModel.summary)).") var model: String?
    @Option(help: "Images per plan.") var count = 256
    @Option(help: "Seed of the initial noise (as `generate --seed`).") var seed: UInt64 = 0
    @Option(help: "Images per forward pass.") var batch = 64
    @Flag(help: "Print the results as JSON.") var json = false

    func run() throws {
        guard !plans.isEmpty else { throw ValidationError("give at least one plan file") }
        guard count >= 2, batch > 0 else { throw ValidationError("--count must be ≥ 2 and --batch positive") }
        let loaded = try plans.map { try StepPlan.load(from: URL(fileURLWithPath: $0)) }
        let sampling = loaded[0].sampler
        for (p, path) in zip(loaded, plans) where p.sampler != sampling {
            throw ValidationError("\(path) is for \(p.sampler.scheduler) \(p.sampler.steps) steps, \(plans[0]) for \(sampling.scheduler) \(sampling.steps)")
        }
        let setup = try ModelSetup(model)
        let (folder, config, side) = (setup.folder, setup.config, setup.side)
        let scheduler = try sampling.scheduler(configuration: setup.schedulerConfig)
        let stream = try ComputeStream(device: try OpenCLRuntime.select(deviceOptions.device))
        let per = min(batch, count)
        let sampler = try Sampler(unet: setup.unet(stream: stream, batch: per), scheduler: scheduler)
        for (p, path) in zip(loaded, plans) {
            do { try sampler.prepare(p) } catch let e as ModelError { throw ModelError("\(path): \(e.message)") }
        }
        let evaluator = try RFIDEvaluator(sampler: sampler, extractor: try featureOptions.extractor(stream: stream, batch: per, channels: config.outChannels,
                                                                                                  height: side, width: side),
                                          count: count, seed: seed, modelKey: try RFIDEvaluator.modelKey(folder: folder))
        let t0 = DispatchTime.now().uptimeNanoseconds
        let (teacher, cached) = try evaluator.teacherStatistics(progress: reportProgress("teacher images"))
        let teacherSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        var rows: [[String: Any]] = []
        for (p, path) in zip(loaded, plans) {
            let t = DispatchTime.now().uptimeNanoseconds
            let score = try evaluator.rfid(plan: p, teacher: teacher, progress: reportProgress("\(path)"))
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
            rows.append(["plan": path, "rfid": score, "seconds": seconds, "full": p.fullSteps, "partial": p.partialSteps, "null": p.nullSteps])
            if !json { print(String(format: "%@  rFID %.4f  (%d full, %d partial, %d null; %.1f s)", path, score, p.fullSteps, p.partialSteps, p.nullSteps, seconds)) }
        }
        if json {
            let out: [String: Any] = ["device": stream.device.name, "count": count, "seed": seed, "features": featureOptions.features,
                                      "teacher_cached": cached, "teacher_seconds": teacherSeconds, "plans": rows]
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
        } else {
            print(String(format: "teacher statistics: %@ (%.1f s); %d images from seed %llu, %@ features on %@",
                         cached ? "cached" : "computed", teacherSeconds, count, seed, featureOptions.features, stream.device.name))
        }
    }
}
