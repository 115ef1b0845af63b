// `flexiffusion search`: Flexiffusion's segment-wise evolutionary search for a plan that meets a
// speed target with the least rFID against the teacher, with baselines, a Pareto front and a picture.
import ArgumentParser
import Engine
import Foundation
import GPUKernels
import Search

/// Set by SIGINT: the search stops at the next evaluation and leaves a valid results file.
nonisolated(unsafe) var interruptRequested: sig_atomic_t = 0

struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search the step plan that meets a speed-up with the least rFID against the teacher.",
        discussion: """
            The teacher's steps are cut into N equal segments, each [full, partial × (k − 1) at branch b, \
            null × rest] with its own k and b (Flexiffusion's space; plain DDIM and DeepCache are members). \
            Coarser DDIM grids (--grids) are cut the same way, so DDIM with fewer steps on its own timesteps \
            and DeepCache on it are members too. \
            Costs come from `flexiffusion profile`'s latency table for this device, model and batch (measured \
            now if missing); plans must be predicted at least --speedup × (1 + --margin) faster than the teacher. Fitness is rFID against the teacher's samples from the same seeds, on --samples \
            images; children are screened on the first --screen-samples and only those that would enter the \
            population are scored on all. States at segment boundaries are shared between candidates with \
            the same prefix. Every scored plan is kept in --out, which is rewritten after each evaluation: \
            Ctrl-C leaves it valid and --resume continues (same options → the same result as an uninterrupted \
            run). At the end: plain DDIM with the same number of full steps as the speed-up allows and the best \
            DeepCache uniform plan are scored the same way; rFID and FID against real data (--real) are \
            reported with measured speed-ups (each plan's batch timed beside a teacher batch); the front is drawn to --svg. \
            `generate --plan OUT` runs the best plan.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var featureOptions: FeatureOptions
    @Option(help: "Diffusers pipeline or UNet folder (default: \(DefaultModel.summary)).") var model: String?
    @Option(help: "Required speed-up over the teacher (predicted from the latency table).") var speedup: Double?
    @Option(name: .customLong("latency-ms"), help: "Required latency per batch in milliseconds (instead of --speedup).") var latencyMs: Double?
    @Option(help: ArgumentHelp("Safety margin on the prediction: plans must be predicted at least (1 + F) times the required speed-up, because a measured speed-up scatters around the prediction (whole runs on our 2-core machine: 4–10 % below it in one evaluation, up to 7 % above in another). 0 searches at the prediction alone.", valueName: "F"))
    var margin = 0.08
    @Option(help: "Teacher steps (DDIM).") var steps = 100
    @Option(help: "Teacher's DDIM eta.") var eta: Float = 0
    @Option(help: "Images per fitness evaluation (a multiple of --batch).") var samples = 64
    @Option(name: .customLong("screen-samples"), help: "Images children are screened on (default: --batch).") var screenSamples: Int?
    @Option(help: "Images per forward pass.") var batch = 32
    @Option(help: "Population size.") var population = 8
    @Option(help: "Children per generation.") var children = 8
    @Option(help: "Generations after the initial population.") var generations = 6
    @Option(name: .customLong("mutation-probability"), help: "Per-segment mutation probability.") var mutationProbability = 0.25
    @Option(help: "Fraction of children made by crossover.") var crossover = 0.25
    @Option(help: "Seed of the search and of the images' noise.") var seed: UInt64 = 0
    @Option(help: ArgumentHelp("Segment counts N: a range A-B or a list A,B,C.", valueName: "range")) var segments = "4-50"
    @Flag(help: "Only segment counts that divide the steps (the paper's choice).") var divisors = false
    @Option(help: ArgumentHelp("Coarser DDIM grids searched besides the teacher's: a list of step counts (each cut into segments as the teacher's steps are, with --segments up to its size and N = G, plain DDIM with G steps), auto (the teacher's steps / 2 and the DDIM baseline's ⌊T / (X(1 + F))⌋ steps), or none (the paper's space).", valueName: "list")) var grids = "auto"
    @Flag(help: "Price plans by MACs instead of measured latency.") var macs = false
    @Option(name: .customLong("max-minutes"), help: "Start no generation that would end after this many minutes (the baselines and timing come after).") var maxMinutes = 11.0
    @Option(help: "Real images or pytorch-fid statistics for FID (default for the default model: the Fashion-MNIST test set).") var real: String?
    @Flag(name: .customLong("no-measure"), help: "Skip the timed runs of the best plan, the baselines and the teacher.") var noMeasure = false
    @Option(name: .customLong("measure-rounds"), help: "Timed rounds (each plan's batch beside a teacher batch; the median ratio is reported).") var measureRounds = 1
    @Flag(name: .customLong("measure-front"), help: "Also time one batch of every plan on the Pareto front.") var measureFront = false
    @Option(help: "Results file (JSON).") var out = "search.json"
    @Option(help: "Picture of the front (SVG; default: OUT with .svg).") var svg: String?
    @Flag(help: "Continue the search in --out.") var resume = false
    @Option(help: ArgumentHelp("Score only slice I of N of each phase's unscored plans, into OUT's shard file, then exit (run N of these, e.g. as a job array, then --merge).", valueName: "I/N"))
    var shard: String?
    @Flag(help: "Merge the shard files beside --out into it and advance the search as far as its scores go (creates --out on the first call).")
    var merge = false
    @Option(name: .customLong("latency-table"), help: "Latency table to read (and extend).") var latencyTable: String = LatencyTable.defaultURL.path

    func segmentCounts() throws -> [Int] {
        var counts: [Int]
        if let dash = segments.firstIndex(of: "-"), let a = Int(segments[..<dash]), let b = Int(segments[segments.index(after: dash)...]), a <= b {
            counts = Array(a...b)
        } else if let list = Optional(segments.split(separator: ",").compactMap { Int($0) }), list.count == segments.split(separator: ",").count, !list.isEmpty {
            counts = list
        } else {
            throw ValidationError("--segments \(segments): give a range A-B or a list A,B,C")
        }
        counts = counts.filter { $0 >= 1 && $0 <= steps }
        if divisors { counts = counts.filter { steps % $0 == 0 } }
        guard !counts.isEmpty else { throw ValidationError("--segments \(segments) leaves no segment count for \(steps) steps") }
        return counts
    }

    /// The coarser grids for a target speed-up (`target`, margin included).
    func gridSteps(target: Double) throws -> [Int] {
        switch grids {
        case "none": return []
        case "auto": return Array(Set([steps / 2, Self.ddimSteps(steps: steps, target: target)])).filter { $0 >= 1 && $0 < steps }.sorted(by: >)
        default:
            let list = grids.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !list.isEmpty, list.allSatisfy({ $0 != nil && (1..<steps).contains($0!) }) else {
                throw ValidationError("--grids \(grids): give auto, none, or a list of step counts below the teacher's \(steps), e.g. 50,37")
            }
            return Array(Set(list.map { $0! })).sorted(by: >)
        }
    }

    /// Plain DDIM's step count for a target speed-up: as many full steps as it allows.
    static func ddimSteps(steps: Int, target: Double) -> Int { max(1, Int((Double(steps) / target).rounded(.down))) }

    func run() throws {
        guard (speedup == nil) != (latencyMs == nil) else { throw ValidationError("give --speedup X or --latency-ms MS") }
        guard !(macs && latencyMs != nil) else { throw ValidationError("--latency-ms needs measured latencies; with --macs give --speedup") }
        guard (0..<1).contains(margin) else { throw ValidationError("--margin \(margin): give a fraction in [0, 1), e.g. 0.08") }
        guard batch > 0, samples >= 2, samples % batch == 0 else { throw ValidationError("--samples must be a positive multiple of --batch (\(batch))") }
        let screen = screenSamples ?? batch
        guard screen >= 2, screen <= samples, screen % batch == 0 else { throw ValidationError("--screen-samples must be a multiple of --batch, ≤ --samples") }
        let counts = try segmentCounts()
        var shardSlice: (index: Int, count: Int)? = nil
        if let shard {
            let parts = shard.split(separator: "/").compactMap { Int($0) }
            guard parts.count == 2, parts[1] >= 1, (0..<parts[1]).contains(parts[0]) else {
                throw ValidationError("--shard \(shard): give I/N with 0 ≤ I < N (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
            }
            guard !merge else { throw ValidationError("--shard and --merge are separate steps") }
            shardSlice = (parts[0], parts[1])
        }
        let distributed = shardSlice != nil || merge
        let outURL = URL(fileURLWithPath: out)
        let stem = out.hasSuffix(".json") ? String(out.dropLast(5)) : out
        let svgURL = URL(fileURLWithPath: svg ?? stem + ".svg")
        let previous = resume || (distributed && FileManager.default.fileExists(atPath: outURL.path)) ? try SearchReport.load(from: outURL) : nil
        if let previous, (previous.margin ?? 0) != margin {
            throw ValidationError("\(out) was searched with --margin \(previous.margin ?? 0) (files made before --margin existed have 0); continue it with that margin")
        }
        if shardSlice != nil && previous == nil {
            throw ValidationError("\(out) does not exist: create it first with --merge (same options), so that every shard uses its latencies")
        }
        if !resume && !distributed && FileManager.default.fileExists(atPath: outURL.path) {
            FileHandle.standardError.write("note: \(out) exists and will be replaced (use --resume to continue it)\n".data(using: .utf8)!)
        }

        // Model, sampler, device.
        let setup = try ModelSetup(model)
        let (config, side, schedulerConfig) = (setup.config, setup.side, setup.schedulerConfig)
        let planSampler = PlanSampler(scheduler: .ddim, steps: steps, eta: eta)
        let device = try OpenCLRuntime.select(deviceOptions.device)
        let stream = try ComputeStream(device: device)
        let unet = try setup.unet(stream: stream, batch: batch)
        let pipeline = try GenerationPipeline(unet: unet, schedulerConfiguration: schedulerConfig)
        let sampler = try pipeline.sampler(for: planSampler)
        let modelKey = try RFIDEvaluator.modelKey(folder: setup.folder)
        let modelName = setup.name

        // Latencies for this device, model and batch: from the table, else measured now.
        let tableURL = URL(fileURLWithPath: latencyTable)
        var table = try LatencyTable.load(from: tableURL, missingOK: true)
        let latencies: StepLatencies
        if let previous { latencies = previous.latencies }
        else if let e = table.lookup(device: device.name, fingerprint: config.fingerprint, batch: batch) {
            latencies = e
            say("latencies: \(latencyTable) (\(device.name), batch \(batch), measured \(e.measured))")
        } else {
            say("no latencies for \(device.name) at batch \(batch) in \(latencyTable): measuring them (flexiffusion profile)…")
            latencies = try StepProfiler(sampler: sampler).measure(repeats: 5, model: modelName)
            table.insert(latencies, device: device.name)
            try table.write(to: tableURL)
        }
        let cost = CostModel(latencies: latencies, sampler: planSampler, useMACs: macs)
        let requested = speedup ?? cost.teacherCost / latencyMs!
        guard requested > 1 else { throw ValidationError("the target (\(String(format: "%.2f", requested))× the teacher) must be faster than the teacher") }
        // The constraint the search prices plans against: the requested speed-up with the margin.
        let target = requested * (1 + margin)
        let coarse = try gridSteps(target: target)
        if let previous, Set(previous.state.settings.grids ?? []) != Set(coarse) {
            let had = previous.state.settings.grids.map { $0.map(String.init).joined(separator: ",") } ?? "none"
            throw ValidationError("\(out) was searched with --grids \(had) (files made before --grids existed have none); continue it with that")
        }
        let space = try SearchSpace(sampler: planSampler, segmentCounts: counts, branchCount: unet.branchCount, grids: coarse)
        let settings = SearchSettings(speedup: target, samples: samples, screenSamples: screen, population: population, children: children,
                                      generations: generations, mutationProbability: mutationProbability, crossoverFraction: crossover,
                                      seed: seed, segmentCounts: counts, grids: coarse, useMACs: macs, maxSeconds: maxMinutes * 60)
        let extractor = try featureOptions.extractor(stream: stream, batch: batch, channels: config.outChannels, height: side, width: side)
        let scorer = RFIDScorer(evaluator: try RFIDEvaluator(pipeline: pipeline, extractor: extractor, teacher: sampler.teacherPlan, seed: seed, modelKey: modelKey))
        let search = try EvolutionarySearch(settings: settings, space: space, cost: cost, scorer: scorer, resume: previous?.state)
        var report = SearchReport(model: modelName, modelKey: modelKey, device: device.name, sampler: planSampler, batch: batch,
                                  features: featureOptions.features, latencies: latencies, state: search.state)
        report.requestedSpeedup = requested; report.margin = margin
        // (A resumed search adds to the steps its file counted before.)
        let (stepsBefore, sharedBefore) = (previous?.stepsRun ?? 0, previous?.stepsShared ?? 0)
        report.stepsRun = stepsBefore; report.stepsShared = sharedBefore
        if let previous, previous.modelKey != modelKey || previous.device != device.name || previous.features != featureOptions.features
            || previous.batch != batch || previous.sampler != planSampler {
            throw ValidationError("\(out) was made for another model, device, feature network, batch or teacher; start a new file")
        }

        if let shardSlice {
            return try runShard(search, slice: shardSlice, stem: stem, say: say)
        }
        if merge {
            return try runMerge(search, report: &report, stem: stem, outURL: outURL, say: say)
        }

        // Progress and saving.
        signal(SIGINT) { _ in
            if interruptRequested != 0 { Foundation.exit(130) }
            interruptRequested = 1
        }
        search.shouldStop = { interruptRequested != 0 }
        let interactive = isatty(2) != 0
        let started = Date()
        let budgetSeconds = maxMinutes * 60
        search.onUpdate = { state, message in
            report.state = state
            report.stepsRun = stepsBefore + scorer.stepsRun; report.stepsShared = sharedBefore + scorer.stepsShared
            if let best = search.best {
                report.best = ReportEntry(name: "best", key: best.candidate.key, predictedSpeedup: best.predictedSpeedup, rfid: best.score(samples))
                report.bestPlan = try best.candidate.plan(planSampler)
            }
            try report.write(to: outURL)
            let g = state.generations.count, total = settings.generations + 1
            let elapsed = Date().timeIntervalSince(started)
            let perGeneration = g > 0 ? elapsed / Double(g) : 0
            let eta = g > 0 ? min(budgetSeconds - state.elapsedSeconds, perGeneration * Double(total - g)) : .nan
            let bar = String(repeating: "█", count: min(20, 20 * g / total)) + String(repeating: "·", count: max(0, 20 - 20 * g / total))
            let line = String(format: "gen %d/%d %@ best rFID %@  %d scored  %.0f s%@  %@", min(g, total), total, bar,
                              report.best?.rfid.map { String(format: "%.3f", $0) } ?? "–", state.records.count, elapsed,
                              eta.isFinite ? String(format: ", ETA %.0f s", max(0, eta)) : "", message)
            if interactive { FileHandle.standardError.write("\r\u{1B}[K\(line.prefix(150))".data(using: .utf8)!) }
            else if message.hasPrefix("generation") || message == "done" { say(line) }
        }

        say(String(format: "search: %.2f× over the %d-step teacher (%.2f× + %.0f %% margin; budget %.0f %@ per batch of %d), %d segment counts, grids %@, %d branches, %d samples (screen %d), seed %llu on %@",
                   target, steps, requested, margin * 100, search.state.budget, macs ? "MACs" : "ms", batch, counts.count,
                   space.grids.map(String.init).joined(separator: ","), unet.branchCount, samples, screen, seed, device.name))
        do {
            try search.run()
        } catch is EvolutionarySearch.Stopped {
            if interactive { FileHandle.standardError.write("\n".data(using: .utf8)!) }
            say("interrupted: \(out) holds \(search.state.records.count) scored plans; continue with --resume")
            throw ExitCode(130)
        }
        if interactive { FileHandle.standardError.write("\n".data(using: .utf8)!) }
        guard let best = search.best else { throw ModelError("the search scored no plan") }

        // Pareto front, baselines, FID against real data, measured speed-ups.
        let records = Array(search.state.records.values)
        let front = EvolutionarySearch.paretoFront(records, samples: samples)
        report.pareto = try front.map {
            ReportEntry(name: $0.origin, key: $0.candidate.key, predictedSpeedup: $0.predictedSpeedup, rfid: $0.score(samples), plan: try $0.candidate.plan(planSampler))
        }
        let realStats = try realStatistics(extractor: extractor, say: say)
        func fid(_ s: FeatureStatistics) throws -> Double? { try realStats.map { try frechetDistance(s, $0) } }

        let bestPlan = try best.candidate.plan(planSampler)
        var entries: [(entry: ReportEntry, plan: StepPlan, sampler: Sampler)] = []
        entries.append((ReportEntry(name: "best", key: best.candidate.key, predictedSpeedup: best.predictedSpeedup, rfid: best.score(samples),
                                    fid: try fid(scorer.statistics(best.candidate, samples: samples)), plan: bestPlan),
                        bestPlan, try scorer.sampler(grid: best.candidate.grid)))
        // Plain DDIM with as many steps as the speed-up allows, on its own timestep grid (a member
        // of the space when that step count is one of its grids: then its scores are reused).
        let ddimSteps = Self.ddimSteps(steps: steps, target: target)
        let ddimPlan = try StepPlan.ddim(steps: ddimSteps, eta: eta)
        let ddimSampler = try scorer.sampler(grid: ddimSteps)
        let ddimMember = space.ddim(segments: ddimSteps, grid: ddimSteps)
        let ddimKey = space.contains(ddimMember) ? ddimMember.key : "ddim-\(ddimSteps)"
        say("scoring the baselines: DDIM \(ddimSteps) steps, the best DeepCache uniform plan…")
        let ddim = try scorer.rfid(plan: ddimPlan, samples: samples)
        let ddimPredicted = Double(steps) / Double(ddimSteps)
        entries.append((ReportEntry(name: "ddim \(ddimSteps) steps", key: ddimKey, predictedSpeedup: ddimPredicted,
                                    rfid: ddim.rfid, fid: try fid(ddim.statistics), plan: ddimPlan), ddimPlan, ddimSampler))
        // DeepCache uniform: the best-scored member that meets the target (scored in generation 0),
        // on the teacher's grid or a coarser one.
        if let dc = records.filter({ $0.origin == "deepcache" && $0.score(samples) != nil }).min(by: { $0.score(samples)! < $1.score(samples)! }) {
            let onSampler = dc.candidate.sampler(planSampler), g = onSampler.steps
            let L = g / dc.candidate.count, b = dc.candidate.segments[0].branch
            let plan = try StepPlan.deepCacheUniform(onSampler, interval: L, branch: b)
            entries.append((ReportEntry(name: "deepcache N=\(L) branch \(b)" + (g == steps ? "" : " on DDIM \(g)"), key: dc.candidate.key,
                                        predictedSpeedup: dc.predictedSpeedup, rfid: dc.score(samples),
                                        fid: try fid(scorer.statistics(dc.candidate, samples: samples)), plan: plan),
                            plan, try scorer.sampler(grid: dc.candidate.grid)))
        }
        let teacherPlan = sampler.teacherPlan
        var teacherEntry = ReportEntry(name: "teacher", key: "teacher", predictedSpeedup: 1, rfid: 0,
                                       fid: try fid(scorer.teacherStatistics(samples: samples)), plan: nil)
        if !noMeasure && measureRounds > 0 {
            // Rounds alternate the teacher with every plan; each plan's speed-up is the median over
            // rounds of (teacher seconds / plan seconds) in the same round, which cancels slow drift.
            var timed: [(Sampler, StepPlan)] = entries.map { ($0.sampler, $0.plan) }
            if measureFront { timed += try report.pareto.map { (try scorer.sampler(grid: $0.plan!.sampler.steps), $0.plan!) } }
            say("timing \(measureRounds) round(s) of one batch each, alternating with the teacher (best, baselines\(measureFront ? ", the Pareto front" : ""))…")
            var ratios = Array(repeating: [Double](), count: timed.count)
            for _ in 0..<measureRounds {
                for (i, (planSampler, plan)) in timed.enumerated() {
                    let teacherSeconds = try timeBatch(sampler: sampler, plan: teacherPlan)
                    ratios[i].append(teacherSeconds / (try timeBatch(sampler: planSampler, plan: plan)))
                }
            }
            teacherEntry.measuredSpeedup = 1
            for i in entries.indices { entries[i].entry.measuredSpeedup = median(ratios[i]) }
            if measureFront {
                for i in report.pareto.indices { report.pareto[i].measuredSpeedup = median(ratios[entries.count + i]) }
            }
        }
        report.best = entries[0].entry
        report.bestPlan = bestPlan
        report.baselines = entries.dropFirst().map(\.entry)
        report.teacher = teacherEntry
        report.stepsRun = stepsBefore + scorer.stepsRun; report.stepsShared = sharedBefore + scorer.stepsShared
        try report.write(to: outURL)
        let picture = ParetoPlot.svg(
            candidates: records.compactMap { r in r.score(samples).map { (r.predictedSpeedup, $0) } },
            front: front.map { ($0.predictedSpeedup, $0.score(samples)!) },
            best: (best.predictedSpeedup, best.score(samples)!),
            baselines: entries.dropFirst().map { ($0.entry.name, $0.entry.predictedSpeedup, $0.entry.rfid ?? .nan) } + [("teacher", 1, 0)],
            target: target, requested: requested, title: "flexiffusion search: \(modelName), \(steps)-step DDIM, \(samples) samples")
        try writeAtomically(Data(picture.utf8), to: svgURL.path)

        // The table.
        var rows: [[String]] = [["plan", "predicted ×", "measured ×", "rFID", "FID (real)"]]
        for e in [teacherEntry] + entries.map(\.entry) {
            rows.append([e.name, String(format: "%.2f", e.predictedSpeedup), e.measuredSpeedup.map { String(format: "%.2f", $0) } ?? "–",
                         e.rfid.map { String(format: "%.3f", $0) } ?? "–", e.fid.map { String(format: "%.2f", $0) } ?? "–"])
        }
        print(renderTable(rows))
        print("best plan \(best.candidate.key) (\(bestPlan.fullSteps) full, \(bestPlan.partialSteps) partial, \(bestPlan.nullSteps) null)")
        if best.candidate.key == ddimKey {
            print("  = the DDIM baseline itself: no plan with cached or skipped steps scored below plain DDIM with \(ddimSteps) steps here")
        }
        print(String(format: "%d plans scored in %.0f s; %d sampler steps run, %d skipped by shared prefixes; teacher batches %.0f s",
                     records.count, search.state.elapsedSeconds, report.stepsRun, report.stepsShared, scorer.teacherSeconds))
        print("wrote \(out) (run the best plan with `flexiffusion generate --plan \(out)`) and \(svgURL.path)")
    }

    /// One shard: score this slice of the first phase with unscored plans, into the shard file.
    func runShard(_ search: EvolutionarySearch, slice: (index: Int, count: Int), stem: String, say: @escaping (String) -> Void) throws {
        let file = URL(fileURLWithPath: "\(stem).shard-\(slice.index)-of-\(slice.count).json")
        let known = Set(search.state.records.map { "\($0.key)@\($0.value.rfid.keys.sorted())" })
        search.shard = slice
        search.onUpdate = { state, message in
            // Only what this shard scored travels in its file (the merge takes the union).
            let mine = state.records.filter { !known.contains("\($0.key)@\($0.value.rfid.keys.sorted())") }
            try ShardFile(shard: slice.index, count: slice.count, records: mine).write(to: file)
            if message.contains("rFID") { say("shard \(slice.index)/\(slice.count): \(message)") }
        }
        do {
            try search.run()
            say("the search is complete: nothing for shards to score; run without --shard (with --resume) for the report")
        } catch let done as EvolutionarySearch.ShardDone {
            say("shard \(slice.index)/\(slice.count): scored \(done.scored) of the phase's \(done.missing) unscored plans into \(file.path); merge with --merge")
        }
    }

    /// Merges every shard file of `stem` into the search and advances it without scoring anything.
    func runMerge(_ search: EvolutionarySearch, report: inout SearchReport, stem: String, outURL: URL, say: (String) -> Void) throws {
        let dir = URL(fileURLWithPath: stem).deletingLastPathComponent()
        let prefix = URL(fileURLWithPath: stem).lastPathComponent + ".shard-"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasPrefix(prefix) && $0.hasSuffix(".json") }.sorted()
        for name in files {
            search.merge(try ShardFile.load(from: dir.appendingPathComponent(name)).records)
        }
        search.shard = (0, 0)
        var missing = 0
        do { try search.run() } catch let done as EvolutionarySearch.ShardDone { missing = done.missing }
        report.state = search.state
        if let best = search.best {
            report.best = ReportEntry(name: "best", key: best.candidate.key, predictedSpeedup: best.predictedSpeedup, rfid: best.score(samples))
            report.bestPlan = try best.candidate.plan(report.sampler)
        }
        try report.write(to: outURL)
        if search.state.complete {
            say("merged \(files.count) shard file(s): the search is complete (\(search.state.records.count) plans); run with --resume (no --shard) for the baselines, timings and picture")
        } else {
            say("merged \(files.count) shard file(s) into \(out): generation \(search.state.generations.count), \(missing) plans to score in the next phase; run the shards again")
        }
    }

    /// Seconds of one batch of `plan` from fresh noise (kernels already compiled).
    func timeBatch(sampler: Sampler, plan: StepPlan) throws -> Double {
        let streams = NoiseStreams(seed: seed &+ 99), size = sampler.unet.config.inChannels * sampler.unet.height * sampler.unet.width
        let noise = streams.initialNoise(images: 0..<batch, imageSize: size)
        var v = streams.variance(images: 0..<batch, imageSize: size)
        try sampler.prepare(plan)
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = try sampler.run(noise: noise, plan: plan, noiseSource: &v)
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    /// Statistics of real images for FID (cached beside the teacher statistics), or nil.
    func realStatistics(extractor: FeatureExtractor, say: (String) -> Void) throws -> FeatureStatistics? {
        let defaultReal = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
        guard let path = real ?? (model == nil && FileManager.default.fileExists(atPath: defaultReal) ? defaultReal : nil) else {
            say("no --real images: FID against real data is left out")
            return nil
        }
        if path.hasSuffix(".npz") { return try FeatureStatistics.loadNPZ(path) }
        var h = FNV1a()
        h.add(Array("real-stats v1|\(path)|\(extractor.name)|\(extractor.fingerprint)".utf8))
        let cache = flexiffusionCacheDirectory().appendingPathComponent("real-stats/\(h.hex).npz")
        if let s = try? FeatureStatistics.loadNPZ(cache.path) { return s }
        let images = try ImageSet.load(path)
        let progress = ProgressLine("features of \(path)")
        let s = try FIDStatistics(extractor: extractor).statistics(of: images) { progress.update($0, of: $1, unit: "images") }
        progress.finish()
        try FileManager.default.createDirectory(at: cache.deletingLastPathComponent(), withIntermediateDirectories: true)
        try s.saveNPZ(cache.path)
        return s
    }
}
