// The search's side of the terminal: its progress events on standard error and its report on standard
// output (Ctrl-C is Support/Interrupts.swift).
import Foundation
import Search
import Engine

extension SearchCommand {
    func printReport(_ r: SearchResult) throws {
        if json {
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            struct Summary: Encodable { let best: ReportEntry, baselines: [ReportEntry], teacher: ReportEntry, samples: Int, file: String, svg: String, html: String }
            print(String(decoding: try e.encode(Summary(best: r.entries[0], baselines: Array(r.entries.dropFirst()), teacher: r.teacher,
                                                        samples: samples, file: out, svg: r.svg.path, html: r.html.path)), as: UTF8.self))
            return
        }
        let measured = noMeasure ? "measured ×" : "measured × (median, range of \(measureRounds))"
        let race = r.report.state.race
        let clip = r.teacher.clip != nil
        var rows: [[String]] = [["plan", "predicted ×", measured, "rFID (\(samples))", "paired (\(samples))", "FID real (\(samples))"]
                                + (clip ? ["CLIP (\(samples))"] : [])
                                + (race.map { [$0.judge == .clip ? "race: rFID (images), ΔCLIP" : "race: \($0.judge) (images)"] } ?? [])]
        func figure(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "–" }
        for e in [r.teacher] + r.entries {
            var timing = figure(e.measuredSpeedup, "%.2f")
            if e.measuredSpeedup != nil, let range = e.measuredRange, range[0] != range[1] { timing += String(format: " (%.2f–%.2f)", range[0], range[1]) }
            var row = [e.name, String(format: "%.2f", e.predictedSpeedup), timing, figure(e.rfid, "%.3f"), figure(e.paired, "%.3f"), figure(e.fid, "%.2f")]
            if clip { row.append(figure(e.clip, "%.3f")) }
            if race != nil {
                row.append((e.raceScore.map { String(format: "%.3f (%d)", $0, e.raceSamples ?? 0) } ?? "–")
                           + (e.raceCLIPGap.map { String(format: ", %+.3f", $0) } ?? ""))
            }
            rows.append(row)
        }
        print(renderTable(rows))
        if let race {
            let rungs = race.rungs.map { "\($0.ranking.count) on \($0.samples)" }.joined(separator: ", then ")
            let by = race.judge == .clip
                ? String(format: "rFID among the plans whose CLIP score stays within %g of the teacher's", r.report.state.settings.clipTolerance) : race.judge.rawValue
            print("final race by \(by): \(rungs) images; the best of the last rung is the result")
        }
        print("fitness: \(fitness == .paired ? "paired feature distance" : "rFID"); figures on \(samples) samples (seed \(seed)) scatter: `flexiffusion bench fitness` and scripts/experiments/plan_fid_check.py make larger checks")
        let plan = r.report.bestPlan!
        print("best plan \(r.best.candidate.key) (\(plan.fullSteps) full, \(plan.partialSteps) partial, \(plan.nullSteps) null)")
        if r.bestIsDDIM {
            print("  = the DDIM baseline itself: no plan with cached or skipped steps scored below plain DDIM with \(r.ddimSteps) steps here")
        }
        print(String(format: "%d plans scored in %.0f s (%.1f s per plan on %d images); %d sampler steps run, %d skipped by shared prefixes; teacher batches %.0f s",
                     r.scored, r.seconds, r.seconds / Double(max(1, r.scored)), samples, r.report.stepsRun, r.report.stepsShared, r.teacherSeconds))
        print("wrote \(out) (run the best plan with `flexiffusion generate --plan \(out)`), \(r.svg.path) and \(r.html.path)")
    }
}

