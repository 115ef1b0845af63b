// Teacher trajectories as data, and schedules fitted to them by dynamic programming (GITS' idea,
// arXiv 2405.11326, for first-order steps): the teacher — DDIM with every step full on its fine grid —
// runs from N seeds and its state before every step, its model output there and its final sample
// are kept. A first-order jump from grid point i to j (DDIM, which is DPM-Solver(++) of order 1) has a
// closed form in the state and output at i, so its error against the teacher's state at j costs no
// model evaluation; the K-jump path from the first grid point to the end with the least summed
// error is the schedule (its first K grid timesteps), run as DPM-Solver++ of order 1 on those
// explicit timesteps.
import Foundation
import GPUKernels

/// The teacher's states on its grid for `count` images: `states` [count, T + 1, C·H·W] (before each of the
/// T steps, then the final sample), `outputs` [count, T, C·H·W] (the model's ε at each step, guidance
/// applied), the grid's `timesteps` (T values, first to last) and the schedule's ᾱ at each of them.
public struct TeacherTrajectories: Sendable {
    public let timesteps: [Int]
    public let alphasCumprod: [Float]
    public let count: Int, imageSize: Int
    public let states: [Float], outputs: [Float]
    /// The teacher's plan sampler (DDIM with T steps, eta 0).
    public let sampler: PlanSampler

    public var steps: Int { timesteps.count }

    public init(timesteps: [Int], alphasCumprod: [Float], count: Int, imageSize: Int, states: [Float], outputs: [Float], sampler: PlanSampler) throws {
        let T = timesteps.count
        guard T >= 1, count >= 1, imageSize >= 1, alphasCumprod.count == T,
              states.count == count * (T + 1) * imageSize, outputs.count == count * T * imageSize else {
            throw ModelError("trajectories: \(states.count) state and \(outputs.count) output values do not make \(count) trajectories of \(T) steps of \(imageSize) values")
        }
        self.timesteps = timesteps; self.alphasCumprod = alphasCumprod; self.count = count; self.imageSize = imageSize
        self.states = states; self.outputs = outputs; self.sampler = sampler
    }

    /// Runs `pipeline`'s teacher (DDIM with `steps` steps, every step full, eta 0) on images 0..<count
    /// from `noise`, keeping every state and model output (an epsilon-predicting model: the jumps'
    /// closed form assumes it). `progress(done, total)` after each batch.
    public static func record(_ pipeline: any ImagePipeline, steps: Int, noise: GenerationNoise, count: Int,
                              progress: ((Int, Int) -> Void)? = nil) throws -> TeacherTrajectories {
        let configuration = pipeline.schedulerConfiguration
        guard configuration.predictionType == .epsilon else {
            throw ModelError("trajectories: the jumps' closed form is written for an epsilon-predicting model; this one predicts \(configuration.predictionType.rawValue)")
        }
        guard count > 0 else { throw ModelError(argument: "trajectories need at least one image, not \(count)") }
        let sampler = PlanSampler(scheduler: .ddim, steps: steps)
        let s = try pipeline.sampler(for: sampler)
        guard let ddim = s.scheduler as? DDIMScheduler else { throw ModelError("trajectories: the teacher must be DDIM") }
        let size = pipeline.sampleValues, B = pipeline.batch, T = steps
        var states = [Float](repeating: 0, count: count * (T + 1) * size), outputs = [Float](repeating: 0, count: count * T * size)
        var variance = noise.streams.variance(images: 0..<0, imageSize: size)
        try s.prepare(StepPlan.teacher(sampler))
        for b in 0..<((count + B - 1) / B) {
            let slots = (b * B)..<((b + 1) * B), real = slots.clamped(to: 0..<count)
            try pipeline.condition(images: slots.map { min($0, count - 1) })
            try pipeline.setInitialSample(s, noise: noise.initial(slots, imageSize: size, count: count), generation: noise, slots: slots, count: count)
            func keep(_ values: [Float], into array: inout [Float], stride: Int, at point: Int) {
                for (k, n) in real.enumerated() {
                    let from = k * size, to = (n * stride + point) * size
                    array.replaceSubrange(to..<(to + size), with: values[from..<(from + size)])
                }
            }
            for i in 0..<T {
                keep(try s.currentSample(), into: &states, stride: T + 1, at: i)
                try s.evaluate(i, .full)
                keep(try pipeline.unet.stream.download(pipeline.unet.workspace.output, count: B * size), into: &outputs, stride: T, at: i)
                try s.update(i, noiseSource: &variance)
            }
            keep(try s.currentSample(), into: &states, stride: T + 1, at: T)
            progress?(real.upperBound, count)
        }
        return try TeacherTrajectories(timesteps: ddim.timesteps, alphasCumprod: ddim.timesteps.map { ddim.schedule.alphasCumprod[$0] },
                                       count: count, imageSize: size, states: states, outputs: outputs, sampler: sampler)
    }

