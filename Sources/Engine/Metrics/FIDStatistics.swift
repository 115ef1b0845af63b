// FID statistics of image sets on one device: features extracted and reduced to their mean and
// covariance there (only those come back to the host).
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
            if let bad = firstNonFinite(chunk, perImage: size, firstImage: start) {
                throw ModelError("image \(bad.image) holds non-finite values (first: \(bad.value)): FID is not defined for it")
            }
            if take < e.batch { chunk += Array(repeating: 0, count: (e.batch - take) * size) }
            try scratch.write(chunk, queue: e.stream.queue)
            try append(scratch, take: take, at: start, into: stats)
            start += take
            progress?(start, images.count)
        }
        let result = try stats.statistics(rows: images.count)
        guard result.mu.allSatisfy(\.isFinite), result.sigma.allSatisfy(\.isFinite) else {
            throw ModelError("the \(e.name) features of these images are not finite (the feature network's weights, or extreme pixel values)")
        }
        return result
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

extension FIDStatistics {
    /// Statistics of the images at `path` (a .npz of pytorch-fid's statistics is read as it is),
    /// cached under ~/.cache/flexiffusion/real-stats by path and feature network. `progress` gets
    /// (images done, total) when they are computed.
    public func cachedStatistics(of path: String, progress: ((Int, Int) -> Void)? = nil) throws -> FeatureStatistics {
        if path.hasSuffix(".npz") { return try FeatureStatistics.loadNPZ(path) }
        let key = FNV1a.hex("real-stats v1|\(path)|\(extractor.name)|\(extractor.fingerprint)")
        let cache = flexiffusionCacheDirectory().appendingPathComponent("real-stats/\(key).npz")
        if let s = try? FeatureStatistics.loadNPZ(cache.path) { return s }
        let s = try statistics(of: try ImageSet.load(path), progress: progress)
        try FileManager.default.createDirectory(at: cache.deletingLastPathComponent(), withIntermediateDirectories: true)
        try s.saveNPZ(cache.path)
        return s
    }
}
