// rFID of candidates on the engine, made cheap: images are generated batch by batch from fixed
// seeds; each batch's features are kept (a candidate promoted from screening to all samples only
// generates its remaining batches); and sampler states at segment boundaries are kept, keyed by the
// plan prefix that reached them, so a candidate resumes from the longest prefix it shares with any
// candidate generated before (a full step starts every segment, so the state there is the sample alone).
import Engine
import Foundation
import GPUKernels

public final class RFIDScorer: CandidateScorer {
    public let sampler: Sampler
    public let extractor: FeatureExtractor
    public let seed: UInt64
    public let teacherKey: String
    let batch: Int, imageCount: Int
    /// Whether steps draw no variance noise (DDIM, eta 0): only then may states be shared.
    public let deterministic: Bool
    private var noise: [[Float]] = []
    private var features: [String: [Int: [Float]]] = [:]
    private var teacher: [Int: [Float]] = [:]
    private var teacherStats: [Int: FeatureStatistics] = [:]
    private var states: [String: (sample: [Float], used: Int)] = [:]
    private var clock = 0
    public let maxStates: Int
    let featureBuffer: DeviceBuffer<Float>
    let teacherFile: URL
    /// Steps run and steps skipped thanks to shared prefixes (for the report).
    public private(set) var stepsRun = 0, stepsShared = 0
    /// Seconds spent generating the teacher's batches (not cached before).
    public private(set) var teacherSeconds = 0.0
    /// For candidates on coarser DDIM grids: the scheduler's configuration and their samplers (same UNet).
    let schedulerConfiguration: SchedulerConfiguration?
    private var gridSamplers: [Int: Sampler] = [:]

    /// `modelKey` identifies the weights and scheduler (RFIDEvaluator.modelKey); teacher features
    /// are cached under `cacheDirectory` by model, sampler, seed, batch and feature network.
    /// `schedulerConfiguration` lets it score candidates on coarser grids than the teacher's.
    public init(sampler: Sampler, extractor: FeatureExtractor, seed: UInt64, modelKey: String, maxStates: Int = 2048,
                schedulerConfiguration: SchedulerConfiguration? = nil,
                cacheDirectory: URL = flexiffusionCacheDirectory().appendingPathComponent("teacher-features")) throws {
        let u = sampler.unet
        guard extractor.batch == u.batch, extractor.channels == u.config.outChannels, extractor.height == u.height, extractor.width == u.width else {
            throw ModelError("the \(extractor.name) feature network takes \(extractor.batch) × \(extractor.channels)×\(extractor.height)×\(extractor.width), the sampler makes \(u.batch) × \(u.config.outChannels)×\(u.height)×\(u.width)")
        }
        self.sampler = sampler; self.extractor = extractor; self.seed = seed; self.maxStates = maxStates
        self.schedulerConfiguration = schedulerConfiguration
        batch = u.batch
        imageCount = u.config.inChannels * u.height * u.width
        deterministic = (0..<sampler.scheduler.timesteps.count).allSatisfy { sampler.scheduler.coefficients(step: $0).noise == 0 }
        featureBuffer = try u.stream.buffer(batch * extractor.dims)
        let t = sampler.teacherPlan.sampler
        var h = FNV1a()
        h.add(Array(["teacher-features v1", modelKey, t.scheduler, "\(t.steps)", "\(t.eta)", "\(seed)", "\(batch)",
                     extractor.name, extractor.fingerprint].joined(separator: "|").utf8))
        teacherKey = h.hex
        teacherFile = cacheDirectory.appendingPathComponent("\(teacherKey).safetensors")
        if let file = try? SafeTensorsFile(path: teacherFile.path) {
            for name in file.names where name.hasPrefix("batch_") {
                if let b = Int(name.dropFirst(6)), let v = try? file.floats(name), v.count == batch * extractor.dims { teacher[b] = v }
            }
        }
    }

    /// Initial noise of batch `b` (images b·B ..< (b+1)·B of the seed's stream, as `generate --seed` draws).
    func initialNoise(_ b: Int) -> [Float] {
        if noise.count <= b {
            var g = GaussianNoise(seed: seed)
            noise = (0...b).map { _ in g.fill(batch * imageCount) }
        }
        return noise[b]
    }

    func batches(_ samples: Int) throws -> Int {
        guard samples % batch == 0 else { throw ModelError("\(samples) samples is not a multiple of the batch (\(batch))") }
        return samples / batch
    }

    /// The sampler of a candidate's grid (nil: the teacher's).
    public func sampler(grid: Int?) throws -> Sampler {
        guard let g = grid, g != sampler.scheduler.timesteps.count else { return sampler }
        if let s = gridSamplers[g] { return s }
        guard let schedulerConfiguration else { throw ModelError("this scorer was made without the scheduler configuration: it cannot score plans on a \(g)-step grid") }
        let s = try Sampler(unet: sampler.unet, scheduler: try sampler.teacherPlan.sampler.with(steps: g).scheduler(configuration: schedulerConfiguration))
        gridSamplers[g] = s
        return s
    }

