// Feature extractors for FID: images on the device in model space ([-1, 1], NCHW) → feature rows on
// the device. The domain network for the default model is a small Fashion-MNIST classifier
// (scripts/tools/train_feature_net.py) whose penultimate layer (128-d, after ReLU) is the feature space.
import Foundation
import GPUKernels

/// Turns a batch of images on the device into feature vectors on the device.
public protocol FeatureExtractor: AnyObject {
    /// Short name, as `--features` takes it.
    var name: String { get }
    /// Changes whenever the network or its weights change (cache keys).
    var fingerprint: String { get }
    var dims: Int { get }
    var batch: Int { get }
    var channels: Int { get }
    var height: Int { get }
    var width: Int { get }
    var stream: ComputeStream { get }
    /// Reads `images` [batch, channels, height, width] and writes `batch` feature rows into
    /// `features` starting at row `row` (features is [rows, dims]).
    func extract(_ images: DeviceBuffer<Float>, into features: DeviceBuffer<Float>, row: Int) throws
}

/// config.json of the domain network.
public struct FeatureNetConfiguration: Codable, Equatable, Sendable {
    public var className: String
    public var inChannels: Int, imageSize: Int
    public var channels: [Int]
    public var embedDim: Int, numClasses: Int
    public var testAccuracy: Double?

    enum CodingKeys: String, CodingKey {
        case className = "_class_name", inChannels = "in_channels", imageSize = "image_size", channels
        case embedDim = "embed_dim", numClasses = "num_classes", testAccuracy = "test_accuracy"
    }
}

/// conv 3×3 → ReLU → conv 3×3 → ReLU → max-pool 2, twice; Linear → ReLU (features); Linear (logits).
public final class FashionFeatureNet: FeatureExtractor {
    public let name = "fashion"
    public let config: FeatureNetConfiguration
    public let fingerprint: String
    public let batch: Int
    public let stream: ComputeStream
    public var dims: Int { config.embedDim }
    public var channels: Int { config.inChannels }
    public var height: Int { config.imageSize }
    public var width: Int { config.imageSize }

    struct Conv { let shape: Conv2dShape; let weight: DeviceBuffer<Float>; let bias: DeviceBuffer<Float> }
    let convs: [Conv]
    let embed: (DeviceBuffer<Float>, DeviceBuffer<Float>), classifier: (DeviceBuffer<Float>, DeviceBuffer<Float>)
    let a: DeviceBuffer<Float>, b: DeviceBuffer<Float>, scratch: DeviceBuffer<Float>
    let hidden: DeviceBuffer<Float>, logitsBuffer: DeviceBuffer<Float>
    let flatCount: Int

    /// Loads `folder` (config.json, model.safetensors) for batches of `batch` images.
    public init(folder: String, stream: ComputeStream, batch: Int) throws {
        let dir = URL(fileURLWithPath: folder)
        config = try decodeConfigJSON(dir.appendingPathComponent("config.json"),
                                    knownKeys: ["in_channels", "image_size", "channels", "embed_dim", "num_classes",
                                                "input_range", "test_accuracy", "epochs", "trained_by"])
        guard config.className == "FashionFeatureNet" else { throw ModelError("\(folder): _class_name \(config.className) is not FashionFeatureNet") }
        guard config.channels.count == 2, config.imageSize % 4 == 0, config.imageSize > 0, batch > 0 else {
            throw ModelError("\(folder): unsupported feature network (two conv stages and an image size divisible by 4 expected)")
        }
        let weightsURL = dir.appendingPathComponent("model.safetensors")
        let file = try SafeTensorsFile(path: weightsURL.path)
        var hash = FNV1a()
        hash.add((try? Data(contentsOf: weightsURL)) ?? Data())
        hash.add(Array(config.channels.description.utf8))
        fingerprint = hash.hex
        self.batch = batch; self.stream = stream
        let store = WeightStore(file: file)
        let (c1, c2, s) = (config.channels[0], config.channels[1], config.imageSize)
        let specs = [("conv1", config.inChannels, c1, s), ("conv2", c1, c1, s), ("conv3", c1, c2, s / 2), ("conv4", c2, c2, s / 2)]
        var convs: [Conv] = [], scratchCount = 1
        for (name, cin, cout, side) in specs {
            let shape = Conv2dShape(batch: batch, inChannels: cin, height: side, width: side, outChannels: cout, kernelSize: 3, padding: 1)
            convs.append(Conv(shape: shape, weight: try stream.upload(try store.take("\(name).weight", shape: [cout, cin, 3, 3])),
                              bias: try stream.upload(try store.take("\(name).bias", shape: [cout]))))
            try stream.prepareConvolution(shape, hasBias: true)
            scratchCount = max(scratchCount, stream.backends.convolutionScratch(shape))
        }
        self.convs = convs
        flatCount = c2 * (s / 4) * (s / 4)
        embed = (try stream.upload(try store.take("embed.weight", shape: [config.embedDim, flatCount])),
                 try stream.upload(try store.take("embed.bias", shape: [config.embedDim])))
        classifier = (try stream.upload(try store.take("classifier.weight", shape: [config.numClasses, config.embedDim])),
                      try stream.upload(try store.take("classifier.bias", shape: [config.numClasses])))
        try store.checkAllUsed()
        let activation = batch * max(c1 * s * s, c2 * (s / 2) * (s / 2))
        a = try stream.buffer(activation); b = try stream.buffer(activation)
        scratch = try stream.buffer(scratchCount)
        hidden = try stream.buffer(batch * config.embedDim)
        logitsBuffer = try stream.buffer(batch * config.numClasses)
    }