/// The search's events on standard error: one redrawn line on a terminal, a line per generation when piped.
final class SearchDisplay {
    let interactive = isatty(2) != 0
    /// What "best" is measured in.
    var fitnessName = "rFID"
    /// What the final race judges by (in full, and in a word).
    var judgeName = "rfid", judgeShort = "rfid"
    /// The race's rung under way: its images, contenders and those judged (memoised ones are not reported).
    private var rung: (images: Int, contenders: Int, done: Int, started: Double)?
    private var drawn = false
    private var lastPlain = 0.0

    func show(_ event: SearchEvent) {
        switch event {
        case .replacing(let url, let kept):
            say("note: \(url.path) exists: a new search replaces it (use --resume to continue it); " + (kept.map { "the earlier file is kept as \($0.path)" } ?? "the earlier file could not be kept"))
        case .latencies(.resultsFile, _): break
        case .latencies(.table(let measured), let table): say("latencies: \(table.path) (measured \(measured))")
        case .latencies(.measuredNow, let table): say("no latencies for this device, model and batch in \(table.path): measuring them (as flexiffusion profile does: 1 warm-up round and 5 timed rounds of every step type)…")
        case .started(let s):
            say(String(format: "search: %.2f× over the %d-step teacher (%.2f× + %.0f %% margin; budget %.0f %@ per batch of %d), %d segment counts, grids %@, solvers %@%@, %d branches, %d samples (screen %d), seed %llu on %@",
                       s.target, s.teacher.steps, s.requested, s.margin * 100, s.budget, s.useMACs ? "MACs" : "ms", s.batch, s.segmentCounts.count,
                       s.grids.map(String.init).joined(separator: ","), ([s.teacher.scheduler.rawValue] + s.solvers.map(\.description)).joined(separator: ","), s.timesteps ? " (timesteps searched)" : "", s.branches, s.samples, s.screenSamples, s.seed, s.device))
        case .progress(let p):
            if case let .rung(images, contenders) = p.update {
                finish()
                say("final race (\(judgeName)): \(contenders) plans on \(images) images…")
                rung = (images, contenders, 0, ProcessInfo.processInfo.systemUptime)
                return
            }
            if case let .judged(key, images, score) = p.update, let r = rung, r.images == images {
                rung!.done += 1
                let seconds = ProcessInfo.processInfo.systemUptime - r.started, left = r.contenders - r.done - 1
                let eta = left > 0 ? String(format: "  (%.0f s each, ETA of the rung %.0f s)", seconds / Double(r.done + 1), seconds / Double(r.done + 1) * Double(left)) : ""
                say(String(format: "  %d/%d  %@ %.3f  %@%@", r.done + 1, r.contenders, judgeShort, score, key, eta))
                return
            }
            let done = max(0, p.generationsDone - 1), total = p.generations - 1
            let figures = String(format: "generation %d/%d  best %@ %@  %d scored  %.0f s%@", done, total, fitnessName,
                                 p.bestFitness.map { String(format: "%.3f", $0) } ?? "–", p.scored, p.elapsed,
                                 p.eta.map { String(format: ", ETA %.0f s", $0) } ?? "")
            if interactive {
                let bar = String(repeating: "█", count: 20 * p.generationsDone / max(1, p.generations))
                FileHandle.standardError.write(Data("\r\u{1B}[K\(bar.padding(toLength: 20, withPad: "·", startingAt: 0)) \(figures)".utf8))
                drawn = true
            } else if case .done = p.update {
            } else if case .evaluated = p.update, p.elapsed - lastPlain < 15 {
            } else {
                lastPlain = p.elapsed
                say(figures)
            }
        case .scoringBaselines(let n): finish(); say("scoring the baselines: DDIM, DPM-Solver++ (2M) and UniPC with \(n) steps, the best DeepCache uniform plan…")
        case .timing(let rounds, let plans, let images): say("timing \(rounds) round(s) of \(plans) plans, each generating the \(images) images beside the teacher…")
        case .noRealData: finish(); say("no --real images: FID against real data is left out")
        }
    }

    func finish() { if drawn { FileHandle.standardError.write(Data("\n".utf8)); drawn = false } }
}
