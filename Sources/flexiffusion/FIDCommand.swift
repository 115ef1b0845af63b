// `flexiffusion fid` (FID between two image sets or statistics files) and `flexiffusion rfid`
// (plans scored against the teacher's samples from the same noise).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

/// `--features`: which network turns images into FID features.
struct FeatureOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Feature network: fashion (the embedded Fashion-MNIST classifier's 128-d penultimate layer, for 28×28 grey images; other images are resized to it, RGB as luma), inception (FID's Inception-v3, 2048-d, from the folder scripts/convert_inception.py writes: $FLEXIFFUSION_INCEPTION or ~/.cache/flexiffusion/inception-v3-fid), or a folder holding either (config.json, model.safetensors). Default: fashion, and inception for a Stable Diffusion pipeline's images.",
                               valueName: "fashion|inception|dir"))
    var features: String?

    /// The network's name: the option, else fashion (inception for text-to-image, `forText`).
    func name(forText: Bool = false) -> String { features ?? (forText ? "inception" : "fashion") }

    /// The network for batches of `batch` images of channels × height × width (`forText`: see `name`).
    func extractor(stream: ComputeStream, batch: Int, channels: Int, height: Int, width: Int, forText: Bool = false) throws -> FeatureExtractor {
        func inception(_ folder: String) throws -> FeatureExtractor {
            try InceptionV3FID(folder: folder, stream: stream, batch: batch, channels: channels, height: height, width: width)
        }
        func fashion(_ folder: String) throws -> FeatureExtractor {
            let net = try FashionFeatureNet(folder: folder, stream: stream, batch: batch)
            if [net.channels, net.height, net.width] == [channels, height, width] { return net }
            return try ResizedFeatures(net, channels: channels, height: height, width: width)
        }
        let chosen = name(forText: forText)
        switch chosen {
        case "fashion": return try fashion(DefaultModel.featureNetFolder())
        case "inception": return try inception(InceptionV3FID.defaultFolder())
        default:
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: chosen, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--features \(chosen): not fashion, not inception and not a feature-network folder")
            }
            let config = URL(fileURLWithPath: chosen).appendingPathComponent("config.json")
            if let data = try? Data(contentsOf: config), let raw = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               raw["_class_name"] as? String == "InceptionV3FID" {
                return try inception(chosen)
            }
            return try fashion(chosen)
        }
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
    @Option(help: "Images per feature-extraction batch.") var batch = 32
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
            let progress = ProgressLine("features of \(path)")
            defer { progress.finish() }
            return try engine!.statistics(of: images) { progress.update($0, of: $1, unit: "images") }
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
            print(String(format: "FID %.4f", fid) + "  (\(featureOptions.name()) features, \(first.dims)-d; \(first.count.map(String.init) ?? "stats") vs \(second.count.map(String.init) ?? "stats") images)")
        }
    }
}

/// `--teacher`: the plan scores are against.
struct TeacherOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The teacher every rFID is against: a step count (every step full: DDIM with eta 0, or a Stable Diffusion pipeline's own scheduler) or a plan file (default: 100 steps; 50 for a pipeline).", valueName: "steps|plan"))
    var teacher: String?

    /// The teacher plan; `folderSampler` makes a text-to-image pipeline's sampler for a step count (nil: DDIM).
    func plan(branchCount: Int, schedulerConfiguration: SchedulerConfiguration, folderSampler: ((Int) throws -> PlanSampler)? = nil) throws -> StepPlan {
        let given = teacher ?? (folderSampler == nil ? "100" : "50")
        if let steps = Int(given) {
            guard steps > 0 else { throw ValidationError("--teacher \(given): give a positive step count or a plan file") }
            return StepPlan.teacher(try folderSampler?(steps) ?? PlanSampler(scheduler: .ddim, steps: steps))
        }
        return try StepPlan.load(from: URL(fileURLWithPath: given), branchCount: branchCount, schedulerConfiguration: schedulerConfiguration)
    }
}

/// What `rfid` and `bench fitness` share: the model (a UNet2DModel, or a Stable Diffusion pipeline over
/// a prompt set), the teacher, the plan files checked against the model, and an rFID evaluator on the device.
struct PlanScoring {
    let setup: ModelSetup, teacher: StepPlan, plans: [StepPlan], stream: ComputeStream, extractor: FeatureExtractor, evaluator: RFIDEvaluator
    let scored: ScoredPipeline

