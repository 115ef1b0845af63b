// rFID (the one implementation, for `flexiffusion rfid` and the search): the Fréchet distance between
// the features of a plan's samples and the teacher's, from the same noise (GenerationPipeline's
// streams of one seed). Work is kept batch by batch:
//   - the teacher's features per batch, generated once and cached on disk under a key of everything
//     that determines them (model bytes, teacher sampler, seed, batch, feature network);
//   - each plan's features per batch, memoised under the plan's content (a plan scored on a few
//     batches and later on more generates only the new ones);
//   - for samplers that resume from a sample alone (no variance noise, no solver history), states at the steps a caller names (segment starts, where
//     a full step follows), keyed by the sampler and the actions before that step, so a plan resumes
//     from the longest prefix it shares with any plan generated before.
// Batches always hold whole images of the seed's stream (a last batch is filled with the next ones),
// so batch b's features do not depend on how many images a score uses.
import Foundation
import GPUKernels

public final class RFIDEvaluator {
    public let pipeline: any ImagePipeline
    public let extractor: FeatureExtractor
    /// The plan every score is against (every step full on its sampler, usually).
    public let teacher: StepPlan
    public let seed: UInt64
    /// The key of the teacher's cached features.
    public let teacherKey: String
    /// States kept at most (least recently used dropped).
    public let maxStates: Int
    /// Sampler steps run and skipped thanks to shared prefixes, for plans scored with `counted`.
    public private(set) var stepsRun = 0, stepsShared = 0
    /// Seconds spent generating teacher batches (not cached before).
    public private(set) var teacherSeconds = 0.0
    let teacherFile: URL
    let featureBuffer: DeviceBuffer<Float>
    private var teacherFeatures: [Int: [Float]] = [:]
    private var teacherStats: [Int: FeatureStatistics] = [:]
    private var memo: [String: [Int: [Float]]] = [:]
    /// A text-to-image run's CLIP judge: each batch generated for features is also CLIP-scored (the
    /// pairs' scores memoised beside the features; the teacher's cached on disk beside its features).
    public let clip: CLIPJudge?
    let teacherCLIPFile: URL?
    private var teacherCLIP: [Int: [Double]] = [:]
    private var clipMemo: [String: [Int: [Double]]] = [:]
    private var states: [String: (sample: [Float], used: Int)] = [:]
    private var clock = 0

    /// `modelKey` identifies the weights and configs (`modelKey(folder:)`); teacher features are
    /// cached under `cacheDirectory`.
    public init(pipeline: any ImagePipeline, extractor: FeatureExtractor, teacher: StepPlan, seed: UInt64, modelKey: String,
                maxStates: Int = 2048, clip: CLIPJudge? = nil,
                cacheDirectory: URL = flexiffusionCacheDirectory().appendingPathComponent("teacher-features")) throws {
        let u = pipeline.unet, shape = pipeline.imageShape
        guard extractor.batch == pipeline.batch, [extractor.channels, extractor.height, extractor.width] == shape else {
            throw ModelError("the \(extractor.name) feature network takes \(extractor.batch) × \(extractor.channels)×\(extractor.height)×\(extractor.width), the pipeline makes \(pipeline.batch) × \(shape.map(String.init).joined(separator: "×"))")
        }
        try teacher.validate(branchCount: u.branchCount)
        self.pipeline = pipeline; self.extractor = extractor; self.teacher = teacher; self.seed = seed; self.maxStates = maxStates
        featureBuffer = try u.stream.buffer(pipeline.batch * extractor.dims)
        let t = teacher.sampler
        // (PNDM's mode, explicit timesteps and a spacing only where present: the keys of the caches made before them stay.)
        teacherKey = FNV1a.hex((["teacher-features v2", modelKey, t.scheduler.rawValue, "\(t.steps)", "\(t.eta)", t.order.map { "order \($0)" } ?? "", teacher.compact,
                                 "\(seed)", "\(pipeline.batch)", extractor.name, extractor.fingerprint]
                                + [t.skipPRKSteps.map { "skip_prk_steps \($0)" }, t.timesteps.map { "timesteps \($0)" },
                                   t.spacing.map { "spacing \($0)" }].compactMap { $0 }).joined(separator: "|"))
        teacherFile = cacheDirectory.appendingPathComponent("\(teacherKey).safetensors")
        self.clip = clip
        let key = teacherKey
        teacherCLIPFile = clip.map { cacheDirectory.appendingPathComponent("\(key)-clip-\($0.key).safetensors") }
        if let file = try? SafeTensorsFile(path: teacherFile.path) {
            for name in file.names where name.hasPrefix("batch_") {
                if let b = Int(name.dropFirst(6)), let v = try? file.floats(name), v.count == pipeline.batch * extractor.dims { teacherFeatures[b] = v }
            }
        }
        if let url = teacherCLIPFile, let file = try? SafeTensorsFile(path: url.path) {
            for name in file.names where name.hasPrefix("batch_") {
                if let b = Int(name.dropFirst(6)), let v = try? file.floats(name), v.count == pipeline.batch { teacherCLIP[b] = v.map(Double.init) }
            }
        }
    }

