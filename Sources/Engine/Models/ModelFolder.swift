// Finding a UNet in a diffusers folder: a pipeline (model_index.json, unet/, scheduler/) or a bare
// UNet folder (config.json + weights, optional scheduler_config.json).
import Foundation
import GPUKernels

public struct ModelFolder: Sendable {
    public let root: URL
    public let configURL: URL
    public let weightsURL: URL
    /// The scheduler's config, when the folder has one.
    public let schedulerConfigURL: URL?

    /// The scheduler config when the folder has one, else diffusers' defaults (as `XScheduler.from_config`).
    /// In a pipeline folder, the scheduler's class is the one model_index.json names, as diffusers'
    /// `from_pretrained` builds it (the config's own `_class_name` is then only a hint); in a Stable
    /// Diffusion pipeline folder, with the corrections its pipeline applies on load
    /// (`SchedulerConfiguration.correctedAsStableDiffusionPipeline`: their warnings in `corrections`).
    public func schedulerConfiguration() throws -> SchedulerConfiguration {
        guard let url = schedulerConfigURL else { return SchedulerConfiguration() }
        var c = try SchedulerConfiguration.load(from: url)
        if isPipeline, let indexed = try pipelineComponentClass(index: root.appendingPathComponent("model_index.json"), component: "scheduler") {
            c.className = indexed
        }
        return try correctsSchedulerAsStableDiffusion() ? c.correctedAsStableDiffusionPipeline(source: url.path) : c
    }

    /// Whether diffusers loads the folder as a StableDiffusionPipeline (or StableDiffusionImg2ImgPipeline),
    /// whose `__init__` corrects outdated scheduler configs: a pipeline folder with a UNet2DConditionModel,
    /// not an SDXL pipeline (whose classes correct nothing).
    func correctsSchedulerAsStableDiffusion() throws -> Bool {
        guard isPipeline, try configClassName(configURL) == "UNet2DConditionModel" else { return false }
        let pipelineClass = try configClassName(root.appendingPathComponent("model_index.json")) ?? ""
        return !pipelineClass.contains("XL")
    }

    /// Whether the folder is a pipeline (model_index.json beside unet/), not a bare UNet folder.
    public var isPipeline: Bool { FileManager.default.fileExists(atPath: root.appendingPathComponent("model_index.json").path) }

    /// The scheduler config to sample with: a pipeline folder must have its own, as diffusers'
    /// `from_pretrained` requires (the defaults' betas are not the ones the model was trained with);
    /// a bare UNet folder without one takes diffusers' defaults. `path` names the folder in messages.
    public func samplingSchedulerConfiguration(path: String) throws -> SchedulerConfiguration {
        try checkCanSample(path: path)
        return try schedulerConfiguration()
    }

    /// `samplingSchedulerConfiguration`'s check alone (nothing read), for a caller that reads the config later.
    public func checkCanSample(path: String) throws {
        if isPipeline && schedulerConfigURL == nil {
            throw ModelError("\(path) is a pipeline folder without scheduler/scheduler_config.json, which sampling needs (diffusers' from_pretrained refuses it too): add the scheduler the model was trained with")
        }
    }

