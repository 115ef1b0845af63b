// CLIP's tokenizer as Stable Diffusion pipelines load it (`tokenizer/vocab.json` + `merges.txt`):
// byte-level BPE with CLIP's text normalisation and pre-tokenisation, start/end tokens, truncation
// and padding to the model's length (77). Port of transformers' CLIPTokenizer (its tokenizers
// backend: NFC, whitespace runs → one space, lower case; CLIP's split regex
// `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` keeping the
// matches; GPT-2's byte-to-unicode map; BPE with "</w>" closing each word; RobertaProcessing's
// `<|startoftext|> … <|endoftext|>`), transformers 5.x.
import Foundation

public struct CLIPTokenizer: Sendable {
    public let vocabulary: [String: Int]
    /// Merge ranks: "left right" → rank (lower merges first).
    let ranks: [String: Int]
    public let bosToken: String, eosToken: String, padToken: String
    public let bosID: Int, eosID: Int, padID: Int
    /// The length `callAsFunction` pads and truncates to (CLIP's 77 positions).
    public let maxLength: Int

    /// Reads a tokenizer folder (`vocab.json` and `merges.txt`, else `tokenizer.json`; the pad token from
    /// `special_tokens_map.json` or `tokenizer_config.json` when present; SD 2.x pads with "!").
    public init(folder: URL, maxLength: Int? = nil) throws {
        let vocab = folder.appendingPathComponent("vocab.json"), merges = folder.appendingPathComponent("merges.txt")
        var pad = "<|endoftext|>", length = 77
        for name in ["special_tokens_map.json", "tokenizer_config.json"] {
            let url = folder.appendingPathComponent(name)
            guard let data = try? Data(contentsOf: url) else { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw ModelError("\(url.path) is not a JSON object")
            }
            if let p = object["pad_token"] as? String { pad = p }
            else if let p = (object["pad_token"] as? [String: Any])?["content"] as? String { pad = p }
            if let l = object["model_max_length"] as? Int, l > 0, l < 1_000_000 { length = l }
        }
        let fast = folder.appendingPathComponent("tokenizer.json")
        if !FileManager.default.fileExists(atPath: vocab.path), FileManager.default.fileExists(atPath: fast.path) {
            let (v, m) = try Self.readFastTokenizer(fast)
            try self.init(vocabulary: v, merges: m, padToken: pad, maxLength: maxLength ?? length)
            return
        }
        try self.init(vocabulary: vocab, merges: merges, padToken: pad, maxLength: maxLength ?? length)
    }

