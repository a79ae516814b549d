import Foundation
import XCTest

/// Runs the `mpi-selftest` executable (built next to this test bundle) under `mpirun` with 2 and 4 ranks
/// and checks its report: every expected check printed PASS, none FAIL, exit status 0. Also checks that
/// a failing rank ends the whole job (MPI_Abort, or an error exit) instead of leaving it hanging.
final class MultiRankTests: XCTestCase {
    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    func mpirun() throws -> URL {
        if ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil {
            throw XCTSkip("already running under mpirun: no nested mpirun")
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(dir)).appendingPathComponent("mpirun")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw XCTSkip("mpirun is not on PATH (install openmpi-bin to run the multi-rank tests)")
    }

    func selftest() throws -> URL {
        var dirs = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
                    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        if let e = Bundle.main.executableURL { dirs.append(e.deletingLastPathComponent()) }
        for b in Bundle.allBundles { dirs.append(b.bundleURL.deletingLastPathComponent()) }
        for dir in dirs {
            let candidate = dir.appendingPathComponent("mpi-selftest")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        XCTFail("mpi-selftest not found next to the test bundle (looked in \(dirs.map(\.path))); "
            + "`swift build --build-tests` builds it")
        throw XCTSkip("no mpi-selftest")
    }

    /// mpirun -np `ranks` mpi-selftest `arguments`, killed after `timeout` seconds (a hang fails the test).
    func run(ranks: Int, _ arguments: [String], timeout: Double = 240) throws -> Run {
        let launcher = try mpirun()
        let exe = try selftest()
        let process = Process()
        process.executableURL = launcher
        process.arguments = ["--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)", exe.path] + arguments
        // This test process may hold a singleton MPI init of its own: keep its MPI variables away from mpirun.
        process.environment = ProcessInfo.processInfo.environment.filter { key, _ in
            !["OMPI_", "PMIX_", "OPAL_", "ORTE_"].contains { key.hasPrefix($0) }
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mpi-selftest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("stdout"), err = dir.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            XCTFail("mpirun -np \(ranks) mpi-selftest \(arguments) did not end within \(timeout) s")
        }
        process.waitUntilExit()
        return Run(status: process.terminationStatus,
                   stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                   stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// The checks mpi-selftest must report as passed at `ranks` ranks.
    func expectedChecks(ranks: Int) -> [String] {
        var names = ["broadcast-floats-root0", "broadcast-floats-root\(ranks - 1)", "broadcast-bytes",
                     "broadcast-bytes-empty", "allreduce-sum", "allreduce-max", "allreduce-min", "gather-root0",
                     "gather-root\(ranks - 1)", "allgather", "barrier", "alltoallv", "alltoallv-rounds", "alltoallv-large",
                     "alltoallv-struct", "allgatherv", "send-receive"]
        for count in [1, 7, 1000, 100_003] {
            names += ["fp16-sum-op-exact-n\(count)", "bf16-sum-op-exact-n\(count)"]
        }
        for compression in ["fp16", "bf16", "none"] {
            names += (0..<6).map { "buckets-\(compression)-step\($0)" }
            names += ["buckets-large-\(compression)-step0", "buckets-large-\(compression)-step4"]
        }
        for compression in ["fp16", "none"] {
            names += (0..<6).map { "buckets-poll-\(compression)-step\($0)" }
        }
        names.append("progress-thread-moves-buckets")
        return names
    }

    func checkSelftest(ranks: Int) throws {
        let r = try run(ranks: ranks, [])
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let passed = Set(lines.filter { $0.hasPrefix("PASS ") }.map { String($0.dropFirst(5)) })
        for name in expectedChecks(ranks: ranks) {
            XCTAssertTrue(passed.contains(name), "\(ranks) ranks: check \(name) did not pass")
        }
        for line in lines where line.hasPrefix("FAIL") { XCTFail("\(ranks) ranks: \(line)") }
        XCTAssertTrue(lines.contains("INFO ranks=\(ranks)"), "ran with the wrong rank count:\n\(r.stdout)")
        XCTAssertTrue(lines.contains("ALL PASS"), "\(ranks) ranks:\n\(r.stdout)\n\(r.stderr)")
        XCTAssertEqual(r.status, 0, "\(ranks) ranks: exit status\n\(r.stderr)")
        for line in lines where line.hasPrefix("INFO") { print("[\(ranks) ranks] \(line)") }
    }

    func testSelftestTwoRanks() throws { try checkSelftest(ranks: 2) }

    func testSelftestFourRanks() throws { try checkSelftest(ranks: 4) }

    func testAbortOnOneRankEndsTheJob() throws {
        let r = try run(ranks: 2, ["abort"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("rank 1/2: deliberate abort from the self-test"), r.stderr)
        XCTAssertFalse(r.stdout.contains("passed the barrier"), r.stdout)
    }

    func testErrorExitOnOneRankEndsTheJob() throws {
        // exit(1) on rank 3 while ranks 0–2 wait in a barrier: MPI_Finalize would hang; the exit handler
        // aborts the job instead.
        let r = try run(ranks: 4, ["exit"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("rank 3/4: exit status 1 before MPI_Finalize: aborting the job"), r.stderr)
        XCTAssertFalse(r.stdout.contains("passed the barrier"), r.stdout)
    }

    func testExitTogetherEndsEveryRankWithItsStatus() throws {
        let r = try run(ranks: 2, ["exit-together"], timeout: 60)
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertFalse(r.stderr.contains("MPI_ABORT was invoked"), r.stderr)
        XCTAssertTrue(r.stderr.contains("error: a collective decision to stop"), r.stderr)
    }
}
