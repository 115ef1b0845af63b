// The default model, embedded in the binary: written out once to a cache folder (keyed by its
// contents) and used from there like any diffusers folder.
import CDefaultModel
import Foundation
import GPUKernels

public enum DefaultModel {
    /// A short description for help texts.
    public static let summary = "the embedded Fashion-MNIST UNet (28×28, 1 channel; models/fashion-mnist)"
    /// The model's name in latency tables and search results files (a folder's is its path).
    public static let searchName = "default (embedded fashion-mnist)"

    /// The folder holding the embedded model, written on first use.
    public static func folder() throws -> String {
        try extract(flex_default_model_files, prefix: "default-model", what: "the default model")
    }

    /// The shipped text-to-image model (a StableDiffusionPipeline folder we trained on captioned
    /// Fashion-MNIST: models/fashion-text-to-image): what commands given prompts and no --model run.
    public static let textToImageSummary = "the embedded Fashion-MNIST text-to-image pipeline (32×32 grey; models/fashion-text-to-image) when prompts are given"
    public static let textToImageSearchName = "default (embedded fashion-text-to-image)"

    /// The folder holding the embedded text-to-image pipeline, written on first use.
    public static func textToImageFolder() throws -> String {
        try extract(flex_text_to_image_files, prefix: "text-to-image", what: "the text-to-image model")
    }

    /// The folder holding the embedded CLIP of the text-to-image model (its text tower is the
    /// pipeline's text encoder): the CLIP score's judge for that model.
    public static func clipFolder() throws -> String {
        try extract(flex_fashion_clip_files, prefix: "fashion-clip", what: "the CLIP model")
    }

    /// The folder holding the embedded Fashion-MNIST feature network (FID features for the default model).
    public static func featureNetFolder() throws -> String {
        try extract(flex_feature_net_files, prefix: "feature-net-fashion", what: "the feature network")
    }

    static func extract(_ table: (UnsafeMutablePointer<Int32>?) -> UnsafePointer<FlexModelFile>?, prefix: String, what: String) throws -> String {
        var count: Int32 = 0
        guard let table = table(&count) else { throw ModelError("no embedded \(what)") }
        let files = (0..<Int(count)).map { table[$0] }
        var hash = FNV1a()
        for f in files {
            hash.add(UnsafeBufferPointer(start: f.bytes, count: Int(f.length)))
            hash.add(withUnsafeBytes(of: UInt64(f.length).littleEndian) { Array($0) })
        }
        let dir = flexiffusionCacheDirectory().appendingPathComponent("\(prefix)-\(hash.hex)")
        for f in files {
            let url = dir.appendingPathComponent(String(cString: f.path))
            // (The whole file compared with the embedded bytes: a same-size corruption is rewritten too.)
            if let data = try? Data(contentsOf: url, options: .alwaysMapped), data.count == Int(f.length),
               f.length == 0 || data.withUnsafeBytes({ memcmp($0.baseAddress!, f.bytes, Int(f.length)) == 0 }) { continue }
            do {
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            } catch {
                throw ModelError("cannot create \(url.deletingLastPathComponent().path) for \(what): \(describeFileError(error)) (the cache folder is $XDG_CACHE_HOME/flexiffusion, else $HOME/.cache/flexiffusion: point either at a writable folder)")
            }
            try writeAtomically(Data(bytes: f.bytes, count: Int(f.length)), to: url.path)
        }
        return dir.path
    }
}
