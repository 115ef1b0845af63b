// CLIP score as the field computes it (torchmetrics' CLIPScore over transformers' CLIPModel and
// CLIPProcessor): each image's projected embedding and its prompt's, normalised; a pair scores 100 ×
// their cosine; the metric is max(mean over pairs, 0). A CLIP folder is a transformers CLIPModel saved
// with its processor (openai/clip-vit-large-patch14's layout: config.json with text_config and
// vision_config, model.safetensors, preprocessor_config.json, the tokenizer's files), or its Hugging
// Face cache id. Images go through CLIPImageProcessor's steps: RGB, the shortest side resized to
// `size.shortest_edge` by Pillow's bicubic filter (Image8), a centre crop, ×1/255, CLIP's mean and std.
import Foundation
import GPUKernels

/// CLIPImageProcessor's settings (preprocessor_config.json; CLIP's defaults for keys it leaves out).
public struct CLIPImageProcessing: Sendable, Equatable {
    /// The shortest side after resizing (nil: no resize).
    public var shortestEdge: Int? = 224
    /// The centre crop (height, width) (nil: no crop).
    public var crop: (height: Int, width: Int)? = (224, 224)
    public var rescaleFactor: Double? = 1 / 255
    public var mean: [Double]? = [0.48145466, 0.4578275, 0.40821073]
    public var std: [Double]? = [0.26862954, 0.26130258, 0.27577711]

    public init() {}

    public static func == (a: Self, b: Self) -> Bool {
        a.shortestEdge == b.shortestEdge && a.crop?.height == b.crop?.height && a.crop?.width == b.crop?.width
            && a.rescaleFactor == b.rescaleFactor && a.mean == b.mean && a.std == b.std
    }

    /// A CLIP folder's image processor: preprocessor_config.json (as the Hub's CLIP checkpoints hold
    /// it), else the `image_processor` of processor_config.json (as transformers 5 saves a processor),
    /// else CLIP's defaults.
    public static func load(folder: URL) throws -> CLIPImageProcessing {
        let legacy = folder.appendingPathComponent("preprocessor_config.json"), current = folder.appendingPathComponent("processor_config.json")
        if FileManager.default.fileExists(atPath: legacy.path) { return try load(from: legacy) }
        guard FileManager.default.fileExists(atPath: current.path) else { return CLIPImageProcessing() }
        let raw = try readObject(current)
        guard let inner = raw["image_processor"] else { return CLIPImageProcessing() }
        guard let object = inner as? [String: Any] else { throw ModelError("\(current.path): image_processor is not a JSON object") }
        return try parse(object, source: current.path)
    }