    /// The BPE vocabulary and merges of a `tokenizer.json` (Hugging Face tokenizers' file, which
    /// transformers 5 saves instead of vocab.json and merges.txt): merges as ["a", "b"] pairs or "a b".
    static func readFastTokenizer(_ url: URL) throws -> ([String: Int], [(String, String)]) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw ModelError("cannot read \(url.path): \(error.localizedDescription)") }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let model = object["model"] as? [String: Any] else {
            throw ModelError("\(url.path) is not a tokenizers JSON file (no `model` object)")
        }
        guard (model["type"] as? String) == "BPE" else {
            throw ModelError("\(url.path): model type \(model["type"] ?? "none") is not BPE, as CLIP's tokenizer is")
        }
        guard let rawVocab = model["vocab"] as? [String: Any] else { throw ModelError("\(url.path): no `model.vocab` object") }
        var vocab: [String: Int] = [:]
        for (token, id) in rawVocab {
            guard let n = id as? Int else { throw ModelError("\(url.path): vocabulary entry \(token) has no integer id") }
            vocab[token] = n
        }
        guard let rawMerges = model["merges"] as? [Any] else { throw ModelError("\(url.path): no `model.merges` list") }
        let merges: [(String, String)] = try rawMerges.enumerated().map { i, entry in
            if let pair = entry as? [String], pair.count == 2 { return (pair[0], pair[1]) }
            if let text = entry as? String {
                let parts = text.split(separator: " ")
                if parts.count == 2 { return (String(parts[0]), String(parts[1])) }
            }
            throw ModelError("\(url.path): merge \(i) is not two symbols: \(entry)")
        }
        return (vocab, merges)
    }

    public init(vocabulary vocabURL: URL, merges mergesURL: URL, padToken: String = "<|endoftext|>", maxLength: Int = 77) throws {
        let vocabData: Data, mergesText: String
        do { vocabData = try Data(contentsOf: vocabURL) } catch { throw ModelError("cannot read \(vocabURL.path): \(error.localizedDescription)") }
        do { mergesText = try String(contentsOf: mergesURL, encoding: .utf8) } catch {
            throw ModelError("cannot read \(mergesURL.path): \(error.localizedDescription)")
        }
        guard let vocab = try? JSONDecoder().decode([String: Int].self, from: vocabData) else {
            throw ModelError("\(vocabURL.path) is not a JSON object of token → id")
        }
        var merges: [(String, String)] = []
        for (i, line) in mergesText.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.hasPrefix("#version") || line.isEmpty { continue }
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { throw ModelError("\(mergesURL.path):\(i + 1): a merge is two symbols separated by a space, not \"\(line)\"") }
            merges.append((String(parts[0]), String(parts[1])))
        }
        try self.init(vocabulary: vocab, merges: merges, padToken: padToken, maxLength: maxLength)
    }

    public init(vocabulary: [String: Int], merges: [(String, String)], bosToken: String = "<|startoftext|>",
                eosToken: String = "<|endoftext|>", padToken: String = "<|endoftext|>", maxLength: Int = 77) throws {
        guard maxLength >= 2 else { throw ModelError("a tokenizer's max length must be at least 2 (start and end), not \(maxLength)") }
        func id(_ token: String, _ role: String) throws -> Int {
            guard let i = vocabulary[token] else { throw ModelError("the vocabulary has no \(role) token \(token)") }
            return i
        }
        self.vocabulary = vocabulary
        var ranks: [String: Int] = [:]
        for (rank, m) in merges.enumerated() where ranks["\(m.0) \(m.1)"] == nil { ranks["\(m.0) \(m.1)"] = rank }
        self.ranks = ranks
        self.bosToken = bosToken; self.eosToken = eosToken; self.padToken = padToken
        bosID = try id(bosToken, "start"); eosID = try id(eosToken, "end"); padID = try id(padToken, "padding")
        self.maxLength = maxLength
    }

    // MARK: Encoding

    /// `<|startoftext|>`, the text's tokens, `<|endoftext|>` — truncated to `maxLength` (the end token
    /// kept) and padded with the pad token to `maxLength`, as `tokenizer(text, padding="max_length",
    /// max_length=77, truncation=True)`.
    public func callAsFunction(_ text: String) -> [Int] {
        var ids = [bosID] + tokens(text).prefix(maxLength - 2) + [eosID]
        ids += Array(repeating: padID, count: maxLength - ids.count)
        return ids
    }

    /// The text's token ids without start, end or padding.
    public func tokens(_ text: String) -> [Int] {
        var out: [Int] = []
        for segment in splitOnSpecialTokens(text) {
            switch segment {
            case .special(let id): out.append(id)
            case .text(let t):
                for piece in Self.pieces(Self.normalize(t)) {
                    out += bpe(Self.byteLevel(piece)).map { vocabulary[$0] ?? eosID }   // unknown → unk (<|endoftext|>)
                }
            }
        }
        return out
    }

    enum Segment { case special(Int), text(String) }

    /// The special tokens — start, end and pad (SD 2.x's "!" too, as transformers adds it) — are
    /// matched in the raw text, before normalisation (tokenizers' added tokens).
    func splitOnSpecialTokens(_ text: String) -> [Segment] {
        var segments: [Segment] = [], rest = Substring(text)
        let specials = [(bosToken, bosID), (eosToken, eosID), (padToken, padID)]
        while !rest.isEmpty {
            let hits = specials.compactMap { s in rest.range(of: s.0).map { ($0, s.1) } }
            guard let (range, id) = hits.min(by: { $0.0.lowerBound < $1.0.lowerBound }) else { break }
            if range.lowerBound > rest.startIndex { segments.append(.text(String(rest[..<range.lowerBound]))) }
            segments.append(.special(id))
            rest = rest[range.upperBound...]
        }
        if !rest.isEmpty { segments.append(.text(String(rest))) }
        return segments
    }

    /// NFC, every whitespace run → one space, lower case (each scalar's full lower-case mapping, as
    /// Rust's `char::to_lowercase`: no context rules such as a final sigma).
    static func normalize(_ text: String) -> String {
        var out = "", inSpace = false
        for s in text.precomposedStringWithCanonicalMapping.unicodeScalars {
            if s.properties.isWhitespace {
                if !inSpace { out.append(" ") }
                inSpace = true
            } else {
                out.unicodeScalars.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars); inSpace = false
            }
        }
        return out
    }

    /// CLIP's pre-tokenisation: the matches of `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
    /// (leftmost, first alternative), whitespace between them dropped.
    static func pieces(_ text: String) -> [String] {
        let s = Array(text.unicodeScalars)
        func isLetter(_ c: Unicode.Scalar) -> Bool {
            switch c.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
            default: return false
            }
        }
        func isNumber(_ c: Unicode.Scalar) -> Bool {
            switch c.properties.generalCategory {
            case .decimalNumber, .letterNumber, .otherNumber: return true
            default: return false
            }
        }
        let contractions: [[Unicode.Scalar]] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }
        var out: [String] = [], i = 0
        func emit(_ j: Int) { var v = String.UnicodeScalarView(); v.append(contentsOf: s[i..<j]); out.append(String(v)); i = j }
        while i < s.count {
            let c = s[i]
            if c.properties.isWhitespace { i += 1; continue }
            if c == "'", let k = contractions.first(where: { i + $0.count <= s.count && Array(s[i..<(i + $0.count)]) == $0 }) {
                emit(i + k.count); continue
            }
            var j = i + 1
            if isLetter(c) {
                while j < s.count, isLetter(s[j]) { j += 1 }
            } else if !isNumber(c) {
                while j < s.count, !isLetter(s[j]), !isNumber(s[j]), !s[j].properties.isWhitespace { j += 1 }
            }
            emit(j)
        }
        return out
    }

    /// GPT-2's map of bytes to printable characters (bytes_to_unicode).
    static let byteCharacters: [Character] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var codes = printable
        var n = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b); codes.append(256 + n); n += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(printable, codes) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()

    static func byteLevel(_ piece: String) -> [String] { piece.utf8.map { String(byteCharacters[Int($0)]) } }

    /// Byte-pair merges of one word (its symbols, the last closed with "</w>"), lowest rank first.
    func bpe(_ symbols: [String]) -> [String] {
        guard !symbols.isEmpty else { return [] }
        var word = symbols
        word[word.count - 1] += "</w>"
        while word.count > 1 {
            var best: (rank: Int, at: Int)? = nil
            for k in 0..<(word.count - 1) {
                if let r = ranks["\(word[k]) \(word[k + 1])"], r < (best?.rank ?? .max) { best = (r, k) }
            }
            guard let (_, _) = best else { break }
            let (left, right) = (word[best!.at], word[best!.at + 1])
            var merged: [String] = [], k = 0
            while k < word.count {
                if k < word.count - 1, word[k] == left, word[k + 1] == right { merged.append(left + right); k += 2 }
                else { merged.append(word[k]); k += 1 }
            }
            word = merged
        }
        return word
    }
}
