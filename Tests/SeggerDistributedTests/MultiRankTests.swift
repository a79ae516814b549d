import Foundation
import TestSupport
import XCTest

/// Runs the `mpi-selftest` executable (built next to this test bundle) under `mpirun` with 2 and 4 ranks
/// and checks its report: every expected check printed PASS, none FAIL, exit status 0. Also checks that
/// a failing rank ends the whole job (MPI_Abort, or an error exit) instead of leaving it hanging.
final class MultiRankTests: XCTestCase {
    func selftest() throws -> String {
        guard let exe = Support.builtExecutable("mpi-selftest") else {
            XCTFail("mpi-selftest not found next to the test bundle; `swift build --build-tests` builds it")
            throw XCTSkip("no mpi-selftest")
        }
        return exe
    }

    /// mpirun -np `ranks` mpi-selftest `arguments`, killed after `timeout` seconds (a hang fails the test).
    func run(ranks: Int, _ arguments: [String], timeout: Double = 240) throws -> Support.Result {
        let launcher = try Support.requireMPIRun()
        let exe = try selftest()
        return try Support.run(launcher, ["--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)", exe] + arguments,
                               timeout: timeout)
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
