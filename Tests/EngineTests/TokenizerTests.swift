// CLIP's tokenizer on a hand-made vocabulary: normalisation, CLIP's pre-tokenisation (contractions,
// letter runs, single digits, symbol runs), byte-level symbols, BPE by merge rank, special tokens in
// the text, truncation and padding. (Parity with transformers on the real vocabulary and a few
// hundred prompts: python/tests/test_tokenizer.py, run by CI.)
import Engine
import Foundation
import Testing
import TestSupport

@Suite struct TokenizerTests {
    /// Every byte's character, each also closing a word, the merges' results and the specials.
    static func tokenizer(maxLength: Int = 12, pad: String = "<|endoftext|>") throws -> CLIPTokenizer {
        var printable = Array(33...126) + Array(161...172) + Array(174...255), codes = printable, n = 0
        for b in 0..<256 where !printable.contains(b) { printable.append(b); codes.append(256 + n); n += 1 }
        let chars = codes.map { String(Character(Unicode.Scalar(UInt32($0))!)) }
        let merges = [("h", "e"), ("l", "l"), ("l", "o</w>"), ("he", "ll"), ("hell", "o</w>"), ("'", "s</w>")]
        var tokens = chars + chars.map { $0 + "</w>" } + merges.map { $0.0 + $0.1 } + ["<|startoftext|>", "<|endoftext|>"]
        tokens = tokens.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
        let vocab = Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($1, $0) })
        return try CLIPTokenizer(vocabulary: vocab, merges: merges, padToken: pad, maxLength: maxLength)
    }

    func ids(_ t: CLIPTokenizer, _ tokens: [String]) -> [Int] { tokens.map { t.vocabulary[$0]! } }

    @Test func wordsBecomeMergedTokens() throws {
        let t = try Self.tokenizer()
        #expect(t.tokens("Hello") == ids(t, ["hello</w>"]))
        #expect(t.tokens("  HELLO\t\n world!! ") == ids(t, ["hello</w>", "w", "o", "r", "l", "d</w>", "!", "!</w>"]))
        // Contractions split off, digits one by one, symbols in runs.
        #expect(t.tokens("he's 42") == ids(t, ["h", "e</w>", "'s</w>", "4</w>", "2</w>"]))
        #expect(t.tokens("a-b") == ids(t, ["a</w>", "-</w>", "b</w>"]))
        // Non-ASCII letters go byte by byte; NFC first, so é composed or not gives the same ids.
        let composed = t.tokens("CAFÉ"), decomposed = t.tokens("CAFE\u{301}")
        #expect(composed == decomposed && composed == ids(t, ["c", "a", "f", "Ã", "©</w>"]))
    }

    @Test func startEndPaddingAndTruncation() throws {
        let t = try Self.tokenizer(maxLength: 6)
        let (bos, eos) = (t.bosID, t.eosID)
        #expect(t("hello") == [bos] + ids(t, ["hello</w>"]) + [eos, eos, eos, eos])
        // Truncation keeps the end token.
        #expect(t("a b c d e f g") == [bos] + ids(t, ["a</w>", "b</w>", "c</w>", "d</w>"]) + [eos])
        // Special tokens in the text are matched before normalisation.
        #expect(t.tokens("a<|endoftext|>B") == ids(t, ["a</w>"]) + [eos] + ids(t, ["b</w>"]))
        // SD 2.x pads with "!".
        let bang = try Self.tokenizer(maxLength: 5, pad: "!")
        #expect(bang("") == [bang.bosID, bang.eosID] + Array(repeating: bang.vocabulary["!"]!, count: 3))
        // …and, as transformers adds the pad token, a "!" in the text is that token, not a BPE word.
        #expect(bang.tokens("a!!") == ids(bang, ["a</w>", "!", "!"]))
        #expect(t.tokens("a!!") == ids(t, ["a</w>", "!", "!</w>"]))
    }

    /// One reading of a prompt file for every command: any newline ends a line, lines are trimmed, blank
    /// ones skipped; a file that is not UTF-8, holds no prompt or is not a file is refused naming it.
    @Test func promptFilesAreReadOneWay() throws {
        #expect(PromptFile.prompts(in: "a\r\nb\rc\u{2028}d\u{85}e\n\n  \t \n  f  \n") == ["a", "b", "c", "d", "e", "f"])
        #expect(PromptFile.prompts(in: "tabs\tinside stay\n") == ["tabs\tinside stay"])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prompts-\(freshSeed())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let latin1 = dir.appendingPathComponent("latin1.txt"), blank = dir.appendingPathComponent("blank.txt")
        try Data([0x63, 0x61, 0x66, 0xE9, 0x0A]).write(to: latin1)
        try Data(" \n\r\n".utf8).write(to: blank)
        expectError(containing: ["latin1.txt is not UTF-8 text"]) { _ = try PromptFile.read(latin1.path) }
        expectError(containing: ["holds no prompt"]) { _ = try PromptFile.read(blank.path) }
        expectError(containing: ["not a regular file"]) { _ = try PromptFile.read(dir.path) }
        expectError(containing: ["cannot read --prompts", "missing.txt"]) { _ = try PromptFile.read(dir.appendingPathComponent("missing.txt").path) }
    }

    /// A key twice in one JSON object is found (readers disagree on which value counts), in nested
    /// objects and arrays too; strings that only look like keys are not keys.
    @Test func keysThatStandTwiceAreFound() throws {
        #expect(duplicateJSONKey(in: Data(#"{"a": 1, "b": {"c": [1, {"d": 2, "d": 3}]}}"#.utf8)) == "b.c.d")
        #expect(duplicateJSONKey(in: Data(#"{"a": "x:y", "b": ["a", "a"], "c": {"a": 1}, "d": "\"a\": 1"}"#.utf8)) == nil)
        #expect(duplicateJSONKey(in: Data(#"{"actions": ["full"], "sampler": {}, "actions": ["null"]}"#.utf8)) == "actions")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twice-\(freshSeed()).json")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(#"{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2}, "actions": ["full", "partial:1"], "actions": ["full", "full"]}"#.utf8).write(to: dir)
        expectError(containing: ["\"actions\" stands twice"]) { _ = try StepPlan.load(from: dir) }
    }

    @Test func badFilesAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizer-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        expectError(containing: ["vocab.json"]) { _ = try CLIPTokenizer(folder: dir) }
        try Data("{\"a\": 0}".utf8).write(to: dir.appendingPathComponent("vocab.json"))
        try Data("#version: 0.2\na b c\n".utf8).write(to: dir.appendingPathComponent("merges.txt"))
        expectError(containing: ["merges.txt:2", "two symbols"]) { _ = try CLIPTokenizer(folder: dir) }
        try Data("#version: 0.2\na b\n".utf8).write(to: dir.appendingPathComponent("merges.txt"))
        expectError(containing: ["no start token <|startoftext|>"]) { _ = try CLIPTokenizer(folder: dir) }
    }
}