    init(model modelOptions: ModelOptions, prompts: PromptOptions, plans paths: [String], teacher: TeacherOptions, features: FeatureOptions,
         device: DeviceOptions, batch: Int, seed: UInt64) throws {
        setup = try ModelSetup(modelOptions, generates: false)
        let promptSet = try prompts.check(setup)
        let config = setup.config, setup = setup
        self.teacher = try teacher.plan(branchCount: config.branchCount, schedulerConfiguration: setup.schedulerConfig,
                                        folderSampler: config.isConditional ? { try setup.sampler(steps: $0) } : nil)
        plans = try paths.map {
            try StepPlan.load(from: URL(fileURLWithPath: $0), branchCount: config.branchCount, schedulerConfiguration: setup.schedulerConfig)
        }
        stream = try ComputeStream(device: try OpenCLRuntime.select(device.device))
        scored = try ScoredPipeline(setup, prompts: prompts, promptSet: promptSet, features: features, variant: modelOptions.variant,
                                    stream: stream, batch: batch)
        extractor = scored.extractor
        evaluator = try RFIDEvaluator(pipeline: scored.pipeline, extractor: extractor, teacher: self.teacher, seed: seed, modelKey: scored.key)
    }
}

/// The real images FID compares with: `real`, else (for the default model) the Fashion-MNIST test set when installed.
func realImages(_ real: String?, model: String?) -> String? {
    let testSet = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    return real ?? (model == nil && FileManager.default.fileExists(atPath: testSet) ? testSet : nil)
}

struct RFIDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rfid",
        abstract: "Score step plans by rFID: FID of their samples against the teacher's from the same noise.",
        discussion: """
            Every plan runs on its own sampler; the teacher (--teacher, default DDIM with 100 steps, every step \
            full) runs from the same noise. The teacher's features are computed once and cached \
            (~/.cache/flexiffusion/teacher-features/, keyed by the model's bytes, the teacher, seed, batch and \
            feature network). The search scores plans with the same code: a plan from a search results file \
            gets the score the search gave it, for the same --teacher, --seed, --batch, --count and features. \
            A Stable Diffusion pipeline folder is scored over a prompt set (--prompts FILE: image i from prompt \
            i mod n, --negative-prompt, --guidance-scale) on its decoded images; its teacher is the folder's \
            scheduler at 50 steps unless --teacher says otherwise.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var featureOptions: FeatureOptions
    @OptionGroup var teacherOptions: TeacherOptions
    @Argument(help: "Plan files (or search results files: their best plan).") var plans: [String]
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var promptOptions: PromptOptions
    @Option(help: "Images per plan.") var count = 256
    @Option(help: "Seed of the noise (as `generate --seed`).") var seed: UInt64 = 0
    @Option(help: "Images per forward pass.") var batch = 32
    @Flag(help: "Print the results as JSON.") var json = false

    func run() throws {
        guard !plans.isEmpty else { throw ValidationError("give at least one plan file") }
        guard count >= 2 else { throw ValidationError("--count must be at least 2") }
        try checkImageCount(count, option: "--count")
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        let scoring = try PlanScoring(model: modelOptions, prompts: promptOptions, plans: plans, teacher: teacherOptions, features: featureOptions, device: deviceOptions,
                                      batch: batch, seed: seed)
        let (teacher, loaded, stream, evaluator) = (scoring.teacher, scoring.plans, scoring.stream, scoring.evaluator)
        let cached = evaluator.teacherCached(samples: count)
        let teacherProgress = ProgressLine("teacher (\(teacher.sampler))")
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = try evaluator.teacherStatistics(samples: count) { teacherProgress.update($0, of: $1, unit: "images") }
        teacherProgress.finish()
        let teacherSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        var rows: [[String: Any]] = []
        for (p, path) in zip(loaded, plans) {
            let progress = ProgressLine(path)
            let score = try evaluator.rfid(plan: p, samples: count) { progress.update($0, of: $1, unit: "images") }.rfid
            progress.finish()
            let cost = Double(p.fullSteps) / Double(teacher.fullSteps)
            rows.append(["plan": path, "rfid": score, "seconds": progress.elapsed, "sampler": p.sampler.description,
                         "full": p.fullSteps, "partial": p.partialSteps, "null": p.nullSteps, "full_steps_vs_teacher": cost])
            if !json {
                print(String(format: "%@  rFID %.4f  (%@: %d full, %d partial, %d null; %.1f s)", path, score, p.sampler.description,
                             p.fullSteps, p.partialSteps, p.nullSteps, progress.elapsed))
            }
        }
        let note = "against the teacher \(teacher.sampler) (\(teacher.fullSteps) full steps) on \(count) images from seed \(seed), batch \(batch), \(featureOptions.name(forText: scoring.scored.isTextToImage)) features"
        if json {
            try printJSON(["device": stream.device.name, "count": count, "seed": seed, "batch": batch, "features": featureOptions.name(forText: scoring.scored.isTextToImage),
                           "teacher": ["sampler": teacher.sampler.description, "cached": cached, "seconds": teacherSeconds], "plans": rows])
        } else {
            print(String(format: "rFID %@; teacher features %@ (%.1f s) on %@", note, cached ? "cached" : "computed", teacherSeconds, stream.device.name))
        }
    }
}
