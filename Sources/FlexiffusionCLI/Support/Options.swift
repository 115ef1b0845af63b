// Option groups and values several commands share: the device, the feature network, the teacher,
// timestep lists, the engine's enumerations as option values, and the bound on image counts.
import ArgumentParser
import Engine
import Foundation
import GPUKernels
import Search

extension SchedulerKind: ExpressibleByArgument {}
extension TimestepSpacing: ExpressibleByArgument {}
extension Fitness: ExpressibleByArgument {}

/// `--fitness`: rfid or paired, as its help lists them; fid is taken only to be refused with the reason
/// (it judges the final race, `--final-judge fid`) by the search configuration's one check.
struct FitnessOption: ExpressibleByArgument {
    let value: Fitness
    init(_ value: Fitness) { self.value = value }
    init?(argument: String) {
        guard let f = Fitness(rawValue: argument) else { return nil }
        value = f
    }
    static var allValueStrings: [String] { [Fitness.rfid.rawValue, Fitness.paired.rawValue] }
    var defaultValueDescription: String { value.rawValue }
}

/// `--device`, shared by every command that runs on a device.
struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Device: an index from `flexiffusion devices`, gpu, cpu, or part of a device name (default: $FLEXIFFUSION_DEVICE, else the first GPU, else the first CPU).",
        valueName: "device"))
    var device: String?
}

extension Precision: ExpressibleByArgument {}

/// `--precision`, shared by the commands that run a model: what it computes in.
struct PrecisionOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "What the model computes in: fp32 (default; matches diffusers to float tolerance) or bf16 (the inputs of oneDNN's convolutions and of the model's matrix products rounded to bfloat16, accumulated in fp32, as PyTorch's bf16 autocast: about 1.7× as fast on CPUs with AVX-512 BF16 or AMX; elsewhere fp32, with a note). GroupNorm, softmax, the sampler and FID stay fp32.",
        valueName: "fp32|bf16"))
    var precision: Precision?

    /// A stream on the device `device` names, computing in the precision asked for where it can (a
    /// note on standard error where it cannot).
    func stream(_ device: DeviceOptions, profiling: Bool = false) throws -> ComputeStream {
        let stream = try ComputeStream(device: try OpenCLRuntime.select(device.device), profiling: profiling)
        apply(to: stream)
        return stream
    }

    /// Sets `stream`'s precision (a note on standard error where it cannot be the one asked for).
    func apply(to stream: ComputeStream) {
        if let note = stream.setPrecision(precision) { say("note: \(note)") }
    }
}

extension ComputeStream {
    /// The device's name, with the precision where it is not fp32: the key of latency tables and a
    /// search's device, since the step latencies differ with it.
    var deviceLabel: String { backends.precision == .float32 ? device.name : "\(device.name) (\(backends.precision))" }
}

/// `--features`: which network turns images into FID features.
struct FeatureOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Feature network: fashion (the embedded Fashion-MNIST classifier's 128-d penultimate layer, for 28×28 grey images; other images are resized to it, RGB as luma), inception (FID's Inception-v3, 2048-d, from the folder scripts/tools/convert_inception.py writes: $FLEXIFFUSION_INCEPTION or ~/.cache/flexiffusion/inception-v3-fid), or a folder holding either (config.json, model.safetensors). Default: fashion, and inception for a Stable Diffusion pipeline's images.",
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

/// `--timesteps 999,850,…`: integers, first to last.
struct TimestepList: ExpressibleByArgument {
    let values: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        values = parts.map { $0! }
    }
}

/// A count of images above 2^40 is more than any run makes: refused before any work, not run until
/// killed (and counts times image sizes stay far from overflowing).
func checkImageCount(_ count: Int, option: String) throws {
    if count > 1 << 40 { throw ValidationError("\(option) \(count) is more than a run takes (2^40 images)") }
}