    /// `path` is a folder, or a Hugging Face repository id (`org/name`) found in the local hub cache
    /// as diffusers' `from_pretrained` finds it offline (`HuggingFaceCache`). `variant` picks
    /// `diffusion_pytorch_model.<variant>.safetensors` as diffusers' `variant=` does; without one the
    /// plain file is read, else the only variant file there is.
    public init(path: String, variant: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        var root = URL(fileURLWithPath: path).standardizedFileURL
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: root.path), HuggingFaceCache.isRepositoryID(path) {
            root = try HuggingFaceCache(environment: environment).snapshot(of: path)
        }
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDir) else {
            throw ModelError("model folder \(path) does not exist")
        }
        guard isDir.boolValue else { throw ModelError("\(path) is a file; --model takes a diffusers folder") }
        self.root = root
        let fm = FileManager.default
        let unetDir: URL
        if fm.fileExists(atPath: root.appendingPathComponent("model_index.json").path) {
            unetDir = root.appendingPathComponent("unet")
            let s = root.appendingPathComponent("scheduler/scheduler_config.json")
            schedulerConfigURL = fm.fileExists(atPath: s.path) ? s : nil
        } else {
            unetDir = root
            let s = root.appendingPathComponent("scheduler_config.json")
            schedulerConfigURL = fm.fileExists(atPath: s.path) ? s : nil
        }
        configURL = unetDir.appendingPathComponent("config.json")
        guard fm.fileExists(atPath: configURL.path) else {
            throw ModelError("\(path): no \(configURL.path) (expected a diffusers pipeline folder with unet/config.json, or a UNet folder with config.json)")
        }
        weightsURL = try Self.weights(in: unetDir, variant: variant)
    }

    /// The weights file of a model folder: `diffusion_pytorch_model[.variant].safetensors` (or
    /// `model[.variant].safetensors`).
    /// `stems` are the file names tried, the first one named in errors (a transformers model: `["model"]`).
    static func weights(in dir: URL, variant: String?, stems: [String] = ["diffusion_pytorch_model", "model"]) throws -> URL {
        let fm = FileManager.default
        let files = ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
        let main = stems[0]
        func exists(_ name: String) -> Bool { files.contains(name) }
        if let v = variant {
            guard !v.isEmpty, !v.contains("/") else { throw ModelError(argument: "--variant \(v) is not a variant name (e.g. fp16)") }
            if let name = stems.map({ "\($0).\(v).safetensors" }).first(where: exists) { return dir.appendingPathComponent(name) }
            throw ModelError("\(dir.path): no \(main).\(v).safetensors for --variant \(v) (has: \(files.filter { $0.hasSuffix(".safetensors") }.joined(separator: ", ")))")
        }
        if let name = stems.map({ "\($0).safetensors" }).first(where: exists) { return dir.appendingPathComponent(name) }
        let variants = files.filter { name in
            stems.contains { name.hasPrefix("\($0).") } && name.hasSuffix(".safetensors") && name.split(separator: ".").count == 3
        }
        if variants.count == 1 { return dir.appendingPathComponent(variants[0]) }
        if !variants.isEmpty {
            throw ModelError("\(dir.path): no \(main).safetensors but several variants (\(variants.joined(separator: ", "))); choose one with --variant")
        }
        if exists("\(main).safetensors.index.json") {
            throw ModelError("\(dir.path): the weights are sharded (\(main).safetensors.index.json), which is not read yet: re-save with save_pretrained(..., max_shard_size=\"100GB\")")
        }
        throw ModelError("\(dir.path): no \(main).safetensors" + (exists("\(main).bin") || exists("pytorch_model.bin")
            ? " (only a PyTorch .bin, which is not read: re-save with save_pretrained(..., safe_serialization=True))" : ""))
    }
}

/// The local Hugging Face hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`; a repository `org/name` lives in `models--org--name/`, its files in
/// `snapshots/<revision>/`, the revision of the `main` branch in `refs/main`.
public struct HuggingFaceCache: Sendable {
    public let hub: URL

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let h = EngineEnvironment.huggingFaceHubCache.value(in: environment) { hub = URL(fileURLWithPath: h) }
        else if let h = EngineEnvironment.huggingFaceHome.value(in: environment) { hub = URL(fileURLWithPath: h).appendingPathComponent("hub") }
        else { hub = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/huggingface/hub") }
    }

    /// Whether `text` has the shape of a repository id: `org/name`, no other slashes, not a relative path.
    public static func isRepositoryID(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !text.hasPrefix("."), !text.hasPrefix("~") else { return false }
        return parts.allSatisfy { isName(String($0)) }
    }

    /// A name in the cache (an id's part, a revision): letters, digits, "-", "_" and ".", not "." or
    /// "..", so never a path out of the folder it names a child of.
    static func isName(_ text: String) -> Bool {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_."))
        return !text.isEmpty && text != "." && text != ".." && text.unicodeScalars.allSatisfy(allowed.contains)
    }

