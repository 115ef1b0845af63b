// Launchers for kernels/pooling.cl: max and average 2-D pooling, and spatial mean (adaptive
// average pooling to 1×1).

/// A pooling window over NCHW: k×k, stride, symmetric padding (floor mode, as PyTorch).
public struct Pool2dShape: Equatable, Sendable {
    public var batch: Int, channels: Int, height: Int, width: Int
    public var kernelSize: Int, stride: Int, padding: Int
    public init(batch: Int, channels: Int, height: Int, width: Int, kernelSize: Int, stride: Int, padding: Int = 0) {
        self.batch = batch; self.channels = channels; self.height = height; self.width = width
        self.kernelSize = kernelSize; self.stride = stride; self.padding = padding
    }
    public var outHeight: Int { (height + 2 * padding - kernelSize) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - kernelSize) / stride + 1 }
    public var inputCount: Int { batch * channels * height * width }
    public var outputCount: Int { batch * channels * outHeight * outWidth }
}

extension ComputeStream {
    public enum PoolMode: Int32, Sendable { case max = 0, average = 1 }

    /// y = pool(x) over `shape`; average pooling divides by k² when `countIncludePad`, else by the
    /// in-bounds count (PyTorch's count_include_pad).
    public func pool2d(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, shape s: Pool2dShape,
                       mode: PoolMode, countIncludePad: Bool = true) throws {
        precondition(s.kernelSize > 0 && s.stride > 0 && s.padding >= 0 && 2 * s.padding <= s.kernelSize, "bad pooling window")
        precondition(s.outHeight > 0 && s.outWidth > 0, "pooling window larger than the input")
        precondition(x.count >= s.inputCount && y.count >= s.outputCount, "pool2d buffers too small")
        try launch(.pool2d, global: [s.outWidth, s.outHeight, s.batch * s.channels], [
            .buffer(x.mem), .buffer(y.mem), .int(s.height), .int(s.width), .int(s.outHeight), .int(s.outWidth),
            .int(s.kernelSize), .int(s.stride), .int(s.padding), .int(Int(mode.rawValue)), .int(countIncludePad ? 1 : 0),
        ])
    }

    /// y[nc] = mean over the `spatial` values of x[nc].
    public func meanPoolSpatial(_ x: DeviceBuffer<Float>, output y: DeviceBuffer<Float>, planes: Int, spatial: Int) throws {
        precondition(x.count >= planes * spatial && y.count >= planes, "mean pool buffers too small")
        try launch(.meanPoolSpatial, global: [planes], [.buffer(x.mem), .buffer(y.mem), .int(planes), .int(spatial)])
    }
}
