// A UNet2DModel as an ImagePipeline: its samples are the images (no conditioning, no decoder), as
// diffusers' DDPMPipeline and DDIMPipeline sample. The batch loop is BatchRunner's.
import Foundation
import GPUKernels

/// A UNet2DModel on one device with samplers for any plan.
public final class GenerationPipeline: ImagePipeline {
    public let unet: UNet
    public let samplers: SamplerCache
    /// The folder the model came from (for `contentKey`; nil for a UNet built otherwise).
    public let folder: ModelFolder?

    public init(unet: UNet, schedulerConfiguration: SchedulerConfiguration, folder: ModelFolder? = nil) throws {
        try Self.checkCanGenerate(unet.config)
        self.unet = unet; self.folder = folder
        samplers = SamplerCache(unet: unet, schedulerConfiguration: schedulerConfiguration)
    }

    /// Checks that images can be generated from noise alone with a model of `config`: it predicts
    /// the sample's shape and takes no text conditioning.
    public static func checkCanGenerate(_ config: UNetConfiguration) throws {
        try Sampler.checkCanSample(config)
        if config.isConditional {
            throw ModelError("this is a UNet2DConditionModel (Stable Diffusion): it samples from text, on its pipeline folder (TextToImagePipeline: `generate --prompt`, `rfid` and `search` with --prompts); `forward`, `profile`, `plan show` and `bench unet` run it alone")
        }
    }

    /// Images per forward pass.
    public var batch: Int { unet.batch }
    public var imageShape: [Int] { [unet.config.outChannels, unet.height, unet.width] }

    /// The samples are the images.
    public func output(of sampler: Sampler, images: Range<Int>) throws -> DeviceBuffer<Float> { sampler.sampleBuffer }

    /// The model folder's weights and configs (`RFIDEvaluator.modelKey`).
    public func contentKey() throws -> String {
        guard let folder else { throw ModelError("this pipeline's UNet was not loaded from a folder: give its key") }
        return try RFIDEvaluator.modelKey(folder: folder)
    }
}