    static func readObject(_ url: URL) throws -> [String: Any] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw ModelError("cannot read \(url.path): \(error.localizedDescription)") }
        guard let raw = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw ModelError("\(url.path) is not a JSON object") }
        return raw
    }

    /// Reads `url` when it exists, else CLIP's defaults.
    public static func load(from url: URL) throws -> CLIPImageProcessing {
        guard FileManager.default.fileExists(atPath: url.path) else { return CLIPImageProcessing() }
        return try parse(try readObject(url), source: url.path)
    }

    /// An image processor's settings (`source` names them in errors).
    static func parse(_ raw: [String: Any], source: String) throws -> CLIPImageProcessing {
        var p = CLIPImageProcessing()
        let url = URL(fileURLWithPath: source)
        func flag(_ key: String) throws -> Bool {
            guard let v = raw[key] else { return true }
            guard let b = v as? Bool else { throw ModelError("\(url.path): \(key) = \(v) is not true or false") }
            return b
        }
        func size(_ key: String, _ v: Any) throws -> Int {
            guard let n = v as? Int, !(v is Bool), n > 0, n <= 8192 else { throw ModelError("\(url.path): \(key) = \(v) is not a size from 1 to 8192") }
            return n
        }
        if let r = raw["resample"] {
            guard let n = r as? Int, n == 3 else {
                throw ModelError("\(url.path): resample = \(r) is not implemented (3, bicubic, as CLIP's processors use)")
            }
        }
        if try flag("do_resize"), let s = raw["size"] {
            if let d = s as? [String: Any] {
                guard let e = d["shortest_edge"], d.count == 1 else {
                    throw ModelError("\(url.path): size \(d) is not implemented (CLIP's {\"shortest_edge\": N})")
                }
                p.shortestEdge = try size("size.shortest_edge", e)
            } else {
                p.shortestEdge = try size("size", s)
            }
        } else if try !flag("do_resize") { p.shortestEdge = nil }
        if try flag("do_center_crop"), let c = raw["crop_size"] {
            if let d = c as? [String: Any] {
                guard let h = d["height"], let w = d["width"] else { throw ModelError("\(url.path): crop_size \(d) needs height and width") }
                p.crop = (try size("crop_size.height", h), try size("crop_size.width", w))
            } else {
                let n = try size("crop_size", c); p.crop = (n, n)
            }
        } else if try !flag("do_center_crop") { p.crop = nil }
        if try !flag("do_rescale") { p.rescaleFactor = nil } else if let f = raw["rescale_factor"] {
            guard let x = f as? Double, x > 0, x.isFinite else { throw ModelError("\(url.path): rescale_factor = \(f) is not a positive number") }
            p.rescaleFactor = x
        }
        if try !flag("do_normalize") { p.mean = nil; p.std = nil } else {
            for (key, field) in [("image_mean", \CLIPImageProcessing.mean), ("image_std", \.std)] {
                guard let v = raw[key] else { continue }
                guard let list = v as? [Double], list.count == 3, list.allSatisfy(\.isFinite) else {
                    throw ModelError("\(url.path): \(key) = \(v) is not three numbers")
                }
                p[keyPath: field] = list
            }
            if let std = p.std, std.contains(where: { $0 <= 0 }) { throw ModelError("\(url.path): image_std \(std) has a value ≤ 0") }
        }
        return p
    }

    /// transformers' `get_resize_output_image_size(default_to_square=False)`: (height, width) with the
    /// shortest side `edge` and the other int(edge × long / short).
    public static func resizedSize(height h: Int, width w: Int, shortestEdge edge: Int) -> (height: Int, width: Int) {
        let (short, long) = (min(h, w), max(h, w))
        let other = Int(Double(edge) * Double(long) / Double(short))
        return w <= h ? (other, edge) : (edge, other)
    }

    /// The processor's `pixel_values` of `image` (grey is read as RGB): [3, H, W] after the crop.
    public func pixelValues(_ image: Image8) -> (values: [Float], height: Int, width: Int) {
        var im = image
        if im.channels == 1 { im = Image8(width: im.width, height: im.height, channels: 3, pixels: im.pixels.flatMap { [$0, $0, $0] }) }
        if let edge = shortestEdge {
            let (h, w) = Self.resizedSize(height: im.height, width: im.width, shortestEdge: edge)
            im = im.resizedBicubic(width: w, height: h)
        }
        if let crop { im = im.centreCropped(width: min(crop.width, im.width), height: min(crop.height, im.height)) }
        let plane = im.width * im.height
        var out = [Float](repeating: 0, count: 3 * plane)
        for c in 0..<3 {
            // (transformers rescales in float64, then normalises in float32.)
            let m = Float(mean?[c] ?? 0), s = Float(std?[c] ?? 1)
            for i in 0..<plane {
                let x = Float(Double(im.pixels[i * 3 + c]) * (rescaleFactor ?? 1))
                out[c * plane + i] = mean == nil ? x : (x - m) / s
            }
        }
        return (out, im.height, im.width)
    }
}

extension Image8 {
    /// An image in model space ([-1, 1], CHW, 1 or 3 channels, as the PNG reader gives it) back to its
    /// 8-bit pixels as a PNG of them holds them (`PNG.pixels`: exact for values read from an 8-bit file).
    public init(modelSpace values: ArraySlice<Float>, channels: Int, height: Int, width: Int) {
        let plane = height * width, base = values.startIndex
        var px = [UInt8](repeating: 0, count: plane * channels)
        for c in 0..<channels {
            for i in 0..<plane {
                let v = values[base + c * plane + i]
                px[i * channels + c] = v.isNaN ? 0 : PNG.pixels(v)
            }
        }
        self.init(width: width, height: height, channels: channels, pixels: px)
    }
}

/// A CLIPModel's configuration: its towers and the shared projection width.
public struct CLIPModelConfiguration: Sendable, Equatable {
    public var text: CLIPTextConfiguration
    public var vision: CLIPVisionConfiguration
    public var projectionDim: Int

