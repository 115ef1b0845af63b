// Device discovery and selection, kernel sources, program build errors, buffers and profiling.
import Foundation
@testable import GPUKernels
import Testing
import TestSupport

@Suite struct RuntimeTests {
    @Test func discoveryFindsADeviceAndTheDefaultFollowsTheRule() throws {
        let all = try OpenCLRuntime.devices()
        #expect(!all.isEmpty, "no OpenCL device: CI installs pocl-opencl-icd, so PoCL must be found")
        #expect(all.map(\.index) == Array(all.indices))
        let d = try OpenCLRuntime.defaultDevice()
        if let gpu = all.first(where: { $0.kind == .gpu }) {
            #expect(d.index == gpu.index)
        } else if let cpu = all.first(where: { $0.kind == .cpu }) {
            #expect(d.index == cpu.index)
        }
        for dev in all {
            #expect(dev.computeUnits > 0 && dev.globalMemoryBytes > 0 && dev.maxWorkGroupSize > 0, "\(dev)")
            #expect(!dev.name.isEmpty && !dev.platformName.isEmpty)
        }
    }

    @Test func selectionByIndexTypeNameAndEnvironment() throws {
        let all = try OpenCLRuntime.devices()
        let last = all[all.count - 1]
        #expect(try OpenCLRuntime.select("\(last.index)").index == last.index)
        let kind = last.kind.rawValue
        #expect(try OpenCLRuntime.select(kind).kind == last.kind)
        #expect(try OpenCLRuntime.select(kind.uppercased()).kind == last.kind)
        let word = String(last.name.split(separator: " ").first!.lowercased())
        #expect(try OpenCLRuntime.select(word).name.lowercased().contains(word))
        // The variable applies when no --device is given, and --device wins over it.
        let env = [EngineEnvironment.device.name: "\(last.index)"]
        #expect(try OpenCLRuntime.select(nil, environment: env).index == last.index)
        #expect(try OpenCLRuntime.select("0", environment: env).index == 0)
        #expect(try OpenCLRuntime.select(nil, environment: [:]).index == OpenCLRuntime.defaultDevice().index)
        // PoCL names itself in its version only; an empty --device is refused, an empty variable is unset.
        if let pocl = all.first(where: { [$0.name, $0.platformName, $0.vendor, $0.version].contains { $0.lowercased().contains("pocl") } }) {
            #expect(try OpenCLRuntime.select("pocl").index == pocl.index)
        }
        #expect(throws: OpenCLError.self) { try OpenCLRuntime.select("") }
        #expect(try OpenCLRuntime.select(nil, environment: [EngineEnvironment.device.name: ""]).index == OpenCLRuntime.defaultDevice().index)
    }

    @Test(arguments: ["99", "-1", "no-such-device-xyz", "accelerator-that-is-not"])
    func badSelectionNamesTheProblem(_ spec: String) throws {
        let all = try OpenCLRuntime.devices()
        if spec == "99" && all.count > 99 { return }
        do {
            _ = try OpenCLRuntime.select(spec)
            Issue.record("--device \(spec) was accepted")
        } catch let e as OpenCLError {
            #expect(e.description.contains(spec), "\(e)")
            #expect(e.description.contains("devices:"), "the error lists the devices: \(e)")
        }
        do {
            _ = try OpenCLRuntime.select(nil, environment: [EngineEnvironment.device.name: spec])
            Issue.record("$FLEXIFFUSION_DEVICE=\(spec) was accepted")
        } catch let e as OpenCLError {
            #expect(e.description.contains("FLEXIFFUSION_DEVICE"), "\(e)")
        }
    }

