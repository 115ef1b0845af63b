// What a search knows, as the results file (ResultsFile.swift) and shard files hold it: the settings
// it runs under, every scored candidate with its fitness and race scores by sample count, the
// generations' logs, the final race and the generator's state — enough to resume exactly.
// Typed in Swift (fitness kinds and solvers are choices, scores are keyed by image counts); written
// as before but for two keys that once said "rfid" for any fitness (version 2; version 1 is read).
import Engine
import Foundation

/// What the search minimises, and what its final race judges by.
public enum Fitness: String, NamedChoice {
    /// rFID: Fréchet distance between the plan's and the teacher's image features (two sets).
    case rfid
    /// The mean squared feature distance between each image and the teacher's from the same noise.
    case paired
    /// FID against real data (a reference set of the search's own, e.g. the training set — not the
    /// set the report's FID is measured on).
    case fid
    /// The final race only (text-to-image with a CLIP model): rFID among the plans whose CLIP score
    /// stays within `clip_tolerance` of the teacher's on the same images; the others rank after them.
    case clip
}

/// Scores by the number of images they were computed on (written as a JSON object keyed by the count: {"64": 3.2}).
public struct SampleScores: Codable, Equatable, Sendable, ExpressibleByDictionaryLiteral {
    public private(set) var values: [Int: Double]

    public init(_ values: [Int: Double] = [:]) { self.values = values }
    public init(dictionaryLiteral elements: (Int, Double)...) { values = Dictionary(elements, uniquingKeysWith: { $1 }) }

    public subscript(samples: Int) -> Double? {
        get { values[samples] }
        set { values[samples] = newValue }
    }

    /// The image counts scored, ascending.
    public var counts: [Int] { values.keys.sorted() }

    /// These scores with `other`'s added where these have none.
    public func adding(_ other: SampleScores) -> SampleScores { SampleScores(values.merging(other.values) { mine, _ in mine }) }

    public init(from decoder: Decoder) throws {
        let raw = try decoder.singleValueContainer().decode([String: Double].self)
        var values: [Int: Double] = [:]
        for (key, value) in raw {
            guard let n = Int(key), n > 0 else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\"\(key)\" is not an image count"))
            }
            values[n] = value
        }
        self.values = values
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(Dictionary(uniqueKeysWithValues: values.map { (String($0.key), $0.value) }))
    }
}

public struct SearchSettings: Codable, Equatable, Sendable {
    /// Required predicted speed-up over the teacher.
    public var speedup: Double
    /// Images per fitness evaluation, and the smaller screening set (its first images).
    public var samples: Int, screenSamples: Int
    public var population: Int, children: Int, generations: Int
    /// Per-gene mutation probability (AutoDiffusion's 0.25).
    public var mutationProbability: Double
    /// Fraction of children made by crossover.
    public var crossoverFraction: Double
    public var seed: UInt64
    public var segmentCounts: [Int]
    /// Coarser DDIM grids searched besides the teacher's (nil: the teacher's grid only; files made
    /// before grids existed have none).
    public var grids: [Int]?
    /// Other solvers the grids may run on (written "unipc2", …; empty: the teacher's scheduler only;
    /// files made before solvers existed have none).
    public var solvers: [SolverChoice]
    /// What the search minimises (files made before there was a choice: rFID).
    public var fitness: Fitness
    public var useMACs: Bool
    /// Stop starting generations when the next would end after this many seconds (nil: no limit).
    public var maxSeconds: Double?
    /// The final race (successive halving of the contenders to more images; nil: none): the images of
    /// its last rung, and what it judges by.
    public var finalSamples: Int?
    public var judge: Fitness
    /// Whether mutation moves solver grids' timesteps (files made before it existed: no).
    public var timesteps: Bool
    /// The clip judge's distance: |plan's CLIP score − teacher's| at most this (only with `judge` clip).
    public var clipTolerance: Double = 0.1

    public init(speedup: Double, samples: Int = 64, screenSamples: Int = 32, population: Int = 8, children: Int = 8,
                generations: Int = 6, mutationProbability: Double = 0.25, crossoverFraction: Double = 0.25, seed: UInt64 = 0,
                segmentCounts: [Int], grids: [Int]? = nil, solvers: [SolverChoice] = [], fitness: Fitness = .rfid, useMACs: Bool = false,
                maxSeconds: Double? = nil, finalSamples: Int? = nil, finalJudge: Fitness = .rfid, timesteps: Bool = false) {
        self.speedup = speedup; self.samples = samples; self.screenSamples = screenSamples
        self.population = population; self.children = children; self.generations = generations
        self.mutationProbability = mutationProbability; self.crossoverFraction = crossoverFraction; self.seed = seed
        self.segmentCounts = segmentCounts; self.useMACs = useMACs; self.maxSeconds = maxSeconds
        self.grids = grids?.isEmpty == true ? nil : grids
        self.solvers = solvers; self.fitness = fitness
        self.finalSamples = finalSamples.flatMap { $0 > samples ? $0 : nil }
        self.judge = self.finalSamples == nil ? .rfid : finalJudge
        self.timesteps = timesteps
    }

