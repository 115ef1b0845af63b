// `flexiffusion tune-gemm`: chooses CLBlast's Xgemm parameters for a device by measurement and
// caches them, so that the clblast-tuned GEMM path uses them from then on.
import ArgumentParser
import Foundation
import GPUKernels

struct TuneGemmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune-gemm",
        abstract: "Tune CLBlast's Xgemm parameters for a device (the clblast-tuned GEMM path) and cache them.",
        discussion: """
            Times CLBlast's own parameters and a grid of Xgemm parameter sets on a GEMM the size of a \
            UNet convolution, then writes the fastest set to the per-device cache file (printed at the \
            end). Each new parameter set compiles new kernels: on PoCL that is 10–20 s per set, cold.
            """)

    @OptionGroup var deviceOptions: DeviceOptions
    @Option(help: "GEMM size m,n,k (default: a 256→256 3×3 convolution at 16×16, batch 4).") var size = "256,1024,2304"
    @Option(help: "Timed runs per parameter set (the median is reported).") var repeats = 3
    @Option(help: "Try at most this many parameter sets from the grid.") var limit = 10

    /// A small grid that fits both CPU devices and GPUs (work-groups of 64–256, local tiles ≤ 32 KiB).
    static func candidates(maxWorkGroup: Int, localMemoryBytes: UInt64) -> [[String: Int]] {
        var out: [[String: Int]] = [CLBlastTuning.handPicked]
        for (tile, dim, vw, kwg, shared) in [(64, 8, 4, 32, 1), (64, 16, 4, 16, 1), (128, 16, 4, 16, 1), (64, 8, 8, 16, 0),
                                             (128, 16, 8, 32, 1), (32, 8, 4, 32, 1), (64, 16, 2, 32, 1), (128, 8, 8, 16, 1),
                                             (64, 8, 2, 16, 0), (128, 16, 2, 32, 0)] {
            guard tile % (dim * vw) == 0, kwg % dim == 0, dim * dim <= maxWorkGroup else { continue }
            guard UInt64(shared * 2 * kwg * tile * 4) <= localMemoryBytes else { continue }
            var p = CLBlastTuning.handPicked
            p["MWG"] = tile; p["NWG"] = tile; p["MDIMC"] = dim; p["NDIMC"] = dim; p["MDIMA"] = dim; p["NDIMB"] = dim
            p["VWM"] = vw; p["VWN"] = vw; p["KWG"] = kwg; p["SA"] = shared; p["SB"] = shared
            if !out.contains(p) { out.append(p) }
        }
        return out
    }

    func run() throws {
        let device = try OpenCLRuntime.select(deviceOptions.device)
        let dims = size.split(separator: ",").compactMap { Int($0) }
        guard dims.count == 3, dims.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else { throw ValidationError("--size takes m,n,k, each 1…65536, e.g. 256,1024,2304") }
        guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
        let (m, n, k) = (dims[0], dims[1], dims[2])
        let gflop = 2 * Double(m * n * k) / 1e9
        func time(_ stream: ComputeStream) throws -> Double {
            var rng = SystemRandomNumberGenerator()
            let a = try stream.upload((0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) })
            let b = try stream.upload((0..<(k * n)).map { _ in Float.random(in: -1...1, using: &rng) })
            let c = try stream.buffer(m * n)
            return try medianMilliseconds(repeats: repeats) {
                try stream.gemm.sgemm(queue: stream.queue, m: m, n: n, k: k, a: GemmOperand(a, ld: k),
                                      b: GemmOperand(b, ld: n), c: GemmOperand(c, ld: n))
                try stream.finish()
            }
        }
        print("device: \(device.name); GEMM \(m)×\(n)×\(k) (\(String(format: "%.2f", gflop)) GFLOP), median of \(repeats)")
        let base = try time(ComputeStream(device: device, gemm: .clblast))
        print(String(format: "CLBlast's own parameters: %.1f ms, %.1f GFLOP/s", base, gflop / (base / 1000)))
        var best: (ms: Double, params: [String: Int])? = nil
        let grid = Self.candidates(maxWorkGroup: device.maxWorkGroupSize, localMemoryBytes: device.localMemoryBytes).prefix(limit)
        for (i, p) in grid.enumerated() {
            let label = ["MWG", "NWG", "MDIMC", "NDIMC", "VWM", "VWN", "KWG", "SA", "SB"].map { "\($0)=\(p[$0]!)" }.joined(separator: " ")
            do {
                try CLBlastTuning.apply(for: device, parameters: p, force: true)
                let ms = try time(ComputeStream(device: device, gemm: .clblastTuned))
                print(String(format: "[%d/%d] %@: %.1f ms, %.1f GFLOP/s", i + 1, grid.count, label, ms, gflop / (ms / 1000)))
                if ms < best?.ms ?? .infinity { best = (ms, p) }
            } catch {
                print("[\(i + 1)/\(grid.count)] \(label): skipped (\(error))")
            }
        }
        guard let best else { throw ValidationError("no parameter set ran on \(device.name)") }
        let file = CLBlastTuning.cacheFile(for: device)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(best.params).write(to: file, options: .atomic)
        print(String(format: "best: %.1f GFLOP/s (%.2f× CLBlast's own); written to %@", gflop / (best.ms / 1000), base / best.ms, file.path))
        if best.ms > base {
            print("note: CLBlast's own parameters were faster on this device; use the clblast path here.")
        }
    }
}
