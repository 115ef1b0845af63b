// `flexiffusion bench kernels`: convolution speed of every GEMM path against host OpenBLAS, same run.
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks (they print figures; tests assert correctness).",
        subcommands: [BenchKernels.self, BenchUNet.self, BenchPlans.self, BenchSpeedups.self, BenchFitness.self, BenchFuzz.self])
}

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Time the convolutions of a DDPM CIFAR-10 UNet on each GEMM path and on host OpenBLAS.",
        discussion: """
            Each convolution runs as im2col + GEMM on the device through every GEMM path the device \
            supports (clblast: CLBlast's own parameters; clblast-tuned: CLBlast with per-device Xgemm \
            parameters; host-blas: CPU devices only, OpenBLAS on mapped buffers), through oneDNN on the \
            mapped buffers (CPU devices with libdnnl), and on the host through OpenBLAS (host im2col + \
            one SGEMM) in the same process. Figures are medians of wall-clock time \
            after a warm-up run (the first run of a path compiles its kernels).
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @Option(help: "Batch size.") var batch = 16
    @Option(help: "Timed runs per measurement (the median is reported).") var repeats = 5
    @Option(help: "Comma-separated GEMM paths to time (default: all the device supports).") var paths: String?
    @Flag(help: "Time both convolution lowerings (batched, wide) for every path instead of the preferred one.")
    var algorithms = false
    @Flag(help: "Print JSON instead of a table.") var json = false

    /// The distinct convolutions of google/ddpm-cifar10-32 (channels 128/256, 32×32 down to 4×4).
    static func shapes(batch n: Int) -> [(String, Conv2dShape)] {
        func c(_ ci: Int, _ co: Int, _ hw: Int, k: Int = 3, s: Int = 1) -> Conv2dShape {
            Conv2dShape(batch: n, inChannels: ci, height: hw, width: hw, outChannels: co, kernelSize: k, stride: s, padding: k / 2)
        }
        return [
            ("resnet 32×32", c(128, 128, 32)),
            ("downsample 32→16", c(128, 128, 32, s: 2)),
            ("resnet in 16×16", c(128, 256, 16)),
            ("shortcut 1×1 16×16", c(128, 256, 16, k: 1)),
            ("resnet 16×16", c(256, 256, 16)),
            ("resnet 8×8", c(256, 256, 8)),
            ("resnet 4×4", c(256, 256, 4)),
            ("up resnet 8×8", c(512, 256, 8)),
            ("up resnet 32×32", c(384, 128, 32)),
        ]
    }

    func validate() throws {
        guard batch > 0, repeats > 0 else { throw ValidationError("--batch and --repeats must be positive") }
    }

    func run() throws {
        let device = try OpenCLRuntime.select(deviceOptions.device)
        var chosen = GemmPath.allCases.filter { $0.runs(on: device) }
        if let paths {
            guard !paths.split(separator: ",").isEmpty else {
                throw ValidationError("--paths \"\(paths)\": give one or more of \(GemmPath.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            chosen = try paths.split(separator: ",").map { raw in
                guard let p = GemmPath(rawValue: String(raw)) else {
                    throw ValidationError("unknown GEMM path '\(raw)' (choose from \(GemmPath.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                if !p.runs(on: device) { throw ValidationError("\(p) needs a CPU device; \(device.name) is a \(device.kind)") }
                return p
            }
        }
        // CLBlast's parameter override is process-wide: time its own parameters before the tuned ones.
        chosen.sort { GemmPath.allCases.firstIndex(of: $0)! < GemmPath.allCases.firstIndex(of: $1)! }
        let shapes = Self.shapes(batch: batch)
        var rng = SystemRandomNumberGenerator()
        // (Drawn once the first stream is made: the device is checked before this work.)
        var drawn: [([Float], [Float], [Float])]? = nil
        func inputs() -> [([Float], [Float], [Float])] {
            if let drawn { return drawn }
            drawn = shapes.map { (_, s) in
                ((0..<s.inputCount).map { _ in Float.random(in: -1...1, using: &rng) },
                 (0..<s.weightCount).map { _ in Float.random(in: -0.1...0.1, using: &rng) },
                 (0..<s.outChannels).map { _ in Float.random(in: -1...1, using: &rng) })
            }
            return drawn!
        }
        if !json {
            print("device: \(device.name) (\(device.platformName)); batch \(batch); median of \(repeats) runs; host BLAS \(HostBLAS.describe())")
        }
        // Columns: each (path, lowering) variant, then OpenBLAS's convolution and its GEMM alone.
        let lowerings: [Conv2dAlgorithm?] = algorithms ? Conv2dAlgorithm.allCases : [nil]
        // im2col + GEMM through each GEMM path; oneDNN's convolution as its own column on CPU devices.
        var variants: [(GemmPath, Conv2dAlgorithm?, ConvolutionPath)] = chosen.flatMap { p in lowerings.map { (p, $0, .im2colGemm) } }
        if (try? ConvolutionPath.oneDNN.check(for: device)) != nil && paths == nil {
            variants.append((.hostBLAS, nil, .oneDNN))
        }
        let names = variants.map { $0.2 == .oneDNN ? "onednn" : "\($0.0)\($0.1.map { "/\($0)" } ?? "")" }
        var results: [[Double]] = Array(repeating: [], count: shapes.count)
        var deviceGemm: [Double?] = Array(repeating: nil, count: shapes.count)
        for (v, (path, lowering, convolution)) in variants.enumerated() {
            if !json { FileHandle.standardError.write("timing \(names[v])…\n".data(using: .utf8)!) }
            let stream = try ComputeStream(device: device, gemm: path, convolution: convolution)
            for (i, (_, s)) in shapes.enumerated() {
                let x = try stream.upload(inputs()[i].0), w = try stream.upload(inputs()[i].1), b = try stream.upload(inputs()[i].2)
                let y = try stream.buffer(s.outputCount)
                let scratch = s.scratchCount(lowering) > 0 ? try stream.buffer(s.scratchCount(lowering)) : nil
                let ms = try medianMilliseconds(repeats: repeats) {
                    try stream.conv2d(x, weight: w, bias: b, output: y, shape: s, scratch: scratch, algorithm: lowering)
                    try stream.finish()
                }
                results[i].append(ms)
                if lowering == nil || lowering == .wide, path == chosen.last!, convolution == .im2colGemm, s.needsIm2col, let scratch {
                    // The GEMM alone, on the wide lowering's operands: what the GEMM path itself reaches.
                    let np = s.batch * s.outHeight * s.outWidth
                    let gemmScratch = lowering == .wide ? scratch : try stream.buffer(s.scratchCount(.wide))
                    deviceGemm[i] = try medianMilliseconds(repeats: repeats) {
                        try stream.gemm.sgemm(queue: stream.queue, m: s.outChannels, n: np, k: s.patch,
                                              a: GemmOperand(w, ld: s.patch), b: GemmOperand(gemmScratch, ld: np),
                                              c: GemmOperand(gemmScratch, offset: s.patch * np, ld: np))
                        try stream.finish()
                    }
                }
            }
        }
        var blasGemm: [Double] = []
        for (i, (_, s)) in shapes.enumerated() {
            let np = s.batch * s.outHeight * s.outWidth
            var col = [Float](repeating: 0, count: s.patch * np)
            var y = [Float](repeating: 0, count: s.outputCount)
            results[i].append(try medianMilliseconds(repeats: repeats) {
                try HostBLAS.conv2d(inputs()[i].0, weight: inputs()[i].1, shape: s, col: &col, output: &y)
            })
            blasGemm.append(try medianMilliseconds(repeats: repeats) {
                try inputs()[i].1.withUnsafeBufferPointer { wp in
                    try col.withUnsafeBufferPointer { cp in
                        try y.withUnsafeMutableBufferPointer { yp in
                            try HostBLAS.sgemm(transA: false, transB: false, m: s.outChannels, n: np, k: s.patch, alpha: 1,
                                               a: wp.baseAddress!, lda: s.patch, b: cp.baseAddress!, ldb: np, beta: 0,
                                               c: yp.baseAddress!, ldc: np)
                        }
                    }
                }
            })
        }
        let gflop = shapes.map { 2 * Double($0.1.macs) / 1e9 }
        func rate(_ i: Int, _ ms: Double) -> Double { gflop[i] / (ms / 1000) }

        if json {
            let rows: [[String: Any]] = shapes.enumerated().map { (i, item) in
                var r: [String: Any] = ["shape": item.0, "conv": item.1.description, "gflop": gflop[i]]
                for (j, name) in names.enumerated() { r[name] = ["ms": results[i][j], "gflops": rate(i, results[i][j])] }
                r["openblas"] = ["ms": results[i].last!, "gflops": rate(i, results[i].last!)]
                r["openblas_gemm_only"] = ["ms": blasGemm[i], "gflops": rate(i, blasGemm[i])]
                if let g = deviceGemm[i] { r["\(chosen.last!)_gemm_only"] = ["ms": g, "gflops": rate(i, g)] }
                return r
            }
            let out: [String: Any] = ["device": device.name, "batch": batch, "repeats": repeats, "results": rows]
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
            return
        }
        var header = ["shape", "conv", "GFLOP"]
        for name in names { header += ["\(name) ms", "GFLOP/s"] }
        header += ["OpenBLAS ms", "GFLOP/s", "best/OpenBLAS", "GEMM only: \(chosen.last!)", "OpenBLAS", "ratio"]
        var table = [header]
        var ratios: [Double] = []
        for (i, (name, s)) in shapes.enumerated() {
            var row = [name, s.description, String(format: "%.2f", gflop[i])]
            for j in names.indices { row += [formatMilliseconds(results[i][j]), String(format: "%.1f", rate(i, results[i][j]))] }
            let blas = results[i].last!
            let best = results[i].dropLast().min()!
            ratios.append(blas / best)
            row += [formatMilliseconds(blas), String(format: "%.1f", rate(i, blas)), String(format: "%.0f%%", 100 * blas / best)]
            if let g = deviceGemm[i] {
                row += [String(format: "%.1f", rate(i, g)), String(format: "%.1f", rate(i, blasGemm[i])),
                        String(format: "%.0f%%", 100 * blasGemm[i] / g)]
            } else {
                row += ["-", String(format: "%.1f", rate(i, blasGemm[i])), "-"]
            }
            table.append(row)
        }
        print(renderTable(table, rightAlign: Set(2..<header.count)))
        let totals = (0..<(names.count + 1)).map { j in shapes.indices.map { results[$0][j] }.reduce(0, +) }
        let total = gflop.reduce(0, +)
        let gemmTotal = blasGemm.reduce(0, +)
        print("\nall shapes: " + names.enumerated().map { "\($1) \(String(format: "%.1f", total / (totals[$0] / 1000))) GFLOP/s" }
              .joined(separator: ", ") + ", OpenBLAS \(String(format: "%.1f", total / (totals.last! / 1000))) GFLOP/s"
              + " (its GEMM alone \(String(format: "%.1f", total / (gemmTotal / 1000))))")
        print("best device path vs OpenBLAS (GFLOP/s ratio): min \(String(format: "%.0f%%", 100 * ratios.min()!)), median \(String(format: "%.0f%%", 100 * ratios.sorted()[ratios.count / 2]))")
    }
}

struct BenchUNet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unet",
        abstract: "Median milliseconds and GFLOP/s of one UNet forward pass over a batch.",
        discussion: """
            Loads the model, runs one warm-up forward pass (which compiles the kernels), then times \
            --repeats passes on random inputs at random timesteps. GFLOP/s counts 2 FLOPs per \
            multiply-accumulate of the convolutions, linear layers and attention products. \
            scripts/tools/bench_unet_torch.py times diffusers' UNet2DModel on the same model and batch and \
            prints the ratio.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var precisionOptions: PrecisionOptions
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "A UNet config.json to benchmark with random weights instead of --model.") var config: String?
    @Option(help: "Batch size.") var batch = 16
    @Option(help: "Image size (default: the config's sample_size).") var size: Int?
    @Option(help: "Timed forward passes (the median is reported).") var repeats = 5
    @Option(help: "Tokens of the random encoder_hidden_states a conditional UNet (Stable Diffusion) attends to.")
    var contextLength = UNet.defaultContextLength
    @Flag(help: "Print {\"median_ms\": …, \"gflops\": …, \"weight_bytes\": …, \"workspace_bytes\": …} as JSON.") var json = false
    @Flag(help: "After timing, run one profiled pass and list the kernels and GEMMs by time.") var profile = false

    func run() throws {
        guard modelOptions.model == nil || config == nil else { throw ValidationError("give either --model DIR or --config config.json, not both") }
        let folder = config != nil ? nil : try modelOptions.folder()
        let configuration = try UNetConfiguration.load(from: folder?.configURL ?? URL(fileURLWithPath: config!))
        guard let side = size ?? configuration.sampleSize else { throw ValidationError("the config has no sample_size: give --size") }
        guard batch > 0, repeats > 0, contextLength > 0 else { throw ValidationError("--batch, --repeats and --context-length must be positive") }
        let stream = try precisionOptions.stream(deviceOptions, profiling: profile)
        let weights = try folder.map { WeightStore(file: try SafeTensorsFile(path: $0.weightsURL.path)) } ?? WeightStore(randomSeed: 0)
        let unet = try UNet(config: configuration, weights: weights, stream: stream, batch: batch, height: side, width: side,
                            contextLength: contextLength)
        let config = configuration
        var rng = SystemRandomNumberGenerator()
        if let x = config.crossAttention {
            try unet.setEncoderHiddenStates((0..<(batch * contextLength * x.dim)).map { _ in Float.random(in: -1...1, using: &rng) })
            try unet.setBenchmarkAddedConditions(textEmbeds: { n in (0..<n).map { _ in Float.random(in: -1...1, using: &rng) } },
                                                 pixels: (8 * side, 8 * side))
        }
        try unet.setBenchmarkClassLabels { UInt64.random(in: 0...UInt64.max, using: &rng) }
        let sample = (0..<(batch * config.inChannels * side * side)).map { _ in Float.random(in: -1...1, using: &rng) }
        try unet.workspace.input.write(sample, queue: stream.queue)
        try unet.workspace.timesteps.write((0..<batch).map { _ in Float(Int.random(in: 0..<1000, using: &rng)) }, queue: stream.queue)
        let ms = try medianMilliseconds(repeats: repeats) {
            try unet.forward()
            try stream.finish()
            if profile { _ = try stream.takeTimings() }
        }
        if profile {
            try unet.forward()
            let kernels = timingsByName(try stream.takeTimings())
            print(timingTable(kernels, header: "kernel / GEMM", limit: 25))
            print("profiled pass: \(formatMilliseconds(kernels.map(\.ms).reduce(0, +))) ms in kernels and GEMMs (timed passes above ran without per-call drains)\n")
        }
        let gflops = 2 * Double(unet.macs) / 1e9 / (ms / 1000)
        if json {
            let engine: [String: Any] = ["median_ms": (ms * 1000).rounded() / 1000, "gflops": (gflops * 100).rounded() / 100,
                                         "weight_bytes": unet.weightBytes, "workspace_bytes": unet.workspace.bytes,
                                         "convolutions": stream.backends.convolutionSummary, "activations": "\(unet.layout)",
                                         "precision": stream.backends.precision.rawValue, "gemm": stream.backends.implementation(.gemm)]
            print(String(decoding: try JSONSerialization.data(withJSONObject: engine, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print("\(stream.device.name), \(stream.backends.precision), GEMM \(stream.backends.gemm), convolutions \(stream.backends.convolutionSummary), activations \(unet.layout): \(config.className), \(unet.parameterCount) parameters, \(String(format: "%.2f", Double(unet.macs) / Double(batch) / 1e9)) GMACs per image")
            print("device memory: weights \(formatBytes(UInt64(unet.weightBytes))), workspace \(formatBytes(UInt64(unet.workspace.bytes))) (of \(formatBytes(stream.device.globalMemoryBytes)))")
            print("batch \(batch) at \(side)×\(side)\(config.isConditional ? " with \(contextLength) context tokens" : ""): median \(formatMilliseconds(ms)) ms per forward (\(repeats) runs), \(String(format: "%.1f", gflops)) GFLOP/s, \(String(format: "%.2f", ms / Double(batch))) ms per image")
        }
    }
}