    /// The features of `images` into `hidden` (batch × embed_dim).
    func forwardFeatures(_ images: DeviceBuffer<Float>) throws {
        let s = stream, n = batch * channels * height * width
        try s.clamp(images, output: b, count: n, to: -1...1)
        var x = b, y = a
        for (i, conv) in convs.enumerated() {
            try s.conv2d(x, weight: conv.weight, bias: conv.bias, output: y, shape: conv.shape, scratch: scratch)
            try s.relu(y, output: y, count: conv.shape.outputCount)
            swap(&x, &y)
            if i % 2 == 1 {
                let pool = Pool2dShape(batch: batch, channels: conv.shape.outChannels, height: conv.shape.height,
                                       width: conv.shape.width, kernelSize: 2, stride: 2)
                try s.pool2d(x, output: y, shape: pool, mode: .max)
                swap(&x, &y)
            }
        }
        try s.linear(x, weight: embed.0, bias: embed.1, output: hidden, batch: batch, inFeatures: flatCount, outFeatures: dims)
        try s.relu(hidden, output: hidden, count: batch * dims)
    }

    public func extract(_ images: DeviceBuffer<Float>, into features: DeviceBuffer<Float>, row: Int) throws {
        precondition(features.count >= (row + batch) * dims, "feature buffer too small")
        // (A metric's network runs in float32 whatever the model's precision.)
        try stream.withPrecision(.float32) { try forwardFeatures(images) }
        try features.copy(from: hidden, count: batch * dims, offset: row * dims, queue: stream.queue)
    }

    /// Class logits [batch, num_classes] of `images` (read back to the host).
    public func logits(_ images: DeviceBuffer<Float>) throws -> [Float] {
        try forwardFeatures(images)
        try stream.linear(hidden, weight: classifier.0, bias: classifier.1, output: logitsBuffer, batch: batch,
                          inFeatures: dims, outFeatures: config.numClasses)
        return try stream.download(logitsBuffer, count: batch * config.numClasses)
    }
}

/// A feature network fed images of another size: each batch is clamped to [-1, 1] and resized
/// bilinearly to the network's input (as pytorch-fid resizes to 299), RGB converted to grey by ITU-R
/// 601-2 luma (PIL's convert("L")) or grey repeated to RGB where the channels differ. It lets the
/// Fashion-MNIST network score a text-to-image pipeline's RGB images (a CI-sized stand-in for
/// Inception, which resizes itself).
public final class ResizedFeatures: FeatureExtractor {
    public let inner: FeatureExtractor
    public let channels: Int, height: Int, width: Int
    let resized: DeviceBuffer<Float>

    public init(_ inner: FeatureExtractor, channels: Int, height: Int, width: Int) throws {
        guard channels == inner.channels || (channels == 3 && inner.channels == 1) || (channels == 1 && inner.channels == 3) else {
            throw ModelError("the \(inner.name) feature network takes \(inner.channels)-channel images; \(channels)-channel images cannot be converted to them")
        }
        guard height > 0, width > 0 else { throw ModelError("images of \(height)×\(width) cannot be resized") }
        self.inner = inner; self.channels = channels; self.height = height; self.width = width
        resized = try inner.stream.buffer(inner.batch * inner.channels * inner.height * inner.width)
    }

    public var name: String { inner.name }
    public var fingerprint: String { "\(inner.fingerprint) resized from \(channels)×\(height)×\(width)" }
    public var dims: Int { inner.dims }
    public var batch: Int { inner.batch }
    public var stream: ComputeStream { inner.stream }

    public func extract(_ images: DeviceBuffer<Float>, into features: DeviceBuffer<Float>, row: Int) throws {
        if channels == 3 && inner.channels == 1 {
            try stream.resizeBilinearLuma(images, output: resized, batch: batch, height: height, width: width,
                                          outHeight: inner.height, outWidth: inner.width, clampTo: -1...1)
        } else {
            try stream.resizeBilinear(images, output: resized, batch: batch, channels: channels, height: height, width: width,
                                      outChannels: inner.channels, outHeight: inner.height, outWidth: inner.width, clampTo: -1...1)
        }
        try inner.extract(resized, into: features, row: row)
    }
}
