// `flexiffusion devices`: every OpenCL platform and device, which one is selected, and where each
// operation runs on it (its backends table).
import ArgumentParser
import Foundation
import Engine
import GPUKernels

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List every OpenCL platform and device (the selected one is marked with *), and where each operation runs on the selected one.",
        discussion: "With --device or $FLEXIFFUSION_DEVICE, the device it selects is marked; without, the default. $FLEXIFFUSION_GEMM, $FLEXIFFUSION_CONV and $FLEXIFFUSION_ONEDNN_LAYOUT change its backends.")

    @OptionGroup var deviceOptions: DeviceOptions

    @Flag(name: .long, help: "Print a JSON array instead of a table.")
    var json = false

    func run() throws {
        let all = try OpenCLRuntime.devices()
        let def = try OpenCLRuntime.select(deviceOptions.device)
        let backends = Backends(device: def, gemm: try GemmPath.default(for: def), convolution: try ConvolutionPath.default(for: def))
        // What --precision bf16 would run here (fp32 is the default everywhere).
        var bf16 = backends
        let (bf16Precision, bf16Note) = Precision.resolve(.bfloat16, for: backends)
        bf16.precision = bf16Precision
        if json {
            let rows: [[String: Any]] = all.map { d in [
                "index": d.index, "platform": d.platformName, "name": d.name, "type": d.kind.rawValue,
                "compute_units": d.computeUnits, "global_memory_bytes": d.globalMemoryBytes,
                "fp64": d.supportsFP64, "version": d.version, "driver": d.driverVersion,
                "gemm_path": (try? GemmPath.default(for: d).rawValue) ?? "?",
                "selected": d.index == def.index,
            ].merging(d.index == def.index ? ["backends": Dictionary(uniqueKeysWithValues: backends.rows.map {
                ($0.operation.rawValue, ["placement": $0.placement.rawValue, "implementation": $0.implementation])
            }), "precision": backends.precision.rawValue,
                "bf16": ["runs": bf16Precision.rawValue, "convolutions": bf16.implementation(.convolution), "gemm": bf16.implementation(.gemm)].merging(bf16Note.map { ["note": $0] } ?? [:]) { a, _ in a },
            ] : [:]) { a, _ in a } }
            let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if all.isEmpty {
            throw ModelError(OpenCLRuntime.noDeviceReason())
        }
        var table: [[String]] = [["", "#", "platform", "device", "type", "CUs", "memory", "fp64", "OpenCL", "GEMM path"]]
        for d in all {
            table.append([d.index == def.index ? "*" : "", "\(d.index)", d.platformName, d.name, d.kind.rawValue,
                          "\(d.computeUnits)", formatBytes(d.globalMemoryBytes), d.supportsFP64 ? "yes" : "no",
                          d.version, (try? GemmPath.default(for: d).rawValue) ?? "?"])
        }
        print(renderTable(table))
        let why = deviceOptions.device.map { "--device \($0)" }
            ?? EngineEnvironment.device.value().map { "\(EngineEnvironment.device)=\($0)" }
            ?? "default: the first GPU, else the first CPU"
        print("\n* selected device [\(def.index)] (\(why)); where each operation runs on it (\(backends.precision)):\n")
        print(renderTable([["operation", "runs on", "by"]] + backends.rows.map { [$0.operation.description, $0.placement.rawValue, $0.implementation] }))
        print(bf16Precision == .bfloat16
              ? "\n--precision bf16 here (this CPU computes bf16 natively): convolutions by \(bf16.implementation(.convolution)); GEMMs by \(bf16.implementation(.gemm)); the rest as above, fp32"
              : "\n--precision bf16 here: fp32 (\(bf16Note ?? ""))")
    }
}