    /// The mean squared error per value of a first-order jump from grid point `i` to `j` (i < j ≤ T,
    /// T: the end, ᾱ = 1) over the trajectories: DDIM from the teacher's state and output at i
    /// against the teacher's state at j.
    public func jumpError(from i: Int, to j: Int) -> Double {
        precondition(0 <= i && i < j && j <= steps, "a jump goes forward on the grid")
        let a = alphasCumprod[i], aj: Float = j == steps ? 1 : alphasCumprod[j]
        let sa = a.squareRoot(), sb = (1 - a).squareRoot(), saj = aj.squareRoot(), sbj = (1 - aj).squareRoot()
        let T = steps
        var total = 0.0
        for n in 0..<count {
            let x = (n * (T + 1) + i) * imageSize, e = (n * T + i) * imageSize, y = (n * (T + 1) + j) * imageSize
            var sum: Float = 0
            for k in 0..<imageSize {
                let x0 = (states[x + k] - sb * outputs[e + k]) / sa
                let d = saj * x0 + sbj * outputs[e + k] - states[y + k]
                sum += d * d
            }
            total += Double(sum)
        }
        return total / Double(count * imageSize)
    }

    /// Every jump's error: [i][j] for 0 ≤ i < j ≤ T (others 0).
    public func jumpErrors() -> [[Double]] {
        (0...steps).map { i in (0...steps).map { j in j > i && i < steps ? jumpError(from: i, to: j) : 0 } }
    }
}

/// The K-jump path through a grid of T points and an end that minimises the summed jump costs.
public enum DynamicSchedule {
    /// Indices 0 = i₀ < i₁ < … < i_K = T minimising Σ cost[i_a][i_{a+1}] (cost: (T + 1) × (T + 1), used
    /// above the diagonal), with that sum.
    public static func path(cost: [[Double]], jumps K: Int) throws -> (points: [Int], total: Double) {
        let T = cost.count - 1
        guard T >= 1, (1...T).contains(K) else { throw ModelError(argument: "\(K) jumps over a grid of \(T) steps: give 1…\(T)") }
        var best = [[Double]](repeating: [Double](repeating: .infinity, count: T + 1), count: K + 1)
        var from = [[Int]](repeating: [Int](repeating: -1, count: T + 1), count: K + 1)
        best[0][0] = 0
        for k in 1...K {
            for j in 1...T {
                for i in 0..<j where best[k - 1][i].isFinite {
                    let v = best[k - 1][i] + cost[i][j]
                    if v < best[k][j] { best[k][j] = v; from[k][j] = i }
                }
            }
        }
        guard best[K][T].isFinite else {
            throw ModelError("no \(K)-jump path has a finite cost: the jump costs hold NaN or infinity")
        }
        var points = [T], j = T
        for k in stride(from: K, to: 0, by: -1) { j = from[k][j]; points.append(j) }
        return (Array(points.reversed()), best[K][T])
    }

