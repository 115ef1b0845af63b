// transformers' CLIPTextModel against the engine's: last_hidden_state and diffusers' clip_skip outputs
// from goldens written by scripts/goldens/make_clip_text_goldens.py (random weights; quick_gelu with
// transformers 4's `text_model.` names and position_ids, gelu from an fp16 variant), relative L2 ≤ 1e-4
// on every GEMM path; SDXL's CLIPTextModelWithProjection (hidden_states[-2] and the projected pooled
// state); and the errors a user can run into.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct TextEncoderTests {
    static let models = ["clip-text-quick", "clip-text-gelu", "clip-text-projection"]

    @Test(arguments: models, gemmPaths())
    func matchesTransformers(model name: String, path: GemmPath) throws {
        let dir = goldens.appendingPathComponent(name)
        let golden = try SafeTensorsFile(path: dir.appendingPathComponent("golden.safetensors").path)
        let encoder = try CLIPTextModel(folder: dir, stream: ComputeStream(gemm: path), batch: 4)
        #expect(encoder.config.activation == (name == "clip-text-quick" ? .quickGELU : .gelu))
        #expect((encoder.config.projectionDim != nil) == (name == "clip-text-projection"))
        let flat = try golden.floats("input_ids"), L = golden.tensors["input_ids"]!.shape[1]
        let ids = stride(from: 0, to: flat.count, by: L).map { flat[$0 ..< $0 + L].map { Int($0) } }
        for (skip, key) in [(0, "last_hidden_state"), (1, "clip_skip_1"), (2, "clip_skip_2")] {
            let got = try encoder(ids, clipSkip: skip), want = try golden.floats(key)
            let (err, worst) = relativeL2(got, want)
            #expect(err <= 1e-4, "\(name) \(key) via \(path): relative L2 \(err); worst [\(worst)] got \(got[worst]) want \(want[worst])")
        }
        if let P = encoder.config.projectionDim {
            // SDXL's encode_prompt: hidden_states[-2] (and [-3] with clip_skip 1), no final LayerNorm;
            // text_embeds from the pooled end token (legacy eos_token_id 2: the first largest id).
            for (skip, key) in [(0, "penultimate"), (1, "clip_skip_1_xl")] {
                try encoder.encodePenultimate(ids, clipSkip: skip, pooled: skip == 0)
                let got = try encoder.stream.download(encoder.output, count: ids.count * L * encoder.config.hiddenSize)
                let (err, worst) = relativeL2(got, try golden.floats(key))
                #expect(err <= 1e-4, "\(name) \(key) via \(path): relative L2 \(err); worst [\(worst)]")
            }
            try encoder.encodePenultimate(ids, pooled: true)
            let pooled = try encoder.stream.download(encoder.pooledOutput, count: ids.count * P)
            let (err, _) = relativeL2(pooled, try golden.floats("text_embeds"))
            #expect(err <= 1e-4, "\(name) text_embeds via \(path): relative L2 \(err)")
            #expect(ids.map(encoder.poolPosition) == ids.map { row in row.firstIndex(of: row.max()!)! })
            #expect(encoder.poolPosition(ids[1]) == 20)
        }
        // Fewer sequences than the batch, and a shorter sequence: the same rows as the full run's
        // (causal attention: token i depends on tokens 0…i only).
        let full = try encoder(ids)
        let D = encoder.config.hiddenSize, short = try encoder([Array(ids[1].prefix(20))])
        let (err, _) = relativeL2(short, Array(full[L * D ..< L * D + 20 * D]))
        #expect(err <= 1e-5, "\(name): 20-token prefix differs from the full sequence's first 20 rows by \(err)")
    }

    @Test func badInputsAndFilesAreNamed() throws {
        let dir = goldens.appendingPathComponent("clip-text-quick")
        let encoder = try CLIPTextModel(folder: dir, stream: ComputeStream(), batch: 2)
        let ok = Array(repeating: 5, count: 77)
        expectError(containing: ["token id 1000", "1000 tokens"]) { _ = try encoder([ok, ok.map { _ in 1000 }]) }
        expectError(containing: ["3 sequences", "built for 2"]) { _ = try encoder([ok, ok, ok]) }
        expectError(containing: ["different lengths"]) { _ = try encoder([ok, Array(ok.prefix(10))]) }
        expectError(containing: ["78 tokens", "max_position_embeddings 77"]) { _ = try encoder([ok + [1]]) }
        expectError(containing: ["clip_skip 4", "3 layers"]) { _ = try encoder([ok], clipSkip: 4) }
        expectError(containing: ["needs a CLIPTextModelWithProjection"]) { try encoder.encodePenultimate([ok], pooled: true) }
        expectError(containing: ["clip_skip 3", "hidden_states[-(clip_skip + 2)]"]) { try encoder.encodePenultimate([ok], clipSkip: 3, pooled: false) }

        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("text-encoder-\(UUID())")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let config = try String(contentsOf: dir.appendingPathComponent("config.json"), encoding: .utf8)
        func write(_ text: String) throws { try text.write(to: tmp.appendingPathComponent("config.json"), atomically: true, encoding: .utf8) }
        try write(config)
        expectError(containing: ["no model.safetensors"]) { _ = try CLIPTextModel(folder: tmp, stream: ComputeStream(), batch: 1) }
        try FileManager.default.copyItem(at: dir.appendingPathComponent("model.safetensors"), to: tmp.appendingPathComponent("model.safetensors"))
        try write(config.replacingOccurrences(of: "\"quick_gelu\"", with: "\"gelu_new\""))
        expectError(containing: ["hidden_act = gelu_new", "quick_gelu or gelu"]) { _ = try CLIPTextModel(folder: tmp, stream: ComputeStream(), batch: 1) }
        try write(config.replacingOccurrences(of: "\"num_hidden_layers\": 3", with: "\"num_hidden_layers\": 4"))
        expectError(containing: ["missing tensor", "encoder.layers.3"]) { _ = try CLIPTextModel(folder: tmp, stream: ComputeStream(), batch: 1) }
        try write(config.replacingOccurrences(of: "\"num_hidden_layers\": 3", with: "\"num_hidden_layers\": 2"))
        expectError(containing: ["unexpected tensor", "encoder.layers.2"]) { _ = try CLIPTextModel(folder: tmp, stream: ComputeStream(), batch: 1) }
        try write(config.replacingOccurrences(of: "\"hidden_size\": 32", with: "\"hidden_size\": 30"))
        expectError(containing: ["hidden_size 30", "num_attention_heads 4"]) { _ = try CLIPTextModel(folder: tmp, stream: ComputeStream(), batch: 1) }
        try write(config.replacingOccurrences(of: "\"hidden_size\": 32", with: "\"hidden_size\": 32.5"))
        expectError(containing: ["config.json"]) { _ = try CLIPTextModel(folder: tmp, stream: ComputeStream(), batch: 1) }
        try write(config.replacingOccurrences(of: "\"clip_text_model\"", with: "\"clip_vision_model\""))
        expectError(containing: ["clip_vision_model", "not a CLIP text model"]) { _ = try CLIPTextModel(folder: tmp, stream: ComputeStream(), batch: 1) }
    }
}
