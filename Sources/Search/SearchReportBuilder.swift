// The end of a search: the Pareto front, the best plan and the evolution's own pick, the baselines
// a user could choose instead (plain DDIM, DPM-Solver++ and UniPC with as many steps as the speed-up
// allows, the best DeepCache member), FID against real data, measured speed-ups, and the results
// file, its picture (SVG) and page (HTML). Every entry carries both measures: its rFID (the score
// itself under the rFID fitness, else computed from the same features) and its paired distance.
import Engine
import Foundation

struct SearchReportBuilder {
    let configuration: SearchConfiguration
    let evaluator: SearchEvaluator
    let search: EvolutionarySearch
    let realStatistics: () throws -> FeatureStatistics?

    /// A report entry and the plan it is for (timed and drawn later).
    typealias Planned = (entry: ReportEntry, plan: StepPlan)

    func finish(best: SearchRecord, report: SearchReport, target: Double, requested: Double,
                before: (run: Int, shared: Int), handler: (SearchEvent) -> SearchControl) throws -> SearchResult {
        let c = configuration, samples = c.samples, steps = c.teacher.steps, evaluations = c.teacher.evaluations
        var report = report
        let records = Array(search.state.records.values)
        let front = ParetoFront.of(records, samples: samples)
        let byPaired = c.fitness == .paired
        func rfidOf(_ r: SearchRecord, _ plan: StepPlan) throws -> Double? { byPaired ? try evaluator.rfid(plan: plan, samples: samples).rfid : r.score(samples) }
        func pairedOf(_ r: SearchRecord?, _ plan: StepPlan) throws -> Double? {
            if byPaired, let s = r?.score(samples) { return s }
            return try evaluator.pairedDistance(plan: plan, samples: samples)
        }
        func fitnessOf(_ e: ReportEntry) -> Double { (byPaired ? e.paired : e.rfid) ?? .nan }

        // 1. The front (fitness only: no FID for each of its plans).
        report.pareto = try front.map {
            let plan = try $0.candidate.plan(c.teacher)
            var e = ReportEntry(name: $0.origin.rawValue, key: $0.candidate.key, predictedSpeedup: $0.predictedSpeedup, rfid: try rfidOf($0, plan), plan: plan)
            e.paired = try pairedOf($0, plan)
            return e
        }
        let real = try realStatistics()
        if real == nil { _ = handler(.noRealData) }
        func fid(_ s: FeatureStatistics) throws -> Double? { try real.map { try frechetDistance(s, $0) } }
        /// A scored record's entry.
        func recorded(_ r: SearchRecord, name: String) throws -> Planned {
            let plan = try r.candidate.plan(c.teacher)
            var e = ReportEntry(name: name, key: r.candidate.key, predictedSpeedup: r.predictedSpeedup, rfid: try rfidOf(r, plan),
                                fid: try fid(evaluator.statistics(r.candidate, samples: samples)), plan: plan)
            e.paired = try pairedOf(r, plan)
            e.clip = try evaluator.clipScore(plan: plan, samples: samples)
            return (e, plan)
        }
        /// A plan's entry, scored now (a plan equal to a scored candidate's reuses its features).
        func baseline(_ plan: StepPlan, name: String, key: String, speedup: Double) throws -> Planned {
            let scored = try evaluator.rfid(plan: plan, samples: samples)
            var e = ReportEntry(name: name, key: key, predictedSpeedup: speedup, rfid: scored.rfid, fid: try fid(scored.statistics), plan: plan)
            e.paired = try pairedOf(nil, plan)
            e.clip = try evaluator.clipScore(plan: plan, samples: samples)
            return (e, plan)
        }

        // 2. The best plan, and the evolution's own best where the final race chose another.
        var entries = [try recorded(best, name: "best")]
        if let first = search.bestBeforeRace, first.candidate.key != best.candidate.key {
            entries.append(try recorded(first, name: "best on \(samples) images"))
        }
        // 3. Plain DDIM with as many steps as the speed-up allows, on its own timestep grid (a member
        // of the space when that step count is one of its grids: then its scores are reused).
        let ddimSteps = SearchConfiguration.ddimSteps(steps: evaluations, target: target)
        let evenSpeedup = Double(evaluations) / Double(ddimSteps)
        // (At an image-to-image strength, the step count that keeps ddimSteps evaluations.)
        let grid = c.teacher.steps(keeping: ddimSteps), strength = c.teacher.strength
        let ddimMember = search.space.ddim(segments: ddimSteps, grid: grid)
        let ddimKey = search.space.contains(ddimMember) ? ddimMember.key : "ddim-\(grid)"
        _ = handler(.scoringBaselines(ddimSteps: ddimSteps))
        let ddimPlan = strength == nil ? try StepPlan.ddim(steps: ddimSteps, eta: c.teacher.eta)
            : StepPlan.teacher(PlanSampler(scheduler: .ddim, steps: grid, eta: c.teacher.eta, strength: strength))
        entries.append(try baseline(ddimPlan, name: "ddim \(grid) steps", key: ddimKey, speedup: evenSpeedup))
        // 4. DPM-Solver++ (2M) and UniPC (2) with the same number of model evaluations: what users switch
        // to instead of a plan (members of the space when the search runs other solvers and the step
        // count is one of its grids; else the search can lose to them, and the report shows it).
        if SolverChoice.canRunBeside(c.teacher) {
            for s in SolverChoice.usual where !s.isSampler(c.teacher) {
                let member = search.space.ddim(segments: ddimSteps, grid: grid, solver: s)
                // ("dpmsolver++ 2M 9 steps", "unipc2 9 steps")
                let name = s.scheduler == .dpmsolverPlusPlus ? "dpmsolver++ \(s.order!)M" : s.description
                entries.append(try baseline(StepPlan.teacher(s.sampler(steps: grid, strength: strength)), name: "\(name) \(grid) steps",
                                            key: search.space.contains(member) ? member.key : "\(s)-\(grid)", speedup: evenSpeedup))
            }
        }
        // 5. DeepCache uniform: the best-scored member that meets the target (scored in generation 0),
        // on the teacher's grid or a coarser one, on any solver of the space.
        if let dc = records.filter({ $0.origin == .deepcache && $0.score(samples) != nil }).min(by: { $0.score(samples)! < $1.score(samples)! }) {
            let g = dc.candidate.sampler(c.teacher).steps
            let L = dc.candidate.segments[0].active, b = dc.candidate.segments[0].branch
            // (The plan is deepCacheUniform(on the candidate's sampler, interval: L, branch: b): its segments are L long.)
            let on = dc.candidate.solver.map { " on \($0) \(g)" } ?? (g == steps ? "" : " on \(c.teacher.scheduler == .ddim ? "DDIM" : c.teacher.scheduler.rawValue) \(g)")
            entries.append(try recorded(dc, name: "deepcache N=\(L) branch \(b)" + on))
        }
        let teacherPlan = StepPlan.teacher(c.teacher)
        var teacherEntry = ReportEntry(name: "teacher", key: "teacher", predictedSpeedup: 1, rfid: 0,
                                       fid: try fid(evaluator.teacherStatistics(samples: samples)), plan: nil)
        teacherEntry.paired = entries[0].entry.paired == nil ? nil : 0
        teacherEntry.clip = try evaluator.teacherCLIPScore(samples: samples)

        // 6. Measured speed-ups: rounds alternate the teacher with every plan, each generating all the
        // fitness images (every batch, samples read back: a whole run but for start-up); a plan's
        // speed-up is the median over rounds of (teacher seconds / plan seconds) in the same round,
        // which cancels slow drift, with the rounds' range beside it.
        if c.measureRounds > 0 {
            var timed = entries.map(\.plan)
            if c.measureFront { timed += report.pareto.map { $0.plan! } }
            _ = handler(.timing(rounds: c.measureRounds, plans: timed.count, images: samples))
            let timings = try SpeedupTiming.measure(timed, against: teacherPlan, rounds: c.measureRounds, teacherTiming: .besideEachPlan) {
                try evaluator.timeRun($0, images: samples)
            }.plans
            teacherEntry.measuredSpeedup = 1
            func measured(_ e: inout ReportEntry, _ m: MeasuredSpeedup) { e.measuredSpeedup = m.median; e.measuredRange = [m.range.min, m.range.max] }
            for i in entries.indices { measured(&entries[i].entry, timings[i]) }
            if c.measureFront {
                for i in report.pareto.indices { measured(&report.pareto[i], timings[entries.count + i]) }
            }
        }

        // 7. The results file.
        for i in entries.indices { entries[i].entry.setRace(search.state) }
        report.best = entries[0].entry
        report.bestPlan = entries[0].plan
        report.state = search.state
        report.race = try search.state.race?.rungs.first?.ranking.map { key in
            let r = search.state.records[key]!
            return report.entry(r, name: r.origin.rawValue, samples: samples, plan: try r.candidate.plan(c.teacher))
        }
        report.baselines = entries.dropFirst().map(\.entry)
        report.teacher = teacherEntry
        report.stepsRun = before.run + evaluator.stepsRun; report.stepsShared = before.shared + evaluator.stepsShared
        try report.write(to: c.out)

        // 8. The picture, and the page with the teacher's, the best plan's and each baseline's images from the same seeds.
        let picture = ParetoPlot.svg(
            candidates: records.compactMap { r in r.score(samples).map { (r.predictedSpeedup, $0) } },
            front: front.map { ($0.predictedSpeedup, $0.score(samples)!) },
            best: (best.predictedSpeedup, best.score(samples)!),
            baselines: entries.dropFirst().map { ($0.entry.name, $0.entry.predictedSpeedup, fitnessOf($0.entry)) } + [("teacher", 1, 0)],
            target: target, requested: requested, title: "flexiffusion search: \(c.modelName), teacher \(c.teacher), \(samples) samples",
            yLabel: byPaired ? "paired feature distance to the teacher" : "rFID against the teacher")
        try writeAtomically(Data(picture.utf8), to: c.svgURL.path)
        var strips: [HTMLReport.Strip] = []
        for (name, plan) in [("teacher", teacherPlan)] + entries.map({ ($0.entry.name, $0.plan) }) {
            if let png = try evaluator.imageStrip(plan, images: c.htmlImages) { strips.append(HTMLReport.Strip(name: name, png: png)) }
        }
        let page = HTMLReport.render(report: report, svg: picture, strips: strips, images: c.htmlImages, seed: c.seed)
        try writeAtomically(Data(page.utf8), to: c.htmlURL.path)
        return SearchResult(report: report, entries: entries.map(\.entry), teacher: teacherEntry, best: best, ddimSteps: ddimSteps,
                            bestIsDDIM: best.candidate.key == ddimKey, scored: records.count, seconds: search.state.elapsedSeconds,
                            teacherSeconds: evaluator.teacherSeconds, svg: c.svgURL, html: c.htmlURL)
    }
}