    /// Reads a CLIPModel's config.json (`model_type` clip).
    public static func load(from url: URL) throws -> CLIPModelConfiguration {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw ModelError("cannot read \(url.path): \(error.localizedDescription)") }
        guard let raw = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw ModelError("\(url.path) is not a JSON object") }
        guard (raw["model_type"] as? String) == "clip" else {
            throw ModelError("\(url.path): model_type \(raw["model_type"] ?? "none") is not a CLIP model (clip; e.g. openai/clip-vit-large-patch14)")
        }
        let p = raw["projection_dim"] ?? 512
        guard let projection = p as? Int, !(p is Bool), projection > 0, projection < 1 << 24 else {
            throw ModelError("\(url.path): projection_dim = \(p) is not a positive integer below 2^24")
        }
        let text = try CLIPTextConfiguration.parse(textConfig: raw["text_config"] as? [String: Any] ?? [:], projectionDim: projection,
                                                   source: url.path + " (text_config)")
        let vision = try CLIPVisionConfiguration.parse(raw["vision_config"] as? [String: Any] ?? [:], projectionDim: projection, source: url.path)
        return CLIPModelConfiguration(text: text, vision: vision, projectionDim: projection)
    }
}

/// A CLIPModel on a device: both towers, the tokenizer and the image processor of its folder.
public final class CLIPModel {
    public let config: CLIPModelConfiguration
    public let processing: CLIPImageProcessing
    public let tokenizer: CLIPTokenizer?
    public let text: CLIPTextModel
    public let vision: CLIPVisionModel
    public let root: URL
    /// A key of the model's files (configs, tokenizer, the weights' size and first and last MiB):
    /// cached CLIP scores are keyed by it.
    public let fingerprint: String
    public var parameterCount: Int { text.parameterCount + vision.parameterCount }

