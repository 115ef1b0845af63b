// `flexiffusion plan`: write step plans (segment-wise, DeepCache uniform / non-uniform, plain DDIM,
// the teacher) as JSON, and show what a plan file holds and costs.
import ArgumentParser
import Engine
import Foundation
import GPUKernels
import Search

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Write or inspect a step plan (which sampler steps are full, partial or null).",
        discussion: """
            A plan file is JSON: {"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler", \
            "steps", "eta"}, "description", "actions": ["full", "partial:1", "null", …]}, one action per \
            sampler step; `flexiffusion generate --plan FILE` samples with it. Branches number the UNet's skip \
            stack from the shallowest (0 = conv_in's output; `plan show --model` lists them with DeepCache's \
            names). Plans are checked against the model (default: the embedded one) before they are written.
            """,
        subcommands: [PlanDeepCache.self, PlanSegments.self, PlanDDIM.self, PlanTeacher.self, PlanDP.self, PlanShow.self])
}

/// Options every plan builder shares.
struct PlanOutputOptions: ParsableArguments {
    @Option(help: "Sampler steps (default: 100, the step count of the teacher that search, rfid and plan show compare with; generate alone defaults to 50 steps, as diffusers' DDIMPipeline).") var steps = 100
    @Option(help: "ddim, ddpm, dpmsolver++, dpmsolver, unipc, euler or pndm (a pndm plan has one action per model evaluation: steps + 1, or steps + 9 with --prk-steps).") var scheduler: SchedulerKind = .ddim
    @Flag(name: .customLong("prk-steps"), help: "pndm: begin with Runge–Kutta steps (skip_prk_steps false; default: PLMS only, as Stable Diffusion's configs set it).") var prkSteps = false
    @Option(name: .customLong("solver-order"), help: "A multistep solver's order, 1–3 (default 2).") var solverOrder: Int?
    @Option(help: "DDIM's eta.") var eta: Float = 0
    @Option(help: ArgumentHelp("Explicit timesteps, first to last, instead of the config's spacing (dpmsolver++, dpmsolver, unipc, euler). Sets the steps.", valueName: "T1,T2,…")) var timesteps: TimestepList?
    @Option(name: .customLong("timestep-spacing"), help: "The scheduler's timestep spacing instead of the model's config: leading, trailing or linspace.")
    var spacing: TimestepSpacing?
    @Option(help: "Image-to-image: the strength (0–1) the plan runs at; it has one action per kept evaluation (the last int(steps × strength) steps).") var strength: Double?
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Write the plan here (default: print it).") var out: String?

    var sampler: PlanSampler {
        PlanSampler(scheduler: scheduler, steps: timesteps?.values.count ?? steps, eta: eta, order: solverOrder,
                    skipPRKSteps: scheduler == .pndm ? !prkSteps : nil, timesteps: timesteps?.values, spacing: spacing, strength: strength)
    }

    /// (ArgumentParser checks option groups before any builder runs: a builder never sees bad steps.)
    func validate() throws {
        guard steps > 0 else { throw ValidationError("--steps must be positive, not \(steps)") }
        if prkSteps && scheduler != .pndm { throw ValidationError("--prk-steps applies to pndm only") }
        do { try sampler.validate() } catch let e as ModelError { throw ValidationError(e.message) }
    }

    func modelConfig() throws -> UNetConfiguration {
        try UNetConfiguration.load(from: try modelOptions.folder().configURL)
    }

    func emit(_ plan: StepPlan) throws {
        let folder = try modelOptions.folder()
        let schedulerConfig = try folder.schedulerConfiguration()
        schedulerConfig.corrections.forEach(say)
        try plan.validate(branchCount: try UNetConfiguration.load(from: folder.configURL).branchCount,
                          schedulerConfiguration: schedulerConfig)
        if let out {
            try OutputCheck.check(outputs: [NamedPath("--out", out)], inputs: NamedPath.given([("--model", modelOptions.model)]))
            try plan.write(to: out)
            FileHandle.standardError.write("wrote \(out): \(plan.description); \(plan.fullSteps) full, \(plan.partialSteps) partial, \(plan.nullSteps) null steps\n".data(using: .utf8)!)
        } else {
            print(String(decoding: try plan.jsonData(), as: UTF8.self))
        }
    }
}

/// `--branch`, or DeepCache's names for the same thing: `DeepCacheSDHelper`'s `--cache-branch-id`, or
/// its pipelines' `--cache-layer-id`/`--cache-block-id`.
struct BranchOptions: ParsableArguments {
    @Option(help: "Skip branch of the partial steps (0 = shallowest; see `plan show --model`).") var branch: Int?
    @Option(name: .customLong("cache-branch-id"), help: "DeepCacheSDHelper's cache_branch_id (set_params), instead of --branch: down block B / 3, position B % 3 in it.") var cacheBranchID: Int?
    @Option(name: .customLong("cache-layer-id"), help: "DeepCache's pipelines' cache_layer_id (the down block), with --cache-block-id, instead of --branch.") var cacheLayerID: Int?
    @Option(name: .customLong("cache-block-id"), help: "DeepCache's pipelines' cache_block_id (the layer within that down block).") var cacheBlockID: Int?