    /// The evenly spaced K-jump path (the grid points nearest to a·T/K), for comparison.
    public static func uniform(steps T: Int, jumps K: Int) -> [Int] {
        Array(Set((0...K).map { Int((Double($0) * Double(T) / Double(K)).rounded()) })).sorted()
    }

    /// The summed cost of `points`.
    public static func total(_ points: [Int], cost: [[Double]]) -> Double {
        zip(points, points.dropFirst()).map { cost[$0][$1] }.reduce(0, +)
    }

    /// The plan of a path over `trajectories`' grid: DPM-Solver++ of order 1 (= DDIM) on the path's
    /// first K grid timesteps, every step full.
    public static func plan(_ points: [Int], trajectories t: TeacherTrajectories, description: String) throws -> StepPlan {
        let timesteps = points.dropLast().map { t.timesteps[$0] }
        var p = StepPlan.teacher(PlanSampler(scheduler: .dpmsolverPlusPlus, steps: timesteps.count, order: 1, timesteps: Array(timesteps)))
        p.description = description
        try p.sampler.validate()
        return p
    }
}

extension TeacherTrajectories {
    /// Writes the trajectories as safetensors: `states` [N, T + 1, C·H·W], `outputs` [N, T, C·H·W],
    /// `timesteps` and `alphas_cumprod` [T] (through a temporary file: nothing half-written).
    public func write(to path: String) throws {
        let T = steps
        try SafeTensorsWriter.write([("states", [count, T + 1, imageSize], states), ("outputs", [count, T, imageSize], outputs),
                                     ("timesteps", [T], timesteps.map(Float.init)), ("alphas_cumprod", [T], alphasCumprod)], to: path)
    }

    /// Reads what `write` wrote; a file of other tensors or shapes is an error naming them.
    public static func load(from path: String) throws -> TeacherTrajectories {
        let file = try SafeTensorsFile(path: path)
        for name in ["states", "outputs", "timesteps", "alphas_cumprod"] where file.tensors[name] == nil {
            throw ModelError("\(path): no tensor `\(name)`: not a trajectories file (`flexiffusion trajectories` writes them)")
        }
        let s = file.tensors["states"]!.shape, o = file.tensors["outputs"]!.shape, t = file.tensors["timesteps"]!.shape
        guard s.count == 3, o.count == 3, t.count == 1, s[0] == o[0], s[2] == o[2], s[1] == t[0] + 1, o[1] == t[0],
              file.tensors["alphas_cumprod"]!.shape == t else {
            throw ModelError("\(path): states \(s), outputs \(o) and timesteps \(t) do not fit together ([N, T + 1, D], [N, T, D], [T])")
        }
        let timesteps = try file.floats("timesteps")
        guard timesteps.allSatisfy({ $0 >= 0 && $0 < 1e6 && $0 == $0.rounded() }), zip(timesteps, timesteps.dropFirst()).allSatisfy({ $0 > $1 }) else {
            throw ModelError("\(path): the timesteps are not whole numbers, strictly decreasing")
        }
        let alphas = try file.floats("alphas_cumprod")
        guard alphas.allSatisfy({ $0 > 0 && $0 < 1 }) else { throw ModelError("\(path): alphas_cumprod must lie in (0, 1)") }
        let states = try file.floats("states"), outputs = try file.floats("outputs")
        for (name, values) in [("states", states), ("outputs", outputs)] {
            if let bad = values.first(where: { !$0.isFinite }) { throw ModelError("\(path): `\(name)` holds a non-finite value (\(bad))") }
        }
        return try TeacherTrajectories(timesteps: timesteps.map { Int($0) }, alphasCumprod: alphas, count: s[0], imageSize: s[2],
                                       states: states, outputs: outputs, sampler: PlanSampler(scheduler: .ddim, steps: t[0]))
    }
}
