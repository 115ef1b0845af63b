// The session on the synthetic evaluator: runs, reports and resumes; shards and merge match one
// process; the paired fitness and the final race in the report.
import Engine
import Foundation
import GPUKernels
import Search
import Testing
import TestSupport

@Suite struct SearchSessionTests {
    let teacher = PlanSampler(scheduler: .ddim, steps: 100)

    func configuration(_ dir: URL, seed: UInt64, mode: SearchConfiguration.Mode = .search, resume: Bool = false,
                       margin: Double = 0.08) -> SearchConfiguration {
        var c = SearchConfiguration(target: .speedup(2.5), teacher: teacher, batch: 8, out: dir.appendingPathComponent("search.json"),
                                    modelName: "synthetic", modelKey: "k", device: "d", features: "f", branchCount: 6)
        c.samples = 16; c.screenSamples = 8; c.population = 6; c.children = 8; c.generations = 4; c.seed = seed
        c.segmentCounts = [5, 10, 20, 25]; c.mode = mode; c.resume = resume; c.margin = margin; c.measureRounds = 2
        return c
    }

    /// Counts latency measurements.
    final class Counter { var n = 0 }

    func session(_ c: SearchConfiguration, _ evaluator: SearchEvaluator, dir: URL, measured: Counter) -> SearchSession {
        SearchSession(configuration: c, evaluator: evaluator,
                      latencies: LatencySource(table: dir.appendingPathComponent("latency.json"), fingerprint: "x") {
                          measured.n += 1
                          return try syntheticLatencies()
                      })
    }

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("search-session-\(freshSeed())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A search by the paired distance: the best entry carries its score as `paired` and its rFID from
    /// the same plan; every entry has both; a results file does not continue with the other fitness.
    @Test func pairedFitnessReportsBothMeasures() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let seed = freshSeed()
        var c = configuration(dir, seed: seed)
        c.fitness = .paired; c.generations = 1
        let outcome = try session(c, SyntheticEvaluator(), dir: dir, measured: Counter()).run()
        guard case .finished(let result) = outcome else { Issue.record("outcome \(outcome)"); return }
        let best = result.entries[0]
        #expect(best.paired == result.best.score(c.samples), "the paired fitness is the best entry's paired distance")
        #expect(best.rfid == (try SyntheticEvaluator().rfid(plan: best.plan!, samples: c.samples)).rfid)
        #expect(result.entries.allSatisfy { $0.rfid != nil && $0.paired != nil } && result.teacher.paired == 0)
        #expect(result.report.state.settings.fitness == .paired)
        var other = configuration(dir, seed: seed, resume: true)
        other.generations = 2
        #expect(throws: ModelError.self) { _ = try session(other, SyntheticEvaluator(), dir: dir, measured: Counter()).run() }
    }

