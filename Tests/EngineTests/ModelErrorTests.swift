// Bad model and tensor files are refused with errors that name the problem.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

/// A scratch copy of a golden model folder, removed when the test ends.
final class ScratchModel {
    let dir: URL
    init(copying name: String) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-\(name)-\(UUID())")
        try FileManager.default.copyItem(at: goldens.appendingPathComponent(name), to: dir)
    }
    deinit { try? FileManager.default.removeItem(at: dir) }
    var config: URL { dir.appendingPathComponent("config.json") }
    var weights: URL { dir.appendingPathComponent("diffusion_pytorch_model.safetensors") }

    func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: config)
    }

    /// Rewrites the weights as F32 after `edit` on (name, shape, values) triples.
    func editWeights(_ edit: (inout [(name: String, shape: [Int], values: [Float])]) -> Void) throws {
        let file = try SafeTensorsFile(path: weights.path)
        var tensors = try file.names.map { (name: $0, shape: file.tensors[$0]!.shape, values: try file.floats($0)) }
        edit(&tensors)
        try SafeTensorsWriter.write(tensors, to: weights.path)
    }

    func load() throws -> UNet {
        try UNet(folder: ModelFolder(path: dir.path), stream: ComputeStream(), batch: 1, height: 16, width: 16)
    }
}

@Suite struct ModelErrorTests {
    @Test func wrongShapeNamesTheTensor() throws {
        let m = try ScratchModel(copying: "cifar-layout")
        try m.editWeights { t in
            let i = t.firstIndex { $0.name == "down_blocks.1.resnets.0.conv1.weight" }!
            t[i].shape = [t[i].shape[0], t[i].shape[1] * 9, 1, 1]
        }
        expectError(containing: ["down_blocks.1.resnets.0.conv1.weight", "shape"]) { _ = try m.load() }
    }

    @Test func missingAndExtraTensorsAreNamed() throws {
        let m = try ScratchModel(copying: "cifar-layout")
        try m.editWeights { t in t.removeAll { $0.name == "mid_block.attentions.0.to_k.bias" } }
        expectError(containing: ["missing tensor mid_block.attentions.0.to_k.bias"]) { _ = try m.load() }
        let e = try ScratchModel(copying: "cifar-layout")
        try e.editWeights { t in t.append((name: "up_blocks.9.resnets.0.extra.weight", shape: [2], values: [1, 2])) }
        expectError(containing: ["unexpected tensor", "up_blocks.9.resnets.0.extra.weight"]) { _ = try e.load() }
    }

    @Test func truncatedWeightsAreRefused() throws {
        let m = try ScratchModel(copying: "cifar-layout")
        let data = try Data(contentsOf: m.weights)
        try data.prefix(data.count - 1000).write(to: m.weights)
        expectError(containing: ["truncated"]) { _ = try m.load() }
        try data.prefix(5).write(to: m.weights)
        expectError(containing: ["not a safetensors file"]) { _ = try m.load() }
    }

    @Test func unknownBlockTypeKeyAndValueAreNamed() throws {
        let m = try ScratchModel(copying: "cifar-layout")
        try m.editConfig { $0["down_block_types"] = ["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"] }
        expectError(containing: ["down_block_types", "CrossAttnDownBlock2D"]) { _ = try m.load() }

        let k = try ScratchModel(copying: "cifar-layout")
        try k.editConfig { $0["cross_attention_dim"] = 768 }
        expectError(containing: ["unsupported key cross_attention_dim", "768"]) { _ = try k.load() }

        for (key, value) in [("act_fn", "gelu" as Any), ("resnet_time_scale_shift", "scale_shift"), ("time_embedding_type", "fourier"),
                             ("class_embed_type", "identity"), ("upsample_type", "resnet"), ("downsample_padding", 2),
                             ("norm_num_groups", 0), ("attention_head_dim", 0), ("attention_head_dim", -8), ("sample_size", 1 << 31)] {
            let v = try ScratchModel(copying: "cifar-layout")
            try v.editConfig { $0[key] = value }
            expectError(containing: [key, "\(value)"]) { _ = try v.load() }
        }
    }

