// Mutation fuzzing of the file readers (`flexiffusion bench fuzz`): valid files of each format are
// mutated at random (bytes, integers, structure; JSON values by key) and read as the commands read
// them, including what they compute from the result (tensors' values, schedulers' steps, statistics).
// Every input must be read or refused with a ModelError: a trap, a hang or another error type is a bug.
import CZlib
import Foundation
import GPUKernels

/// A file format the commands read.
public enum FuzzReader: String, NamedChoice {
    /// safetensors headers and data (weights, `--noise`, tensor image sets).
    case safetensors
    /// Step plans and search results files (`generate --plan`, `plan show`, `rfid`).
    case plan
    /// config.json of UNet2DModel, UNet2DConditionModel, AutoencoderKL, CLIPTextModel, and scheduler configs.
    case config
    /// MNIST-style IDX image and label files, plain or gzipped.
    case idx
    /// pytorch-fid's .npz statistics (zip of .npy, stored or deflated).
    case npz
    /// PNG images (folders of images for FID).
    case png
    /// Latency tables (`flexiffusion profile`).
    case latency
    /// Prompt files (`--prompts`), read as a CLIP tokenizer then tokenizes them.
    case prompts

    /// The file name ending the readers expect.
    public var fileExtension: String {
        switch self {
        case .safetensors: return "safetensors"
        case .plan, .config, .latency: return "json"
        case .idx: return "idx3-ubyte"
        case .npz: return "npz"
        case .png: return "png"
        case .prompts: return "txt"
        }
    }
}

/// What one input gave.
public enum FuzzOutcome: Sendable, Equatable {
    /// Read (and used) without error.
    case accepted
    /// Refused with a ModelError (the message).
    case refused(String)
    /// Refused with another error type: no trap, but a message the user may not understand.
    case otherError(String)
}

/// Valid files of one format, their mutations, and the reading of each.
public struct FileFuzzer {
    public let reader: FuzzReader
    /// Valid inputs the mutations start from: (name, bytes).
    public let seeds: [(name: String, bytes: [UInt8])]
    private var rng: SplitMix64
    /// Keys seen in the JSON seeds (structured mutations add them with odd values).
    private let keys: [String]

    public init(reader: FuzzReader, seed: UInt64) throws {
        self.reader = reader
        rng = SplitMix64(seed: seed &+ 0x5EED)
        seeds = try FuzzSeeds.make(reader)
        var keys = Set<String>()
        func collect(_ v: Any) {
            if let d = v as? [String: Any] { for (k, x) in d { keys.insert(k); collect(x) } }
            else if let a = v as? [Any] { a.forEach(collect) }
        }
        for s in seeds {
            if let o = try? JSONSerialization.jsonObject(with: Data(s.bytes)) { collect(o) }
            else if let h = FuzzSeeds.safetensorsHeader(s.bytes) { collect(h) }
        }
        self.keys = keys.sorted()
    }

    // MARK: Mutations

