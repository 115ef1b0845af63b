// The environment: one list of the variables the engine reads, the README's table is that list, no
// other source file reads the environment, and the typed readers refuse what they cannot take.
import Foundation
import GPUKernels
import Testing
import TestSupport

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL

/// Every source file of the package (Swift and C) with its path relative to the repository.
func sourceFiles() throws -> [(path: String, text: String)] {
    let sources = repositoryRoot.appendingPathComponent("Sources")
    let walker = try #require(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil))
    var files: [(String, String)] = []
    for case let url as URL in walker where ["swift", "c", "h"].contains(url.pathExtension) {
        files.append((String(url.standardizedFileURL.path.dropFirst(repositoryRoot.path.count + 1)), try String(contentsOf: url, encoding: .utf8)))
    }
    return files.sorted { $0.0 < $1.0 }
}

@Suite struct EnvironmentTests {
    @Test func theReadmeListsEveryVariable() throws {
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.components(separatedBy: "## Environment variables").dropFirst().first?
            .components(separatedBy: "\n## ").first, "README.md has no \"## Environment variables\" section")
        for v in EngineEnvironment.all {
            #expect(section.contains("`\(v.name)`"), "the README's environment table lacks \(v.name)")
        }
        // …and names none the engine does not read.
        let named = Set(section.matches(of: try Regex("`(FLEXIFFUSION_[A-Z_]+)`")).map { String(section[$0.range].dropFirst().dropLast()) })
        #expect(named.subtracting(EngineEnvironment.all.map(\.name)).isEmpty, "README names \(named) beyond the list")
        #expect(Set(EngineEnvironment.all.map(\.name)).count == EngineEnvironment.all.count)
    }

    /// OpenBLAS opens with its idle threads' spin cut to its least (4) unless the user chose one: its
    /// default spin took ~10 % of the cifar UNet's pass from oneDNN's convolutions.
    @Test func openBLASThreadsDoNotSpin() throws {
        let chosen = EngineEnvironment.openBLASThreadTimeout.value()
        guard HostBLAS.isAvailable else { Issue.record("no host BLAS: CI installs libopenblas0"); return }
        let now = ProcessInfo.processInfo.environment[EngineEnvironment.openBLASThreadTimeout.name]
        #expect(now == (chosen ?? "4"), "OPENBLAS_THREAD_TIMEOUT is \(now ?? "unset") after OpenBLAS opened")
    }

    @Test func onlyTheListReadsTheEnvironment() throws {
        let files = try sourceFiles()
        #expect(files.count > 50)
        for (path, text) in files where path != "Sources/GPUKernels/Environment.swift" {
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = line.components(separatedBy: "//").first ?? ""
                let reads = code.contains("getenv(") || code.contains("environment[") || code.contains("processInfo.environment[")
                    || code.contains("\"FLEXIFFUSION_")
                #expect(!reads, "\(path):\(n + 1) reads the environment itself: \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
    }

    @Test func typedReadersRefuseWhatTheyCannotTake() throws {
        let env = [EngineEnvironment.gemm.name: "fastest", EngineEnvironment.cacheHome.name: "relative/cache", EngineEnvironment.device.name: ""]
        expectError(containing: ["$FLEXIFFUSION_GEMM=fastest", "clblast, clblast-tuned, host-blas"]) {
            _ = try EngineEnvironment.gemm.choice(GemmPath.self, in: env)
        }
        #expect(EngineEnvironment.device.value(in: env) == nil, "an empty value is unset")
        #expect(EngineEnvironment.cacheHome.absolutePath(in: env) == nil, "a relative XDG_CACHE_HOME is ignored")
        #expect(EngineEnvironment.cacheDirectory(environment: ["XDG_CACHE_HOME": "/x/cache", "HOME": "/h"]).path == "/x/cache/flexiffusion")
        #expect(EngineEnvironment.cacheDirectory(environment: ["XDG_CACHE_HOME": "rel", "HOME": "/h"]).path == "/h/.cache/flexiffusion")
        #expect(try EngineEnvironment.convolution.choice(ConvolutionPath.self, in: [EngineEnvironment.convolution.name: "onednn"]) == .oneDNN)
    }
}

