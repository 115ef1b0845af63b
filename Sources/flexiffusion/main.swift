// The `flexiffusion` command line.
import ArgumentParser
import Engine
import GPUKernels
import Foundation

struct Flexiffusion: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flexiffusion",
        abstract: "Faster sampling for pre-trained diffusion models on any OpenCL device.",
        discussion: """
            Devices are chosen with --device (an index from `flexiffusion devices`, `gpu`, `cpu`, or part \
            of a device name) or $FLEXIFFUSION_DEVICE; the default is the first GPU, else the first CPU device.

            Environment variables:
            \(EngineEnvironment.help)
            """,
        version: flexiffusionVersion,
        subcommands: [DevicesCommand.self, GenerateCommand.self, PlanCommand.self, ProfileCommand.self, SearchCommand.self, FIDCommand.self, RFIDCommand.self, ForwardCommand.self, TokenizeCommand.self, BenchCommand.self, TuneGemmCommand.self])
}

/// The version `--version` prints.
let flexiffusionVersion = "0.7.0 (step plans, rFID, search; multistep solvers; UNet2DModel and UNet2DConditionModel; Stable Diffusion text-to-image: CLIP tokenizer and text encoder, VAE, guidance)"

/// `--device`, shared by every command that runs on a device.
struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Device: an index from `flexiffusion devices`, gpu, cpu, or part of a device name (default: $FLEXIFFUSION_DEVICE, else the first GPU, else the first CPU).",
        valueName: "device"))
    var device: String?
}

// As `Flexiffusion.main()`, but an error thrown by a subcommand's `run()` (a ValidationError found
// there, say) is reported with that subcommand's usage rather than the top level's.
var command: ParsableCommand
do { command = try Flexiffusion.parseAsRoot() } catch { Flexiffusion.exit(withError: error) }
func exitWithUsage(_ message: String) -> Never {
    let usage = Flexiffusion.usageString(for: type(of: command))
    let path = usage.split(separator: " ").prefix { !"<[-".contains($0.first!) }.joined(separator: " ")
    FileHandle.standardError.write(Data("""
        Error: \(message)
        Usage: \(usage)
          See '\(path) --help' for more information.

        """.utf8))
    Flexiffusion.exit(withError: ExitCode.validationFailure)
}
// Exit codes: 64 when the command line is wrong (an option's value or combination, also one the model
// cannot take), 1 when a file, a device or the work is.
do { try command.run() } catch let error as ValidationError {
    exitWithUsage(error.message)
} catch let error as ModelError where error.isArgument {
    exitWithUsage(error.message)
} catch { Flexiffusion.exit(withError: error) }
