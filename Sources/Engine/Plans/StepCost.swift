// What steps cost: measured latencies of each step type (full, partial at every branch, null, and the
// scheduler update alone) for one model, batch and device; a table of them on disk keyed by device
// name; and the predicted latency and MACs of a whole plan from that table.
import Foundation
import GPUKernels

/// ~/.cache/flexiffusion (or $XDG_CACHE_HOME/flexiffusion): `EngineEnvironment.cacheDirectory()`.
public func flexiffusionCacheDirectory() -> URL { EngineEnvironment.cacheDirectory() }

extension UNetConfiguration {
    /// A fingerprint of the architecture (the configuration's JSON, keys sorted): latencies depend on it, not on the weights.
    public var fingerprint: String {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        var h = FNV1a()
        h.add((try? e.encode(self)) ?? Data())
        return h.hex
    }
}

/// Median latencies of each step type for one model (architecture), batch, image size and device.
public struct StepLatencies: Codable, Equatable, Sendable {
    public var model: String
    public var modelFingerprint: String
    public var batch: Int, height: Int, width: Int
    public var gemm: String, convolution: String
    /// Milliseconds of a whole sampler step (network and scheduler update) of each type.
    public var fullMs: Double
    /// Keyed by branch (as a string, for JSON).
    public var partialMs: [String: Double]
    public var nullMs: Double
    /// The scheduler update alone.
    public var schedulerMs: Double
    /// Multiply-accumulates of the network per step over the batch: full and partial by branch.
    public var fullMACs: Int
    public var partialMACs: [String: Int]
    public var repeats: Int
    public var measured: String

    enum CodingKeys: String, CodingKey {
        case model, modelFingerprint = "model_fingerprint", batch, height, width, gemm, convolution
        case fullMs = "full_ms", partialMs = "partial_ms", nullMs = "null_ms", schedulerMs = "scheduler_ms"
        case fullMACs = "full_macs", partialMACs = "partial_macs", repeats, measured
    }

    /// Checks what the cost model divides by and adds: positive finite times, non-negative MACs.
    public func validate() throws {
        let times = [("full_ms", fullMs), ("null_ms", nullMs), ("scheduler_ms", schedulerMs)] + partialMs.map { ("partial_ms[\($0.key)]", $0.value) }
        for (name, v) in times where !(v.isFinite && v >= 0) || (name == "full_ms" && v <= 0) {
            throw ModelError("\(model), batch \(batch): \(name) = \(v) (latencies must be finite, ≥ 0, and a full step's > 0)")
        }
        for (name, v) in [("full_macs", fullMACs)] + partialMACs.map({ ("partial_macs[\($0.key)]", $0.value) }) where v < 0 || v > 1 << 53 {
            throw ModelError("\(model), batch \(batch): \(name) = \(v) (must be in 0…2^53)")
        }
        if batch < 1 { throw ModelError("\(model): batch \(batch) (must be positive)") }
    }

    /// Milliseconds of one step of `action`.
    public func milliseconds(_ action: StepAction) throws -> Double {
        switch action {
        case .full: return fullMs
        case .null: return nullMs
        case .partial(let m):
            guard let ms = partialMs[String(m)] else { throw ModelError("the latency table has no partial step at branch \(m)") }
            return ms
        }
    }

    /// Network MACs of one step of `action`.
    public func macs(_ action: StepAction) throws -> Int {
        switch action {
        case .full: return fullMACs
        case .null: return 0
        case .partial(let m):
            guard let n = partialMACs[String(m)] else { throw ModelError("the latency table has no partial step at branch \(m)") }
            return n
        }
    }