    /// A CLIP folder or Hugging Face cache id; `batch` images or prompts per forward pass.
    public convenience init(path: String, variant: String? = nil, stream: ComputeStream, batch: Int,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        var root = URL(fileURLWithPath: path).standardizedFileURL
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: root.path), HuggingFaceCache.isRepositoryID(path) {
            root = try HuggingFaceCache(environment: environment).snapshot(of: path)
        }
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDir) else { throw ModelError("CLIP folder \(path) does not exist") }
        guard isDir.boolValue else { throw ModelError("\(path) is a file; a CLIP model is a folder (config.json, model.safetensors, preprocessor_config.json, tokenizer files)") }
        let config = try CLIPModelConfiguration.load(from: root.appendingPathComponent("config.json"))
        let url = try ModelFolder.weights(in: root, variant: variant, stems: ["model"])
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: url.path) } catch { throw ModelError("\(url.path): \(error)") }
        let fm = FileManager.default
        let hasTokenizer = ["vocab.json", "tokenizer.json"].contains { fm.fileExists(atPath: root.appendingPathComponent($0).path) }
        var h = FNV1a()
        for name in ["config.json", "preprocessor_config.json", "processor_config.json", "vocab.json", "merges.txt", "tokenizer.json", "special_tokens_map.json"] {
            h.add(name); h.add((try? Data(contentsOf: root.appendingPathComponent(name))) ?? Data())
        }
        if let handle = FileHandle(forReadingAtPath: url.path) {
            defer { try? handle.close() }
            let size = (try? handle.seekToEnd()) ?? 0
            h.add("\(size)")
            try? handle.seek(toOffset: 0); h.add(handle.readData(ofLength: 1 << 20))
            try? handle.seek(toOffset: size > 1 << 20 ? size - (1 << 20) : 0); h.add(handle.readData(ofLength: 1 << 20))
        }
        try self.init(config: config, weights: WeightStore(file: file), processing: CLIPImageProcessing.load(folder: root),
                      tokenizer: hasTokenizer ? CLIPTokenizer(folder: root) : nil, stream: stream, batch: batch, root: root, fingerprint: h.hex)
    }

    public init(config: CLIPModelConfiguration, weights store: WeightStore, processing: CLIPImageProcessing, tokenizer: CLIPTokenizer?,
                stream: ComputeStream, batch: Int, root: URL, fingerprint: String = "") throws {
        self.config = config; self.processing = processing; self.tokenizer = tokenizer; self.root = root; self.fingerprint = fingerprint
        guard processing.crop.map({ $0.height == config.vision.imageSize && $0.width == config.vision.imageSize }) ?? false
                || (processing.crop == nil && processing.shortestEdge == config.vision.imageSize) else {
            throw ModelError("\(root.path): the image processor's output (crop \(processing.crop.map { "\($0.width)×\($0.height)" } ?? "none")) is not the vision tower's \(config.vision.imageSize)×\(config.vision.imageSize) images")
        }
        store.ignore("logit_scale")
        text = try CLIPTextModel(config: config.text, weights: store, stream: stream, batch: batch,
                                 otherParts: ["vision_model.", "visual_projection."])
        vision = try CLIPVisionModel(config: config.vision, weights: store, stream: stream, batch: batch, otherParts: [])
    }

    /// `get_image_features` of 8-bit images (any size: the processor resizes and crops), [N][projection_dim].
    public func imageEmbeddings(_ images: [Image8]) throws -> [[Float]] {
        let S = config.vision.imageSize, P = config.projectionDim
        var out: [[Float]] = []
        for start in stride(from: 0, to: images.count, by: vision.batch) {
            let chunk = images[start..<min(images.count, start + vision.batch)]
            var values: [Float] = []
            for im in chunk {
                let p = processing.pixelValues(im)
                guard p.height == S && p.width == S else {
                    throw ModelError("an image of \(im.width)×\(im.height) gives \(p.width)×\(p.height) pixel values, not the vision tower's \(S)×\(S)")
                }
                values += p.values
            }
            try vision.encode(values, count: chunk.count)
            let e = try vision.stream.download(vision.imageEmbeds, count: chunk.count * P)
            out += (0..<chunk.count).map { Array(e[($0 * P)..<(($0 + 1) * P)]) }
        }
        return out
    }

    /// The token ids torchmetrics' CLIPScore gives the text tower: start, tokens, end (padding to the
    /// batch's longest changes nothing under the causal mask), cut to max_position_embeddings when longer
    /// (torchmetrics cuts the ids, end token included, and warns). Returns the ids and whether any was cut.
    public func tokenIDs(_ prompts: [String]) throws -> (ids: [[Int]], truncated: Bool) {
        guard let tokenizer else {
            throw ModelError("\(root.path): no tokenizer files (vocab.json and merges.txt, or tokenizer.json) beside the CLIP model")
        }
        let L = config.text.maxPositions
        var truncated = false
        let ids: [[Int]] = prompts.map { p in
            var ids = [tokenizer.bosID] + tokenizer.tokens(p) + [tokenizer.eosID]
            if ids.count > L { ids = Array(ids.prefix(L)); truncated = true }
            return ids + Array(repeating: tokenizer.padID, count: L - ids.count)
        }
        return (ids, truncated)
    }

    /// `get_text_features` of token ids (each of max_position_embeddings ids), [N][projection_dim].
    public func textEmbeddings(ids: [[Int]]) throws -> [[Float]] {
        let P = config.projectionDim
        var out: [[Float]] = []
        for start in stride(from: 0, to: ids.count, by: text.batch) {
            let chunk = Array(ids[start..<min(ids.count, start + text.batch)])
            try text.encodePooled(chunk)
            let e = try text.stream.download(text.pooledOutput, count: chunk.count * P)
            out += (0..<chunk.count).map { Array(e[($0 * P)..<(($0 + 1) * P)]) }
        }
        return out
    }
}

extension CLIPModel {
    /// The pairs' scores (100 × cos) of images against prompts: image i with prompt i mod n, as
    /// `generate` pairs them (a `CLIPJudge` over them, batch by batch). `progress` gets (images done,
    /// images). Returns the scores and the prompts cut to max_position_embeddings.
    public func pairScores(images: [Image8], prompts: [String], progress: ((Int, Int) -> Void)? = nil) throws -> (scores: [Double], truncated: [String]) {
        guard !prompts.isEmpty else { throw ModelError("CLIP score needs at least one prompt") }
        let judge = CLIPJudge(model: self, prompts: try PromptSet(prompts))
        var scores: [Double] = []
        for start in stride(from: 0, to: images.count, by: vision.batch) {
            let end = min(images.count, start + vision.batch)
            scores += try judge.pairScores(Array(images[start..<end]), first: start)
            progress?(end, images.count)
        }
        return (scores, judge.truncated.sorted())
    }
}