    var batch: Int { pipeline.batch }

    /// Whether the teacher's features for `samples` images are all cached.
    public func teacherCached(samples: Int) -> Bool { (0..<pipeline.batches(samples)).allSatisfy { teacherFeatures[$0] != nil } }

    /// A key of what determines a plan's samples: its sampler and its actions (before step `end`).
    static func contentKey(_ plan: StepPlan, end: Int? = nil) -> String {
        let s = plan.sampler
        return "\(s.scheduler.rawValue)|\(s.steps)|\(s.eta)|\(s.order ?? 0)|\(s.skipPRKSteps.map { "\($0)" } ?? "")|\(s.timesteps ?? [])|\(s.spacing?.rawValue ?? "")|" + plan.actions.prefix(end ?? plan.actions.count).map(\.description).joined(separator: ",")
    }

    /// Features of batch `b` of `plan`'s samples [B × dims]. `boundaries` are steps (> 0) before
    /// which a full step starts, where states may be stored and resumed (samplers that resume from a sample alone).
    func features(plan: StepPlan, boundaries: [Int], batch b: Int, counted: Bool) throws -> [Float] {
        try generate(plan: plan, boundaries: boundaries, batch: b, counted: counted).features
    }

    /// Batch `b` of `plan`'s images: their features and, with a CLIP judge, their pairs' CLIP scores.
    func generate(plan: StepPlan, boundaries: [Int], batch b: Int, counted: Bool) throws -> (features: [Float], clip: [Double]?) {
        let shared = try pipeline.resumesFromSample(plan.sampler) ? boundaries.filter { $0 > 0 && $0 < plan.actions.count }.sorted() : []
        let keys = Dictionary(shared.map { ($0, "\(b)|" + Self.contentKey(plan, end: $0)) }, uniquingKeysWith: { a, _ in a })
        var resume: ResumeState? = nil
        if let hit = shared.last(where: { states[keys[$0]!] != nil }) {
            let k = keys[hit]!
            clock += 1
            states[k]!.used = clock
            resume = ResumeState(step: hit, sample: states[k]!.sample)
        }
        let noise = GenerationNoise(seed: seed)
        let images = try pipeline.runBatch(plan: plan, noise: noise, batch: b, count: (b + 1) * batch, resume: resume, beforeStep: { i, sampler in
            guard let key = keys[i], self.states[key] == nil else { return }
            self.clock += 1
            self.states[key] = (try sampler.currentSample(), self.clock)
            if self.states.count > self.maxStates, let old = self.states.min(by: { $0.value.used < $1.value.used })?.key { self.states[old] = nil }
        }, afterStep: nil)
        if counted {
            stepsRun += plan.actions.count - (resume?.step ?? 0)
            stepsShared += resume?.step ?? 0
        }
        try extractor.extract(images!, into: featureBuffer, row: 0)
        let f = try extractor.stream.download(featureBuffer, count: batch * extractor.dims)
        if firstNonFinite(f, perImage: extractor.dims) != nil {
            throw ModelError("\(plan.sampler), batch \(b): the image features hold non-finite values (the sampler diverged, or the noise or the weights hold NaN or Inf); nothing is scored")
        }
        guard let clip else { return (f, nil) }
        let shape = pipeline.imageShape
        let values = try pipeline.unet.stream.download(images!, count: batch * shape.reduce(1, *))
        return (f, try clip.pairScores(values, count: batch, channels: shape[0], height: shape[1], width: shape[2], first: b * batch))
    }

