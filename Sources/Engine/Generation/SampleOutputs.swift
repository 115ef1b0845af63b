// Where generated samples go: a PNG grid, one PNG per image, and/or a tensor file (safetensors
// `sample` [N, C, H, W] in model space). Every file is written to a temporary name and renamed.
import Foundation
import GPUKernels

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

    /// Checks up front, before any work, that the outputs can be written: PNGs need 1 or 3 channels
    /// and a grid a .png name; no output is one of the command's `inputs`, another output (`also`:
    /// the command's other files) or a file in an input folder; each file's folder exists; the PNG
    /// folder holds no PNGs from before (a later `fid` of the folder would score them too).
    public func prepare(channels: Int, inputs: [NamedPath] = [], also: [NamedPath] = []) throws {
        try check(channels: channels)
        try checkPaths(inputs: inputs, also: also)
    }

    /// PNGs need 1 or 3 channels.
    public func check(channels: Int) throws {
        if (grid != nil || folder != nil) && channels != 1 && channels != 3 {
            throw ModelError("PNG output needs 1 or 3 channels; the model has \(channels) (write a tensor file instead)")
        }
    }

    /// The paths' part of `prepare`, for a command to ask before it loads anything.
    public func checkPaths(inputs: [NamedPath] = [], also: [NamedPath] = []) throws {
        if let grid, grid != "-", !grid.lowercased().hasSuffix(".png") {
            throw ModelError(argument: "--out \(grid): the grid is written as PNG; give it a .png name")
        }
        let files = [grid.map { NamedPath("--out", $0) }, tensor.map { NamedPath("--output-tensor", $0) }].compactMap { $0 } + also
        try OutputCheck.check(outputs: files, folders: folder.map { [NamedPath("--out-dir", $0)] } ?? [], inputs: inputs)
        if let folder, let names = try? FileManager.default.contentsOfDirectory(atPath: folder) {
            let old = names.filter { $0.lowercased().hasSuffix(".png") }
            if !old.isEmpty {
                throw ModelError(argument: "--out-dir \(folder) holds \(old.count) PNG file\(old.count == 1 ? "" : "s") from before: give an empty or new folder (the images of two runs would mix, and `fid` of the folder would score them all)")
            }
        }
    }

    /// Writes `samples` of `shape` [N, C, H, W] to every output.
    public func write(_ samples: [Float], shape: [Int]) throws {
        let writer = try SampleWriter(self, shape: shape)
        try writer.append(samples[...], images: 0..<shape[0])
        try writer.finish()
    }

    /// Host memory the outputs hold until the end: the grid's 8-bit pixels (the PNG folder and the
    /// tensor file are written batch by batch).
    public func heldBytes(shape: [Int]) -> Double {
        grid == nil ? 0 : PNG.Grid.bytes(count: shape[0], channels: shape[1], height: shape[2], width: shape[3])
    }

    /// "a.png, dir/ (N PNGs), x.safetensors".
    public func summary(count: Int) -> String {
        [grid, folder.map { "\($0)/ (\(count) PNGs)" }, tensor].compactMap { $0 }.joined(separator: ", ")
    }
}

/// The outputs written batch by batch, so that a run holds one batch of samples (and a grid's 8-bit
/// pixels) whatever its count: each folder PNG as its image comes, the tensor file's values in order
/// (renamed into place by `finish()`), the grid filled and written at the end. Images come in order.
/// Dropped before `finish()` (a failed or interrupted run), it removes the PNGs it wrote, the PNG
/// folder if it made it, and the tensor's temporary file: a run writes all its outputs or none.
public final class SampleWriter {
    public let outputs: SampleOutputs
    public let shape: [Int]
    private var grid: PNG.Grid?
    private let tensor: SafeTensorsStreamWriter?
    private var next = 0
    private var written: [String] = []
    private var finished = false
    /// The PNG folder, when this writer made it (removed again if the run does not finish).
    private var createdFolder: String?

    deinit {
        guard !finished else { return }
        for path in written { try? FileManager.default.removeItem(atPath: path) }
        if let createdFolder, (try? FileManager.default.contentsOfDirectory(atPath: createdFolder))?.isEmpty == true {
            try? FileManager.default.removeItem(atPath: createdFolder)
        }
    }

    public init(_ outputs: SampleOutputs, shape: [Int]) throws {
        precondition(shape.count == 4, "samples are [N, C, H, W]")
        self.outputs = outputs; self.shape = shape
        if let folder = outputs.folder, !FileManager.default.fileExists(atPath: folder) {
            do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
                throw ModelError("cannot create --out-dir \(folder): \(describeFileError(error))")
            }
            createdFolder = folder
        }
        grid = outputs.grid == nil ? nil : PNG.Grid(count: shape[0], channels: shape[1], height: shape[2], width: shape[3])
        tensor = try outputs.tensor.map { try SafeTensorsStreamWriter(path: $0, name: "sample", shape: shape) }
    }

    /// The samples of `images` (the next ones), [count, C, H, W] in model space.
    public func append(_ samples: ArraySlice<Float>, images: Range<Int>) throws {
        let (c, h, w) = (shape[1], shape[2], shape[3]), size = c * h * w
        precondition(images.lowerBound == next && images.upperBound <= shape[0] && samples.count == images.count * size,
                     "images \(images) after \(next) of \(shape[0]), \(samples.count) values")
        try tensor?.append(samples)
        for (k, i) in images.enumerated() {
            let image = samples[(samples.startIndex + k * size)..<(samples.startIndex + (k + 1) * size)]
            grid?.place(image, at: i)
            if let folder = outputs.folder {
                let base = image.startIndex
                let px = (0..<(h * w)).flatMap { p in (0..<c).map { ch in PNG.pixels(image[base + ch * h * w + p]) } }
                let path = URL(fileURLWithPath: folder).appendingPathComponent(String(format: "%05d.png", i)).path
                try writeAtomically(PNG.encode(width: w, height: h, channels: c, pixels: px), to: path)
                written.append(path)
            }
        }
        next = images.upperBound
    }

    /// Writes the grid and puts the tensor file in place, once every image came.
    public func finish() throws {
        precondition(next == shape[0], "\(next) of \(shape[0]) images written")
        try tensor?.finish()
        if let g = grid, let path = outputs.grid {
            try writeAtomically(PNG.encode(width: g.width, height: g.height, channels: shape[1], pixels: g.pixels), to: path)
        }
        finished = true
    }
}
