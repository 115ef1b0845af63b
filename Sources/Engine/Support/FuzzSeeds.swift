// Valid files of each format the fuzzer mutates: written by the engine's own writers where it has
// them (safetensors, plans, .npz, PNG, latency tables), from the embedded default model's configs, and
// small configs with Stable Diffusion's layouts (as diffusers and transformers write them).
import CZlib
import Foundation

enum FuzzSeeds {
    static func make(_ reader: FuzzReader) throws -> [(name: String, bytes: [UInt8])] {
        var rng = SplitMix64(seed: 7)
        func values(_ n: Int) -> [Float] { (0..<n).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 } }
        switch reader {
        case .safetensors:
            let f32 = try writtenBySafeTensorsWriter([("sample", [2, 1, 4, 4], values(32)), ("bias", [3], values(3)), ("empty", [0, 4], [])])
            let mixed = safetensors(tensors: [("conv.weight", "F16", [2, 3]), ("conv.bias", "BF16", [2]), ("scale", "F32", [])],
                                    metadata: ["format": "pt"], rng: &rng)
            return [("f32 with sample", f32), ("f16/bf16 with metadata", mixed)]
        case .plan:
            let ddim = PlanSampler(steps: 10)
            var plans = try [("deepcache", StepPlan.deepCacheUniform(ddim, interval: 3, branch: 2)),
                         ("segments", try StepPlan.segments(ddim, intervals: [3, 2], branches: [1, 4])),
                         ("unipc with null steps", StepPlan(sampler: PlanSampler(scheduler: .unipc, steps: 6, order: 3),
                                                            actions: [.full, .null, .partial(branch: 0), .full, .null, .full])),
                         ("dpmsolver++ timesteps", StepPlan.teacher(PlanSampler(scheduler: .dpmsolverPlusPlus, steps: 4, order: 2, timesteps: [999, 700, 400, 100]))),
                         ("pndm runge-kutta", StepPlan.teacher(PlanSampler(scheduler: .pndm, steps: 5, skipPRKSteps: false))),
                         ("ddim eta", StepPlan.teacher(PlanSampler(steps: 3, eta: 0.5))),
                         ("unipc trailing spacing", StepPlan(sampler: PlanSampler(scheduler: .unipc, steps: 4, order: 3, spacing: .trailing),
                                                             actions: [.full, .partial(branch: 2), .null, .full]))]
                .map { ($0.0, [UInt8](try $0.1.jsonData())) }
            let best = try JSONSerialization.jsonObject(with: Data(plans[0].1))
            plans.append(("search results", [UInt8](try JSONSerialization.data(withJSONObject: ["format": "flexiffusion-search", "version": 1, "best_plan": best]))))
            return plans
        case .config:
            let folder = try ModelFolder(path: try DefaultModel.folder())
            var seeds = [("default UNet2DModel", [UInt8](try Data(contentsOf: folder.configURL)))]
            if let s = folder.schedulerConfigURL { seeds.append(("default DDIM scheduler", [UInt8](try Data(contentsOf: s)))) }
            return seeds + [("UNet2DConditionModel", sd15UNet), ("AutoencoderKL", vae), ("CLIPTextModel", clipText),
                            ("PNDM scheduler", pndmScheduler), ("DPM-Solver++ Karras scheduler", dpmScheduler)].map { ($0.0, Array($0.1.utf8)) }
        case .idx:
            let pixels = (0..<(3 * 5 * 4)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let images: [UInt8] = [0, 0, 8, 3] + be32(3) + be32(5) + be32(4) + pixels
            return [("images", images), ("images gzipped", Zlib.deflate(images, format: .gzip)), ("labels", [0, 0, 8, 1] + be32(3) + [1, 7, 9])]
        case .npz:
            let d = 3
            var sigma = [Double](repeating: 0, count: d * d)
            for i in 0..<d { for j in 0..<d { sigma[i * d + j] = i == j ? 2 : 0.25 } }
            let entries = [("mu.npy", [UInt8](NumPy.npy(NumPyArray(shape: [d], values: [0.5, -1, 2])))),
                           ("sigma.npy", [UInt8](NumPy.npy(NumPyArray(shape: [d, d], values: sigma))))]
            return [("stored", NumPy.zip(entries, deflate: false)), ("deflated", NumPy.zip(entries, deflate: true))]
        case .png:
            let grey = [UInt8](PNG.encode(width: 5, height: 3, channels: 1, pixels: (0..<15).map { _ in UInt8(truncatingIfNeeded: rng.next()) }))
            let rgb = [UInt8](PNG.encode(width: 4, height: 4, channels: 3, pixels: (0..<48).map { _ in UInt8(truncatingIfNeeded: rng.next()) }))
            return [("grey", grey), ("rgb", rgb), ("rgb, compressed", recompressPNG(rgb))]
        case .latency:
            var table = LatencyTable()
            table.insert(StepLatencies(model: "m", modelFingerprint: "abc", batch: 8, height: 28, width: 28, gemm: "host-blas", convolution: "onednn",
                                       fullMs: 100, partialMs: ["0": 20, "1": 40], nullMs: 0.1, schedulerMs: 0.05,
                                       fullMACs: 1_000_000, partialMACs: ["0": 100_000, "1": 300_000], repeats: 5, measured: "2026-11-28T10:00:00Z"),
                         device: "pthread-cpu")
            return [("table", [UInt8](try table.jsonData()))]
        case .prompts:
            return [("captions", "a red bicycle leaning on a brick wall\nTwo cats on a sofa, watercolor!!\n🍕 pizza at 3 a.m.\n"),
                    ("line endings", "first\r\nsecond\rthird\u{2028}fourth\n\n   \nfifth"),
                    ("specials and long", "<|startoftext|>x<|endoftext|>\n" + String(repeating: "very long ", count: 40) + "\n東京タワー ΣΟΦΊΑ")]
                .map { ($0.0, Array($0.1.utf8)) }
        }
    }