    /// Features of batch `b` of `plan`'s samples, on this scorer's sampler or `other` (with the same
    /// UNet). `boundaries` are (step, prefix key) at segment starts (after the first) where states
    /// may be shared — keys that name the sampler's grid; nil for plans outside the space. Steps
    /// are counted for the report when `counted` (the search's own candidates).
    func features(plan: StepPlan, boundaries: [(step: Int, key: String)]?, batch b: Int, sampler other: Sampler? = nil,
                  counted: Bool = false) throws -> [Float] {
        let sampler = other ?? self.sampler
        try sampler.prepare(plan)
        var start = 0
        let shared = deterministic ? boundaries ?? [] : []
        if let hit = shared.last(where: { states["\(b)|\($0.key)"] != nil }) {
            let k = "\(b)|\(hit.key)"
            try sampler.setSample(states[k]!.sample)
            clock += 1
            states[k]!.used = clock
            start = hit.step
        } else {
            try sampler.setSample(initialNoise(b))
        }
        var variance = GaussianNoise(seed: seed &+ 0x5DEECE66D &+ UInt64(b))
        let captures = plan.captures
        let store = Dictionary(shared.map { ($0.step, $0.key) }, uniquingKeysWith: { a, _ in a })
        for i in start..<plan.actions.count {
            if i > start, let key = store[i], states["\(b)|\(key)"] == nil {
                clock += 1
                states["\(b)|\(key)"] = (try sampler.currentSample(), clock)
                if states.count > maxStates, let old = states.min(by: { $0.value.used < $1.value.used })?.key { states[old] = nil }
            }
            try sampler.step(i, plan.actions[i], capturing: captures[i], noiseSource: &variance)
        }
        if counted {   // (the search's own steps; baselines and the teacher are not counted)
            stepsRun += plan.actions.count - start
            stepsShared += start
        }
        try extractor.extract(sampler.sampleBuffer, into: featureBuffer, row: 0)
        return try extractor.stream.download(featureBuffer, count: batch * extractor.dims)
    }

    /// The teacher's features of batch `b` (generated once, then cached on disk).
    func teacherFeatures(_ b: Int) throws -> [Float] {
        if let f = teacher[b] { return f }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let f = try features(plan: sampler.teacherPlan, boundaries: nil, batch: b)
        teacherSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        teacher[b] = f
        try FileManager.default.createDirectory(at: teacherFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        try SafeTensorsWriter.write(teacher.keys.sorted().map { (name: "batch_\($0)", shape: [batch, extractor.dims], values: teacher[$0]!) },
                                    to: teacherFile.path)
        return f
    }

    /// Teacher statistics on the first `samples` images.
    public func teacherStatistics(samples: Int) throws -> FeatureStatistics {
        if let s = teacherStats[samples] { return s }
        let rows = try (0..<batches(samples)).flatMap { try teacherFeatures($0) }
        let s = try FeatureStatistics(features: rows, count: samples, dims: extractor.dims)
        teacherStats[samples] = s
        return s
    }

    /// Statistics of a plan's samples (its batches memoised under `key`).
    func statistics(plan: StepPlan, key: String, boundaries: [(step: Int, key: String)]?, samples: Int,
                    sampler other: Sampler? = nil, counted: Bool = false) throws -> FeatureStatistics {
        var rows: [Float] = []
        for b in 0..<(try batches(samples)) {
            if let f = features[key]?[b] { rows += f; continue }
            let f = try features(plan: plan, boundaries: boundaries, batch: b, sampler: other, counted: counted)
            features[key, default: [:]][b] = f
            rows += f
        }
        return try FeatureStatistics(features: rows, count: samples, dims: extractor.dims)
    }

    public func rfid(_ c: Candidate, samples: Int) throws -> Double {
        let plan = try c.plan(sampler.teacherPlan.sampler)
        let lengths = StepPlan.segmentLengths(steps: plan.actions.count, count: c.count)
        var step = 0
        var boundaries: [(step: Int, key: String)] = []
        for j in 1..<max(1, c.count) {
            step += lengths[j - 1]
            boundaries.append((step, c.head + c.prefixKey(j)))
        }
        let teacher = try teacherStatistics(samples: samples)
        let s = try statistics(plan: plan, key: c.key, boundaries: boundaries, samples: samples, sampler: sampler(grid: c.grid), counted: true)
        return try frechetDistance(s, teacher)
    }

    /// rFID of any plan for this scorer's sampler or another with the same UNet (a baseline), and
    /// its statistics (for FID against real data). A candidate's key reuses its memoised features.
    public func rfid(plan: StepPlan, key: String, samples: Int, sampler other: Sampler? = nil) throws -> (rfid: Double, statistics: FeatureStatistics) {
        let s = try statistics(plan: plan, key: key, boundaries: nil, samples: samples, sampler: other)
        return (try frechetDistance(s, try teacherStatistics(samples: samples)), s)
    }

    /// Statistics of candidate `c` on `samples` images (after `rfid` computed them, no new work).
    public func statistics(_ c: Candidate, samples: Int) throws -> FeatureStatistics {
        try statistics(plan: try c.plan(sampler.teacherPlan.sampler), key: c.key, boundaries: nil, samples: samples, sampler: sampler(grid: c.grid))
    }
}
