// The one reader of prompt files, for every command that takes `--prompts` (generate, rfid, search,
// profile, tokenize): UTF-8 text, one prompt per line. Lines end at any newline (LF, CRLF, CR, and
// Unicode's NEL, LS, PS, VT, FF, as Python's str.splitlines ends them); each line is trimmed of spaces
// and tabs, and blank lines are skipped (an empty prompt is given as `--prompt ""`).
import Foundation
import GPUKernels

public enum PromptFile {
    /// The prompts of `text`.
    public static func prompts(in text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The prompts of the file at `path` (named `option` in messages): an unreadable file, one that is
    /// not UTF-8 text, or one without a prompt is an error naming it.
    public static func read(_ path: String, option: String = "--prompts") throws -> [String] {
        switch FileKind(path) {
        case .regular: break
        case .missing(let e): throw ModelError("cannot read \(option) \(path): \(String(cString: strerror(e)))")
        case .folder, .other: throw ModelError("cannot read \(option) \(path): it is not a regular file")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ModelError("cannot read \(option) \(path): \(describeFileError(error))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ModelError("\(option) \(path) is not UTF-8 text")
        }
        let list = prompts(in: text)
        guard !list.isEmpty else { throw ModelError("\(option) \(path) holds no prompt (one per line)") }
        return list
    }
}
