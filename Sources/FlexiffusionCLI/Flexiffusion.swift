// The `flexiffusion` command line: the root command, its version, and how a command line ends (its
// exit code and message), in process so that tests run the option checks without a process each.
// The commands are in Commands/ (each maps options onto the library and prints), what they share in
// Support/ (option groups, model set-up, printing, progress, interrupts).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

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
        subcommands: [DevicesCommand.self, GenerateCommand.self, PlanCommand.self, TrajectoriesCommand.self, ProfileCommand.self, SearchCommand.self, FIDCommand.self,
                      RFIDCommand.self, CLIPScoreCommand.self, ForwardCommand.self, TokenizeCommand.self, BenchCommand.self, TuneGemmCommand.self])

    /// How a command line ended: its exit code, and what it says (help on standard output when the
    /// code is 0, an error on standard error otherwise; empty when the command printed its own).
    struct Ending: Equatable {
        var code: Int32
        var message: String
    }

    /// Parses and runs `arguments` (without the program's name). Exit codes: 64 when the command
    /// line is wrong (an option's value or combination, also one the model cannot take; the
    /// subcommand's usage follows the message), 1 when a file, a device or the work is, 130 when
    /// interrupted, 0 for help and version.
    static func execute(_ arguments: [String]) -> Ending {
        var command: ParsableCommand
        do { command = try parseAsRoot(arguments) } catch {
            return Ending(code: exitCode(for: error).rawValue, message: fullMessage(for: error))
        }
        // An error thrown by a subcommand's `run()` (a ValidationError found there, say) is reported
        // with that subcommand's usage rather than the top level's.
        func usage(_ message: String) -> Ending {
            let usage = usageString(for: type(of: command))
            let path = usage.split(separator: " ").prefix { !"<[-".contains($0.first!) }.joined(separator: " ")
            return Ending(code: ExitCode.validationFailure.rawValue, message: """
                Error: \(message)
                Usage: \(usage)
                  See '\(path) --help' for more information.
                """)
        }
        do {
            try command.run()
            return Ending(code: 0, message: "")
        } catch let error as ValidationError {
            return usage(error.message)
        } catch let error as ModelError where error.isArgument {
            return usage(error.message)
        } catch {
            return Ending(code: exitCode(for: error).rawValue, message: fullMessage(for: error))
        }
    }
}

/// The version `--version` prints.
let flexiffusionVersion = "0.7.0 (step plans, rFID, search; multistep solvers; UNet2DModel and UNet2DConditionModel; Stable Diffusion text-to-image: CLIP tokenizer and text encoder, VAE, guidance)"

/// The executable's entry: runs the process's command line, prints how it ended and exits with its code.
public func runFlexiffusion() -> Never {
    let ending = Flexiffusion.execute(Array(CommandLine.arguments.dropFirst()))
    if !ending.message.isEmpty {
        if ending.code == 0 { print(ending.message) } else { FileHandle.standardError.write(Data((ending.message + "\n").utf8)) }
    }
    exit(ending.code)
}
