// `flexiffusion tokenize`: CLIP token ids of prompts, as a Stable Diffusion pipeline's tokenizer
// gives them (`tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids`).
import ArgumentParser
import Engine
import Foundation

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "CLIP token ids of prompts (start, tokens, end, padding to 77), as transformers' CLIPTokenizer.",
        discussion: """
            --tokenizer takes a folder with vocab.json and merges.txt (a pipeline's tokenizer/), or --model a \
            Stable Diffusion pipeline folder. One line of ids per prompt; --json prints [[ids], …].
            """)

    @Option(help: "A tokenizer folder (vocab.json, merges.txt).") var tokenizer: String?
    @Option(help: "A pipeline folder whose tokenizer/ to use.") var model: String?
    @Option(help: "One prompt.") var prompt: String?
    @Option(help: "A file of prompts, one per line (blank lines skipped), read as generate, rfid and search read it.") var prompts: String?
    @Option(help: "Pad and truncate to this many ids (default: the tokenizer's model_max_length, else 77).") var maxLength: Int?
    @Flag(help: "Print the ids as a JSON array of arrays.") var json = false

    func validate() throws {
        guard (tokenizer == nil) != (model == nil) else { throw ValidationError("give --tokenizer DIR or --model DIR") }
        guard (prompt == nil) != (prompts == nil) else { throw ValidationError("give --prompt TEXT or --prompts FILE") }
        if let m = maxLength, m < 2 { throw ValidationError("--max-length must be at least 2") }
    }

    func run() throws {
        let folder = tokenizer.map { URL(fileURLWithPath: $0) } ?? URL(fileURLWithPath: model!).appendingPathComponent("tokenizer")
        let clip = try CLIPTokenizer(folder: folder, maxLength: maxLength)
        let texts = try prompt.map { [$0] } ?? PromptFile.read(prompts!)
        let ids = texts.map { clip($0) }
        if json {
            let data = try JSONSerialization.data(withJSONObject: ids)
            print(String(decoding: data, as: UTF8.self))
        } else {
            for row in ids { print(row.map(String.init).joined(separator: " ")) }
        }
    }
}
