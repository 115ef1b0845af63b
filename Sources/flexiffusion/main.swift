// The `flexiffusion` command line.
import ArgumentParser

struct Flexiffusion: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flexiffusion",
        abstract: "Faster sampling for pre-trained diffusion models on any OpenCL device.",
        discussion: """
            Devices are chosen with --device (an index from `flexiffusion devices`, `gpu`, `cpu`, or part \
            of a device name) or $FLEXIFFUSION_DEVICE; the default is the first GPU, else the first CPU device. \
            $FLEXIFFUSION_GEMM picks the GEMM path (clblast, clblast-tuned, host-blas); \
            $FLEXIFFUSION_KERNELS_DIR loads kernels/*.cl from disk instead of the embedded copies.
            """,
        subcommands: [DevicesCommand.self, GenerateCommand.self, PlanCommand.self, ProfileCommand.self, SearchCommand.self, FIDCommand.self, RFIDCommand.self, ForwardCommand.self, BenchCommand.self, TuneGemmCommand.self])
}

/// `--device`, shared by every command that runs on a device.
struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Device: an index from `flexiffusion devices`, gpu, cpu, or part of a device name (default: $FLEXIFFUSION_DEVICE, else the first GPU, else the first CPU).",
        valueName: "device"))
    var device: String?
}

Flexiffusion.main()
