// Stable Diffusion's UNet (UNet2DConditionModel) against diffusers: whole-model outputs at several
// timesteps and DeepCache's shallow path at every skip branch, from PyTorch goldens written by
// scripts/goldens/make_sd_unet_goldens.py (random weights at SD 1.x and 2.x settings, stored in float16 as
// an fp16 variant and in bfloat16), relative L2 ≤ 1e-4; and the errors a user can run into.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct ConditionalUNetTests {
    /// SD 1.5's and 2.x's layouts, and SDXL's (its added text and time embedding included).
    static let models = ["sd15-layout", "sd2-layout", "sdxl-layout"]

    func load(_ name: String, stream: ComputeStream = try! ComputeStream()) throws -> (UNet, SafeTensorsFile) {
        let dir = goldens.appendingPathComponent(name)
        let golden = try SafeTensorsFile(path: dir.appendingPathComponent("golden.safetensors").path)
        let shape = golden.tensors["sample"]!.shape, context = golden.tensors["encoder_hidden_states"]!.shape
        let unet = try UNet(folder: ModelFolder(path: dir.path), stream: stream, batch: shape[0], height: shape[2], width: shape[3],
                            contextLength: context[1], timeIDs: golden.tensors["time_ids"]?.shape[1] ?? UNet.defaultTimeIDCount)
        #expect((unet.config.textTime != nil) == (golden.tensors["time_ids"] != nil), "\(name): added embedding")
        return (unet, golden)
    }

    /// SDXL's added conditions (`added_cond_kwargs`) when the golden has them.
    func added(_ golden: SafeTensorsFile) throws -> (textEmbeds: [Float]?, timeIDs: [Float]?) {
        guard golden.tensors["time_ids"] != nil else { return (nil, nil) }
        return (try golden.floats("text_embeds"), try golden.floats("time_ids"))
    }

    /// The UNet on the golden's sample, states and added conditions at timestep `t`, and the golden's output there.
    func output(_ unet: UNet, _ golden: SafeTensorsFile, t: Int) throws -> (got: [Float], expected: [Float]) {
        let (text, ids) = try added(golden)
        let got = try unet(try golden.floats("sample"), timesteps: Array(repeating: Float(t), count: unet.batch),
                           encoderHiddenStates: try golden.floats("encoder_hidden_states"), textEmbeds: text, timeIDs: ids)
        return (got, try golden.floats("output_t\(t)"))
    }

    @Test(arguments: models, UNetParityTests.convolutionPaths)
    func matchesDiffusers(model name: String, convolution: ConvolutionPath) throws {
        let (unet, golden) = try load(name, stream: ComputeStream(convolution: convolution))
        #expect(unet.config.isConditional)
        for t in [1, 500, 999] {
            let (got, expected) = try output(unet, golden, t: t)
            let (err, worst) = relativeL2(got, expected)
            print("parity \(name) t=\(t) \(convolution): \(err)")
            #expect(err <= 1e-4, "\(name) t=\(t) \(convolution): relative L2 \(err); worst [\(worst)] got \(got[worst]) want \(expected[worst])")
        }
    }

    /// `--precision bf16` on Stable Diffusion's UNet (its convolutions in bf16; cross-attention, the
    /// transformer's linear layers and GroupNorm in fp32): within UNetParityTests' bf16 bound of the
    /// fp32 goldens; fp32 to 1e-4 where the CPU has no native bf16.
    @Test(arguments: models)
    func matchesDiffusersInBFloat16(model name: String) throws {
        guard UNetParityTests.convolutionPaths.contains(.oneDNN) else { return }
        let stream = try ComputeStream(gemm: .hostBLAS, convolution: .oneDNN)
        stream.setPrecision(.bfloat16)
        let bf16 = stream.backends.precision == .bfloat16
        let (unet, golden) = try load(name, stream: stream)
        for t in [1, 999] {
            let (got, expected) = try output(unet, golden, t: t)
            let (err, worst) = relativeL2(got, expected)
            print("bf16 parity \(name) t=\(t): relative L2 \(err)")
            #expect(err <= (bf16 ? UNetParityTests.bfloat16Tolerance : 1e-4),
                    "\(name) t=\(t) \(stream.backends.precision): relative L2 \(err); worst [\(worst)] got \(got[worst]) want \(expected[worst])")
            if bf16 { #expect(err > 1e-4, "\(name) t=\(t): a bf16 run as close as fp32 (\(err)) did not round") }
        }
    }

    /// Branches under DeepCache's names: the skip of a CrossAttnDownBlock2D layer is its transformer's
    /// output; DeepCacheSDHelper's cache_branch_id B is our branch B on SD's two-layer blocks (its
    /// down block B / 3, position B % 3), the pipelines' (cache_layer_id i, cache_block_id j) branch 3i + j + 1.
    @Test func branchesCarryDeepCachesNames() throws {
        let config = try UNetConfiguration.load(from: goldens.appendingPathComponent("sd15-layout/unet/config.json"))
        #expect(config.branchCount == 12)
        #expect(config.branchName(0).hasPrefix("conv_in (DeepCache cache_branch_id 0)"))
        #expect(config.branchName(1).hasPrefix("down_blocks.0.attentions.0 ("))
        #expect(config.branchName(1).contains("cache_branch_id 1;") && config.branchName(1).contains("cache_layer_id 0, cache_block_id 0"))
        #expect(config.branchName(3).hasPrefix("down_blocks.0.downsamplers.0 ("))
        #expect(config.branchName(10).hasPrefix("down_blocks.3.resnets.0 ("))   // (DownBlock2D: no attention)
        for m in 0..<config.branchCount {
            #expect(try config.branch(cacheBranchID: m) == m)
            #expect(config.helperBranchID(m) == m)
        }
        #expect(try config.branch(cacheLayerID: 1, cacheBlockID: 1) == 5)
        expectError(containing: ["cache_branch_id 12", "down block 4, position 0", "0…11"]) { _ = try config.branch(cacheBranchID: 12) }
        expectError(containing: ["cache_branch_id -1"]) { _ = try config.branch(cacheBranchID: -1) }
        // One layer per block: position 2 runs the downsampler too, with the up path of position 1.
        var one = config
        one.layersPerBlock = 1
        #expect(try one.branch(cacheBranchID: 4) == 3)   // down block 1, position 1: down_blocks.1's first layer
        #expect(one.branchName(3).hasPrefix("down_blocks.1.attentions.0") && one.branchName(3).contains("cache_branch_id 4;"))
        #expect(try one.branch(cacheBranchID: 2) == 1 && one.branch(cacheBranchID: 11) == 7)
        expectError(containing: ["cache_branch_id 12", "0…11"]) { _ = try one.branch(cacheBranchID: 12) }
    }

    /// A partial step equals DeepCache's shallow path on diffusers' UNet2DConditionModel at every
    /// branch (cache from a full step at another input and timestep), and equals a full step when
    /// the cache comes from the same input.
    @Test(arguments: models)
    func partialStepsMatchDeepCache(model name: String) throws {
        let (unet, golden) = try load(name)
        let branches = golden.tensors.keys.filter { $0.hasPrefix("partial_m") }.count
        #expect(branches == unet.branchCount)
        let all = Set(0..<unet.branchCount), ws = unet.workspace, q = unet.stream.queue, N = unet.batch
        try unet.prepareFeatureCache(branches: all)
        try unet.setEncoderHiddenStates(try golden.floats("encoder_hidden_states"))
        if case let (text?, ids?) = try added(golden) { try unet.setAddedConditions(textEmbeds: text, timeIDs: ids) }
        func run(_ input: String, _ t: String, _ pass: () throws -> Void) throws -> [Float] {
            try ws.input.write(try golden.floats(input), queue: q)
            try ws.timesteps.write(Array(repeating: try golden.floats(t)[0], count: N), queue: q)
            try pass()
            return try unet.stream.download(ws.output)
        }
        _ = try run("sample_full", "t_full") { try unet.forward(capturing: all) }
        for m in 0..<branches {
            let got = try run("sample_partial", "t_partial") { try unet.forwardPartial(branch: m) }
            let want = try golden.floats("partial_m\(m)")
            let (err, worst) = relativeL2(got, want)
            #expect(err <= 1e-4, "\(name) branch \(m): relative L2 \(err); worst [\(worst)] got \(got[worst]) want \(want[worst])")
        }
        // Same input: every partial step reproduces the full step.
        let full = try run("sample_partial", "t_partial") { try unet.forward(capturing: all) }
        for m in 0..<branches {
            let got = try run("sample_partial", "t_partial") { try unet.forwardPartial(branch: m) }
            let (err, _) = relativeL2(got, full)
            #expect(err <= 1e-5, "\(name) branch \(m): partial vs full at the same input, relative L2 \(err)")
        }
        // Partial steps cost less, deeper branches more.
        let costs = (0..<branches).map { unet.macs(for: .partial(branch: $0)) }
        #expect(costs == costs.sorted() && costs.last! < unet.macs)
    }
}
