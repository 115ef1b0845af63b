// Where generated samples go: a PNG grid, one PNG per image, and/or a tensor file (safetensors
// `sample` [N, C, H, W] in model space). Every file is written to a temporary name and renamed.
import Foundation

public struct SampleOutputs: Sendable {
    /// One PNG grid of all images.
    public var grid: String?
    /// A folder for one PNG per image (00000.png, …).
    public var folder: String?
    /// A safetensors file with tensor `sample`.
    public var tensor: String?

    public init(grid: String? = nil, folder: String? = nil, tensor: String? = nil) {
        self.grid = grid; self.folder = folder; self.tensor = tensor
    }

    public var isEmpty: Bool { grid == nil && folder == nil && tensor == nil }

    /// Checks up front that the outputs can be written for images of `channels` channels (PNGs need
    /// 1 or 3) and creates the PNG folder.
    public func prepare(channels: Int) throws {
        if (grid != nil || folder != nil) && channels != 1 && channels != 3 {
            throw ModelError("PNG output needs 1 or 3 channels; the model has \(channels) (write a tensor file instead)")
        }
        if let grid, let tensor, URL(fileURLWithPath: grid).standardizedFileURL == URL(fileURLWithPath: tensor).standardizedFileURL {
            throw ModelError(argument: "--out and --output-tensor are the same file (\(grid)): one would replace the other")
        }
        for path in [grid, tensor].compactMap({ $0 }) {
            let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
            guard FileManager.default.isWritableFile(atPath: dir) else {
                throw ModelError("cannot write \(path): folder \(dir) does not exist or is not writable")
            }
        }
        if let folder { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
    }

    /// Writes `samples` of `shape` [N, C, H, W] to every output.
    public func write(_ samples: [Float], shape: [Int]) throws {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        if let tensor { try SafeTensorsWriter.write([("sample", shape, samples)], to: tensor) }
        if let grid {
            let g = PNG.grid(samples, count: n, channels: c, height: h, width: w)
            try writeAtomically(PNG.encode(width: g.width, height: g.height, channels: c, pixels: g.pixels), to: grid)
        }
        if let folder {
            for i in 0..<n {
                let px = (0..<(h * w)).flatMap { p in (0..<c).map { ch in PNG.pixels(samples[(i * c + ch) * h * w + p]) } }
                try writeAtomically(PNG.encode(width: w, height: h, channels: c, pixels: px),
                                    to: URL(fileURLWithPath: folder).appendingPathComponent(String(format: "%05d.png", i)).path)
            }
        }
    }

    /// "a.png, dir/ (N PNGs), x.safetensors".
    public func summary(count: Int) -> String {
        [grid, folder.map { "\($0)/ (\(count) PNGs)" }, tensor].compactMap { $0 }.joined(separator: ", ")
    }
}