    /// The snapshot folder of `id`'s main revision (the only snapshot, when there is no refs/main).
    public func snapshot(of id: String) throws -> URL {
        let repo = hub.appendingPathComponent("models--" + id.replacingOccurrences(of: "/", with: "--"))
        let snapshots = repo.appendingPathComponent("snapshots")
        guard FileManager.default.fileExists(atPath: snapshots.path) else {
            throw ModelError("\(id) is neither a folder nor in the Hugging Face cache (no \(snapshots.path)); download it with `huggingface-cli download \(id)` where there is a network, or give a folder")
        }
        if let ref = try? String(contentsOf: repo.appendingPathComponent("refs/main"), encoding: .utf8) {
            let revision = ref.trimmingCharacters(in: .whitespacesAndNewlines)
            // (A revision is a name — a commit hash — never a path out of the snapshots folder.)
            guard Self.isName(revision) else {
                throw ModelError("\(id): refs/main holds \"\(revision.prefix(80))\", which is not a revision name (a commit hash)")
            }
            let folder = snapshots.appendingPathComponent(revision)
            guard FileManager.default.fileExists(atPath: folder.path) else { throw ModelError("\(id): refs/main names revision \(revision), which is not in \(snapshots.path)") }
            return folder
        }
        let all = ((try? FileManager.default.contentsOfDirectory(atPath: snapshots.path)) ?? []).filter { !$0.hasPrefix(".") }
        guard all.count == 1 else {
            throw ModelError("\(id): no refs/main and \(all.count) snapshots in \(snapshots.path); give the snapshot folder itself")
        }
        return snapshots.appendingPathComponent(all[0])
    }
}

/// The weights of a model, handed out by diffusers name and checked against the shapes the
/// configuration implies: a missing, extra or mis-shaped tensor is an error naming it.
public final class WeightStore {
    /// The weights file; nil for random weights.
    public let file: SafeTensorsFile?
    private var byName: [String: String] = [:]   // diffusers name → name in the file
    private var used: Set<String> = []
    private var generator: SplitMix64?
    /// Parameters handed out so far.
    public private(set) var parameterCount = 0

    /// Random weights of whatever shapes the configuration asks for (for benchmarks): N(0, 1/fan_in)
    /// approximately, from a fixed seed.
    public init(randomSeed: UInt64) {
        file = nil
        generator = SplitMix64(seed: randomSeed)
    }

    /// Renames from older diffusers checkpoints (the legacy attention block) to current names.
    static let renameRules: [(old: String, new: String)] = [
        (".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0."),
    ]

    public init(file: SafeTensorsFile) {
        self.file = file
        for name in file.tensors.keys {
            var n = name
            for rule in Self.renameRules { n = n.replacingOccurrences(of: rule.old, with: rule.new) }
            byName[n] = name
        }
    }

    /// The values of `name`, which must have `shape`.
    public func take(_ name: String, shape: [Int]) throws -> [Float] {
        let count = shape.reduce(1, *)
        parameterCount += count
        if generator != nil {
            let bound = Float(3 / Double(max(1, shape.dropFirst().reduce(1, *)))).squareRoot()
            return (0..<count).map { _ in Float.random(in: -bound...bound, using: &generator!) }
        }
        guard let file else { preconditionFailure("a weight store has a file or a generator") }
        guard let stored = byName[name], let info = file.tensors[stored] else {
            throw ModelError("\(file.path): missing tensor \(name) (shape \(shape)) that the configuration needs")
        }
        guard info.shape == shape else {
            throw ModelError("\(file.path): tensor \(name) has shape \(info.shape), the configuration needs \(shape)")
        }
        used.insert(name)
        return try file.floats(stored)
    }

    /// Whether the file holds `name` (always false for random weights).
    public func has(_ name: String) -> Bool { byName[name] != nil }

    /// Marks `name` as used when the file has it: buffers checkpoints carry that the model does not
    /// read (transformers 4's `position_ids`).
    public func ignore(_ name: String) {
        if byName[name] != nil { used.insert(name) }
    }

    /// Throws if the file holds tensors the configuration did not use (but those under `prefixes`: the
    /// half of a model not built).
    public func checkAllUsed(except prefixes: [String] = []) throws {
        guard let file else { return }
        let extra = byName.keys.filter { name in !used.contains(name) && !prefixes.contains { name.hasPrefix($0) } }.sorted()
        if !extra.isEmpty {
            throw ModelError("\(file.path): unexpected tensor\(extra.count > 1 ? "s" : "") \(extra.prefix(5).joined(separator: ", "))\(extra.count > 5 ? " and \(extra.count - 5) more" : "") not used by the configuration")
        }
    }
}
