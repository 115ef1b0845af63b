// `flexiffusion trajectories`: the teacher's states on its grid for N seeds, as data for fitted
// schedules (`plan dp`).
import ArgumentParser
import Engine
import Foundation
import GPUKernels

struct TrajectoriesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trajectories",
        abstract: "Record the teacher's trajectories (DDIM, every step full): its state before each step, its model output there, and its final sample, for N seeds.",
        discussion: """
            Writes a safetensors file: `states` [N, T + 1, C·H·W], `outputs` [N, T, C·H·W], `timesteps` and \
            `alphas_cumprod` [T]. `plan dp --trajectories FILE` fits a schedule to it. A Stable Diffusion pipeline \
            records over a prompt set (--prompts), with guidance. Images come from --seed's noise streams, as \
            `generate --seed` makes them.
            """)
    @OptionGroup var deviceOptions: DeviceOptions
    @OptionGroup var precisionOptions: PrecisionOptions
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var promptOptions: PromptOptions
    @Option(help: "Trajectories (images).") var count = 64
    @Option(help: "The teacher's DDIM steps (its grid).") var steps = 100
    @Option(help: "Seed of the noise.") var seed: UInt64 = 0
    @Option(help: "Images per forward pass.") var batch = 32
    @Option(help: "The file to write.") var out = "trajectories.safetensors"

    func run() throws {
        guard count > 0, batch > 0 else { throw ValidationError("--count and --batch must be positive") }
        try checkImageCount(count, option: "--count")
        try OutputCheck.check(outputs: [NamedPath("--out", out)], inputs: NamedPath.given([("--model", modelOptions.model), ("--prompts", promptOptions.prompts)]))
        let setup = try ModelSetup(modelOptions, generates: false, prompted: promptOptions.prompts != nil)
        let promptSet = try promptOptions.check(setup)
        guard steps > 0, steps <= setup.schedulerConfig.numTrainTimesteps else {
            throw ValidationError("--steps \(steps): a teacher takes 1…\(setup.schedulerConfig.numTrainTimesteps) steps")
        }
        let values = Double(count) * Double(2 * steps + 1) * 4
        let stream = try precisionOptions.stream(deviceOptions)
        let pipeline = try setup.pipeline(PipelineRequest(batch: min(batch, count), variant: modelOptions.variant, prompts: promptSet,
                                                          guidanceScale: promptOptions.guidanceScale), stream: stream)
        let bytes = values * Double(pipeline.sampleValues)
        if bytes > Double(ProcessInfo.processInfo.physicalMemory) / 4 {
            throw ValidationError(String(format: "%d trajectories of %d steps hold %.3g bytes (this machine has %.3g): record fewer", count, steps, bytes, Double(ProcessInfo.processInfo.physicalMemory)))
        }
        let progress = ProgressLine("trajectories (ddim \(steps) steps)")
        let t = try TeacherTrajectories.record(pipeline, steps: steps, noise: GenerationNoise(seed: seed), count: count) {
            progress.update($0, of: $1, unit: "images")
        }
        progress.finish()
        try t.write(to: out)
        say(String(format: "wrote %@: %d trajectories of ddim %d steps, %d values per state (%.1f MB), %.1f s on %@", out, count, steps,
                   pipeline.sampleValues, bytes / 1e6, progress.elapsed, stream.device.name))
    }
}
