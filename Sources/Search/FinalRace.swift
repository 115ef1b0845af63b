// The search's final race: successive halving of the contenders (the population, and generation
// 0's plain DDIM, solver and best DeepCache members) to more images, judged by the settings' judge
// (rFID, the paired distance, FID against real data, or rFID among the plans whose CLIP score stays
// near the teacher's); the best of the last rung is the result,
// so close plans are not decided on the fitness's few images. Scores are memoised in the records.
import Engine
import Foundation

extension EvolutionarySearch {
    /// The contenders of the final race: the population, and generation 0's plain DDIM and solver
    /// members and its best DeepCache member (the baselines), ranked by the fitness on every sample.
    public func raceContenders() -> [String] {
        let n = state.settings.samples
        var keys = state.population
        let baselines = state.records.values.filter { $0.generation == 0 && ($0.origin == .ddim || $0.origin == .solver) && $0.score(n) != nil }
        keys += baselines.map(\.candidate.key)
        if let dc = state.records.values.filter({ $0.origin == .deepcache && $0.score(n) != nil })
            .min(by: { ($0.score(n)!, $0.candidate.key) < ($1.score(n)!, $1.candidate.key) }) { keys.append(dc.candidate.key) }
        return Array(Set(keys)).sorted { (state.records[$0]!.score(n)!, $0) < (state.records[$1]!.score(n)!, $1) }
    }

    /// The race's rungs: 4× the fitness's images at each, the last `finalSamples`.
    public static func rungSamples(samples: Int, finalSamples: Int) -> [Int] {
        var r: [Int] = []
        var s = samples * 4
        while s < finalSamples { r.append(s); s *= 4 }
        return r + [finalSamples]
    }

    /// Successive halving to more images: every contender is judged on the first rung, the better
    /// half (at least two) goes on to the next, and the best of the last rung wins. Scores are
    /// memoised in the records, so a resumed race repeats nothing.
    func runRace() throws {
        // (A race run before under other race settings was dropped when the state was resumed.)
        let settings = state.settings
        guard state.race == nil, let final = settings.finalSamples else { return }
        var contenders = raceContenders()
        guard contenders.count >= 2 else { return }
        var rungs: [RaceLog.Rung] = []
        for (i, samples) in Self.rungSamples(samples: settings.samples, finalSamples: final).enumerated() {
            if i > 0 { contenders = Array(contenders.prefix(max(2, (contenders.count + 1) / 2))) }
            try onUpdate(state, .rung(samples: samples, contenders: contenders.count))
            let scores = try evaluatePhase(contenders.map {
                let r = state.records[$0]!
                return Evaluation(candidate: r.candidate, origin: r.origin, generation: r.generation, samples: samples)
            }, race: true)
            // (The clip judge: plans whose CLIP score strays more than the tolerance from the teacher's rank after the others.)
            let gaps = settings.judge == .clip ? contenders.map { state.records[$0]!.clipGap(samples)! } : nil
            func strays(_ i: Int) -> Int { gaps.map { abs($0[i]) > settings.clipTolerance ? 1 : 0 } ?? 0 }
            let order = contenders.indices.sorted { (strays($0), scores[$0], contenders[$0]) < (strays($1), scores[$1], contenders[$1]) }
            contenders = order.map { contenders[$0] }
            rungs.append(RaceLog.Rung(samples: samples, ranking: contenders, scores: order.map { scores[$0] }, clipGaps: gaps.map { g in order.map { g[$0] } }))
        }
        state.race = RaceLog(judge: settings.judge, rungs: rungs, winner: contenders[0])
    }
}
