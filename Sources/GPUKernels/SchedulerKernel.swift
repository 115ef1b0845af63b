// Launcher for kernels/scheduler.cl: the element-wise update of one sampler step.

/// The scalars of one sampler step (computed on the host by the scheduler).
public struct SchedulerStepCoefficients: Equatable, Sendable {
    public enum Prediction: Int32, Sendable { case epsilon = 0, sample = 1, vPrediction = 2 }
    public var prediction: Prediction
    public var sqrtAlphaProduct: Float, sqrtBetaProduct: Float
    public var clipRange: Float?
    public var originalSample: Float, epsilon: Float, sample: Float
    /// The standard deviation of the added noise (0: none).
    public var noise: Float

    public init(prediction: Prediction, sqrtAlphaProduct: Float, sqrtBetaProduct: Float, clipRange: Float?,
                originalSample: Float, epsilon: Float, sample: Float, noise: Float) {
        self.prediction = prediction; self.sqrtAlphaProduct = sqrtAlphaProduct; self.sqrtBetaProduct = sqrtBetaProduct
        self.clipRange = clipRange; self.originalSample = originalSample; self.epsilon = epsilon
        self.sample = sample; self.noise = noise
    }
}

extension ComputeStream {
    /// y = c_x0·clip(x0) + c_eps·eps + c_x·x + σ·noise, with x0 and eps from the sample x and the model
    /// output m as the prediction type defines them; y may be x. `noise` is read only when σ ≠ 0.
    public func schedulerStep(sample x: DeviceBuffer<Float>, modelOutput m: DeviceBuffer<Float>,
                              noise: DeviceBuffer<Float>?, output y: DeviceBuffer<Float>, count n: Int,
                              _ c: SchedulerStepCoefficients) throws {
        precondition(x.count >= n && m.count >= n && y.count >= n, "scheduler step buffers too small")
        precondition(c.noise == 0 || (noise?.count ?? 0) >= n, "scheduler step needs \(n) noise values")
        try launch(.schedulerStep, global: [n], [
            .buffer(x.mem), .buffer(m.mem), .buffer((noise ?? x).mem), .buffer(y.mem), .int(n),
            .int32(c.prediction.rawValue), .float(c.sqrtAlphaProduct), .float(c.sqrtBetaProduct),
            .int(c.clipRange == nil ? 0 : 1), .float(c.clipRange ?? 0),
            .float(c.originalSample), .float(c.epsilon), .float(c.sample), .float(c.noise),
        ])
    }
}

extension ComputeStream {
    /// y = c_x·x + Σₖ cₖ·hₖ over a multistep solver's history `h` (newest first, 1…4 buffers; a
    /// buffer is read only when its coefficient is nonzero); y may be x.
    public func multistepCombine(sample x: DeviceBuffer<Float>, history h: [DeviceBuffer<Float>], coefficients c: [Float],
                                 sampleCoefficient cx: Float, output y: DeviceBuffer<Float>, count n: Int) throws {
        precondition((1...4).contains(h.count) && c.count == h.count, "multistep combine takes 1…4 history buffers and as many coefficients")
        precondition(x.count >= n && y.count >= n && h.allSatisfy { $0.count >= n }, "multistep combine buffers too small")
        let buffers = (0..<4).map { h[min($0, h.count - 1)] }, coefficients = (0..<4).map { $0 < c.count ? c[$0] : 0 }
        try launch(.multistepCombine, global: [n], [
            .buffer(x.mem), .buffer(buffers[0].mem), .buffer(buffers[1].mem), .buffer(buffers[2].mem), .buffer(buffers[3].mem),
            .buffer(y.mem), .int(n), .float(cx), .float(coefficients[0]), .float(coefficients[1]), .float(coefficients[2]), .float(coefficients[3]),
        ])
    }

    /// Classifier-free guidance in place on y [2, n] (unconditional half first): both halves become
    /// u + g·(c − u).
    public func guidanceCombine(_ y: DeviceBuffer<Float>, half n: Int, scale g: Float) throws {
        precondition(y.count >= 2 * n, "guidance buffer too small")
        try launch(.guidanceCombine, global: [n], [.buffer(y.mem), .int(n), .float(g)])
    }
}
