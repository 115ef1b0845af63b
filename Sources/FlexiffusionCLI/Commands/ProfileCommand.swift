// `flexiffusion profile`: median latency of each sampler step type (full, partial at every branch,
// null, the scheduler update) for a model, device and batch, with MACs and the top kernels; the
// latencies go into a JSON table keyed by device name for plan cost prediction and the search.
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Measure per-step latency of full, partial (every branch) and null steps, and list the top kernels.",
        discussion: """
            Each round times one step of every type, the queue drained before and after (a step = the \
            network part and the scheduler update); one warm-up round compiles the kernels, then --repeats \
            rounds give medians. A partial step's cache is filled by an untimed full step first. MACs are \
            counted analytically (convolutions, linear layers, attention products). The top kernels come \
            from one profiled full step on a second stream: OpenCL kernels by their profiling events, \
            GEMMs and host convolutions by wall clock (CLBlast's event covers only its last kernel). \
            The latencies are merged into --latency-table (keyed by device name, then model and batch), which \
            `plan show` and the search read.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var precisionOptions: PrecisionOptions
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Images per step (the search's default batch, so that a default search finds this table entry).") var batch = 32
    @Option(name: .customLong("guidance-scale"), help: "A Stable Diffusion pipeline: the guidance scale its search uses; above 1 the UNet runs both halves, 2 × --batch, as `search` and `generate` run it.")
    var guidanceScale: Float = 7.5
    @Option(help: "Timed rounds (medians are reported).") var repeats = 5
    @Option(help: "Top kernels to list (0: skip the profiled pass).") var top = 15
    @Option(name: .customLong("latency-table"), help: "Latency table to update.") var latencyTable: String = LatencyTable.defaultURL.path
    @Flag(name: .customLong("no-write"), help: "Do not write the latency table.") var noWrite = false
    @Flag(help: "Print the results as JSON.") var json = false

    func run() throws {
        guard batch > 0, repeats > 0, top >= 0 else { throw ValidationError("--batch and --repeats must be positive, --top ≥ 0") }
        let setup = try ModelSetup(modelOptions, generates: false)
        let (config, side) = (setup.config, setup.side)
        try TextToImagePipeline.checkGuidance(guidanceScale)
        // (The UNet's batch: both halves of classifier-free guidance for a text-to-image model.)
        let batch = config.isConditional && guidanceScale > 1 ? 2 * self.batch : self.batch
        let device = try OpenCLRuntime.select(deviceOptions.device)
        let stream = try ComputeStream(device: device)
        precisionOptions.apply(to: stream)
        let sampler = try Sampler(unet: setup.unet(stream: stream, batch: batch),
                                  scheduler: DDIMScheduler(configuration: setup.schedulerConfig, steps: 100))
        let profiler = try StepProfiler(sampler: sampler)
        say("warming up (compiling kernels)…")
        let progress = ProgressLine("profile", interval: 5)
        let entry = try profiler.measure(repeats: repeats, model: setup.name) { progress.update($0, of: $1, unit: "rounds") }
        progress.finish()

        // The top kernels of one full step, on a profiling stream of its own.
        var kernels: [(name: String, calls: Int, ms: Double)] = []
        if top > 0 {
            let pstream = try ComputeStream(device: device, profiling: true)
            pstream.backends.precision = stream.backends.precision
            let psampler = try Sampler(unet: setup.unet(stream: pstream, batch: batch), scheduler: sampler.scheduler)
            let pprofiler = try StepProfiler(sampler: psampler)
            _ = try pprofiler.time(.step(.full))
            _ = try pstream.takeTimings()
            _ = try pprofiler.time(.step(.full))
            kernels = timingsByName(try pstream.takeTimings())
        }

        if !noWrite {
            try LatencyTable.insert(entry, device: stream.deviceLabel, into: URL(fileURLWithPath: latencyTable))
        }

        if json {
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted, .sortedKeys]
            let latency = try JSONSerialization.jsonObject(with: try e.encode(entry))
            let total = kernels.map(\.ms).reduce(0, +)
            let out: [String: Any] = [
                "device": stream.deviceLabel, "latency": latency,
                "branches": (0..<config.branchCount).map { config.branchName($0) },
                "top_kernels": kernels.prefix(top).map { ["name": $0.name, "calls": $0.calls, "ms": $0.ms, "share": $0.ms / max(total, 1e-9)] },
            ]
            try printJSON(out)
            return
        }
        print("\(stream.deviceLabel), GEMM \(stream.backends.gemm), convolutions \(stream.backends.convolutionSummary); batch \(batch) at \(side)×\(side); medians of \(repeats) rounds")
        var rows = [["step", "skips to", "ms", "× full", "GMACs/img", "× full MACs"]]
        let perImage = { (macs: Int) in String(format: "%.3f", Double(macs) / Double(batch) / 1e9) }
        rows.append(["full", "", formatMilliseconds(entry.fullMs), "1.00", perImage(entry.fullMACs), "1.00"])
        for m in 0..<config.branchCount {
            let ms = entry.partialMs[String(m)]!, macs = entry.partialMACs[String(m)]!
            let module = m == 0 ? "conv_in" : config.branchName(m).components(separatedBy: " (").first!
            rows.append(["partial \(m)", module, formatMilliseconds(ms), String(format: "%.2f", ms / entry.fullMs),
                         perImage(macs), String(format: "%.2f", Double(macs) / Double(entry.fullMACs))])
        }
        rows.append(["null", "", formatMilliseconds(entry.nullMs), String(format: "%.3f", entry.nullMs / entry.fullMs), "0", "0"])
        rows.append(["scheduler update", "", formatMilliseconds(entry.schedulerMs), String(format: "%.3f", entry.schedulerMs / entry.fullMs), "0", "0"])
        print(renderTable(rows, rightAlign: [2, 3, 4, 5]))
        if !kernels.isEmpty {
            let total = kernels.map(\.ms).reduce(0, +)
            print("\ntop kernels of one full step (profiled; \(formatMilliseconds(total)) ms in kernels, GEMMs and host convolutions):")
            print(timingTable(kernels, header: "kernel / GEMM / host conv", limit: top))
        }
        if !noWrite { print("\nwrote the latencies for \(stream.deviceLabel) to \(latencyTable)") }
    }
}