    /// JSONDecoder calls 3.7 for an Int "not valid JSON" and names no key; the readers name it.
    @Test func numbersThatDoNotFitTheirFieldAreNamed() throws {
        for (key, value, needle) in [("in_channels", 3.7 as Any, "in_channels: 3.7 does not fit"), ("block_out_channels", [32, 64.5] as Any, "block_out_channels.1: 64.5"),
                                     ("layers_per_block", 1e30 as Any, "layers_per_block: 1e+30"), ("sample_size", 1e30 as Any, "sample_size: not a whole number"),
                                     ("sample_size", "big" as Any, "sample_size: not a whole number")] {
            let m = try ScratchModel(copying: "cifar-layout")
            try m.editConfig { $0[key] = value }
            expectError(containing: ["config.json", needle]) { _ = try m.load() }
        }
        let plan = #"{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2.5}, "actions": ["full", "full"]}"#
        expectError(containing: ["sampler.steps: 2.5 does not fit this field"]) { _ = try StepPlan.decode(Data(plan.utf8)) }
    }

    /// A plan is checked against the model's scheduler config as sampling builds it: what `generate`
    /// refuses, `plan show` and `rfid` refuse too. Such values are the file's fault, given as
    /// arguments the caller's.
    @Test func plansAreCheckedAgainstTheSchedulerConfig() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-plan-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = SchedulerConfiguration()
        for (sampler, needle) in [(PlanSampler(scheduler: .ddim, steps: 1001), "1001 steps: a run takes between 1 and the 1000 training timesteps"),
                                  (PlanSampler(scheduler: .dpmsolverPlusPlus, steps: 2, order: 2, timesteps: [1500, 500]), "strictly decreasing within 0…999")] {
            let url = dir.appendingPathComponent("plan.json")
            try StepPlan.teacher(sampler).write(to: url)
            _ = try StepPlan.load(from: url)   // well formed on its own
            do {
                _ = try StepPlan.load(from: url, branchCount: 4, schedulerConfiguration: config)
                Issue.record("\(sampler) accepted")
            } catch let e as ModelError {
                #expect(e.message.contains(url.path) && e.message.contains(needle), "\(e.message)")
                #expect(!e.isArgument, "a plan file's value is the file's fault")
            }
            do { _ = try sampler.scheduler(configuration: config); Issue.record("\(sampler) built") } catch let e as ModelError {
                #expect(e.isArgument && e.message.contains(needle), "\(e.message)")
            }
        }
    }

    @Test func missingFilesAndBadInputsAreClear() throws {
        expectError(containing: ["does not exist"]) { _ = try ModelFolder(path: "/nonexistent/model") }
        let m = try ScratchModel(copying: "cifar-layout")
        try FileManager.default.removeItem(at: m.weights)
        expectError(containing: ["diffusion_pytorch_model.safetensors"]) { _ = try ModelFolder(path: m.dir.path) }
        let s = try ScratchModel(copying: "cifar-layout")
        expectError(containing: ["multiples of 8"]) {
            _ = try UNet(folder: ModelFolder(path: s.dir.path), stream: ComputeStream(), batch: 1, height: 12, width: 16)
        }
        try Data("{\"block_out_channels\": [16, 32".utf8).write(to: s.config)
        expectError(containing: ["config.json", "not a JSON object"]) { _ = try s.load() }
    }
}