    /// The one check of the evolution's own settings (a configuration's, a results file's, a test's).
    public func validate() throws {
        guard speedup > 0 else { throw ModelError(argument: "the speed-up must be positive, not \(speedup)") }
        try Self.check(samples: samples, screenSamples: screenSamples, population: population, children: children, generations: generations,
                       mutationProbability: mutationProbability, crossoverFraction: crossoverFraction)
    }

    /// How `other` (a continued results file's settings) differs from these, by the options that set
    /// them: "--samples 64 (this run asks 32)" (`flexiffusion search`'s names).
    public func differences(from other: SearchSettings) -> [String] {
        func text<T>(_ v: T) -> String { "\(v)" }
        let fields: [(String, String, String)] = [
            ("--speedup (with --margin)", String(format: "%g", other.speedup), String(format: "%g", speedup)),
            ("--samples", text(other.samples), text(samples)), ("--screen-samples", text(other.screenSamples), text(screenSamples)),
            ("--population", text(other.population), text(population)), ("--children", text(other.children), text(children)),
            ("--mutation-probability", text(other.mutationProbability), text(mutationProbability)),
            ("--crossover", text(other.crossoverFraction), text(crossoverFraction)), ("--seed", text(other.seed), text(seed)),
            ("--segments (and --divisors)", other.segmentCounts.compactRanges, segmentCounts.compactRanges),
            ("--grids", (other.grids ?? []).map(String.init).joined(separator: ","), (grids ?? []).map(String.init).joined(separator: ",")),
            ("--solvers", other.solvers.map(\.description).joined(separator: ","), solvers.map(\.description).joined(separator: ",")),
            ("--fitness", other.fitness.rawValue, fitness.rawValue), ("--macs", text(other.useMACs), text(useMACs)),
            ("--search-timesteps", text(other.timesteps), text(timesteps)),
        ]
        // (The race's settings are not compared here: a race run under others is dropped and run again.)
        return fields.filter { $0.1 != $0.2 }.map { "\($0.0) \($0.1.isEmpty ? "none" : $0.1) (this run asks \($0.2.isEmpty ? "none" : $0.2))" }
    }

    /// The ranges of the settings a search configuration gives too (SearchConfiguration.validate asks the same).
    static func check(samples: Int, screenSamples: Int, population: Int, children: Int, generations: Int,
                      mutationProbability: Double, crossoverFraction: Double) throws {
        guard samples >= 2 else { throw ModelError(argument: "the fitness needs at least 2 images, not \(samples)") }
        guard (2...samples).contains(screenSamples) else {
            throw ModelError(argument: "the screening images (\(screenSamples)) must be 2…the fitness's images (\(samples))")
        }
        // (Each generation scores up to population + children plans and makes its children in up to
        // 50 × children tries: huge values ran on for days, or overflowed that product.)
        guard (2...10_000).contains(population), (1...10_000).contains(children) else {
            throw ModelError(argument: "population \(population) and children \(children): 2…10,000 and 1…10,000 (at most 10,000 each)")
        }
        guard generations >= 0 else { throw ModelError(argument: "the generations must be 0 or more, not \(generations)") }
        guard (0...1).contains(mutationProbability), (0...1).contains(crossoverFraction) else {
            throw ModelError(argument: "the mutation probability (\(mutationProbability)) and crossover fraction (\(crossoverFraction)) must be in 0…1")
        }
    }

    enum CodingKeys: String, CodingKey {
        case speedup, samples, screenSamples = "screen_samples", population, children, generations
        case mutationProbability = "mutation_probability", crossoverFraction = "crossover_fraction", seed
        case segmentCounts = "segment_counts", grids, solvers, fitness, useMACs = "use_macs", maxSeconds = "max_seconds"
        case finalSamples = "final_samples", finalJudge = "final_judge", timesteps = "search_timesteps", clipTolerance = "clip_tolerance"
    }