    /// Predicted latency and MACs of a whole plan: the sum over its steps.
    public func cost(of plan: StepPlan) throws -> PlanCost {
        var ms = 0.0, macs = 0, overflow = false
        for a in plan.actions where !overflow {
            ms += try milliseconds(a)
            (macs, overflow) = macs.addingReportingOverflow(try self.macs(a))
        }
        let (teacherMACs, teacherOverflow) = plan.actions.count.multipliedReportingOverflow(by: fullMACs)
        guard !overflow, !teacherOverflow else { throw ModelError("\(model), batch \(batch): the MACs of \(plan.actions.count) steps exceed 2^63") }
        let teacher = Double(plan.actions.count) * fullMs
        return PlanCost(milliseconds: ms, macs: macs, speedup: teacher / ms, macsSpeedup: Double(teacherMACs) / Double(max(macs, 1)))
    }
}

/// A plan's predicted cost for one batch.
public struct PlanCost: Codable, Equatable, Sendable {
    public var milliseconds: Double
    public var macs: Int
    /// Against every step of the same sampler full.
    public var speedup: Double
    public var macsSpeedup: Double
}

/// Latency tables on disk: `{"format": "flexiffusion-latency", "version": 1, "devices": {NAME: [entries]}}`,
/// one entry per (model fingerprint, batch, size); a new measurement replaces the old one.
public struct LatencyTable: VersionedJSONFile, Equatable, Sendable {
    public static let format = "flexiffusion-latency"
    public static let version = 1
    public static let kind = "latency table"
    public var format = LatencyTable.format
    public var version = LatencyTable.version
    public var devices: [String: [StepLatencies]] = [:]

    public init() {}

    /// The default file: latency.json in the cache folder.
    public static var defaultURL: URL { flexiffusionCacheDirectory().appendingPathComponent("latency.json") }

    /// Reads a table; a missing file is an empty table when `missingOK`.
    public static func load(from url: URL, missingOK: Bool) throws -> LatencyTable {
        guard FileManager.default.fileExists(atPath: url.path) || !missingOK else { return LatencyTable() }
        let table = try load(from: url)
        for (device, list) in table.devices {
            for e in list {
                do { try e.validate() } catch let error as ModelError { throw ModelError("\(url.path): device \(device): \(error.message)") }
            }
        }
        return table
    }

    public mutating func insert(_ entry: StepLatencies, device: String) {
        var list = devices[device, default: []]
        list.removeAll { $0.modelFingerprint == entry.modelFingerprint && $0.batch == entry.batch && $0.height == entry.height && $0.width == entry.width }
        list.append(entry)
        devices[device] = list
    }

