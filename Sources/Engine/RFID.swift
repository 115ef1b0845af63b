// FID and rFID pipelines on one device: features of image sets, and of samples that a step plan
// generates from fixed seeds, extracted and reduced to statistics on the device (only the mean and
// covariance come back to the host). rFID is the Fréchet distance between a candidate plan's
// features and the teacher's (every step full) from the same initial noise; teacher statistics are
// computed once and cached on disk under a key of everything that determines them.
import Foundation
import GPUKernels

/// Statistics of feature rows held on the device.
final class DeviceStatistics {
    let stream: ComputeStream
    let rows: Int, dims: Int
    let features: DeviceBuffer<Float>, mean: DeviceBuffer<Float>, covariance: DeviceBuffer<Float>, centred: DeviceBuffer<Float>

    init(stream: ComputeStream, rows: Int, dims: Int) throws {
        self.stream = stream; self.rows = rows; self.dims = dims
        features = try stream.buffer(rows * dims)
        mean = try stream.buffer(dims); covariance = try stream.buffer(dims * dims)
        centred = try stream.buffer(rows * dims)
    }

    /// Mean and covariance of the first `n` rows.
    func statistics(rows n: Int) throws -> FeatureStatistics {
        try stream.featureStatistics(features, rows: n, dims: dims, mean: mean, covariance: covariance, centred: centred)
        let mu = try stream.download(mean, count: dims).map(Double.init)
        var sigma = try stream.download(covariance, count: dims * dims).map(Double.init)
        symmetrize(&sigma, n: dims)
        return FeatureStatistics(mu: mu, sigma: sigma, count: n)
    }
}

/// FID statistics of image sets with one feature extractor.
public final class FIDStatistics {
    public let extractor: FeatureExtractor
    let scratch: DeviceBuffer<Float>, batchFeatures: DeviceBuffer<Float>

    public init(extractor: FeatureExtractor) throws {
        self.extractor = extractor
        scratch = try extractor.stream.buffer(extractor.batch * extractor.channels * extractor.height * extractor.width)
        batchFeatures = try extractor.stream.buffer(extractor.batch * extractor.dims)
    }

    /// Mean and covariance of the features of `images`.
    public func statistics(of images: ImageSet, progress: ((Int, Int) -> Void)? = nil) throws -> FeatureStatistics {
        let e = extractor
        guard images.channels == e.channels, images.height == e.height, images.width == e.width else {
            throw ModelError("images are \(images.width)×\(images.height) with \(images.channels) channel(s); the \(e.name) feature network takes \(e.width)×\(e.height) with \(e.channels)")
        }
        guard images.count >= 2 else { throw ModelError("FID needs at least 2 images, not \(images.count)") }
        let stats = try DeviceStatistics(stream: e.stream, rows: images.count, dims: e.dims)
        let size = images.imageSize
        var start = 0
        while start < images.count {
            let take = min(e.batch, images.count - start)
            var chunk = Array(images.values[(start * size)..<((start + take) * size)])
            if take < e.batch { chunk += Array(repeating: 0, count: (e.batch - take) * size) }
            try scratch.write(chunk, queue: e.stream.queue)
            try append(scratch, take: take, at: start, into: stats)
            start += take
            progress?(start, images.count)
        }
        return try stats.statistics(rows: images.count)
    }

    /// Extracts features of the `take` first images of a device batch into rows `row…` of `stats`.
    func append(_ images: DeviceBuffer<Float>, take: Int, at row: Int, into stats: DeviceStatistics) throws {
        let e = extractor
        if take == e.batch && row + take <= stats.rows {
            try e.extract(images, into: stats.features, row: row)
        } else {
            try e.extract(images, into: batchFeatures, row: 0)
            try stats.features.copy(from: batchFeatures, count: take * e.dims, offset: row * e.dims, queue: e.stream.queue)
        }
    }
}