@Suite struct SafeTensorsTests {
    func temporaryFile(_ bytes: Data) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID()).safetensors").path
        try bytes.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A file with one tensor of `dtype` holding `payload`, written by hand (not by our writer).
    func handMade(dtype: String, shape: [Int], payload: [UInt8], offsets: [Int]? = nil) throws -> String {
        let header = "{\"t\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":\(offsets ?? [0, payload.count])}}"
        var d = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { d.append(contentsOf: $0) }
        d.append(contentsOf: Array(header.utf8)); d.append(contentsOf: payload)
        return try temporaryFile(d)
    }

    @Test func readsF32F16AndBF16() throws {
        var rng = SystemRandomNumberGenerator()
        let values = (0..<37).map { _ in Float.random(in: -100...100, using: &rng) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID()).safetensors").path
        try SafeTensorsWriter.write([("a", [37], values), ("b", [1, 2], [1.5, -2])], to: path, metadata: ["format": "pt"])
        let f = try SafeTensorsFile(path: path)
        #expect(try f.floats("a") == values)
        #expect(try f.floats("b") == [1.5, -2])
        #expect(f.metadata["format"] == "pt")

        let halves = values.map { Float16($0) }
        let f16 = try SafeTensorsFile(path: handMade(dtype: "F16", shape: [37], payload: halves.flatMap {
            withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }))
        #expect(try f16.floats("t") == halves.map(Float.init))
        let bf = values.map { UInt16($0.bitPattern >> 16) }
        let bf16 = try SafeTensorsFile(path: handMade(dtype: "BF16", shape: [37], payload: bf.flatMap {
            withUnsafeBytes(of: $0.littleEndian, Array.init) }))
        #expect(try bf16.floats("t") == bf.map { Float(bitPattern: UInt32($0) << 16) })
        let ints = try SafeTensorsFile(path: handMade(dtype: "I32", shape: [2], payload: Array(repeating: 1, count: 8)))
        expectError(containing: ["I32"]) { _ = try ints.floats("t") }
    }

    @Test func malformedHeadersAreRefused() throws {
        expectError(containing: ["has 8 bytes", "needs 12"]) { _ = try SafeTensorsFile(path: handMade(dtype: "F32", shape: [3], payload: Array(repeating: 0, count: 8))) }
        expectError(containing: ["truncated"]) {
            _ = try SafeTensorsFile(path: handMade(dtype: "F32", shape: [4], payload: Array(repeating: 0, count: 8), offsets: [0, 16]))
        }
        expectError(containing: ["unknown dtype"]) { _ = try SafeTensorsFile(path: handMade(dtype: "F8", shape: [1], payload: [0])) }
        var d = Data()
        withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { d.append(contentsOf: $0) }
        d.append(contentsOf: [0, 1, 2])
        expectError(containing: ["runs past the end"]) { _ = try SafeTensorsFile(path: temporaryFile(d)) }
        var j = Data()
        withUnsafeBytes(of: UInt64(4).littleEndian) { j.append(contentsOf: $0) }
        j.append(contentsOf: Array("nope".utf8))
        expectError(containing: ["not a JSON object"]) { _ = try SafeTensorsFile(path: temporaryFile(j)) }
        expectError(containing: ["cannot open"]) { _ = try SafeTensorsFile(path: "/nonexistent.safetensors") }
        // A shape whose product overflows, a fractional shape, tensors sharing bytes: refused, no trap.
        expectError(containing: ["more than 2^63"]) { _ = try SafeTensorsFile(path: handMade(dtype: "F32", shape: [1 << 40, 1 << 30], payload: Array(repeating: 0, count: 16))) }
        let fractional = "{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5, 2],\"data_offsets\":[0, 8]}}"
        expectError(containing: ["bad shape"]) { _ = try SafeTensorsFile(path: temporaryFile(rawHeader(fractional, payload: 8))) }
        let overlapping = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0, 8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4, 12]}}"
        expectError(containing: ["overlap", "'a'", "'b'"]) { _ = try SafeTensorsFile(path: temporaryFile(rawHeader(overlapping, payload: 12))) }
    }

    /// A safetensors file with `header` and `payload` zero bytes of data.
    func rawHeader(_ header: String, payload: Int) -> Data {
        var d = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { d.append(contentsOf: $0) }
        d.append(contentsOf: Array(header.utf8)); d.append(contentsOf: Array(repeating: 0, count: payload))
        return d
    }

    @Test func writerLeavesNothingBehindOnFailure() throws {
        expectError(containing: ["does not exist"]) {
            try SafeTensorsWriter.write([("a", [1], [1])], to: "/nonexistent-dir/x.safetensors")
        }
    }

    /// A symlink is written through (the link stays, its target gets the data, chains and relative
    /// links included); a folder is refused, never replaced.
    @Test func writesThroughSymlinksAndNeverReplacesOtherFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let target = dir.appendingPathComponent("target.json").path, link = dir.appendingPathComponent("link.json").path
        let chain = dir.appendingPathComponent("chain.json").path
        try Data("old".utf8).write(to: URL(fileURLWithPath: target))
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "target.json")
        try FileManager.default.createSymbolicLink(atPath: chain, withDestinationPath: link)
        try writeAtomically(Data("new".utf8), to: chain)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == "target.json", "the link stays a link")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: chain) == link)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "new")
        expectError(containing: ["it is a folder"]) { try writeAtomically(Data("x".utf8), to: dir.path) }
        var isDir: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir) && isDir.boolValue)
    }
}