    func resolve(_ config: () throws -> UNetConfiguration) throws -> Int {
        switch (branch, cacheBranchID, cacheLayerID, cacheBlockID) {
        case (let m?, nil, nil, nil): return m
        case (nil, let b?, nil, nil): return try config().branch(cacheBranchID: b)
        case (nil, nil, let i?, let j?): return try config().branch(cacheLayerID: i, cacheBlockID: j)
        case (nil, nil, nil, nil): return 1
        default: throw ValidationError("give one of --branch, --cache-branch-id, or both --cache-layer-id and --cache-block-id")
        }
    }
}

struct PlanDeepCache: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deepcache",
        abstract: "DeepCache: a full step every --interval steps, partial steps at one branch between.",
        discussion: """
            Uniform (default): full at steps 0, N, 2N, …. With --non-uniform, ⌈steps/N⌉ full steps packed \
            around --center as DeepCache's sample_from_quad_center places them. The default branch is 1, \
            the output of the first down-block layer. DeepCache names branches two ways, both taken here: \
            DeepCacheSDHelper's set_params(cache_branch_id=B) is --cache-branch-id B (on SD's UNets, our \
            branch B), and its diffusers pipelines' cache_layer_id=i (the down block), cache_block_id=j \
            (the layer in it) are --cache-layer-id i --cache-block-id j (our branch i·(L+1)+j+1, L = \
            layers_per_block). `plan show --model DIR` lists each branch under all three names.
            """)
    @OptionGroup var output: PlanOutputOptions
    @OptionGroup var branchOptions: BranchOptions
    @Option(help: "N: one full step per N steps.") var interval: Int
    @Flag(name: .customLong("non-uniform"), help: "Pack the full steps around --center.") var nonUniform = false
    @Option(help: "Centre step of the non-uniform schedule (default: 15% of the steps, rounded).") var center: Int?
    @Option(help: "Power of the non-uniform schedule (lowered by 0.02 until the step count fits).") var power = 1.4

    func run() throws {
        let branch = try branchOptions.resolve(output.modelConfig)
        let plan = nonUniform
            ? try StepPlan.deepCacheNonUniform(output.sampler, interval: interval, branch: branch,
                                               center: center ?? Int((Double(output.sampler.evaluations) * 0.15).rounded()), power: power)
            : try StepPlan.deepCacheUniform(output.sampler, interval: interval, branch: branch)
        try output.emit(plan)
    }
}

struct PlanSegments: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segments",
        abstract: "Flexiffusion's segment-wise plan: N equal segments of [full, partial × (interval − 1), null × rest].",
        discussion: """
            --interval and --branch take one value for every segment or a comma-separated list with one \
            value per segment. Example: `plan segments --steps 100 --segments 4 --interval 10,8,6,4 --branch 1,1,2,3`.
            """)
    @OptionGroup var output: PlanOutputOptions
    @Option(help: "Number of segments.") var segments: Int
    @Option(help: "Active steps (full + partial) per segment.") var interval: String
    @Option(help: "Branch of each segment's partial steps.") var branch = "1"

    func run() throws {
        func list(_ text: String, _ name: String) throws -> [Int] {
            let values = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { throw ValidationError("--\(name) \"\(text)\" is not a list of integers") }
            if values.count == 1 { return Array(repeating: values[0]!, count: segments) }
            guard values.count == segments else { throw ValidationError("--\(name) has \(values.count) values for \(segments) segments") }
            return values.map { $0! }
        }
        guard segments > 0 else { throw ValidationError("--segments must be positive") }
        try output.emit(try StepPlan.segments(output.sampler, intervals: try list(interval, "interval"), branches: try list(branch, "branch")))
    }
}

struct PlanDDIM: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ddim", abstract: "Plain DDIM with --steps steps, all full.")
    @OptionGroup var output: PlanOutputOptions
    func run() throws {
        guard output.scheduler == .ddim else { throw ValidationError("plan ddim makes DDIM plans; use `plan teacher` for other samplers") }
        try output.emit(try StepPlan.ddim(steps: output.steps, eta: output.eta))
    }
}

struct PlanTeacher: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "teacher", abstract: "Every step full: the plan others are compared with.")
    @OptionGroup var output: PlanOutputOptions
    func run() throws { try output.emit(StepPlan.teacher(output.sampler)) }
}