    private mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(rng.next() % UInt64(n)) }
    private mutating func chance(_ p: Double) -> Bool { Double(rng.next() >> 11) / Double(1 << 53) < p }

    /// A mutation of a random seed: structured (JSON values, the safetensors header) or byte-level,
    /// one to four stacked; its seed's name.
    public mutating func mutant() -> (bytes: [UInt8], seed: String) {
        let s = seeds[below(seeds.count)]
        var bytes = s.bytes
        let structured = reader == .plan || reader == .config || reader == .latency || reader == .safetensors
        if reader == .npz && chance(0.5) {
            bytes = mutateNPZ()
            if chance(0.2) { bytes = mutateBytes(bytes) }
        } else if structured && chance(0.6) {
            for _ in 0...below(3) { bytes = mutateStructure(bytes) }
            if chance(0.2) { bytes = mutateBytes(bytes) }
        } else {
            for _ in 0...below(4) { bytes = mutateBytes(bytes) }
        }
        return (bytes, s.name)
    }

    private static let interesting64: [UInt64] = [0, 1, 2, 3, 4, 7, 8, 15, 16, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFF_FFFF, 0x8000_0000,
                                                  0xFFFF_FFFF, 0x1_0000_0000, 1 << 53, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, .max, .max - 1]

    /// Byte-level: bit flips, interesting bytes and integers (LE/BE, 2/4/8 bytes), inserted, removed,
    /// duplicated and truncated ranges.
    mutating func mutateBytes(_ input: [UInt8]) -> [UInt8] {
        var b = input
        if b.isEmpty { return [UInt8(truncatingIfNeeded: rng.next())] }
        switch below(9) {
        case 0: b[below(b.count)] ^= 1 << UInt8(below(8))
        case 1: b[below(b.count)] = [0, 0xFF, 0x7F, 0x80, 0x01, 0x30, 0x39, 0x2D, 0x2E, 0x22, 0x7B, 0x5B][below(12)]
        case 2:
            // Half the time at a header field: counts and sizes (big-endian in IDX and PNG, little-endian in safetensors).
            let fields: [(at: Int, width: Int)] = reader == .idx ? [(4, 4), (8, 4), (12, 4)]
                : reader == .png ? [(8, 4), (16, 4), (20, 4), (33, 4)] : reader == .safetensors ? [(0, 8)] : []
            let field = fields.isEmpty || chance(0.5) ? nil : fields[below(fields.count)]
            let width = field?.width ?? [2, 4, 8][below(3)]
            guard b.count >= width else { return b }
            let at = field.map { min($0.at, b.count - width) } ?? below(b.count - width + 1)
            var v = Self.interesting64[below(Self.interesting64.count)]
            if chance(0.3) { v = v &+ UInt64(bitPattern: Int64(below(5) - 2)) }
            for i in 0..<width {
                let shift = chance(0.5) ? i : width - 1 - i   // little or big endian
                b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(shift)))
            }
        case 3:
            let at = below(b.count + 1), n = 1 + below(16)
            b.insert(contentsOf: (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
        case 4:
            let at = below(b.count), n = min(b.count - at, 1 + below(max(1, b.count / 8)))
            b.removeSubrange(at..<(at + n))
        case 5:
            let at = below(b.count), n = min(b.count - at, 1 + below(64))
            b.insert(contentsOf: b[at..<(at + n)], at: below(b.count + 1))
        case 6: b = Array(b.prefix(below(b.count)))
        case 7:   // a run of one byte (long digits, deep brackets)
            b.insert(contentsOf: Array(repeating: [0x39, 0x5B, 0x7B, 0x30, 0xFF][below(5)], count: 1 + below(600)), at: below(b.count + 1))
        default:
            for _ in 0..<(1 + below(8)) { b[below(b.count)] = UInt8(truncatingIfNeeded: rng.next()) }
        }
        return b
    }

    /// A statistics archive whose arrays' .npy headers say odd things: shapes (huge, negative, empty,
    /// overflowing products), dtypes, Fortran order; data of a random length.
    mutating func mutateNPZ() -> [UInt8] {
        let dims = ["0", "1", "3", "9", "-1", "65536", "3037000500", "4611686018427387904", "9223372036854775807", "99999999999999999999", "2.5", "x", ""]
        func shape() -> String {
            switch below(4) {
            case 0: return "()"
            case 1: return "(\(dims[below(dims.count)]),)"
            case 2: return "(\(dims[below(dims.count)]), \(dims[below(dims.count)]))"
            default: return "(3, 3, \(dims[below(dims.count)]))"
            }
        }
        let descrs = ["<f8", "<f4", "=f8", "<f2", "<i8", ">f8", "|u1", "O", ""]
        func entry(_ name: String, _ count: Int) -> (String, [UInt8]) {
            let valid = chance(0.5)
            let data = (0..<(valid ? count * 8 : below(200))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            return ("\(name).npy", NumPy.npy(descr: chance(0.7) ? "<f8" : descrs[below(descrs.count)], fortranOrder: chance(0.9) ? "False" : "True",
                                                 shape: valid && chance(0.5) ? (count == 3 ? "(3,)" : "(3, 3)") : shape(), data: data))
        }
        var entries = [entry("mu", 3), entry("sigma", 9)]
        if chance(0.1) { entries.removeLast() }
        if chance(0.1) { entries.append(entry("extra", 1)) }
        return NumPy.zip(entries, deflate: chance(0.5))
    }

    /// JSON values replaced, removed, added or retyped at random paths (the safetensors header is
    /// re-framed with its length).
    mutating func mutateStructure(_ input: [UInt8]) -> [UInt8] {
        if reader == .safetensors {
            guard let header = FuzzSeeds.safetensorsHeader(input) else { return mutateBytes(input) }
            let n = Int(UInt64(littleEndian: input.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
            let mutated = mutateJSON(header)
            guard let json = try? JSONSerialization.data(withJSONObject: mutated) else { return input }
            return FuzzSeeds.frame(header: [UInt8](json), data: Array(input[(8 + n)...]))
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(input), options: [.fragmentsAllowed]),
              let out = try? JSONSerialization.data(withJSONObject: mutateJSON(object), options: [.fragmentsAllowed]) else {
            return mutateBytes(input)
        }
        return [UInt8](out)
    }

    private mutating func oddValue(like old: Any?) -> Any {
        let numbers: [Any] = [0, -1, 1, 2, 3, 7, 1000, 1001, 65536, 1 << 31, 1 << 62, Int.max, Int.min, 2.5, -0.5, 1e-300, 1e30, -1e30, 1e308, 0.999_999]
        let others: [Any] = ["", "x", "full", "null", "partial:-1", "partial:99999", "ddim", "pndm", "F16", "BF16", "I64",
                             String(repeating: "a", count: 1 + below(300)), NSNull(), true, false, [Any](), [String: Any](),
                             [1, 2], [2.5], [-1, 4], [[1]], ["a"], [Int.max, 2], [0, 0], ["full", "null"]]
        if old is NSNumber && chance(0.7) {
            if let n = old as? NSNumber, chance(0.3) { return n.doubleValue * [0, -1, 2, 1e6, 0.5, 1e-6][below(6)] }
            return numbers[below(numbers.count)]
        }
        if let a = old as? [Any], !a.isEmpty, chance(0.4) {   // change the length
            var a = a
            if chance(0.5) { a.removeLast(1 + below(a.count)) } else { a += Array(repeating: a[below(a.count)], count: 1 + below(40)) }
            return a
        }
        let all = numbers + others
        return all[below(all.count)]
    }

    private mutating func mutateJSON(_ v: Any) -> Any {
        if var d = v as? [String: Any], !d.isEmpty || chance(0.5) {
            let keysHere = d.keys.sorted()
            if keysHere.isEmpty || chance(0.15) {
                d[chance(0.7) && !keys.isEmpty ? keys[below(keys.count)] : "x\(below(5))"] = oddValue(like: nil)
                return d
            }
            let k = keysHere[below(keysHere.count)]
            switch below(10) {
            case 0: d.removeValue(forKey: k)
            case 1, 2, 3: d[k] = oddValue(like: d[k])
            default: d[k] = mutateJSON(d[k]!)
            }
            return d
        }
        if var a = v as? [Any], !a.isEmpty {
            let i = below(a.count)
            switch below(6) {
            case 0: a.remove(at: i)
            case 1: a.insert(a[i], at: i)
            case 2: a[i] = oddValue(like: a[i])
            default: a[i] = mutateJSON(a[i])
            }
            return a
        }
        return oddValue(like: v)
    }

    // MARK: Reading

    /// Reads the file at `path` as the commands do, and uses what it read.
    public func read(_ path: String) -> FuzzOutcome {
        do {
            try Self.consume(reader, path: path)
            return .accepted
        } catch let e as ModelError {
            return .refused(e.message)
        } catch {
            return .otherError("\(type(of: error)): \(error)")
        }
    }

    static func consume(_ reader: FuzzReader, path: String) throws {
        let url = URL(fileURLWithPath: path)
        switch reader {
        case .safetensors:
            let file = try SafeTensorsFile(path: path)
            for name in file.names { _ = try file.floats(name) }
            if file.tensors["sample"] != nil { _ = try ImageSet.load(path) }
        case .plan:
            let plan = try StepPlan.load(from: url)
            try plan.validate(branchCount: 7, schedulerConfiguration: SchedulerConfiguration())
            _ = (plan.captures, plan.compact, plan.fullSteps, plan.branches)
            try exercise(try plan.sampler.scheduler(configuration: SchedulerConfiguration()), evaluations: plan.actions.count)
        case .config:
            let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
            if text.contains("clip_text_model") {
                _ = try CLIPTextConfiguration.load(from: url)
            } else if text.contains("AutoencoderKL") {
                _ = try AutoencoderKLConfiguration.load(from: url)
            } else if text.contains("Scheduler") || text.contains("beta_") {
                let c = try SchedulerConfiguration.load(from: url)
                for kind in SchedulerKind.allCases {
                    for steps in [1, 2, 5, 20] {
                        let sampler = PlanSampler(scheduler: kind, steps: steps, order: kind.isMultistep ? c.solverOrder : nil,
                                                  skipPRKSteps: kind == .pndm ? c.skipPRKSteps : nil)
                        guard let s = try? sampler.scheduler(configuration: c) else { continue }
                        try exercise(s, evaluations: sampler.evaluations)
                    }
                }
            } else {
                let c = try UNetConfiguration.load(from: url)
                _ = (c.fingerprint, (0..<c.branchCount).map(c.branchName))
            }
        case .idx:
            if (try? Data(contentsOf: url))?.prefix(4) == Data([0, 0, 8, 1]) {
                _ = try ImageSet.loadIDXLabels(path)
            } else {
                _ = try ImageSet.load(path)
                _ = try ImageSet.load(path, limit: 1)
            }
        case .npz:
            let stats = try FeatureStatistics.loadNPZ(path)
            if stats.dims <= 64 { _ = try frechetDistance(stats, stats) }
        case .png:
            _ = try ImageSet.load(path)
        case .latency:
            let table = try LatencyTable.load(from: url, missingOK: false)
            let plans = [StepPlan.teacher(PlanSampler(steps: 1000)), StepPlan(sampler: PlanSampler(steps: 3), actions: [.full, .partial(branch: 1), .null])]
            for (_, entries) in table.devices { for e in entries { for p in plans { _ = try? e.cost(of: p) } } }
        case .prompts:
            let set = try PromptSet(try PromptFile.read(path), negativePrompts: [""])
            for (i, text) in set.prompts.enumerated() { _ = (fuzzTokenizer(text), set.prompt(i), set.negativePrompt(i)) }
        }
    }

    /// Every host-side value of every evaluation, as the sampler asks for them.
    static func exercise(_ s: any Scheduler, evaluations: Int) throws {
        _ = (s.timesteps, s.modelTimesteps, s.initNoiseSigma, s.historyLength, s.planSampler)
        for i in 0..<evaluations {
            _ = (s.inputScale(step: i), s.update(step: i), s.keepsSample(step: i))
        }
    }
}