    /// The embedded sources are exactly kernels/*.cl (the #embed list cannot go stale unnoticed).
    @Test func embeddedSourcesMatchTheKernelsFolder() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../kernels").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".cl") }
        #expect(Set(files.map { String($0.dropLast(3)) }) == Set(KernelLibrary.embedded.keys))
        for f in files {
            let disk = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
            #expect(KernelLibrary.embedded[String(f.dropLast(3))] == disk, "\(f) differs from its embedded copy")
        }
    }

    /// The named kernel handles are exactly each family's `__kernel`s, and every one is created on
    /// the test device (a family's kernels are created together at its first launch).
    @Test func kernelHandlesAreTheSourcesKernels() throws {
        #expect(Set(KernelFamily.allCases.map(\.fileName)) == Set(KernelLibrary.embedded.keys))
        let declaration = try Regex("__kernel\\s+void\\s+([A-Za-z_][A-Za-z0-9_]*)")
        for family in KernelFamily.allCases {
            let source = try #require(KernelLibrary.embedded[family.fileName])
            let declared = source.matches(of: declaration).map { m in
                String(source[m.range].split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).last!)
            }
            #expect(Set(declared) == Set(family.kernels.map(\.name)), "\(family.fileName).cl declares \(declared)")
        }
        let s = try ComputeStream(device: testDevice())
        for k in Kernel.allCases { _ = try s.kernel(k) }
    }

    @Test func kernelDirectoryVariableLoadsFromDisk() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flexiffusion-kernels-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let edited = "// edited\n__kernel void k(__global float* x) { x[0] = 1.0f; }\n"
        try edited.write(to: dir.appendingPathComponent("elementwise.cl"), atomically: true, encoding: .utf8)
        let env = [EngineEnvironment.kernelsDirectory.name: dir.path]
        #expect(try KernelLibrary.source(of: "elementwise", environment: env) == edited)
        #expect(throws: OpenCLError.self) { try KernelLibrary.source(of: "conv2d", environment: env) }
        #expect(throws: OpenCLError.self) { try KernelLibrary.source(of: "no_such_family", environment: [:]) }
    }

    @Test func aFailedBuildCarriesTheCompilerLog() throws {
        let ctx = try DeviceContext.shared(for: testDevice())
        do {
            _ = try CLProgram(context: ctx.context, name: "broken",
                              source: "__kernel void k(__global float* x) { x[0] = undefined_name; }")
            Issue.record("a broken program built")
        } catch let e as OpenCLError {
            #expect(e.statusName == "CL_BUILD_PROGRAM_FAILURE", "\(e)")
            #expect(e.buildLog?.contains("undefined_name") == true, "log: \(e.buildLog ?? "nil")")
            #expect(e.description.contains("clBuildProgram(broken.cl)"))
        }
    }

    @Test func buffersRoundTripWithOffsets() throws {
        let s = try ComputeStream(device: testDevice())
        let seed = freshSeed()
        var rng = SeededGenerator(seed: seed)
        let values = randomArray(1000, &rng)
        let b = try s.upload(values)
        #expect(try s.download(b) == values)
        try b.write(Array(values[0..<10]), offset: 500, queue: s.queue)
        #expect(try b.read(count: 10, offset: 500, queue: s.queue) == Array(values[0..<10]))
        let c = try s.buffer(1000)
        try c.copy(from: b, count: 1000, queue: s.queue)
        #expect(try s.download(c) == (try s.download(b)))
    }

    @Test func profilingRecordsEveryLaunch() throws {
        let s = try ComputeStream(device: testDevice(), profiling: true)
        var rng = SeededGenerator(seed: freshSeed())
        let x = try s.upload(randomArray(4096, &rng))
        try s.silu(x, output: x, count: 4096)
        try s.scale(x, output: x, count: 4096, by: 2)
        let t = try s.takeTimings()
        #expect(t.map(\.name) == ["silu", "scale_shift"])
        #expect(try s.takeTimings().isEmpty)
    }

    @Test func unknownGemmOrConvolutionPathIsAClearError() throws {
        let d = try testDevice()
        #expect(throws: OpenCLError.self) { try GemmPath.default(for: d, environment: [EngineEnvironment.gemm.name: "fastest"]) }
        #expect(try GemmPath.default(for: d, environment: [EngineEnvironment.gemm.name: "clblast"]) == .clblast)
        if d.kind != .cpu { #expect(throws: OpenCLError.self) { try GemmEngine(path: .hostBLAS, device: d) } }
        #expect(throws: OpenCLError.self) { try ConvolutionPath.default(for: d, environment: [EngineEnvironment.convolution.name: "winograd"]) }
        #expect(try ConvolutionPath.default(for: d, environment: [EngineEnvironment.convolution.name: "im2col-gemm"]) == .im2colGemm)
        if d.kind != .cpu { #expect(throws: OpenCLError.self) { try ConvolutionPath.oneDNN.check(for: d) } }
    }
}