@Suite struct HuggingFaceCacheTests {
    /// `--model org/name` finds the snapshot that refs/main names under $HF_HOME/hub, as diffusers'
    /// `from_pretrained` does offline; errors name what is missing.
    @Test func resolvesRepositoryIDs() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("hf-\(freshSeed())")
        defer { try? FileManager.default.removeItem(at: home) }
        let repo = home.appendingPathComponent("hub/models--flexiffusion--fashion-mnist")
        let revision = "0123456789abcdef"
        let snapshot = repo.appendingPathComponent("snapshots/\(revision)")
        try FileManager.default.createDirectory(at: repo.appendingPathComponent("refs"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: snapshot.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: DefaultModel.folder(), toPath: snapshot.path)
        try Data((revision + "\n").utf8).write(to: repo.appendingPathComponent("refs/main"))
        let env = ["HF_HOME": home.path]
        let folder = try ModelFolder(path: "flexiffusion/fashion-mnist", environment: env)
        #expect(folder.root.standardizedFileURL.path == snapshot.standardizedFileURL.path)
        #expect(try UNetConfiguration.load(from: folder.configURL).sampleSize == 28)
        // HF_HUB_CACHE wins over HF_HOME.
        #expect(HuggingFaceCache(environment: ["HF_HOME": "/x", "HF_HUB_CACHE": home.appendingPathComponent("hub").path]).hub.path
                == home.appendingPathComponent("hub").path)
        expectError(containing: ["someone/missing", "Hugging Face cache"]) { _ = try ModelFolder(path: "someone/missing", environment: env) }
        try Data("fedcba\n".utf8).write(to: repo.appendingPathComponent("refs/main"))
        expectError(containing: ["refs/main", "fedcba"]) { _ = try ModelFolder(path: "flexiffusion/fashion-mnist", environment: env) }
        #expect(!HuggingFaceCache.isRepositoryID("./a") && !HuggingFaceCache.isRepositoryID("a/b/c") && !HuggingFaceCache.isRepositoryID("../b"))
        #expect(HuggingFaceCache.isRepositoryID("google/ddpm-cifar10-32"))
        // A revision is a name: refs/main cannot lead out of the cache (a model elsewhere is not loaded).
        try FileManager.default.copyItem(atPath: DefaultModel.folder(), toPath: home.appendingPathComponent("elsewhere").path)
        try Data("../../../elsewhere\n".utf8).write(to: repo.appendingPathComponent("refs/main"))
        expectError(containing: ["refs/main holds", "not a revision name"]) { _ = try ModelFolder(path: "flexiffusion/fashion-mnist", environment: env) }
    }

    /// A pipeline folder samples with its own scheduler config, as diffusers' from_pretrained requires;
    /// a bare UNet folder without one takes diffusers' defaults.
    @Test func aPipelineWithoutItsSchedulerIsRefusedForSampling() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("no-scheduler-\(freshSeed())")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(atPath: DefaultModel.folder(), toPath: dir.path)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("scheduler"))
        let folder = try ModelFolder(path: dir.path)
        expectError(containing: ["pipeline folder without scheduler/scheduler_config.json"]) { _ = try folder.samplingSchedulerConfiguration(path: dir.path) }
        let stream = try ComputeStream(device: testDevice())
        expectError(containing: ["without scheduler/scheduler_config.json"]) {
            _ = try PipelineLoader.open(folder, path: dir.path, request: PipelineRequest(batch: 2), stream: stream)
        }
        let bare = try ModelFolder(path: dir.appendingPathComponent("unet").path)
        #expect(try bare.samplingSchedulerConfiguration(path: "unet").className == nil)
    }
}