    // (Written as before typed fields: solvers as their names, the default fitness, judge and
    // timestep choice left out, so files stay as they were and older ones read the same.)
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        speedup = try c.decode(Double.self, forKey: .speedup)
        samples = try c.decode(Int.self, forKey: .samples); screenSamples = try c.decode(Int.self, forKey: .screenSamples)
        population = try c.decode(Int.self, forKey: .population); children = try c.decode(Int.self, forKey: .children)
        generations = try c.decode(Int.self, forKey: .generations)
        mutationProbability = try c.decode(Double.self, forKey: .mutationProbability)
        crossoverFraction = try c.decode(Double.self, forKey: .crossoverFraction)
        seed = try c.decode(UInt64.self, forKey: .seed)
        segmentCounts = try c.decode([Int].self, forKey: .segmentCounts)
        grids = try c.decodeIfPresent([Int].self, forKey: .grids)
        let names = try c.decodeIfPresent([String].self, forKey: .solvers) ?? []
        do { solvers = try names.map(SolverChoice.init(parsing:)) } catch let e as ModelError {
            throw DecodingError.dataCorruptedError(forKey: .solvers, in: c, debugDescription: e.message)
        }
        fitness = try c.decodeIfPresent(Fitness.self, forKey: .fitness) ?? .rfid
        useMACs = try c.decode(Bool.self, forKey: .useMACs)
        maxSeconds = try c.decodeIfPresent(Double.self, forKey: .maxSeconds)
        finalSamples = try c.decodeIfPresent(Int.self, forKey: .finalSamples)
        judge = try c.decodeIfPresent(Fitness.self, forKey: .finalJudge) ?? .rfid
        timesteps = try c.decodeIfPresent(Bool.self, forKey: .timesteps) ?? false
        clipTolerance = try c.decodeIfPresent(Double.self, forKey: .clipTolerance) ?? 0.1
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(speedup, forKey: .speedup)
        try c.encode(samples, forKey: .samples); try c.encode(screenSamples, forKey: .screenSamples)
        try c.encode(population, forKey: .population); try c.encode(children, forKey: .children)
        try c.encode(generations, forKey: .generations)
        try c.encode(mutationProbability, forKey: .mutationProbability); try c.encode(crossoverFraction, forKey: .crossoverFraction)
        try c.encode(seed, forKey: .seed)
        try c.encode(segmentCounts, forKey: .segmentCounts)
        try c.encodeIfPresent(grids, forKey: .grids)
        if !solvers.isEmpty { try c.encode(solvers.map(\.description), forKey: .solvers) }
        if fitness != .rfid { try c.encode(fitness, forKey: .fitness) }
        try c.encode(useMACs, forKey: .useMACs)
        try c.encodeIfPresent(maxSeconds, forKey: .maxSeconds)
        try c.encodeIfPresent(finalSamples, forKey: .finalSamples)
        if judge != .rfid { try c.encode(judge, forKey: .finalJudge) }
        if timesteps { try c.encode(true, forKey: .timesteps) }
        if judge == .clip { try c.encode(clipTolerance, forKey: .clipTolerance) }
    }
}

/// Where a scored candidate came from.
public enum CandidateOrigin: String, NamedChoice {
    /// The initial population's members: DeepCache uniform, plain DDIM, plain other solvers, random fills.
    case deepcache, ddim, solver, random
    /// Children.
    case mutation, crossover
}

/// A scored candidate.
public struct SearchRecord: Codable, Equatable, Sendable {
    public var candidate: Candidate
    /// How it was made: ddim, deepcache, random, mutation, crossover.
    public var origin: CandidateOrigin
    public var generation: Int
    public var predictedMs: Double
    public var predictedSpeedup: Double
    /// The fitness (rFID or the paired distance, as the settings say) by image count.
    public var fitness: SampleScores
    /// The final race's scores by image count (nil: not a contender).
    public var race: SampleScores?
    /// With the clip judge: the plan's CLIP score minus the teacher's, by image count.
    public var clipGap: SampleScores?

    public init(candidate: Candidate, origin: CandidateOrigin, generation: Int, predictedMs: Double, predictedSpeedup: Double,
                fitness: SampleScores = [:]) {
        self.candidate = candidate; self.origin = origin; self.generation = generation
        self.predictedMs = predictedMs; self.predictedSpeedup = predictedSpeedup; self.fitness = fitness
    }

    /// The fitness on `samples` images (nil: not scored on as many).
    public func score(_ samples: Int) -> Double? { fitness[samples] }
    public func raceScore(_ samples: Int) -> Double? { race?[samples] }
    public func clipGap(_ samples: Int) -> Double? { clipGap?[samples] }