    /// The teacher's features of batch `b` (generated once, then cached on disk; with a CLIP judge,
    /// generated again when its CLIP scores are not cached).
    func teacherBatch(_ b: Int) throws -> [Float] {
        if let f = teacherFeatures[b], clip == nil || teacherCLIP[b] != nil { return f }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let (f, scores) = try generate(plan: teacher, boundaries: [], batch: b, counted: false)
        teacherSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        teacherFeatures[b] = f
        try FileManager.default.createDirectory(at: teacherFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        try SafeTensorsWriter.write(teacherFeatures.keys.sorted().map { (name: "batch_\($0)", shape: [batch, extractor.dims], values: teacherFeatures[$0]!) },
                                    to: teacherFile.path)
        if let scores, let url = teacherCLIPFile {
            teacherCLIP[b] = scores
            try SafeTensorsWriter.write(teacherCLIP.keys.sorted().map { (name: "batch_\($0)", shape: [batch], values: teacherCLIP[$0]!.map(Float.init)) },
                                        to: url.path)
        }
        return f
    }

    func check(samples: Int) throws {
        guard samples >= 2 else { throw ModelError("rFID needs at least 2 images, not \(samples)") }
    }

    /// Statistics of the teacher's first `samples` images; `progress` gets (images done, samples).
    public func teacherStatistics(samples: Int, progress: ((Int, Int) -> Void)? = nil) throws -> FeatureStatistics {
        if let s = teacherStats[samples] { return s }
        let s = try statistics(samples: samples, progress: progress, batch: teacherBatch)
        teacherStats[samples] = s
        return s
    }

    /// The first `samples` feature rows [samples × dims] of the batches `batch(b)` gives.
    func rows(samples: Int, progress: ((Int, Int) -> Void)? = nil, batch features: (Int) throws -> [Float]) throws -> [Float] {
        var rows: [Float] = []
        for b in 0..<pipeline.batches(samples) {
            rows += try features(b)
            progress?(min(samples, (b + 1) * batch), samples)
        }
        return Array(rows.prefix(samples * extractor.dims))
    }

    /// Statistics of the first `samples` rows of the batches `batch(b)` gives.
    func statistics(samples: Int, progress: ((Int, Int) -> Void)?, batch features: (Int) throws -> [Float]) throws -> FeatureStatistics {
        try check(samples: samples)
        return try FeatureStatistics(features: rows(samples: samples, progress: progress, batch: features), count: samples, dims: extractor.dims)
    }

    /// `plan`'s features of batch b, memoised by the plan's content. `boundaries`: see `features`;
    /// `counted`: add its steps to `stepsRun`/`stepsShared`.
    func planBatches(_ plan: StepPlan, boundaries: [Int], counted: Bool) throws -> (Int) throws -> [Float] {
        try plan.validate(branchCount: pipeline.unet.branchCount)
        let key = Self.contentKey(plan)
        return { b in
            if let f = self.memo[key]?[b], self.clip == nil || self.clipMemo[key]?[b] != nil { return f }
            let (f, scores) = try self.generate(plan: plan, boundaries: boundaries, batch: b, counted: counted)
            self.memo[key, default: [:]][b] = f
            if let scores { self.clipMemo[key, default: [:]][b] = scores }
            return f
        }
    }

    /// The CLIP judge's pair scores of `plan`'s first `samples` images (from the batches its features
    /// come from: a plan scored before is not generated again).
    public func clipScores(plan: StepPlan, samples: Int, boundaries: [Int] = [], counted: Bool = false,
                           progress: ((Int, Int) -> Void)? = nil) throws -> [Double] {
        guard clip != nil else { throw ModelError("CLIP scores need a CLIP model (--clip DIR)") }
        let batches = try planBatches(plan, boundaries: boundaries, counted: counted), key = Self.contentKey(plan)
        _ = try rows(samples: samples, progress: progress, batch: batches)
        return Array((0..<pipeline.batches(samples)).flatMap { clipMemo[key]![$0]! }.prefix(samples))
    }

    /// The teacher's CLIP pair scores on its first `samples` images.
    public func teacherCLIPScores(samples: Int, progress: ((Int, Int) -> Void)? = nil) throws -> [Double] {
        guard clip != nil else { throw ModelError("CLIP scores need a CLIP model (--clip DIR)") }
        _ = try rows(samples: samples, progress: progress, batch: teacherBatch)
        return Array((0..<pipeline.batches(samples)).flatMap { teacherCLIP[$0]! }.prefix(samples))
    }

    /// Statistics of the features of `plan`'s first `samples` images (batches memoised by the plan's
    /// content). `boundaries`: see `features`; `counted`: add its steps to `stepsRun`/`stepsShared`.
    public func statistics(plan: StepPlan, samples: Int, boundaries: [Int] = [], counted: Bool = false,
                           progress: ((Int, Int) -> Void)? = nil) throws -> FeatureStatistics {
        try statistics(samples: samples, progress: progress, batch: planBatches(plan, boundaries: boundaries, counted: counted))
    }

    /// rFID of `plan` on `samples` images against the teacher's, and the plan's statistics.
    public func rfid(plan: StepPlan, samples: Int, boundaries: [Int] = [], counted: Bool = false,
                     progress: ((Int, Int) -> Void)? = nil) throws -> (rfid: Double, statistics: FeatureStatistics) {
        let teacher = try teacherStatistics(samples: samples)
        let s = try statistics(plan: plan, samples: samples, boundaries: boundaries, counted: counted, progress: progress)
        return (try frechetDistance(s, teacher), s)
    }

    /// The feature rows [samples × dims] of `plan`'s first `samples` images (batches memoised as for `statistics`).
    public func features(plan: StepPlan, samples: Int, boundaries: [Int] = [], counted: Bool = false) throws -> [Float] {
        try rows(samples: samples, batch: planBatches(plan, boundaries: boundaries, counted: counted))
    }

    /// The teacher's feature rows [samples × dims].
    public func teacherFeatures(samples: Int) throws -> [Float] { try rows(samples: samples, batch: teacherBatch) }

    /// The paired feature distance of `plan` on `samples` images: the mean over images of the squared
    /// distance between its features and the teacher's image's from the same noise. Unlike rFID, which
    /// compares two sets, it compares image by image, so the scatter of the images drawn cancels.
    public func pairedDistance(plan: StepPlan, samples: Int, boundaries: [Int] = [], counted: Bool = false) throws -> Double {
        try check(samples: samples)
        return Self.pairedDistance(try features(plan: plan, samples: samples, boundaries: boundaries, counted: counted),
                                   try teacherFeatures(samples: samples), dims: extractor.dims)
    }

    /// The mean over rows of the squared distance between rows of `a` and `b` [n × dims] (in float64).
    public static func pairedDistance(_ a: [Float], _ b: [Float], dims: Int) -> Double {
        precondition(a.count == b.count && dims > 0 && a.count % dims == 0, "paired rows of \(dims) values")
        var total = 0.0
        for i in a.indices { let d = Double(a[i]) - Double(b[i]); total += d * d }
        return total / Double(a.count / dims)
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