    /// Adds `entry` to the table at `url` under an exclusive lock (flock on url + ".lock"): reads the
    /// file, inserts, writes it — so that processes profiling at once keep each other's entries.
    public static func insert(_ entry: StepLatencies, device: String, into url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let lockPath = url.path + ".lock"
        let fd = open(lockPath, O_CREAT | O_RDWR, 0o644)
        guard fd >= 0 else { throw ModelError("cannot lock \(url.path): \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw ModelError("cannot lock \(url.path): \(String(cString: strerror(errno)))") }
        defer { flock(fd, LOCK_UN) }
        var table = try load(from: url, missingOK: true)
        table.insert(entry, device: device)
        try table.write(to: url)
    }

    /// Writes the table (atomically), making its folder (the cache folder) when missing.
    public func write(to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try writeAtomically(jsonData(), to: url.path)
    }

    /// The entry for a device, model and batch (any batch, nearest first, when `batch` is nil).
    public func lookup(device: String, fingerprint: String, batch: Int?) -> StepLatencies? {
        let list = (devices[device] ?? []).filter { $0.modelFingerprint == fingerprint }
        guard let batch else { return list.first }
        return list.first { $0.batch == batch }
    }
}

/// Times sampler steps of every type on a sampler's own UNet and stream.
public final class StepProfiler {
    public let sampler: Sampler
    /// The step index whose timestep and coefficients the measured steps use (mid-run).
    public let stepIndex: Int
    var noise: VarianceNoise
    let start: [Float]
    public let branches: [Int]

    public init(sampler: Sampler, seed: UInt64 = 0) throws {
        self.sampler = sampler
        stepIndex = sampler.scheduler.timesteps.count / 2
        let streams = NoiseStreams(seed: seed), size = sampler.count / sampler.unet.batch
        noise = streams.variance(images: 0..<sampler.unet.batch, imageSize: size)
        start = streams.initialNoise(images: 0..<sampler.unet.batch, imageSize: size)
        branches = Array(0..<sampler.unet.branchCount)
        try sampler.unet.prepareFeatureCache(branches: Set(branches))
        // A class-conditional UNet2DModel takes labels (drawn; they do not change the time).
        var labels = SplitMix64(seed: seed ^ 0xC1A55)
        try sampler.unet.setBenchmarkClassLabels { labels.next() }
        // A conditional UNet attends to encoder_hidden_states: drawn like the noise (its values do
        // not change the time, its length does).
        if let x = sampler.unet.config.crossAttention {
            let u = sampler.unet
            try u.setEncoderHiddenStates(streams.initialNoise(images: 0..<u.batch, imageSize: u.contextLength * x.dim))
            try u.setBenchmarkAddedConditions(textEmbeds: { _ in streams.initialNoise(images: 0..<u.batch, imageSize: u.textEmbedsDim) },
                                              pixels: (8 * u.height, 8 * u.width))
        }
    }

    /// The step types measured, in order: full, partial at each branch, null, the scheduler update.
    public enum Kind: Hashable, Sendable { case step(StepAction), scheduler }
    public var kinds: [Kind] { [.step(.full)] + branches.map { .step(.partial(branch: $0)) } + [.step(.null), .scheduler] }

    /// Fills the feature cache of every branch with an untimed full step at this step's input.
    public func fillCache() throws {
        try sampler.setSample(start)
        try sampler.evaluate(stepIndex, .full, capturing: Set(branches))
    }

    /// Milliseconds of one run of `kind`, the queue drained before and after. Partial steps read the
    /// cache that `fillCache()` filled (they do not change it).
    public func time(_ kind: Kind) throws -> Double {
        let s = sampler.unet.stream
        try sampler.setSample(start)
        try s.finish()
        let t0 = DispatchTime.now().uptimeNanoseconds
        switch kind {
        case .step(let a): try sampler.step(stepIndex, a, noiseSource: &noise)
        case .scheduler: try sampler.update(stepIndex, noiseSource: &noise)
        }
        try s.finish()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
    }

    /// One round: every kind once, in order. The first round also compiles kernels: discard it.
    public func round() throws -> [Kind: Double] {
        try fillCache()
        var out: [Kind: Double] = [:]
        for k in kinds { out[k] = try time(k) }
        return out
    }

    /// Medians over `rounds` (each a dictionary from `round()`) as a table entry.
    public func latencies(rounds: [[Kind: Double]], model: String) -> StepLatencies {
        func median(_ k: Kind) -> Double { Engine.median(rounds.compactMap { $0[k] }) }
        let u = sampler.unet
        var partial: [String: Double] = [:], partialMACs: [String: Int] = [:]
        for m in branches {
            partial[String(m)] = median(.step(.partial(branch: m)))
            partialMACs[String(m)] = u.macs(for: .partial(branch: m))
        }
        let f = ISO8601DateFormatter()
        return StepLatencies(model: model, modelFingerprint: u.config.fingerprint, batch: u.batch, height: u.height, width: u.width,
                             gemm: "\(u.stream.backends.gemm)", convolution: "\(u.stream.backends.convolution)",
                             fullMs: median(.step(.full)), partialMs: partial, nullMs: median(.step(.null)),
                             schedulerMs: median(.scheduler), fullMACs: u.macs, partialMACs: partialMACs,
                             repeats: rounds.count, measured: f.string(from: Date()))
    }

    /// Measures `repeats` rounds after one warm-up round; `progress` gets (done, total) rounds.
    public func measure(repeats: Int, model: String, progress: ((Int, Int) -> Void)? = nil) throws -> StepLatencies {
        _ = try round()
        var rounds: [[Kind: Double]] = []
        for r in 0..<repeats { rounds.append(try round()); progress?(r + 1, repeats) }
        return latencies(rounds: rounds, model: model)
    }
}
