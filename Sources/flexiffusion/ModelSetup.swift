// A model as the sampling commands (generate, profile, rfid, search) open it.
import Engine
import Foundation
import GPUKernels

struct ModelSetup {
    /// The folder path, and the name latency tables and reports give it.
    let path: String, name: String
    let folder: ModelFolder
    let config: UNetConfiguration
    /// The sample size (height = width); 0 when the config has none and `needsSampleSize` was false.
    let side: Int
    let schedulerConfig: SchedulerConfiguration
    let weights: SafeTensorsFile

    /// `model` as given by --model; nil is the embedded default model.
    init(_ model: String?, needsSampleSize: Bool = true) throws {
        path = try model ?? DefaultModel.folder()
        name = model == nil ? "default (embedded fashion-mnist)" : path
        folder = try ModelFolder(path: path)
        config = try UNetConfiguration.load(from: folder.configURL)
        if needsSampleSize && config.sampleSize == nil { throw ModelError("\(path): the config has no sample_size; give the noise") }
        side = config.sampleSize ?? 0
        schedulerConfig = try folder.schedulerConfiguration()
        weights = try SafeTensorsFile(path: folder.weightsURL.path)
    }

    /// The scheduler kind the folder's scheduler config names (nil without a config or a class name);
    /// a class this engine does not implement is an error naming it.
    func folderScheduler() throws -> SchedulerKind? {
        guard let name = schedulerConfig.className else { return nil }
        guard let kind = SchedulerKind.named(className: name, configuration: schedulerConfig) else {
            throw ModelError("\(path): the scheduler config's class \(name) is not implemented (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler); choose one with --scheduler")
        }
        return kind
    }

    /// The UNet on `stream` for batches of `batch` (of the model's sample size unless given).
    func unet(stream: ComputeStream, batch: Int, height: Int? = nil, width: Int? = nil) throws -> UNet {
        try UNet(config: config, weights: WeightStore(file: weights), stream: stream, batch: batch, height: height ?? side, width: width ?? side)
    }
}