/// rFID of step plans against the teacher, from `count` images drawn from `seed` as
/// `flexiffusion generate --seed` draws them (initial noise in order, variance noise from seed + 0x5DEECE66D).
public final class RFIDEvaluator {
    public let sampler: Sampler
    public let fid: FIDStatistics
    public let count: Int, seed: UInt64
    /// Identifies the model weights, configuration and scheduler (teacher cache key).
    public let modelKey: String
    let stats: DeviceStatistics

    public init(sampler: Sampler, extractor: FeatureExtractor, count: Int, seed: UInt64, modelKey: String) throws {
        guard count >= 2 else { throw ModelError("rFID needs at least 2 images, not \(count)") }
        let u = sampler.unet
        guard extractor.batch == u.batch, extractor.channels == u.config.outChannels,
              extractor.height == u.height, extractor.width == u.width else {
            throw ModelError("the \(extractor.name) feature network takes \(extractor.batch) × \(extractor.channels)×\(extractor.height)×\(extractor.width), the sampler makes \(u.batch) × \(u.config.outChannels)×\(u.height)×\(u.width)")
        }
        self.sampler = sampler; self.count = count; self.seed = seed; self.modelKey = modelKey
        fid = try FIDStatistics(extractor: extractor)
        stats = try DeviceStatistics(stream: u.stream, rows: count, dims: extractor.dims)
    }

    /// Feature statistics of `plan`'s samples; `progress` gets (images done, total).
    public func statistics(plan: StepPlan, progress: ((Int, Int) -> Void)? = nil) throws -> FeatureStatistics {
        try sampler.prepare(plan)
        let batch = sampler.unet.batch, size = sampler.count / batch
        var initial = GaussianNoise(seed: seed), variance = GaussianNoise(seed: seed &+ 0x5DEECE66D)
        var start = 0
        while start < count {
            let take = min(batch, count - start)
            var noise = initial.fill(take * size)
            if take < batch { noise += Array(repeating: 0, count: (batch - take) * size) }
            let x = try sampler.runOnDevice(noise: noise, plan: plan, noiseSource: &variance)
            try fid.append(x, take: take, at: start, into: stats)
            start += take
            progress?(start, count)
        }
        return try stats.statistics(rows: count)
    }

    /// The cache key of the teacher statistics: model, scheduler, sampler, seeds, count, feature network.
    public func teacherKey(_ teacher: StepPlan) -> String {
        var h = FNV1a()
        let parts = ["teacher-stats v1", modelKey, teacher.sampler.scheduler, "\(teacher.sampler.steps)", "\(teacher.sampler.eta)",
                     "\(seed)", "\(count)", fid.extractor.name, fid.extractor.fingerprint]
        h.add(Array(parts.joined(separator: "|").utf8))
        return h.hex
    }

    /// Teacher statistics, from `directory` when cached there, else computed and cached (.npz).
    public func teacherStatistics(directory: URL = flexiffusionCacheDirectory().appendingPathComponent("teacher-stats"),
                                  progress: ((Int, Int) -> Void)? = nil) throws -> (statistics: FeatureStatistics, cached: Bool) {
        let teacher = sampler.teacherPlan
        let file = directory.appendingPathComponent("\(teacherKey(teacher)).npz")
        if FileManager.default.fileExists(atPath: file.path), let s = try? FeatureStatistics.loadNPZ(file.path), s.dims == fid.extractor.dims {
            return (s, true)
        }
        let s = try statistics(plan: teacher, progress: progress)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try s.saveNPZ(file.path)
        return (s, false)
    }

    /// rFID of `plan` against `teacher` statistics.
    public func rfid(plan: StepPlan, teacher: FeatureStatistics, progress: ((Int, Int) -> Void)? = nil) throws -> Double {
        try frechetDistance(try statistics(plan: plan, progress: progress), teacher)
    }

    /// A key for a model folder: its weights' and configs' bytes.
    public static func modelKey(folder: ModelFolder) throws -> String {
        var h = FNV1a()
        for url in [folder.weightsURL, folder.configURL] + (folder.schedulerConfigURL.map { [$0] } ?? []) {
            h.add(Array(url.lastPathComponent.utf8))
            h.add(try Data(contentsOf: url))
        }
        return h.hex
    }
}
