// swift-tools-version:6.0
// segger-train: data-parallel trainer for the segger heterogeneous GATv2 model (MPI + OpenBLAS).
import Foundation
import PackageDescription

// Hot loops (edge kernels, fp16 conversion) vectorize only when compiled for the machine's vector
// units. The default build stays portable; Scripts/ set SEGGER_TARGET_CPU=native (or a CPU name such
// as znver4 / skylake-avx512) for the builds they make.
let targetCPU = ProcessInfo.processInfo.environment["SEGGER_TARGET_CPU"] ?? ""
// "-Xcc -march=native" also retargets Swift's own code generation (measured: Float16 conversion loops
// become vcvtps2ph); "-target-cpu" takes an LLVM CPU name.
let tunedSwift: [SwiftSetting] = targetCPU.isEmpty ? [] : [
    .unsafeFlags(targetCPU == "native" ? ["-Xcc", "-march=native"] : ["-target-cpu", targetCPU]),
]

let package = Package(
    name: "segger-train",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "segger-train", targets: ["segger-train"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries from Debian: libopenmpi-dev and libopenblas-dev.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // Zstandard for Parquet pages: libzstd-dev.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // fp32 <-> fp16/bf16 conversion with a runtime F16C dispatch (portable binary, fast path).
        .target(name: "CFloat16"),
        .target(name: "CStreaming"),
        .target(name: "CVectorMath"),
        .target(name: "CMaskBits"),

        // The one pseudo-random generator (SplitMix64) and the streams the program draws; depends on nothing.
        .target(name: "SeggerRandom", swiftSettings: tunedSwift),
        .target(name: "SafeTensors", swiftSettings: tunedSwift),
        // A small Parquet writer (flat columns, PLAIN, zstd) for predict's outputs; depends on nothing else here.
        .target(name: "Parquet", dependencies: ["CZstd"], swiftSettings: tunedSwift),
        .target(name: "SeggerTiles", dependencies: ["SafeTensors", "SeggerRandom"], swiftSettings: tunedSwift),
        .target(name: "SeggerKernels", dependencies: ["COpenBLAS", "CStreaming", "CMaskBits", "CVectorMath"], swiftSettings: tunedSwift),
        .target(name: "SeggerModel", dependencies: ["SeggerKernels", "SeggerTiles", "SafeTensors", "CVectorMath", "SeggerRandom"],
                swiftSettings: tunedSwift),
        .target(name: "SeggerDistributed", dependencies: ["CMPI", "CFloat16", "SeggerRandom"],
                swiftSettings: tunedSwift),
        .target(name: "SeggerTrain",
                dependencies: ["SeggerModel", "SeggerKernels", "SeggerTiles", "SeggerDistributed", "SafeTensors", "COpenBLAS", "SeggerRandom"],
                swiftSettings: tunedSwift),
        // Segmentation (`predict`): the trained model over tiles, candidates, cross-tile merge and components,
        // distributed over MPI ranks. Uses Model, Tiles and Distributed, never Train.
        .target(name: "SeggerSegment",
                dependencies: ["SeggerModel", "SeggerTiles", "SeggerDistributed", "SafeTensors", "Parquet"],
                swiftSettings: tunedSwift),
        .executableTarget(name: "segger-train",
                          dependencies: ["SeggerTrain", "SeggerSegment", "SeggerModel", "SeggerTiles", "SeggerDistributed", "SafeTensors",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: tunedSwift),
        // Multi-rank checks of SeggerDistributed, run under mpirun by SeggerDistributedTests.
        .executableTarget(name: "mpi-selftest", dependencies: ["SeggerDistributed", "SeggerRandom"], swiftSettings: tunedSwift),

        // What the tests share (locators of the package, fixtures, ../shared, the binary and mpirun;
        // temporary directories; a process runner); only test targets depend on it.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // One test target per module, named after it; CommandLineTests runs the real segger-train binary.
        .testTarget(name: "SeggerRandomTests", dependencies: ["SeggerRandom"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "TestSupport"]),
        .testTarget(name: "ParquetTests", dependencies: ["Parquet", "TestSupport"]),
        .testTarget(name: "SeggerTilesTests", dependencies: ["SeggerTiles", "SafeTensors", "SeggerRandom", "TestSupport"]),
        .testTarget(name: "SeggerModelTests", dependencies: ["SeggerModel", "SeggerKernels", "SeggerTiles", "SafeTensors", "CVectorMath", "SeggerRandom", "TestSupport"]),
        .testTarget(name: "SeggerDistributedTests", dependencies: ["SeggerDistributed", "SeggerRandom", "TestSupport"]),
        .testTarget(name: "SeggerTrainTests", dependencies: ["SeggerTrain", "TestSupport"]),
        .testTarget(name: "SeggerSegmentTests", dependencies: ["SeggerSegment", "SeggerModel", "SeggerTiles", "SeggerDistributed", "SafeTensors", "TestSupport"]),
        .testTarget(name: "CommandLineTests", dependencies: ["SafeTensors", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
