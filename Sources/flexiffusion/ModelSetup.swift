// A model as the sampling commands (profile, rfid, search) open it.
import Engine
import Foundation
import GPUKernels

struct ModelSetup {
    /// The folder path, and the name latency tables and reports give it.
    let path: String, name: String
    let folder: ModelFolder
    let config: UNetConfiguration
    /// The sample size (height = width).
    let side: Int
    let schedulerConfig: SchedulerConfiguration
    let weights: SafeTensorsFile

    /// `model` as given by --model; nil is the embedded default model.
    init(_ model: String?) throws {
        path = try model ?? DefaultModel.folder()
        name = model == nil ? "default (embedded fashion-mnist)" : path
        folder = try ModelFolder(path: path)
        config = try UNetConfiguration.load(from: folder.configURL)
        guard let side = config.sampleSize else { throw ModelError("\(path): the config has no sample_size") }
        self.side = side
        schedulerConfig = try folder.schedulerConfiguration()
        weights = try SafeTensorsFile(path: folder.weightsURL.path)
    }

    /// The UNet on `stream` for batches of `batch`.
    func unet(stream: ComputeStream, batch: Int) throws -> UNet {
        try UNet(config: config, weights: WeightStore(file: weights), stream: stream, batch: batch, height: side, width: side)
    }
}
