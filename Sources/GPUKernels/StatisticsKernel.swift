// Launchers for kernels/statistics.cl and the covariance GEMM: mean and unbiased covariance of a
// feature matrix on the device.

extension ComputeStream {
    /// mean [d] and covariance [d, d] (unbiased, divided by n − 1) of x [n, d] (row-major);
    /// `centred` is scratch of n·d floats (it may be x, which is then overwritten).
    public func featureStatistics(_ x: DeviceBuffer<Float>, rows n: Int, dims d: Int, mean: DeviceBuffer<Float>,
                                  covariance: DeviceBuffer<Float>, centred: DeviceBuffer<Float>) throws {
        precondition(n >= 2, "a covariance needs at least 2 rows")
        precondition(x.count >= n * d && centred.count >= n * d && mean.count >= d && covariance.count >= d * d,
                     "feature statistics buffers too small")
        try launch(.columnMean, global: [d], [.buffer(x.mem), .buffer(mean.mem), .int(n), .int(d)])
        try launch(.centerColumns, global: [d, n],
                   [.buffer(x.mem), .buffer(mean.mem), .buffer(centred.mem), .int(n), .int(d)])
        try gemm.sgemm(queue: queue, transA: true, m: d, n: d, k: n, alpha: 1 / Float(n - 1),
                       a: GemmOperand(centred, ld: d), b: GemmOperand(centred, ld: d), beta: 0,
                       c: GemmOperand(covariance, ld: d))
    }
}
