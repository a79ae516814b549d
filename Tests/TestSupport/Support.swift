// What every test target shares: where the package, its fixtures, `../shared`, the binary under test and
// mpirun are; fresh temporary directories; a process runner that cannot hang a test. Only test targets
// depend on this module.
import Foundation
import XCTest

/// Locations and process helpers for the tests.
public enum Support {
    /// The package root, from this file's path (`Tests/TestSupport/Support.swift`).
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// `Tests/Fixtures/<relative>`: the fixtures committed with the package.
    public static func fixture(_ relative: String) -> String {
        packageRoot.appendingPathComponent("Tests/Fixtures").appendingPathComponent(relative).path
    }

    // MARK: - ../shared (optional cross-checks)

    /// `../shared` beside the package, or nil (as on a user's machine, where tests using it skip).
    public static var shared: String? {
        let p = packageRoot.deletingLastPathComponent().appendingPathComponent("shared").path
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: p, isDirectory: &isDir) && isDir.boolValue ? p : nil
    }

    /// `../shared/<sub>`, or a skip naming what is absent (`why` says what the test would have checked).
    public static func requireShared(_ sub: String, for why: String? = nil) throws -> String {
        let suffix = why.map { ": " + $0 } ?? ""
        guard let s = shared else {
            throw XCTSkip("../shared is absent (optional data beside the package, not shipped with it)\(suffix)")
        }
        let p = (s as NSString).appendingPathComponent(sub)
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("\(p) is absent\(suffix)") }
        return p
    }

    // MARK: - Executables

    /// An executable of this package built next to the test bundle (`segger-train`, `mpi-selftest`), or nil.
    public static func builtExecutable(_ name: String) -> String? {
        var dirs = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
                    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        if let e = Bundle.main.executableURL { dirs.append(e.deletingLastPathComponent()) }
        for b in Bundle.allBundles { dirs.append(b.bundleURL.deletingLastPathComponent()) }
        dirs.append(packageRoot.appendingPathComponent(".build/debug"))
        return dirs.map { $0.appendingPathComponent(name).path }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The binary under test: $SEGGER_TRAIN_BIN (Scripts/test sets the release build), else the one built
    /// next to the test bundle.
    public static var binary: String {
        if let b = ProcessInfo.processInfo.environment["SEGGER_TRAIN_BIN"], FileManager.default.isExecutableFile(atPath: b) {
            return b
        }
        return builtExecutable("segger-train") ?? packageRoot.appendingPathComponent(".build/debug/segger-train").path
    }

    /// The binary under test, or a skip when it was not built.
    public static func requireBinary() throws -> String {
        let b = binary
        guard FileManager.default.isExecutableFile(atPath: b) else {
            throw XCTSkip("no segger-train binary at \(b) (`swift build` makes it)")
        }
        return b
    }

    /// mpirun on PATH (or in /usr/bin, /usr/local/bin), or nil.
    public static var mpirun: String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"]
        return dirs.map { $0 + "/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// mpirun for a test that launches ranks, or a skip: not installed, or this process already is a rank.
    public static func requireMPIRun() throws -> String {
        if ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil {
            throw XCTSkip("already running under mpirun: no nested mpirun")
        }
        guard let m = mpirun else { throw XCTSkip("mpirun is not installed (Debian package openmpi-bin)") }
        return m
    }

    /// $SEGGER_TEST_PYTHON (a Python with pyarrow and duckdb, which Scripts/test makes), or a skip saying why.
    public static func requireTestPython() throws -> String {
        guard let python = ProcessInfo.processInfo.environment["SEGGER_TEST_PYTHON"], !python.isEmpty else {
            throw XCTSkip("SEGGER_TEST_PYTHON is not set (Scripts/test sets it to a venv with pyarrow and duckdb)")
        }
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("SEGGER_TEST_PYTHON=\(python) is not an executable file")
        }
        return python
    }

    // MARK: - Processes

    /// How a process ended and what it printed.
    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var seconds: Double
        /// The process ended by a signal (`status` is then the signal number).
        public var signaled = false
        public var output: String { stdout + stderr }
    }

    /// The test process's environment without the variables of an MPI job it may have joined as a singleton.
    public static var cleanEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.filter { key, _ in
            !["OMPI_", "PMIX_", "ORTE_", "OPAL_"].contains { key.hasPrefix($0) }
        }
    }

    /// Runs a program to completion (or kills it after `timeout` seconds and fails the test), its output in
    /// files (a pipe that fills up would block it).
    @discardableResult
    public static func run(_ exe: String, _ args: [String], env: [String: String] = [:], timeout: Double = 300,
                           cwd: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        // Another test in this process may have initialized MPI (a singleton), which exports OMPI_*/PMIX_*
        // variables describing that job; a child mpirun that inherits them believes it runs inside it.
        var e = cleanEnvironment
        e["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        e["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        e["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        e.removeValue(forKey: "SLURM_NTASKS")
        for (k, v) in env { e[k] = v }
        p.environment = e
        let dir = tempDir("process")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let outURL = URL(fileURLWithPath: dir + "/stdout"), errURL = URL(fileURLWithPath: dir + "/stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        let start = Date()
        try p.run()
        while p.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                p.terminate()
                usleep(500_000)
                if p.isRunning { kill(p.processIdentifier, SIGKILL) }
                XCTFail("timed out after \(timeout) s: \(exe) \(args.joined(separator: " "))", file: file, line: line)
                break
            }
            usleep(20_000)
        }
        p.waitUntilExit()
        try out.close(); try err.close()
        return Result(status: p.terminationStatus,
                      stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
                      seconds: Date().timeIntervalSince(start), signaled: p.terminationReason == .uncaughtSignal)
    }

    /// Runs the binary under test with `args`: directly for one rank, under mpirun for more.
    @discardableResult
    public static func runBinary(_ args: [String], ranks: Int = 1, env: [String: String] = [:], timeout: Double = 300,
                                 file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        if ranks == 1 { return try run(binary, args, env: env, timeout: timeout, file: file, line: line) }
        let mpirun = try requireMPIRun()
        return try run(mpirun, ["-np", "\(ranks)", "--oversubscribe", "--bind-to", "none", binary] + args,
                       env: env, timeout: timeout, file: file, line: line)
    }

    // MARK: - Temporary directories

    /// A fresh directory under the system's temporary directory, named for `name`; removed when `test`
    /// ends if one is given (otherwise left for inspection after a failure).
    public static func tempDir(_ name: String, removedAfter test: XCTestCase? = nil) -> String {
        let d = FileManager.default.temporaryDirectory
            .appendingPathComponent("segger-test-\(name)-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        if let test { test.addTeardownBlock { try? FileManager.default.removeItem(atPath: d) } }
        return d
    }
}