extension Image8 {
    /// The images of a set in model space.
    public static func images(of set: ImageSet) -> [Image8] {
        let size = set.imageSize
        return (0..<set.count).map { i in
            Image8(modelSpace: set.values[(i * size)..<((i + 1) * size)], channels: set.channels, height: set.height, width: set.width)
        }
    }

    /// Images to score: a folder of PNGs (sorted by name; each its own size), or what `ImageSet.load`
    /// reads (a PNG, a tensor file, an IDX file).
    public static func load(_ path: String, limit: Int? = nil) throws -> [Image8] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            return images(of: try ImageSet.load(path, limit: limit))
        }
        if let limit, limit < 1 { throw ModelError(argument: "--limit \(limit): the number of images to use must be positive") }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
            throw ModelError("cannot read the folder \(path): \(error.localizedDescription)")
        }
        let pngs = names.filter { $0.lowercased().hasSuffix(".png") && !$0.hasPrefix(".") }.sorted()
        guard !pngs.isEmpty else { throw ModelError("\(path): no .png files") }
        return try pngs.prefix(limit ?? .max).flatMap { try images(of: ImageSet.load("\(path)/\($0)")) }
    }
}

/// A CLIP model and the prompts of a text-to-image run's images (image i: `prompts.prompt(i)`): the
/// pairs' scores of a batch of generated images, as `clipscore` computes them from their PNGs (the
/// images rounded to 8 bits, as written).
public final class CLIPJudge {
    public let model: CLIPModel
    public let prompts: PromptSet
    private var textEmbeddings: [String: [Float]] = [:]
    /// Prompts cut to the text tower's length.
    public private(set) var truncated: Set<String> = []

    public init(model: CLIPModel, prompts: PromptSet) {
        self.model = model; self.prompts = prompts
    }

    /// A key of the model and the prompts.
    public var key: String { FNV1a.hex((["clip v1", model.fingerprint] + prompts.prompts).joined(separator: "|")) }

    /// The pairs' scores of `count` images in model space ([count, C, H, W], host) whose run indices
    /// start at `first`, as their PNGs hold them.
    public func pairScores(_ values: [Float], count: Int, channels: Int, height: Int, width: Int, first: Int) throws -> [Double] {
        let size = channels * height * width
        return try pairScores((0..<count).map { Image8(modelSpace: values[($0 * size)..<(($0 + 1) * size)], channels: channels, height: height, width: width) },
                              first: first)
    }

    /// The pairs' scores of 8-bit images (at most the model's batch) whose run indices start at
    /// `first`; each prompt is encoded once, the first time an image needs it.
    public func pairScores(_ images: [Image8], first: Int) throws -> [Double] {
        let indices = first..<(first + images.count)
        let missing = Array(Set(indices.map(prompts.prompt)).filter { textEmbeddings[$0] == nil }).sorted()
        if !missing.isEmpty {
            let (ids, _) = try model.tokenIDs(missing)
            for (p, ids) in zip(missing, ids) where !ids.contains(model.tokenizer!.eosID) { truncated.insert(p) }
            for (p, e) in zip(missing, try model.textEmbeddings(ids: ids)) { textEmbeddings[p] = e }
        }
        return zip(indices, try model.imageEmbeddings(images)).map { CLIPScore.pairScore($1, textEmbeddings[prompts.prompt($0)]!) }
    }
}

/// The score's arithmetic, as torchmetrics computes it.
public enum CLIPScore {
    /// 100 × cos(a, b) (torchmetrics normalises each embedding by its L2 norm, then sums the product).
    public static func pairScore(_ a: [Float], _ b: [Float]) -> Double {
        let na = a.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot(), nb = b.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
        return 100 * zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } / (na * nb)
    }

    /// torchmetrics' CLIPScore: max(mean of the pairs' scores, 0).
    public static func metric(_ pairScores: [Double]) -> Double {
        max(pairScores.reduce(0, +) / Double(max(1, pairScores.count)), 0)
    }
}