    // MARK: safetensors

    private static func writtenBySafeTensorsWriter(_ tensors: [(String, [Int], [Float])]) throws -> [UInt8] {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-fuzz-seed-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsWriter.write(tensors.map { (name: $0.0, shape: $0.1, values: $0.2) }, to: url.path)
        return [UInt8](try Data(contentsOf: url))
    }

    /// A safetensors file of tensors (name, dtype, shape) with random bytes (small values).
    private static func safetensors(tensors: [(String, String, [Int])], metadata: [String: String], rng: inout SplitMix64) -> [UInt8] {
        var header: [String: Any] = ["__metadata__": metadata], data: [UInt8] = []
        for (name, dtype, shape) in tensors {
            let count = shape.reduce(1, *) * (dtype == "F32" ? 4 : 2)
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next() & 0x3F) }
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [data.count, data.count + bytes.count]]
            data += bytes
        }
        let json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        return frame(header: [UInt8](json), data: data)
    }

    /// The 8-byte little-endian header length, the header, the data.
    static func frame(header: [UInt8], data: [UInt8]) -> [UInt8] {
        withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header + data
    }

    /// The parsed header of safetensors bytes (nil when it does not parse).
    static func safetensorsHeader(_ bytes: [UInt8]) -> Any? {
        guard bytes.count >= 8 else { return nil }
        let n = UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        guard n <= UInt64(bytes.count - 8) else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + Int(n))]))
    }

    // MARK: PNG

    private static func be32(_ v: Int) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: v >> $0) } }
    /// The PNG with its IDAT recompressed by zlib at level 9 (Huffman blocks; the encoder stores).
    private static func recompressPNG(_ png: [UInt8]) -> [UInt8] {
        // IHDR is the first chunk (8 + 25 bytes), IDAT the second.
        let idatLength = png[33..<37].reduce(0) { $0 << 8 | Int($1) }
        let zlibData = Array(png[41..<(41 + idatLength)])
        guard let raw = try? Zlib.inflate(zlibData, format: .zlib, name: "seed") else { return png }
        let packed = Zlib.deflate(raw, format: .zlib)
        var chunk = Array("IDAT".utf8) + packed
        let crc = chunk.withUnsafeMutableBufferPointer { Int(crc32(0, $0.baseAddress, uInt($0.count))) }
        chunk = be32(packed.count) + chunk + be32(crc)
        return Array(png[0..<33]) + chunk + Array(png[(41 + idatLength + 4)...])
    }

    // MARK: configs with Stable Diffusion's layouts (reduced widths)

    static let sd15UNet = """
        {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.42.1", "act_fn": "silu", "addition_embed_type": null,
         "attention_head_dim": 4, "block_out_channels": [16, 32, 32, 32], "center_input_sample": false, "class_embed_type": null,
         "cross_attention_dim": 48, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
         "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
         "layers_per_block": 2, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05,
         "norm_num_groups": 8, "num_attention_heads": null, "only_cross_attention": false, "out_channels": 4, "sample_size": 16,
         "transformer_layers_per_block": [1, 2, 1, 1], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
         "upcast_attention": false, "use_linear_projection": true}
        """
    static let vae = """
        {"_class_name": "AutoencoderKL", "_diffusers_version": "0.42.1", "act_fn": "silu", "block_out_channels": [16, 32, 32],
         "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"], "force_upcast": true, "in_channels": 3,
         "latent_channels": 4, "latents_mean": null, "latents_std": null, "layers_per_block": 2, "mid_block_add_attention": true,
         "norm_num_groups": 8, "out_channels": 3, "sample_size": 32, "scaling_factor": 0.18215, "shift_factor": null,
         "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"], "use_post_quant_conv": true, "use_quant_conv": true}
        """
    static let clipText = """
        {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 998, "eos_token_id": 999, "hidden_act": "quick_gelu",
         "hidden_size": 32, "intermediate_size": 37, "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
         "num_attention_heads": 4, "num_hidden_layers": 3, "pad_token_id": 1, "projection_dim": 512, "vocab_size": 1000}
        """
    static let pndmScheduler = """
        {"_class_name": "PNDMScheduler", "_diffusers_version": "0.42.1", "beta_end": 0.012, "beta_schedule": "scaled_linear",
         "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true,
         "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null, "prediction_type": "epsilon"}
        """
    static let dpmScheduler = """
        {"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++", "beta_end": 0.02, "beta_schedule": "linear",
         "beta_start": 0.0001, "final_sigmas_type": "zero", "lower_order_final": true, "num_train_timesteps": 1000,
         "prediction_type": "v_prediction", "solver_order": 3, "solver_type": "midpoint", "timestep_spacing": "trailing",
         "use_karras_sigmas": true, "euler_at_final": false, "steps_offset": 0}
        """
}

/// A CLIP tokenizer over a byte-level vocabulary (every byte, every byte ending a word, the
/// specials; no merges): what the prompt reader's output is tokenized with when fuzzed.
let fuzzTokenizer: CLIPTokenizer = {
    var bytes = Array(33...126) + Array(161...172) + Array(174...255), chars = bytes, n = 0
    for b in 0..<256 where !bytes.contains(b) { bytes.append(b); chars.append(256 + n); n += 1 }
    let symbols = chars.map { String(Character(Unicode.Scalar($0)!)) }
    let vocab = symbols + symbols.map { $0 + "</w>" } + ["<|startoftext|>", "<|endoftext|>"]
    return try! CLIPTokenizer(vocabulary: Dictionary(uniqueKeysWithValues: vocab.enumerated().map { ($1, $0) }), merges: [])
}()
