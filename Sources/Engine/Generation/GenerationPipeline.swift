// A UNet2DModel as an ImagePipeline: its samples are the images (no conditioning, no decoder), as
// diffusers' DDPMPipeline and DDIMPipeline sample; or, for a latent model, its samples are latents
// that LDMPipeline's decoder turns into images (`vqvae`: a VQModel, quantized first; or a `vae`),
// after dividing them by its scaling_factor. A class-conditional UNet2DModel (num_class_embeds, or
// class_embed_type timestep) takes class labels per image (given, cycled, or drawn from the seed),
// with classifier-free guidance where the model has a null class. The batch loop is BatchRunner's.
import Foundation
import GPUKernels

/// The class labels of a class-conditional UNet2DModel's images.
public struct ClassConditioning: Sendable {
    /// Image i's label is labels[i mod n]; nil: drawn uniformly from the classes (the null class
    /// left out) by `seed`, image by image.
    public var labels: [Int]?
    public var seed: UInt64
    /// The class the model was trained to take as "no class" (classifier-free guidance's
    /// unconditional half); nil: no guidance.
    public var nullClass: Int?

    public init(labels: [Int]? = nil, seed: UInt64 = 0, nullClass: Int? = nil) {
        self.labels = labels; self.seed = seed; self.nullClass = nullClass
    }

    /// Image `i`'s label among `classes` classes.
    public func label(_ i: Int, classes: Int) -> Int {
        if let labels, !labels.isEmpty { return labels[i % labels.count] }
        var g = SplitMix64(seed: (seed ^ 0xC1A55) &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
        let choices = nullClass.map { $0 >= 0 && $0 < classes ? classes - 1 : classes } ?? classes
        var k = Int(g.next() % UInt64(max(1, choices)))
        if let null = nullClass, k >= null { k += 1 }
        return k
    }
}

/// A UNet2DModel on one device with samplers for any plan.
public final class GenerationPipeline: ImagePipeline {
    public let unet: UNet
    public let samplers: SamplerCache
    /// The folder the model came from (for `contentKey`; nil for a UNet built otherwise).
    public let folder: ModelFolder?
    /// A latent model's decoder (LDMPipeline's `vqvae`, or a `vae`), at this pipeline's batch; nil for pixels.
    public let decoder: AutoencoderKL?
    /// Class labels of a class-conditional model (nil otherwise).
    public let classes: ClassConditioning?
    /// Classifier-free guidance over the null class (nil: none; the UNet's batch is then twice `batch`).
    public let guidanceScale: Float?

    public init(unet: UNet, schedulerConfiguration: SchedulerConfiguration, folder: ModelFolder? = nil, decoder: AutoencoderKL? = nil,
                classes: ClassConditioning? = nil, guidanceScale: Float? = nil) throws {
        try Self.checkCanGenerate(unet.config)
        if unet.config.hasClassEmbedding && classes == nil {
            throw ModelError(argument: "this UNet2DModel is class-conditional: give class labels (or none: they are drawn from the seed)")
        }
        if !unet.config.hasClassEmbedding && classes != nil {
            throw ModelError(argument: "class labels are for class-conditional UNet2DModels (num_class_embeds or class_embed_type); this one has no class embedding")
        }
        let guided = guidanceScale.map { $0 > 1 } ?? false
        if guided {
            guard let null = classes?.nullClass else {
                throw ModelError(argument: "classifier-free guidance of a class-conditional model needs its null class (--null-class): the label it was trained to take as \"no class\"")
            }
            if let n = unet.config.numClassEmbeds, unet.config.classEmbedType == nil, !(0..<n).contains(null) {
                throw ModelError(argument: "the null class \(null) is outside the model's \(n) classes (0…\(n - 1))")
            }
        }
        if let decoder {
            guard decoder.config.decoderInputChannels == unet.config.outChannels else {
                throw ModelError("the latent decoder takes \(decoder.config.decoderInputChannels) channels; the UNet makes \(unet.config.outChannels)")
            }
        }
        self.unet = unet; self.folder = folder; self.decoder = decoder; self.classes = classes
        self.guidanceScale = guided ? guidanceScale : nil
        samplers = SamplerCache(unet: unet, schedulerConfiguration: schedulerConfiguration, guidanceScale: guided ? guidanceScale : nil)
    }

    /// Checks that images can be generated from noise alone with a model of `config`: it predicts
    /// the sample's shape and takes no text conditioning.
    public static func checkCanGenerate(_ config: UNetConfiguration) throws {
        try Sampler.checkCanSample(config)
        if config.isConditional {
            throw ModelError("this is a UNet2DConditionModel (Stable Diffusion): it samples from text, on its pipeline folder (TextToImagePipeline: `generate --prompt`, `rfid` and `search` with --prompts); `forward`, `profile`, `plan show` and `bench unet` run it alone")
        }
    }

    /// Images per forward pass (half the UNet's batch with guidance).
    public var batch: Int { guidanceScale == nil ? unet.batch : unet.batch / 2 }
    public var imageShape: [Int] {
        guard let decoder else { return [unet.config.outChannels, unet.height, unet.width] }
        return [decoder.config.outChannels, decoder.height, decoder.width]
    }

    /// Each slot's class label (with guidance, the null class in the first half).
    public func condition(images: [Int]) throws {
        guard let classes else { return }
        let count = unet.config.numClassEmbeds ?? Int.max
        let labels = images.map { classes.label($0, classes: count) }
        try unet.setClassLabels(guidanceScale == nil ? labels : labels.map { _ in classes.nullClass! } + labels)
    }

    /// The samples, or a latent model's decoded latents.
    public func output(of sampler: Sampler, images: Range<Int>) throws -> DeviceBuffer<Float> {
        guard let decoder else { return sampler.sampleBuffer }
        return try decoded(sampler, by: decoder, images: images)
    }

    /// The model folder's weights and configs (`RFIDEvaluator.modelKey`), the decoder's, and the class labels.
    public func contentKey() throws -> String {
        guard let folder else { throw ModelError("this pipeline's UNet was not loaded from a folder: give its key") }
        let base = try RFIDEvaluator.modelKey(folder: folder)
        guard decoder != nil || classes != nil else { return base }
        var h = FNV1a()
        h.add(Array(base.utf8))
        if let dir = Self.latentDecoderFolder(folder) {
            for url in [try ModelFolder.weights(in: dir, variant: nil), dir.appendingPathComponent("config.json")] {
                h.add(Array(url.lastPathComponent.utf8)); h.add(try Data(contentsOf: url))
            }
        }
        if let c = classes {
            h.add(Array("classes \(c.labels.map { "\($0)" } ?? "seed \(c.seed)")|null \(c.nullClass.map(String.init) ?? "-")|guidance \(guidanceScale ?? 1)".utf8))
        }
        return h.hex
    }

    /// A pipeline folder's latent decoder: `vqvae/` (LDMPipeline) or `vae/` beside a UNet2DModel.
    public static func latentDecoderFolder(_ folder: ModelFolder) -> URL? {
        guard folder.isPipeline else { return nil }
        return ["vqvae", "vae"].map { folder.root.appendingPathComponent($0) }
            .first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("config.json").path) }
    }
}