    enum CodingKeys: String, CodingKey {
        case candidate, origin, generation, predictedMs = "predicted_ms", predictedSpeedup = "predicted_speedup", fitness, race
        case clipGap = "clip_gap"
        /// Version 1's name of `fitness`.
        case rfid
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        candidate = try c.decode(Candidate.self, forKey: .candidate)
        origin = try c.decode(CandidateOrigin.self, forKey: .origin)
        generation = try c.decode(Int.self, forKey: .generation)
        predictedMs = try c.decode(Double.self, forKey: .predictedMs)
        predictedSpeedup = try c.decode(Double.self, forKey: .predictedSpeedup)
        fitness = try c.decodeIfPresent(SampleScores.self, forKey: .fitness) ?? c.decode(SampleScores.self, forKey: .rfid)
        race = try c.decodeIfPresent(SampleScores.self, forKey: .race)
        clipGap = try c.decodeIfPresent(SampleScores.self, forKey: .clipGap)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(candidate, forKey: .candidate); try c.encode(origin, forKey: .origin); try c.encode(generation, forKey: .generation)
        try c.encode(predictedMs, forKey: .predictedMs); try c.encode(predictedSpeedup, forKey: .predictedSpeedup)
        try c.encode(fitness, forKey: .fitness)
        try c.encodeIfPresent(race, forKey: .race)
        try c.encodeIfPresent(clipGap, forKey: .clipGap)
    }
}

public struct GenerationLog: Codable, Equatable, Sendable {
    public var generation: Int
    /// Keys of the candidates first scored in this generation.
    public var evaluated: [String]
    /// The population after selection, best first.
    public var population: [String]
    /// The population's best fitness.
    public var bestFitness: Double
    public var seconds: Double

    public init(generation: Int, evaluated: [String], population: [String], bestFitness: Double, seconds: Double) {
        self.generation = generation; self.evaluated = evaluated; self.population = population
        self.bestFitness = bestFitness; self.seconds = seconds
    }

    enum CodingKeys: String, CodingKey {
        case generation, evaluated, population, bestFitness = "best_fitness", seconds
        /// Version 1's name of `best_fitness`.
        case bestRFID = "best_rfid"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        generation = try c.decode(Int.self, forKey: .generation)
        evaluated = try c.decode([String].self, forKey: .evaluated)
        population = try c.decode([String].self, forKey: .population)
        bestFitness = try c.decodeIfPresent(Double.self, forKey: .bestFitness) ?? c.decode(Double.self, forKey: .bestRFID)
        seconds = try c.decode(Double.self, forKey: .seconds)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(generation, forKey: .generation); try c.encode(evaluated, forKey: .evaluated)
        try c.encode(population, forKey: .population); try c.encode(bestFitness, forKey: .bestFitness); try c.encode(seconds, forKey: .seconds)
    }
}

/// The final race: successive halving of the contenders (the population and the plain-solver,
/// DDIM and best DeepCache members of generation 0) to more images, judged by `judge`.
public struct RaceLog: Codable, Equatable, Sendable {
    public struct Rung: Codable, Equatable, Sendable {
        public var samples: Int
        /// The contenders scored on this rung, best first, with their scores.
        public var ranking: [String]
        public var scores: [Double]
        /// With the clip judge: each one's CLIP score minus the teacher's (in the ranking's order).
        public var clipGaps: [Double]?

        enum CodingKeys: String, CodingKey { case samples, ranking, scores, clipGaps = "clip_gaps" }
    }
    public var judge: Fitness
    public var rungs: [Rung]
    /// The best of the last rung: the search's result.
    public var winner: String
}

/// Everything a search knows; the results file holds it, so a search can resume from it.
public struct SearchState: Codable, Sendable {
    public var settings: SearchSettings
    /// Cost budget per batch (milliseconds, or MACs with use_macs).
    public var budget: Double
    public var records: [String: SearchRecord] = [:]
    public var generations: [GenerationLog] = []
    /// Population keys, best first.
    public var population: [String] = []
    /// SplitMix64 state after the last completed generation.
    public var rngState: UInt64
    public var elapsedSeconds: Double = 0
    public var complete = false
    /// The final race, once run (nil: none was asked for, or not yet).
    public var race: RaceLog?

    enum CodingKeys: String, CodingKey {
        case settings, budget, records, generations, population, rngState = "rng_state", elapsedSeconds = "elapsed_seconds", complete, race
    }
}

extension Array where Element == Int {
    /// "4-50" for a run of consecutive counts, else the counts: "4,6,8".
    var compactRanges: String {
        guard let first, let last, count > 1, last - first == count - 1, self == Array(first...last) else { return map(String.init).joined(separator: ",") }
        return "\(first)-\(last)"
    }
}