struct PlanDP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dp",
        abstract: "A schedule fitted to the teacher's trajectories by dynamic programming: the K first-order steps with the least summed error.",
        discussion: """
            From `flexiffusion trajectories`' file: every first-order jump (DDIM, which is DPM-Solver++ of \
            order 1) between two points of the teacher's grid is scored by its mean squared error against the \
            teacher's state where it lands, from the teacher's state and model output where it starts (no model \
            evaluation); the K-jump path from the first point to the end with the least sum is the schedule, \
            written as DPM-Solver++ of order 1 on its explicit timesteps (GITS' search, first order). Prints \
            the path's summed error beside the evenly spaced one's.
            """)
    @Option(help: "Trajectories file (from `flexiffusion trajectories`).") var trajectories: String
    @Option(help: "Model evaluations (steps) of the schedule.") var evaluations: Int
    @Option(help: "The solver: dpmsolver++1 (first order; DDIM's steps). Multistep solvers' DP is not written yet.") var solver = "dpmsolver++1"
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Write the plan here (default: print it).") var out: String?
    @Flag(help: "Print the fit (the fitted and evenly spaced paths' errors, the timesteps) as JSON instead of the plan (write the plan with --out).") var json = false

    func run() throws {
        guard solver == "dpmsolver++1" else {
            throw ValidationError("--solver \(solver): the dynamic programme is written for first-order steps (dpmsolver++1) only; multistep solvers need their history in each jump's cost")
        }
        guard evaluations > 0 else { throw ValidationError("--evaluations must be positive") }
        let t = try TeacherTrajectories.load(from: trajectories)
        guard evaluations <= t.steps else { throw ValidationError("--evaluations \(evaluations): the trajectories' grid has \(t.steps) steps") }
        let start = DispatchTime.now().uptimeNanoseconds
        let cost = t.jumpErrors()
        let (points, total) = try DynamicSchedule.path(cost: cost, jumps: evaluations)
        let even = DynamicSchedule.uniform(steps: t.steps, jumps: evaluations)
        let evenTotal = DynamicSchedule.total(even, cost: cost)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let plan = try DynamicSchedule.plan(points, trajectories: t, description: String(format: "dp: %d first-order steps fitted to %d trajectories of ddim %d steps (summed error %.4g, evenly spaced %.4g)", evaluations, t.count, t.steps, total, evenTotal))
        let folder = try modelOptions.folder()
        try plan.validate(branchCount: try UNetConfiguration.load(from: folder.configURL).branchCount, schedulerConfiguration: try folder.schedulerConfiguration())
        say(String(format: "fitted %d steps on %d trajectories of ddim %d steps in %.2f s: summed error %.4g (evenly spaced: %.4g); timesteps %@", evaluations, t.count, t.steps, seconds, total, evenTotal,
                   points.dropLast().map { String(t.timesteps[$0]) }.joined(separator: ",")))
        if let out {
            try OutputCheck.check(outputs: [NamedPath("--out", out)], inputs: NamedPath.given([("--trajectories", trajectories), ("--model", modelOptions.model)]))
            try plan.write(to: out)
            say("wrote \(out): \(plan.sampler)")
        }
        if json {
            try printJSON(["evaluations": evaluations, "error": total, "evenly_spaced_error": evenTotal, "seconds": seconds,
                           "timesteps": points.dropLast().map { t.timesteps[$0] }, "trajectories": t.count, "grid_steps": t.steps])
        } else if out == nil {
            print(String(decoding: try plan.jsonData(), as: UTF8.self))
        }
    }
}

