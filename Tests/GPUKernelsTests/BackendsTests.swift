// The backends table: where each operation runs for each GEMM and convolution path, the layouts it
// takes, the streams' launchers following it (seen in their profiles), and no other file deciding.
import Foundation
@testable import GPUKernels
import Testing
import TestSupport

@Suite struct BackendsTests {
    @Test func theTableFollowsThePaths() throws {
        let d = try testDevice()
        let host = Backends(device: d, gemm: .hostBLAS, convolution: .oneDNN, oneDNNLayout: .carried)
        let device = Backends(device: d, gemm: .clblast, convolution: .im2colGemm, oneDNNLayout: .carried)
        for op in Operation.betweenConvolutions + [.softmax] {
            #expect(host.placement(op) == .host && device.placement(op) == .device, "\(op)")
        }
        #expect(host.placement(.pointwise) == .device && device.placement(.pointwise) == .device)
        #expect(host.placement(.convolution) == .host && device.placement(.convolution) == .device)
        // Blocked layouts: whole blocks, on the host only.
        #expect(host.supports(.groupNorm, layout: .blocked(8), channels: 16))
        #expect(!host.supports(.groupNorm, layout: .blocked(8), channels: 12))
        #expect(!device.supports(.groupNorm, layout: .blocked(8), channels: 16))
        #expect(device.supports(.groupNorm, layout: .nchw, channels: 12))
        // Scratch: none where oneDNN convolves.
        let shape = Conv2dShape(batch: 2, inChannels: 8, height: 9, width: 9, outChannels: 16, kernelSize: 3, padding: 1)
        #expect(host.convolutionScratch(shape) == 0 && device.convolutionScratch(shape) == shape.scratchCount && shape.scratchCount > 0)
        // A carried layout needs oneDNN blocked, the operations between convolutions on the host, and the carried mode.
        #expect(device.convolutionLayout == .nchw)
        #expect(Backends(device: d, gemm: .clblast, convolution: .oneDNN).convolutionLayout == .nchw)
        var b = host
        #expect(b.convolutionLayout == (ConvolutionPath.oneDNNAvailable ? ActivationLayout.oneDNNPreferred : .nchw))
        b.oneDNNLayout = .blocked
        #expect(b.blockedConvolutions && b.activationLayout(channels: [32, 64]) == .nchw)
        b.oneDNNLayout = .plain
        #expect(!b.blockedConvolutions && b.convolutionLayout == .nchw)
        #expect(host.activationLayout(channels: [32, 64]) == host.convolutionLayout)
        #expect(host.activationLayout(channels: [32, 60]) == (host.convolutionLayout.holds(channels: 60) ? host.convolutionLayout : .nchw))
        #expect(Set(host.rows.map(\.operation)) == Set(Operation.allCases))
    }

    /// A stream's launchers run where its table says: host work is profiled as "(host)", kernels by name.
    @Test(arguments: GemmPath.allCases)
    func launchersFollowTheTable(_ path: GemmPath) throws {
        let d = try testDevice()
        guard path.runs(on: d), path != .clblastTuned else { return }
        let s = try ComputeStream(device: d, gemm: path, convolution: .im2colGemm, profiling: true)
        var rng = SeededGenerator(seed: freshSeed())
        let (N, C, P) = (2, 8, 16)
        let x = try s.upload(randomArray(N * C * P, &rng)), y = try s.buffer(N * C * P)
        let gamma = try s.upload(randomArray(C, &rng)), beta = try s.upload(randomArray(C, &rng))
        try s.addScale(x, x, output: y, count: N * C * P)
        try s.groupNorm(x, output: y, gamma: gamma, beta: beta, batch: N, channels: C, spatial: P, groups: 4, eps: 1e-5)
        try s.softmaxRows(y, rows: N * C, cols: P)
        try s.silu(y, output: y, count: N * C * P)
        let names = try s.takeTimings().map(\.name)
        let expected: [String] = s.backends.placement(.groupNorm) == .host
            ? ["silu", "add_scale (host)", "group norm (host)", "softmax (host)"]
            : ["add_scale", "group_norm_stats", "group_norm_apply", "softmax_rows", "silu"]
        // (Kernels' events come first in a profile, then the host work.)
        #expect(names == expected, "\(path): \(names)")
    }

    /// Only the table (and the paths' own defaults, device selection and allocation) asks what kind of
    /// device or GEMM path a stream has.
    @Test func noLauncherDecidesItself() throws {
        let allowed: Set = ["Sources/GPUKernels/Backends.swift", "Sources/GPUKernels/Gemm.swift", "Sources/GPUKernels/HostConvolution.swift",
                            "Sources/GPUKernels/Runtime.swift", "Sources/GPUKernels/Handles.swift"]
        for (path, text) in try sourceFiles() where path.hasSuffix(".swift") && !allowed.contains(path) {
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = line.components(separatedBy: "//").first ?? ""
                let decides = code.contains("gemm.path") || code.contains(".kind == .") || code.contains(".kind != .") || code.contains("convolutionPath")
                #expect(!decides, "\(path):\(n + 1) decides a backend itself: \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
    }
}