/// Stable Diffusion's UNet: what a user can get wrong, each refused with the key, tensor or size named.
@Suite struct ConditionalModelErrorTests {
    @Test func missingOrMisshapedEncoderHiddenStates() throws {
        let m = try ScratchModel(copying: "sd2-layout")
        let unet = try m.load()
        var rng = SeededGenerator(seed: freshSeed())
        let sample = randomArray(4 * 16 * 16, &rng)
        expectError(containing: ["UNet2DConditionModel needs encoder_hidden_states", "[1, 77, 40]"]) {
            _ = try unet(sample, timesteps: [10])
        }
        expectError(containing: ["encoder_hidden_states has 10 values", "[1, 77, 40]"]) {
            _ = try unet(sample, timesteps: [10], encoderHiddenStates: randomArray(10, &rng))
        }
        let plain = try ScratchModel(copying: "cifar-layout").load()
        expectError(containing: ["UNet2DModel, which takes none"]) { try plain.setEncoderHiddenStates([1]) }
        expectError(containing: ["UNet2DConditionModel", "text"]) {
            _ = try GenerationPipeline(unet: unet, schedulerConfiguration: SchedulerConfiguration())
        }
    }

    /// SDXL's added conditions: missing, misshapen, given to a UNet without them, or a config whose
    /// text_time embedding lacks its widths or leaves no room for text_embeds.
    @Test func sdxlAddedConditionsAreChecked() throws {
        let m = try ScratchModel(copying: "sdxl-layout")
        let unet = try UNet(folder: ModelFolder(path: m.dir.path), stream: ComputeStream(), batch: 1, height: 16, width: 16)
        #expect(unet.textEmbedsDim == 20 && unet.timeIDCount == 6)
        var rng = SeededGenerator(seed: freshSeed())
        let sample = randomArray(4 * 16 * 16, &rng), states = randomArray(77 * 56, &rng)
        let text = randomArray(20, &rng), ids: [Float] = [1024, 1024, 0, 0, 1024, 1024]
        expectError(containing: ["needs both text_embeds [1, 20] and time_ids [1, 6]"]) {
            _ = try unet(sample, timesteps: [10], encoderHiddenStates: states)
        }
        expectError(containing: ["needs both"]) { _ = try unet(sample, timesteps: [10], encoderHiddenStates: states, textEmbeds: text) }
        expectError(containing: ["text_embeds has 19 values", "[1, 20]"]) {
            _ = try unet(sample, timesteps: [10], encoderHiddenStates: states, textEmbeds: Array(text.prefix(19)), timeIDs: ids)
        }
        expectError(containing: ["time_ids has 5 values", "[1, 6]"]) {
            _ = try unet(sample, timesteps: [10], encoderHiddenStates: states, textEmbeds: text, timeIDs: Array(ids.prefix(5)))
        }
        #expect(try unet(sample, timesteps: [10], encoderHiddenStates: states, textEmbeds: text, timeIDs: ids).allSatisfy(\.isFinite))
        // The refiner's five time ids make text_embeds 28 wide here; 9 leave no room at all.
        #expect(try UNet(folder: ModelFolder(path: m.dir.path), stream: ComputeStream(), batch: 1, height: 16, width: 16, timeIDs: 5).textEmbedsDim == 28)
        expectError(containing: ["9 time ids", "no room for text_embeds", "68"]) {
            _ = try UNet(folder: ModelFolder(path: m.dir.path), stream: ComputeStream(), batch: 1, height: 16, width: 16, timeIDs: 9)
        }
        let sd = try ScratchModel(copying: "sd2-layout").load()
        expectError(containing: ["without an added embedding"]) {
            _ = try sd(randomArray(4 * 16 * 16, &rng), timesteps: [10], encoderHiddenStates: randomArray(77 * 40, &rng), textEmbeds: text, timeIDs: ids)
        }
        let config = m.dir.appendingPathComponent("unet/config.json")
        for (key, value) in [("addition_time_embed_dim", NSNull() as Any), ("projection_class_embeddings_input_dim", NSNull() as Any),
                             ("addition_time_embed_dim", 7 as Any), ("addition_embed_type", "text_image" as Any)] {
            var json = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
            let saved = json
            json[key] = value
            try JSONSerialization.data(withJSONObject: json).write(to: config)
            expectError(containing: ["addition_embed_type", key == "addition_embed_type" ? "text_image" : "text_time"]) {
                _ = try UNetConfiguration.load(from: config)
            }
            try JSONSerialization.data(withJSONObject: saved).write(to: config)
        }
        // The projection's width must match the weights: a wrong one names add_embedding's tensor.
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
        json["projection_class_embeddings_input_dim"] = 72
        try JSONSerialization.data(withJSONObject: json).write(to: config)
        expectError(containing: ["add_embedding.linear_1.weight", "72"]) {
            _ = try UNet(folder: ModelFolder(path: m.dir.path), stream: ComputeStream(), batch: 1, height: 16, width: 16)
        }
    }

