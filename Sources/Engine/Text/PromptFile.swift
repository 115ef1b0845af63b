// The one reader of prompt files, for every command that takes `--prompts` (generate, rfid, search,
// profile, tokenize): UTF-8 text, one prompt per line. Lines end at any newline (LF, CRLF, CR, and
// Unicode's NEL, LS, PS, VT, FF, as Python's str.splitlines ends them); each line is trimmed of spaces
// and tabs, and blank lines are skipped (an empty prompt is given as `--prompt ""`).
import Foundation

public enum PromptFile {
    /// The prompts of `text`.
    public static func prompts(in text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The prompts of the file at `path` (named `option` in messages): an unreadable file, one that is
    /// not UTF-8 text, or one without a prompt is an error naming it.
    public static func read(_ path: String, option: String = "--prompts") throws -> [String] {
        var info = stat()
        if stat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
            throw ModelError("cannot read \(option) \(path): it is not a regular file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError("cannot read \(option) \(path): \(String(cString: strerror(errno == 0 ? ENOENT : errno)))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ModelError("\(option) \(path) is not UTF-8 text")
        }
        let list = prompts(in: text)
        guard !list.isEmpty else { throw ModelError("\(option) \(path) holds no prompt (one per line)") }
        return list
    }
}
