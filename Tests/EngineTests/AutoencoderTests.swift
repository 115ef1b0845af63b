// diffusers' AutoencoderKL against the engine's: the decoder's images for random latents and the
// encoder's latent mean and log-variance for random images, from goldens written by
// scripts/goldens/make_vae_goldens.py (random weights, Stable Diffusion's block structure at small widths),
// relative L2 ≤ 1e-4 on both convolution paths; and the errors a user can run into.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct AutoencoderTests {
    static let folder = goldens.appendingPathComponent("vae-layout")

    @Test(arguments: UNetParityTests.convolutionPaths)
    func matchesDiffusers(convolution: ConvolutionPath) throws {
        let golden = try SafeTensorsFile(path: Self.folder.appendingPathComponent("golden.safetensors").path)
        let stream = try ComputeStream(convolution: convolution)
        let decoder = try AutoencoderKL(folder: Self.folder, part: .decoder, stream: stream, batch: 2, height: 32, width: 32)
        #expect(decoder.config.downscale == 4 && decoder.config.scalingFactor == 0.18215)
        let latents = try golden.floats("latents")
        let images = try decoder.decode(latents), want = try golden.floats("decoded")
        var (err, worst) = relativeL2(images, want)
        #expect(err <= 1e-4, "decoder via \(convolution): relative L2 \(err); worst [\(worst)] got \(images[worst]) want \(want[worst])")
        // The pipelines' scaling is a division before the same decoder.
        let scaled = try decoder.decodeScaled(latents.map { $0 * Float(0.18215) })
        (err, _) = relativeL2(scaled, want)
        #expect(err <= 1e-4, "decodeScaled: relative L2 \(err)")

        let encoder = try AutoencoderKL(folder: Self.folder, part: .encoder, stream: stream, batch: 2, height: 32, width: 32)
        let (mean, logvar) = try encoder.encode(try golden.floats("images"))
        for (got, key) in [(mean, "mean"), (logvar, "logvar")] {
            let want = try golden.floats(key)
            let (err, worst) = relativeL2(got, want)
            #expect(err <= 1e-4, "encoder \(key) via \(convolution): relative L2 \(err); worst [\(worst)] got \(got[worst]) want \(want[worst])")
        }
    }

    @Test func badInputsAndConfigsAreNamed() throws {
        let stream = try ComputeStream()
        expectError(containing: ["divisible by 4", "30×32"]) {
            _ = try AutoencoderKL(folder: Self.folder, part: .decoder, stream: stream, batch: 1, height: 30, width: 32)
        }
        let decoder = try AutoencoderKL(folder: Self.folder, part: .decoder, stream: stream, batch: 1, height: 16, width: 16)
        expectError(containing: ["latents have 3 values", "[1, 4, 4, 4] = 64"]) { _ = try decoder.decode([1, 2, 3]) }
        expectError(containing: ["built as the decoder"]) { _ = try decoder.encode([1]) }

        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("vae-\(UUID())")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.copyItem(at: Self.folder.appendingPathComponent("diffusion_pytorch_model.safetensors"),
                                         to: tmp.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        let config = try String(contentsOf: Self.folder.appendingPathComponent("config.json"), encoding: .utf8)
        func expectConfigError(_ replace: (String, String), _ needles: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
            try config.replacingOccurrences(of: replace.0, with: replace.1)
                .write(to: tmp.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
            expectError(containing: needles, sourceLocation: sourceLocation) {
                _ = try AutoencoderKL(folder: tmp, part: .decoder, stream: stream, batch: 1, height: 32, width: 32)
            }
        }
        // A config from before latents_mean, latents_std, shift_factor and the quant-conv switches (as
        // SD 1.5's vae/config.json) takes diffusers' defaults.
        var older = config
        for key in ["latents_mean", "latents_std", "shift_factor"] {
            older = older.replacingOccurrences(of: "  \"\(key)\": null,\n", with: "")
        }
        #expect(!older.contains("latents_mean") && !older.contains("shift_factor"))
        try older.write(to: tmp.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        let plain = try AutoencoderKL(folder: tmp, part: .decoder, stream: stream, batch: 1, height: 16, width: 16)
        #expect(plain.config.shiftFactor == nil && plain.config.useQuantConv)
        try expectConfigError(("\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\""), ["act_fn gelu"])
        try expectConfigError(("\"latents_mean\": null", "\"latents_mean\": [0.1, 0.2, 0.3, 0.4]"), ["latents_mean", "not supported"])
        try expectConfigError(("\"norm_num_groups\": 8", "\"norm_num_groups\": 6"), ["not a multiple of norm_num_groups 6"])
        try expectConfigError(("\"use_quant_conv\": true", "\"use_quant_conv\": true, \"spatial_norm\": 1"), ["unsupported key spatial_norm"])
        try expectConfigError(("\"layers_per_block\": 2", "\"layers_per_block\": 3"), ["missing tensor", "resnets.3"])
        try expectConfigError(("\"AutoencoderKL\"", "\"AutoencoderTiny\""), ["AutoencoderTiny", "AutoencoderKL or VQModel"])
    }
}