struct PlanShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Check a plan file and print its steps, MACs and (from a latency table) predicted latency and speed-up.",
        discussion: """
            Speed-ups are against the teacher (--teacher: a step count of DDIM with every step full, default \
            100, or a plan file), whatever the plan's own step count, as the search and `rfid` measure them. \
            The latency table's entry is the one for --device (as everywhere: an index, gpu, cpu or part of a \
            device name; default: the table's only device, else the one --device would select). A search's \
            results file is shown as the search priced it: on its model (a model folder it names, unless \
            --model gives one), against its teacher (unless --teacher), with the latencies it holds (unless \
            --latency-table or another --batch). Without a plan file, lists the model's branches.
            """)
    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var teacherOptions: TeacherOptions
    @Argument(help: "Plan file (or search results file: its best plan).") var plan: String?
    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .customLong("latency-table"), help: "Latency table from `flexiffusion profile` (default: \(LatencyTable.defaultURL.path)).") var latencyTable: String?
    @Option(help: "Batch size in the latency table (default: any).") var batch: Int?
    @Flag(help: "Print the plan's summary as JSON.") var json = false

    /// The results file `plan` is, when it is one (a search's own model, teacher and latencies).
    func searchResults() throws -> SearchReport? {
        guard let plan, let data = FileManager.default.contents(atPath: plan), data.first == UInt8(ascii: "{"),
              let raw = try? JSONSerialization.jsonObject(with: data) as? [String: Any], raw["format"] as? String == SearchReport.format else { return nil }
        // (Its best plan first: a search stopped before choosing one is refused saying how to continue it.)
        _ = try StepPlan.load(from: URL(fileURLWithPath: plan))
        return try SearchReport.load(from: URL(fileURLWithPath: plan))
    }

    func run() throws {
        let report = try searchResults()
        var modelPath = modelOptions.model
        if let report, modelPath == nil, report.model != DefaultModel.searchName {
            guard (try? ModelFolder(path: report.model)) != nil else {
                throw ModelError("\(plan!) was searched on the model \(report.model), which is not here; give its folder with --model")
            }
            modelPath = report.model
        }
        let folder = try ModelFolder(path: try modelPath ?? DefaultModel.folder(), variant: modelOptions.variant)
        let config = try UNetConfiguration.load(from: folder.configURL)
        guard let plan else {
            if json { try printJSON(["branches": (0..<config.branchCount).map { config.branchName($0) }]); return }
            print("\(config.branchCount) branches (partial steps run conv_in, the down path through the branch, and the up path from it):")
            for m in 0..<config.branchCount { print("  \(m): \(config.branchName(m))") }
            return
        }
        let schedulerConfig = try folder.schedulerConfiguration()
        schedulerConfig.corrections.forEach(say)
        let p = try StepPlan.load(from: URL(fileURLWithPath: plan), branchCount: config.branchCount, schedulerConfiguration: schedulerConfig)
        let teacher = try report.flatMap { r in teacherOptions.teacher == nil ? StepPlan.teacher(r.sampler) : nil }
            ?? teacherOptions.plan(branchCount: config.branchCount, schedulerConfiguration: schedulerConfig)
        let url = latencyTable.map { URL(fileURLWithPath: $0) } ?? LatencyTable.defaultURL
        let name: String?, entry: StepLatencies?
        if let report, latencyTable == nil, batch == nil || batch == report.batch {
            (name, entry) = (report.device, report.latencies)
        } else {
            let table = try LatencyTable.load(from: url, missingOK: latencyTable == nil)
            let names = table.devices.keys.sorted()
            name = try deviceOptions.device.map { try OpenCLRuntime.select($0).name } ?? (names.count == 1 ? names.first : nil) ?? (try? OpenCLRuntime.select())?.name
            entry = name.flatMap { table.lookup(device: $0, fingerprint: config.fingerprint, batch: batch) }
        }
        let cost = try entry.map { try $0.cost(of: p) }, teacherCost = try entry.map { try $0.cost(of: teacher) }
        if json {
            var out: [String: Any] = ["plan": plan, "model": modelPath ?? DefaultModel.searchName,
                                      "sampler": p.sampler.description, "full": p.fullSteps, "partial": p.partialSteps, "null": p.nullSteps,
                                      "branches": p.branches.sorted(), "compact": p.compact, "teacher": teacher.sampler.description]
            if let entry, let cost, let teacherCost, let name {
                out["predicted"] = ["device": name, "batch": entry.batch, "ms": cost.milliseconds, "speedup_vs_teacher": teacherCost.milliseconds / cost.milliseconds,
                                    "gmacs_per_image": Double(cost.macs) / Double(entry.batch) / 1e9,
                                    "macs_speedup_vs_teacher": Double(teacherCost.macs) / Double(max(cost.macs, 1))]
            }
            try printJSON(out)
            return
        }
        print("\(plan): \(p.sampler)\(p.description.isEmpty ? "" : "; \(p.description)")")
        let branches = p.branches.isEmpty ? "" : " (branches \(p.branches.sorted().map(String.init).joined(separator: ", ")))"
        print("  \(p.fullSteps) full, \(p.partialSteps) partial\(branches), \(p.nullSteps) null")
        print("  \(p.compact)   (F full, digit: partial at that branch, . null)")
        if let entry, let cost, let teacherCost, let name {
            print(String(format: "  predicted on %@ at batch %d: %.0f ms (%.2f× the teacher, %@), %.2f GMACs per image over the plan (%.2f× fewer)",
                         name, entry.batch, cost.milliseconds, teacherCost.milliseconds / cost.milliseconds, teacher.sampler.description,
                         Double(cost.macs) / Double(entry.batch) / 1e9, Double(teacherCost.macs) / Double(max(cost.macs, 1))))
        } else {
            print("  no latency for this model\(name.map { " on \($0)" } ?? "") in \(url.path): run `flexiffusion profile` for predicted latency")
        }
    }
}
