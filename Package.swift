// swift-tools-version:6.0
// Flexiffusion: training-free acceleration of diffusion samplers on OpenCL devices.
import PackageDescription

let package = Package(
    name: "Flexiffusion",
    products: [
        .executable(name: "flexiffusion", targets: ["flexiffusion"]),
        .library(name: "GPUKernels", targets: ["GPUKernels"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "Search", targets: ["Search"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System modules: OpenCL + CLBlast, and host BLAS (OpenBLAS) for the CPU-device GEMM path.
        .systemLibrary(name: "COpenCL", path: "Sources/COpenCL"),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        // zlib, for NumPy .npz archives (pytorch-fid statistics).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // The OpenCL C sources under kernels/, embedded into the binary with C23 #embed.
        .target(name: "CKernelSources", path: "Sources/CKernelSources",
                cSettings: [.unsafeFlags(["-std=c23"])]),
        // oneDNN convolutions on the host, for CPU devices (libdnnl opened at run time).
        .target(name: "CHostDNN", path: "Sources/CHostDNN", linkerSettings: [.linkedLibrary("dl")]),
        // Host math on mapped buffers (the row softmax), optimised in every configuration.
        .target(name: "CHostMath", path: "Sources/CHostMath",
                cSettings: [.unsafeFlags(["-O3", "-ffp-contract=fast", "-fno-math-errno", "-Wno-psabi"])]),
        .target(name: "GPUKernels", dependencies: ["COpenCL", "CBLAS", "CKernelSources", "CHostDNN", "CHostMath"]),
        // The default model (models/fashion-mnist), embedded with #embed.
        .target(name: "CDefaultModel", path: "Sources/CDefaultModel", cSettings: [.unsafeFlags(["-std=c23"])]),
        .target(name: "Engine", dependencies: ["GPUKernels", "CDefaultModel", "CZlib"]),
        .target(name: "Search", dependencies: ["Engine", "GPUKernels"]),
        // The command line: Commands/ map options onto the library and print, Support/ holds what they share.
        .target(name: "FlexiffusionCLI", dependencies: [
            "GPUKernels", "Engine", "Search",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "flexiffusion", dependencies: ["FlexiffusionCLI"]),
        .target(name: "TestSupport", dependencies: ["Engine", "GPUKernels"], path: "Tests/TestSupport"),
        .testTarget(name: "GPUKernelsTests", dependencies: ["GPUKernels", "TestSupport"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "GPUKernels", "TestSupport"], exclude: ["Goldens"]),
        .testTarget(name: "SearchTests", dependencies: ["Search", "Engine", "GPUKernels", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["FlexiffusionCLI", "Engine", "GPUKernels", "Search", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