    @Test func wrongCrossAttentionDimNamesTheTensor() throws {
        let m = try ScratchModel(copying: "sd2-layout")
        try m.editConfig { $0["cross_attention_dim"] = 768 }
        expectError(containing: ["attn2.to_k.weight", "shape", "768"]) { _ = try m.load() }
    }

    @Test func unsupportedSettingsAreNamed() throws {
        let cases: [(String, Any)] = [
            ("down_block_types", ["CrossAttnDownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]),
            ("up_block_types", ["UpBlock2D", "CrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "CrossAttnUpBlock2D"]),
            ("mid_block_type", "UNetMidBlock2DSimpleCrossAttn"), ("addition_embed_type", "text_time"),
            ("addition_time_embed_dim", 256), ("class_embed_type", "timestep"), ("num_class_embeds", 10),
            ("dual_cross_attention", true), ("num_attention_heads", 8), ("only_cross_attention", true),
            ("encoder_hid_dim", 1024), ("time_cond_proj_dim", 256), ("attention_type", "gated"), ("conv_in_kernel", 5),
            ("attention_head_dim", [1, 2, 3, 4]), ("attention_head_dim", [1, 2]), ("transformer_layers_per_block", [1, 0, 1, 1]),
            ("cross_attention_dim", [40, 40, 64, 40]), ("layers_per_block", [1, 2, 1, 1]), ("act_fn", "gelu"),
        ]
        for (key, value) in cases {
            let m = try ScratchModel(copying: "sd2-layout")
            try m.editConfig { $0[key] = value }
            let shown = (value as? [Any]).map { "\($0.first!)" } ?? "\(value)"
            expectError(containing: [key, shown == "true" ? "true" : shown]) { _ = try m.load() }
        }
        let c = try ScratchModel(copying: "sd2-layout")
        try c.editConfig { $0["_class_name"] = "UNetSpatioTemporalConditionModel" }
        expectError(containing: ["_class_name UNetSpatioTemporalConditionModel"]) { _ = try c.load() }
    }

    @Test func truncatedWeightsAndVariantsAreClear() throws {
        let m = try ScratchModel(copying: "sd2-layout")
        let data = try Data(contentsOf: m.weights)
        try data.prefix(data.count / 2).write(to: m.weights)
        expectError(containing: ["truncated"]) { _ = try m.load() }

        let p = try ScratchModel(copying: "sd15-layout")
        let unetDir = p.dir.appendingPathComponent("unet")
        #expect(try ModelFolder(path: p.dir.path, variant: "fp16").weightsURL.lastPathComponent == "diffusion_pytorch_model.fp16.safetensors")
        #expect(try ModelFolder(path: p.dir.path).weightsURL.lastPathComponent == "diffusion_pytorch_model.fp16.safetensors")
        expectError(containing: ["diffusion_pytorch_model.bf16.safetensors", "--variant bf16", "fp16"]) {
            _ = try ModelFolder(path: p.dir.path, variant: "bf16")
        }
        try FileManager.default.copyItem(at: unetDir.appendingPathComponent("diffusion_pytorch_model.fp16.safetensors"),
                                         to: unetDir.appendingPathComponent("diffusion_pytorch_model.ema.safetensors"))
        expectError(containing: ["several variants", "--variant"]) { _ = try ModelFolder(path: p.dir.path) }
        #expect(try ModelFolder(path: p.dir.path, variant: "ema").weightsURL.lastPathComponent == "diffusion_pytorch_model.ema.safetensors")
    }

    /// A workspace larger than the device is an error naming the bytes needed and the device's memory.
    @Test func workspaceBeyondTheDeviceIsRefused() throws {
        let m = try ScratchModel(copying: "sd2-layout")
        let folder = try ModelFolder(path: m.dir.path)
        let stream = try ComputeStream()
        expectError(containing: ["of device memory", "workspace", "batch 4 at 8192×8192", stream.device.name, "has"]) {
            _ = try UNet(folder: folder, stream: stream, batch: 4, height: 8192, width: 8192)
        }
    }
}