    /// A search with a final race whose judge prefers plain DDIM-37: it becomes the best entry, the
    /// evolution's own best is reported beside it, the contenders carry their race scores, and the
    /// page says how the result was chosen.
    @Test func finalRaceChoosesTheReportedBest() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = configuration(dir, seed: freshSeed())
        c.generations = 2; c.finalSamples = 64; c.finalJudge = .fid
        let evaluator = SyntheticEvaluator()
        let ddim37 = "G37:N37:" + Array(repeating: "1", count: 37).joined(separator: ",")
        evaluator.judgement = { candidate, samples in candidate.key == ddim37 ? 0.5 : 1 + Double(candidate.count) / 100 }
        let outcome = try session(c, evaluator, dir: dir, measured: Counter()).run()
        guard case .finished(let result) = outcome else { Issue.record("outcome \(outcome)"); return }
        #expect(result.best.candidate.key == ddim37 && result.entries[0].key == ddim37)
        #expect(result.entries[0].raceScore == 0.5 && result.entries[0].raceSamples == 64)
        let first = try #require(result.entries.first { $0.name == "best on 16 images" })
        #expect(first.key == result.report.state.population.first && first.raceScore != nil)
        #expect(result.report.state.race?.rungs.map(\.samples) == [64])
        let page = try String(contentsOf: result.html, encoding: .utf8)
        #expect(page.contains("final race: fid") && page.contains("winner of a final race"))
        let saved = try SearchReport.load(from: c.out)
        #expect(saved.best?.key == ddim37 && saved.best?.raceScore == 0.5 && saved.bestPlan == result.report.bestPlan)
        let contenders = try #require(saved.race)
        #expect(contenders.map(\.key) == saved.state.race?.rungs[0].ranking && contenders.allSatisfy { $0.plan != nil && $0.raceSamples == 64 })
    }

    /// A whole search: latencies measured once into the table (then read from it), the report with
    /// the baselines and measured speed-ups, the picture; an interrupted search resumes to the same result.
    @Test func runsReportsAndResumes() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let seed = freshSeed()
        let measured = Counter()
        var events: [String] = []
        let whole = try session(configuration(dir, seed: seed), SyntheticEvaluator(), dir: dir, measured: measured).run { event in
            if case .latencies(let origin, _) = event { events.append("\(origin)") }
            return .proceed
        }
        guard case .finished(let result) = whole else { Issue.record("outcome \(whole)"); return }
        #expect(events == ["measuredNow"])
        #expect(result.entries.map(\.name).first == "best" && result.entries.contains { $0.name == "ddim 37 steps" })
        #expect(result.entries.contains { $0.name.hasPrefix("deepcache") })
        #expect(result.entries.contains { $0.name == "dpmsolver++ 2M 37 steps" && $0.plan?.sampler.scheduler == .dpmsolverPlusPlus })
        #expect(result.entries.allSatisfy { $0.measuredSpeedup != nil && $0.predictedSpeedup >= 2.5 * 1.08 - 1e-9 })
        let ddim = result.entries.first { $0.name == "ddim 37 steps" }!
        #expect(abs(ddim.measuredSpeedup! - 100.0 / 37) < 1e-9 && ddim.measuredRange!.allSatisfy { abs($0 - 100.0 / 37) < 1e-9 })
        #expect(FileManager.default.fileExists(atPath: result.svg.path))
        #expect(result.entries.contains { $0.name == "unipc2 37 steps" && $0.plan?.sampler == PlanSampler(scheduler: .unipc, steps: 37, order: 2) })
        // The page: every entry in the table, the teacher's and every entry's images, the picture inline.
        let page = try String(contentsOf: result.html, encoding: .utf8)
        #expect(page.hasPrefix("<!DOCTYPE html>") && page.contains("<svg") && page.components(separatedBy: "data:image/png;base64,").count == result.entries.count + 2)
        for e in result.entries { #expect(page.contains(">\(e.name)</td>"), "\(e.name) in the page's table") }
        let saved = try SearchReport.load(from: dir.appendingPathComponent("search.json"))
        #expect(saved.bestPlan == result.report.bestPlan && saved.state.complete && saved.baselines.count == result.entries.count - 1)
        let bestPopulation = saved.state.population

        // Stopped mid-search by its handler, then resumed (latencies from the results file, none measured).
        let other = try tempDir()
        defer { try? FileManager.default.removeItem(at: other) }
        try FileManager.default.copyItem(at: dir.appendingPathComponent("latency.json"), to: other.appendingPathComponent("latency.json"))
        let evaluator = SyntheticEvaluator()
        events = []
        let stopped = try session(configuration(other, seed: seed), evaluator, dir: other, measured: measured).run { event in
            if case .latencies(let origin, _) = event { events.append("\(origin)") }
            return evaluator.calls.count >= 17 ? .stop : .proceed
        }
        guard case .interrupted(let scored) = stopped else { Issue.record("outcome \(stopped)"); return }
        #expect(scored >= 1 && events.count == 1 && events[0].hasPrefix("table"), "\(events)")
        #expect(!(try SearchReport.load(from: other.appendingPathComponent("search.json"))).state.complete)
        let stoppedFile = try Data(contentsOf: other.appendingPathComponent("search.json"))
        let resumed = try session(configuration(other, seed: seed, resume: true), evaluator, dir: other, measured: measured).run()
        guard case .finished(let again) = resumed else { Issue.record("outcome \(resumed)"); return }
        #expect(again.report.state.population == bestPopulation, "seed \(seed)")
        // The same stopped file as version 1 wrote it continues to the same result.
        let older = try tempDir()
        defer { try? FileManager.default.removeItem(at: older) }
        try FileManager.default.copyItem(at: dir.appendingPathComponent("latency.json"), to: older.appendingPathComponent("latency.json"))
        try versionOne(stoppedFile).write(to: older.appendingPathComponent("search.json"))
        let fromOne = try session(configuration(older, seed: seed, resume: true), SyntheticEvaluator(), dir: older, measured: measured).run()
        guard case .finished(let one) = fromOne else { Issue.record("outcome \(fromOne)"); return }
        #expect(one.report.state.population == bestPopulation && one.report.version == 2, "seed \(seed)")
        #expect(measured.n == 1, "latencies are measured once, then read from the table or the results file")
        // A results file continues only with its own margin and identity.
        #expect(throws: ModelError.self) { _ = try session(configuration(other, seed: seed, resume: true, margin: 0.1), evaluator, dir: other, measured: measured).run() }
        var faster = configuration(other, seed: seed, resume: true)
        faster.target = .speedup(3)
        do { _ = try session(faster, evaluator, dir: other, measured: measured).run(); Issue.record("another target continued the file") }
        catch let e as ModelError { #expect(e.message.contains("was searched for 2.5×") && e.message.contains("3×"), "\(e.message)") }
        var foreign = configuration(other, seed: seed, resume: true)
        foreign.modelKey = "another"
        do { _ = try session(foreign, evaluator, dir: other, measured: measured).run(); Issue.record("another model continued the file") }
        catch let e as ModelError { #expect(e.message.contains("another model or what its images depend on") && e.message.contains("--prompts"), "\(e.message)") }
        // A new search over a finished results file keeps that file beside it, stopped or not.
        var kept: URL? = nil
        let restart = try session(configuration(other, seed: seed), evaluator, dir: other, measured: measured).run { event in
            if case .replacing(_, let k) = event { kept = k }
            return .stop
        }
        guard case .interrupted = restart else { Issue.record("outcome \(restart)"); return }
        #expect(kept?.lastPathComponent == "search.previous.json")
        let previous = try SearchReport.load(from: other.appendingPathComponent("search.previous.json"))
        #expect(previous.state.complete && previous.bestPlan == again.report.bestPlan, "the finished search is kept")
    }

    /// A continued file names what differs by its options; a second search on a results file being
    /// written is refused naming the first's process; outputs that clobber each other are refused first.
    @Test func continuingNamesWhatDiffersAndTheFileIsLocked() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let seed = freshSeed()
        var c = configuration(dir, seed: seed)
        c.generations = 1
        c.prompts = PromptRecord(file: "p.txt", count: 3, negativePrompt: "blurry", guidanceScale: 7.5)
        var second: Error? = nil
        let first = try session(c, SyntheticEvaluator(), dir: dir, measured: Counter()).run { event in
            if second == nil, case .progress = event {
                do { _ = try session(c, SyntheticEvaluator(), dir: dir, measured: Counter()).run() } catch { second = error }
            }
            return .stop
        }
        guard case .interrupted = first else { Issue.record("outcome \(first)"); return }
        #expect("\(second.map { "\($0)" } ?? "no error")".contains("being written by another search (process \(getpid()))"))
        #expect(try SearchReport.load(from: c.out).prompts == c.prompts, "the prompt set is recorded")
        func refusal(_ change: (inout SearchConfiguration) -> Void) -> String {
            var other = configuration(dir, seed: seed, resume: true)
            other.generations = 1
            change(&other)
            do { _ = try session(other, SyntheticEvaluator(), dir: dir, measured: Counter()).run(); return "no error" } catch { return "\(error)" }
        }
        #expect(refusal { $0.samples = 32 }.contains("--samples 16 (this run asks 32)"))
        #expect(refusal { $0.solvers = [] }.contains("--solvers dpmsolver++2"), "\(refusal { $0.solvers = [] })")
        #expect(refusal { $0.batch = 4 }.contains("--batch 8 (this run: 4)"))
        #expect(refusal { $0.svg = $0.out }.contains("are the same file"))
        #expect(refusal { $0.inputs = [NamedPath("--prompts", $0.out.path)] }.contains("which this command reads"))
    }

    /// Shards over two evaluators, merged after each phase, end where one process ends; the shard
    /// refuses to start before a merge created the results file.
    @Test func shardsAndMergeMatchOneProcess() throws {
        let dir = try tempDir(), one = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir); try? FileManager.default.removeItem(at: one) }
        let seed = freshSeed()
        let measured = Counter()
        guard case .finished(let single) = try session(configuration(one, seed: seed), SyntheticEvaluator(), dir: one, measured: measured).run() else {
            Issue.record("single run did not finish"); return
        }
        #expect(throws: ModelError.self) { _ = try session(configuration(dir, seed: seed, mode: .shard(index: 0, count: 2)), SyntheticEvaluator(), dir: dir, measured: measured).run() }
        var complete = false, rounds = 0
        while !complete && rounds < 100 {
            rounds += 1
            let merged = try session(configuration(dir, seed: seed, mode: .merge), SyntheticEvaluator(), dir: dir, measured: measured).run()
            guard case .merged(_, let done, _, _) = merged else { Issue.record("outcome \(merged)"); return }
            complete = done
            if done { break }
            for i in 0..<2 {
                let shard = try session(configuration(dir, seed: seed, mode: .shard(index: i, count: 2)), SyntheticEvaluator(), dir: dir, measured: measured).run()
                guard case .shardScored(let scored, let missing, _) = shard else { Issue.record("outcome \(shard)"); return }
                #expect(scored <= (missing + 1) / 2)
            }
        }
        #expect(complete, "the sharded search does not finish")
        guard case .finished(let result) = try session(configuration(dir, seed: seed, resume: true), SyntheticEvaluator(), dir: dir, measured: measured).run() else {
            Issue.record("the report after the shards did not finish"); return
        }
        #expect(result.report.state.population == single.report.state.population, "seed \(seed)")
        #expect(result.report.bestPlan == single.report.bestPlan)
    }
}
