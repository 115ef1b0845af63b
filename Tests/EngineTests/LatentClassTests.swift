// Class-conditional and latent UNet2DModels against diffusers (goldens from
// scripts/goldens/make_ldm_goldens.py): the UNet with a class-embedding table and with class_embed_type
// timestep, a VQModel's decoder (quantized first), and the LDMPipeline loop of a class-conditional
// latent model with and without classifier-free guidance over its null class; and the errors a user
// can run into.
import Engine
import Foundation
import GPUKernels
import Testing
import TestSupport

@Suite struct LatentClassTests {
    func golden(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: goldens.appendingPathComponent("\(name)/golden.safetensors").path)
    }

    @Test(arguments: ["ldm-class-layout", "class-timestep-layout"], UNetParityTests.convolutionPaths)
    func classConditionalUNetMatchesDiffusers(model name: String, convolution: ConvolutionPath) throws {
        let g = try golden(name)
        let unet = try UNet(folder: ModelFolder(path: goldens.appendingPathComponent(name).path), stream: ComputeStream(convolution: convolution),
                            batch: 2, height: 8, width: 8)
        #expect(unet.config.hasClassEmbedding)
        let sample = try g.floats("sample"), labels = try g.floats("class_labels").map { Int($0) }
        for t in [1, 500, 999] {
            let got = try unet(sample, timesteps: [Float(t), Float(t)], classLabels: labels), want = try g.floats("output_t\(t)")
            let (err, worst) = relativeL2(got, want)
            print("class parity \(name) t=\(t) \(convolution): \(err)")
            #expect(err <= 1e-4, "\(name) t=\(t) \(convolution): relative L2 \(err); worst [\(worst)] got \(got[worst]) want \(want[worst])")
        }
        // Partial steps see the class too: a cache filled at the same input reproduces the full step.
        try unet.prepareFeatureCache(branches: Set(0..<unet.branchCount))
        let full = try unet(sample, timesteps: [300, 300], classLabels: labels)
        try unet.forward(capturing: Set(0..<unet.branchCount))
        for m in 0..<unet.branchCount {
            try unet.forwardPartial(branch: m)
            let (err, _) = relativeL2(try unet.stream.download(unet.workspace.output, count: full.count), full)
            #expect(err <= 1e-5, "\(name) branch \(m): partial vs full \(err)")
        }
    }

    @Test func vqDecoderQuantizesAndDecodesAsDiffusers() throws {
        let g = try golden("ldm-class-layout"), dir = goldens.appendingPathComponent("ldm-class-layout/vqvae")
        let decoder = try AutoencoderKL(folder: dir, part: .decoder, stream: ComputeStream(), batch: 2, height: 16, width: 16)
        #expect(decoder.config.vq?.embeddings == 64)
        let got = try decoder.decode(try g.floats("vq_latents")), want = try g.floats("vq_images")
        let (err, _) = relativeL2(got, want)
        print("VQ decode parity: \(err)")
        #expect(err <= 1e-4, "VQ decode: relative L2 \(err)")
        expectError(containing: ["encoding with a VQModel is not supported"]) {
            _ = try AutoencoderKL(folder: dir, part: .encoder, stream: ComputeStream(), batch: 1, height: 16, width: 16)
        }
    }

    /// LDMPipeline's loop through the engine's pipeline: class labels [3, 7], DDIM 10 steps from the
    /// golden's noise, with guidance 3 over the null class 10 (latents and decoded images) and without.
    @Test func classConditionalLatentPipelineMatchesDiffusers() throws {
        let g = try golden("ldm-class-layout"), path = goldens.appendingPathComponent("ldm-class-layout").path
        let folder = try ModelFolder(path: path)
        for guided in [true, false] {
            var request = PipelineRequest(batch: 2, guidanceScale: guided ? 3 : 1)
            request.classes = ClassConditioning(labels: [3, 7], nullClass: guided ? 10 : nil)
            let pipeline = try PipelineLoader.open(folder, path: path, request: request, stream: ComputeStream())
            #expect(pipeline.imageShape == [3, 16, 16] && pipeline.batch == 2 && pipeline.unet.batch == (guided ? 4 : 2))
            let plan = StepPlan.teacher(PlanSampler(scheduler: .ddim, steps: 10))
            var latents: [Float] = [], images: [Float] = []
            try pipeline.generate(plan: plan, noise: GenerationNoise(seed: 0, initial: try g.floats("noise")), count: 2) { batch in
                latents += try batch.latents(); images += try batch.download()
            }
            let (errL, _) = relativeL2(latents, try g.floats(guided ? "guided_latents" : "plain_latents"))
            print("LDM pipeline parity, guided \(guided): latents \(errL)" + (guided ? ", images \(relativeL2(images, try g.floats("guided_images")).error)" : ""))
            #expect(errL <= 1e-4, "guided \(guided): latents relative L2 \(errL)")
            if guided {
                let (errI, _) = relativeL2(images, try g.floats("guided_images"))
                #expect(errI <= 1e-3, "guided images relative L2 \(errI)")
            }
        }
    }

    @Test func badClassInputsAreNamed() throws {
        let path = goldens.appendingPathComponent("ldm-class-layout").path, folder = try ModelFolder(path: path)
        let unet = try UNet(folder: folder, stream: ComputeStream(), batch: 1, height: 8, width: 8)
        let sample = [Float](repeating: 0.5, count: 3 * 64)
        expectError(containing: ["class-conditional", "needs class labels"]) { _ = try unet(sample, timesteps: [3]) }
        expectError(containing: ["class label 11 is outside the model's 11 classes"]) { _ = try unet(sample, timesteps: [3], classLabels: [11]) }
        expectError(containing: ["2 class labels for a batch of 1"]) { _ = try unet(sample, timesteps: [3], classLabels: [1, 2]) }
        var request = PipelineRequest(batch: 1, guidanceScale: 3)
        request.classes = ClassConditioning(labels: [1], nullClass: 12)
        expectError(containing: ["null class 12 is outside"]) { _ = try PipelineLoader.open(folder, path: path, request: request, stream: ComputeStream()) }
        // Labels drawn from the seed: in range, never the null class, the same for the same seed.
        let c = ClassConditioning(seed: 5, nullClass: 4)
        let drawn = (0..<200).map { c.label($0, classes: 11) }
        #expect(drawn.allSatisfy { (0..<11).contains($0) && $0 != 4 } && Set(drawn).count == 10)
        #expect(drawn == (0..<200).map { ClassConditioning(seed: 5, nullClass: 4).label($0, classes: 11) })
        let plain = try UNet(folder: ModelFolder(path: goldens.appendingPathComponent("cifar-layout").path), stream: ComputeStream(), batch: 1, height: 16, width: 16)
        expectError(containing: ["without a class embedding"]) { try plain.setClassLabels([1]) }
    }
}
