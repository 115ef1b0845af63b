// `flexiffusion search`: maps options onto a SearchConfiguration, runs the SearchSession on the
// engine and prints its progress and report.
import ArgumentParser
import Engine
import Foundation
import GPUKernels
import Search

struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search the step plan that meets a speed-up with the least rFID against the teacher.",
        discussion: """
            The teacher's steps are cut into N equal segments, each [full, partial × (k − 1) at branch b, \
            null × rest] with its own k and b (Flexiffusion's space; plain DDIM and DeepCache are members). \
            Coarser DDIM grids (--grids) are cut the same way, so DDIM with fewer steps on its own timesteps \
            and DeepCache on it are members too. Grids may also run on other solvers (--solvers; default \
            DPM-Solver++ 2M, UniPC 2 and 3): plain UniPC with G steps and DeepCache on it are members then, and \
            the search weighs caching on a solver's grid against switching the solver alone. \
            Costs come from `flexiffusion profile`'s latency table for this device, model and batch (measured \
            now if missing); plans must be predicted at least --speedup × (1 + --margin) faster than the teacher. \
            Fitness is rFID against the teacher's samples from the same seeds, on --samples images (the same \
            number `flexiffusion rfid PLAN --teacher STEPS --seed S --count SAMPLES --batch B` gives); children \
            are screened on the first --screen-samples and only those that would enter the population are \
            scored on all. States at segment boundaries are shared between candidates with the same prefix. \
            Every scored plan is kept in --out, which is rewritten after each evaluation: Ctrl-C leaves it valid \
            and --resume continues (same options → the same result as an uninterrupted run). Then a final race \
            (successive halving; --final-samples, default 16 × --samples): the population and generation 0's plain \
            DDIM, solver and best DeepCache plans are judged on 4 × --samples images, the better half on 4 times \
            as many, up to --final-samples, by --final-judge (rfid, paired, clip: rFID among plans near the teacher's CLIP score, or fid: FID against --final-real; \
            the default for the default model is fid against the Fashion-MNIST training set, elsewhere rfid); \
            the best of the last rung is the result, so close plans are not decided on 64 images. At the end: plain \
            DDIM, DPM-Solver++ (2M) and UniPC with as many full steps as the speed-up allows and the best \
            DeepCache uniform plan are scored the same way; rFID and FID against real data (--real) on the same --samples images are reported \
            with measured speed-ups (median over --measure-rounds of a plan's batch timed beside a teacher \
            batch); the front is drawn to --svg, and --html (a static page) shows the table, the front and the \
            teacher's, the best plan's and the baselines' images from the same seeds side by side. \
            `generate --plan OUT` runs the best plan. \
            A Stable Diffusion pipeline folder is searched over a prompt set (--prompts FILE, e.g. \
            prompts/everyday-scenes.txt): image i comes from prompt i mod n and the seed's latents, with \
            classifier-free guidance (--guidance-scale; both halves follow the plan), decoded by the VAE and \
            scored by --features (default inception; fashion resizes to 28×28 grey, a CI-sized stand-in). \
            Its teacher is the folder's scheduler (PNDM for SD 1.5) at 50 steps unless --scheduler or --steps say \
            otherwise; its latencies are the UNet's at twice --batch with guidance (`profile --batch B` on the \
            pipeline measures the same).
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var precisionOptions: PrecisionOptions
    @OptionGroup var featureOptions: FeatureOptions
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var promptOptions: PromptOptions
    @OptionGroup var imageToImage: ImageToImageOptions
    @Option(help: "Required speed-up over the teacher (predicted from the latency table).") var speedup: Double?
    @Option(name: .customLong("latency-ms"), help: "Required latency per batch in milliseconds (instead of --speedup).") var latencyMs: Double?
    @Option(help: ArgumentHelp("Safety margin on the prediction: plans must be predicted at least (1 + F) times the required speed-up, because a measured speed-up scatters around the prediction (whole runs on our 2-core machine: 4–10 % below it in one evaluation, up to 7 % above in another). 0 searches at the prediction alone.", valueName: "F"))
    var margin = 0.08
    @Option(help: "Teacher steps (default: 100; 50 for a Stable Diffusion pipeline).") var steps: Int?
    @Option(help: ArgumentHelp("The teacher's scheduler (default: ddim; a Stable Diffusion pipeline's own, e.g. pndm for SD 1.5).", valueName: "kind"))
    var scheduler: SchedulerKind?
    @Option(help: "Teacher's DDIM eta.") var eta: Float = 0
    @Option(help: "Images per fitness evaluation.") var samples = 64
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
    @Option(help: ArgumentHelp("Solvers the grids may run on besides the teacher's DDIM: a list such as dpmsolver++2,unipc2,unipc3,euler (a number is a multistep solver's order; -leading, -trailing or -linspace after it replaces the config's timestep spacing, e.g. unipc3-trailing), or none (default: dpmsolver++2,unipc2,unipc3,unipc3-trailing,dpmsolver++2-trailing with eta 0; when continuing a results file, its own). With solvers, auto grids add 1.5 and 2 times the baseline's steps.", valueName: "list")) var solvers: String?
    @Flag(name: .customLong("search-timesteps"), inversion: .prefixedNo, help: "Mutation also moves single timesteps of solver grids (DPM-Solver, UniPC, Euler), starting from their spacing's, so that plans may carry explicit timestep lists as Align Your Steps schedules do (when continuing a results file: its own choice).")
    var searchTimesteps = true
    @Option(name: .customLong("fitness"), help: ArgumentHelp("What the search minimises: rfid (Fréchet distance of the plan's image features to the teacher's) or paired (the mean squared feature distance of each image to the teacher's image from the same noise, which ranks close plans more consistently on few images; see `flexiffusion bench fitness`).", valueName: "rfid|paired")) var fitnessOption = FitnessOption(.rfid)
    var fitness: Fitness { fitnessOption.value }
    @Option(name: .customLong("final-samples"), help: ArgumentHelp("The final race: the population and generation 0's plain solvers, DDIM and best DeepCache plan are judged on 4 × --samples images, the better half of them on 4 times as many, and so on up to this many; the best of the last rung is the result (successive halving: rankings on 64 images are close to a coin toss between close plans). 0: no race, the best by the fitness on --samples images. Default: 16 × --samples.", valueName: "N")) var finalSamples: Int?
    @Option(name: .customLong("final-judge"), help: ArgumentHelp("What the final race judges by: rfid, paired, fid (FID against real data: --final-real, which should not be the set the report's FID uses), or clip (text-to-image with --clip: rFID among the plans whose CLIP score stays within --clip-tolerance of the teacher's on the same images; the others rank after them). Default: fid where the search has real images of its own (the default model: its training set), else rfid.", valueName: "rfid|paired|fid|clip")) var finalJudgeOption: Fitness?
    @OptionGroup var clipOptions: CLIPOptions
    @Option(name: .customLong("clip-tolerance"), help: "The clip judge's distance: a plan's CLIP score may differ from the teacher's by at most this (the paper's claim: 0.1).") var clipTolerance = 0.1
    @Option(name: .customLong("final-real"), help: "Real images or pytorch-fid statistics the fid judge compares with (default for the default model: the Fashion-MNIST training set, apart from the test set the report's FID uses).") var finalReal: String?
    @Flag(help: "Price plans by MACs instead of measured latency.") var macs = false
    @Option(name: .customLong("max-minutes"), help: "Start no generation that would end after this many minutes (the baselines and timing come after; default: no limit).") var maxMinutes: Double?
    @Option(help: "Real images or pytorch-fid statistics for FID (default for the default model: the Fashion-MNIST test set).") var real: String?
    @Flag(name: .customLong("no-measure"), help: "Skip the timed runs of the best plan, the baselines and the teacher.") var noMeasure = false
    @Option(name: .customLong("measure-rounds"), help: "Timed rounds (each plan's batch beside a teacher batch; the median ratio is reported).") var measureRounds = 3
    @Flag(name: .customLong("measure-front"), help: "Also time one batch of every plan on the Pareto front.") var measureFront = false
    @Option(help: "Results file (JSON).") var out = "search.json"
    @Option(help: "Picture of the front (SVG; default: OUT with .svg).") var svg: String?
    @Option(help: "The report as a static page with images (default: OUT with .html).") var html: String?
    @Flag(help: "Continue the search in --out.") var resume = false
    @Option(help: ArgumentHelp("Score only slice I of N of each phase's unscored plans, into OUT's shard file, then exit (run N of these, e.g. as a job array, then --merge).", valueName: "I/N"))
    var shard: String?
    @Flag(help: "Merge the shard files beside --out into it and advance the search as far as its scores go (creates --out on the first call).")
    var merge = false
    @Option(name: .customLong("latency-table"), help: "Latency table to read (and extend).") var latencyTable: String = LatencyTable.defaultURL.path
    @Flag(help: "Print the report as JSON (the results file's best, baselines and teacher) on standard output.") var json = false

    /// What only the command line can get wrong (the search's own settings are checked by
    /// SearchConfiguration.validate, before any work).
    func validate() throws {
        guard (speedup == nil) != (latencyMs == nil) else { throw ValidationError("give --speedup X or --latency-ms MS") }
        try checkImageCount(samples, option: "--samples")
        if let finalSamples { try checkImageCount(finalSamples, option: "--final-samples") }
        guard !(shard != nil && merge) else { throw ValidationError("--shard and --merge are separate steps") }
        if let j = finalJudgeOption, j != .rfid, finalSamples == 0 { throw ValidationError("--final-judge \(j.rawValue) needs a final race (--final-samples is 0)") }
        if finalJudgeOption == .clip && clipOptions.clip == nil { throw ValidationError("--final-judge clip needs a CLIP model: --clip DIR") }
        guard clipTolerance.isFinite && clipTolerance >= 0 else { throw ValidationError("--clip-tolerance must be a finite number ≥ 0") }
    }

    /// The training set beside the test set the default model's FID uses.
    static let trainingSet = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

    /// What the race judges by: the option, else FID against real images where there are some of the search's own.
    var finalJudge: Fitness { finalJudgeOption ?? (finalRealImages() == nil ? .rfid : .fid) }

    /// The real images of the fid judge (nil: none given and no default).
    func finalRealImages() -> String? {
        finalReal ?? (modelOptions.model == nil && promptOptions.prompts == nil && FileManager.default.fileExists(atPath: Self.trainingSet) ? Self.trainingSet : nil)
    }

    func mode() throws -> SearchConfiguration.Mode {
        guard let shard else { return merge ? .merge : .search }
        let parts = shard.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 2, parts[1] >= 1, (0..<parts[1]).contains(parts[0]) else {
            throw ValidationError("--shard \(shard): give I/N with 0 ≤ I < N (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
        }
        return .shard(index: parts[0], count: parts[1])
    }

    func segmentCounts() throws -> [Int] {
        if let dash = segments.firstIndex(of: "-"), let a = Int(segments[..<dash]), let b = Int(segments[segments.index(after: dash)...]), a <= b {
            // (A segment count is at most the teacher's steps, which are at most PlanSampler.maxSteps: a
            // larger end is refused here, not made into an array of that many counts.)
            guard b <= PlanSampler.maxSteps else { throw ValidationError("--segments \(segments): segment counts above 1,000,000 (more than any sampler's steps)") }
            return Array(a...b)
        }
        let list = segments.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !list.isEmpty, list.allSatisfy({ $0 != nil }) else { throw ValidationError("--segments \(segments): give a range A-B or a list A,B,C") }
        return list.map { $0! }
    }

    func gridChoice() throws -> SearchConfiguration.Grids {
        switch grids {
        case "auto": return .auto
        case "none": return .none
        default:
            let list = grids.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !list.isEmpty, list.allSatisfy({ $0 != nil }) else { throw ValidationError("--grids \(grids): give auto, none, or a list of step counts, e.g. 50,37") }
            return .steps(list.map { $0! })
        }
    }

    func solverChoice() throws -> [SolverChoice]? {
        guard let solvers else { return nil }
        if solvers == "none" { return [] }
        do { return try solvers.split(separator: ",").map { try SolverChoice(parsing: $0.trimmingCharacters(in: .whitespaces)) } }
        catch let e as ModelError { throw ValidationError("--solvers \(solvers): \(e.message)") }
    }

    /// The search's configuration from the options, for `setup`'s model and `device` (the model's
    /// key is set once its pipeline is loaded).
    func configuration(_ setup: ModelSetup, teacher: PlanSampler, device: String) throws -> SearchConfiguration {
        var c = SearchConfiguration(target: speedup.map { .speedup($0) } ?? .latencyMs(latencyMs!), teacher: teacher, batch: batch,
                                    out: URL(fileURLWithPath: out), modelName: setup.name, modelKey: "", device: device,
                                    features: featureOptions.name(forText: setup.config.isConditional), branchCount: setup.config.branchCount)
        c.margin = margin; c.samples = samples; c.screenSamples = screenSamples
        c.population = population; c.children = children; c.generations = generations
        c.mutationProbability = mutationProbability; c.crossoverFraction = crossover; c.seed = seed
        c.segmentCounts = try segmentCounts(); c.divisorsOnly = divisors; c.grids = try gridChoice(); c.useMACs = macs
        c.solvers = try solverChoice(); c.fitness = fitness
        c.searchTimesteps = searchTimesteps; c.schedulerConfiguration = setup.schedulerConfig
        c.finalSamples = finalSamples.map { $0 == 0 ? nil : $0 } ?? 16 * samples; c.finalJudge = finalJudge; c.clipTolerance = clipTolerance
        c.maxMinutes = maxMinutes; c.measureRounds = noMeasure ? 0 : measureRounds; c.measureFront = measureFront
        c.svg = svg.map { URL(fileURLWithPath: $0) }; c.html = html.map { URL(fileURLWithPath: $0) }; c.resume = resume; c.mode = try mode()
        c.inputs = NamedPath.given([("--prompts", promptOptions.prompts), ("--real", real), ("--final-real", finalReal),
                                    ("--latency-table", latencyTable), ("--model", modelOptions.model)])
        return c
    }

    func run() throws {
        // 1. The options: files that must exist, the model, the teacher, the configuration checked once.
        for (option, path) in [("--real", real), ("--final-real", finalReal)] {
            if let path, !FileManager.default.fileExists(atPath: path) {
                throw ValidationError("\(option) \(path) does not exist (checked before the search, not after it)")
            }
        }
        let judgeReal = finalRealImages()
        if finalJudge == .fid && judgeReal == nil {
            throw ValidationError("--final-judge fid needs real images: give --final-real (e.g. the training set; the default model's is \(Self.trainingSet))")
        }
        let setup = try ModelSetup(modelOptions, generates: false, prompted: promptOptions.prompts != nil)
        let textToImage = setup.config.isConditional
        let promptSet = try promptOptions.check(setup)
        let teacherKind = try scheduler ?? (textToImage ? setup.folderScheduler() : nil) ?? .ddim
        if eta != 0 && teacherKind != .ddim { throw ValidationError("--eta applies to a DDIM teacher only") }
        guard (steps ?? 1) > 0 else { throw ValidationError("--steps must be positive") }
        var teacher = try setup.sampler(teacherKind, steps: steps ?? (textToImage ? 50 : 100), eta: eta)
        // Image-to-image: the teacher, and with it every plan, at the strength.
        let initImages = try imageToImage.load(setup)
        if initImages != nil {
            teacher.strength = try imageToImage.strength(setup, plans: [])
            do { try teacher.validate() } catch let e as ModelError { throw ValidationError(e.message) }
        }
        let device = try OpenCLRuntime.select(deviceOptions.device)
        var c = try configuration(setup, teacher: teacher, device: device.name)
        try c.validate()

        // 2. The pipeline on the device, its scorer, and the real images' statistics (cached on disk).
        let stream = try ComputeStream(device: device)
        precisionOptions.apply(to: stream)
        c.device = stream.deviceLabel
        let scored = try ScoredPipeline(setup, prompts: promptOptions, promptSet: promptSet, features: featureOptions, variant: modelOptions.variant,
                                        stream: stream, batch: batch, initImages: initImages)
        let pipeline = scored.pipeline
        if let promptSet, !json {
            say("text-to-image: \(promptOptions.prompts!) (\(promptSet.prompts.count) prompts, image i from prompt i mod n), guidance \(promptOptions.guidanceScale); models on the device: \(formatBytes(UInt64(stream.context.allocatedBytes.now)))")
        }
        c.modelKey = scored.key
        if let promptSet, let file = promptOptions.prompts {
            c.prompts = PromptRecord(file: file, count: promptSet.prompts.count, negativePrompt: promptOptions.negativePrompt,
                                     guidanceScale: promptOptions.guidanceScale)
        }
        func statistics(of path: String) throws -> FeatureStatistics {
            let progress = ProgressLine("features of \(path)")
            defer { progress.finish() }
            return try FIDStatistics(extractor: scored.extractor).cachedStatistics(of: path) { progress.update($0, of: $1, unit: "images") }
        }
        let scorer = RFIDScorer(evaluator: try RFIDEvaluator(pipeline: pipeline, extractor: scored.extractor, teacher: StepPlan.teacher(teacher),
                                                             seed: seed, modelKey: scored.key,
                                                             clip: try clipOptions.judge(scored, prompts: promptSet, stream: stream)),
                                fitness: fitness,
                                reference: judgeReal.map { path in { try statistics(of: path) } })
        // The race's real images are read now (cached on disk after the first time), so that a file
        // that is not images or statistics is refused before the search, not after it.
        if c.finalSamples != nil && finalJudge == .fid { _ = try scorer.realStatistics() }

        // 3. The session, with its progress drawn and Ctrl-C stopping it between evaluations.
        let realPath = promptOptions.prompts == nil ? realImages(real, model: modelOptions.model) : real
        let session = SearchSession(
            configuration: c, evaluator: scorer,
            latencies: LatencySource(table: URL(fileURLWithPath: latencyTable), fingerprint: setup.config.fingerprint, batch: pipeline.unet.batch) {
                let progress = ProgressLine("measuring step latencies", interval: 5)
                defer { progress.finish() }
                return try StepProfiler(sampler: pipeline.sampler(for: teacher)).measure(repeats: 5, model: setup.name) {
                    progress.update($0, of: $1, unit: "rounds")
                }
            },
            realStatistics: { try realPath.map(statistics(of:)) })

        let interrupt = Interrupt()
        let display = SearchDisplay()
        display.fitnessName = fitness == .paired ? "paired" : "rFID"
        display.judgeName = finalJudge == .fid ? "FID against \(judgeReal ?? "real data")"
            : finalJudge == .clip ? "rFID within \(clipTolerance) of the teacher's CLIP score" : finalJudge.rawValue
        display.judgeShort = finalJudge == .clip ? "rFID" : finalJudge.rawValue
        let outcome = try session.run { event in
            display.show(event)
            return interrupt.requested ? .stop : .proceed
        }
        display.finish()
        switch outcome {
        case .interrupted(let scored):
            say("interrupted: \(out) holds \(scored) scored plans; continue with --resume")
            // (Everything is written and the device idle; _exit skips the libraries' static destructors,
            // which ran against their worker threads in a few of many interrupted runs, issue 22 item 6.)
            try stream.finish()
            fflush(nil)
            _exit(130)
        case .shardScored(let scored, let missing, let file):
            if missing == 0 { say("the search is complete: nothing for shards to score; run without --shard (with --resume) for the report") }
            else { say("shard \(shard!): scored \(scored) of the phase's \(missing) unscored plans into \(file.path); merge with --merge") }
        case .merged(let files, let complete, let generation, let missing):
            say(complete ? "merged \(files) shard file(s): the search is complete; run with --resume (no --shard) for the baselines, timings and picture"
                : "merged \(files) shard file(s) into \(out): generation \(generation), \(missing) plans to score in the next phase; run the shards again")
        case .finished(let result):
            try printReport(result)
        }
        let memory = stream.context.allocatedBytes
        say("device memory: at most \(formatBytes(UInt64(memory.peak))) in the engine's buffers (weights, workspaces, features; \(formatBytes(UInt64(memory.now))) at the end) of the \(formatBytes(device.globalMemoryBytes)) \(device.name) has")
    }
}
