// `segger-train bench` through the real binary: the report's fields are present and consistent. No
// timing is asserted (speed is measured with Scripts/bench, never in a test); memory flatness is.
import Foundation
import TestSupport
import XCTest

final class BenchTests: XCTestCase {
    /// The JSON object on the last line of `stdout`, and a reader of its numeric fields that fails the test
    /// when one is missing.
    func lastJSONLine(_ stdout: String, _ output: String) throws -> ([String: Any], (String) throws -> Double) {
        let line = try XCTUnwrap(stdout.split(separator: "\n").last, output)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
        return (report, { key in try XCTUnwrap((report[key] as? NSNumber)?.doubleValue, "missing \(key) in \(line)") })
    }

    func testBenchReportIsCompleteAndConsistent() throws {
        let tiles = try Support.synth(tiles: 4, tx: 300, seed: 61)
        let r = try Support.run(Support.binary, ["bench", "--tiles", tiles, "--steps", "12", "--warmup", "2",
                                                 "--num_tx_tokens", "500", "--init_emb", "4", "--hidden_channels", "8",
                                                 "--out_channels", "4", "--heads", "2", "--mid_layers", "1"])
        XCTAssertEqual(r.status, 0, r.output)
        let (report, number) = try lastJSONLine(r.stdout, r.output)
        XCTAssertEqual(try number("ranks"), 1)
        XCTAssertEqual(try number("steps"), 12)
        XCTAssertEqual(report["architecture"] as? String, "documented")
        let median = try number("ms_per_step_median"), p10 = try number("ms_per_step_p10"), p90 = try number("ms_per_step_p90")
        XCTAssertTrue(p10 > 0 && p10 <= median && median <= p90, "p10 \(p10), median \(median), p90 \(p90)")
        // tiles/s follows from the median step at batch 1.
        XCTAssertEqual(try number("tiles_per_s"), 1000 / median, accuracy: 1e-6 * 1000 / median)
        XCTAssertEqual(try number("mean_tile_tx"), 300)
        let floor = try number("floor_ms_per_step")
        XCTAssertGreaterThan(floor, 0)
        XCTAssertEqual(try number("ratio_to_floor"), median / floor, accuracy: 1e-9 * median / floor)
        XCTAssertGreaterThan(try number("sgemm_gflop_s_measured"), 0)
        XCTAssertGreaterThan(try number("memory_bandwidth_g_bs"), 0)
        XCTAssertGreaterThan(try number("gemm_gflop_per_step"), 0)
        XCTAssertGreaterThan(try number("peak_rssmb"), 0)
        // The arena is sized by the warm-up steps: the timed steps add no memory (a few pages of slack).
        XCTAssertLessThan(abs(try number("rss_growth_timed_mb")), 4, "\(report)")
    }

    /// Two ranks: the wait is split into rank imbalance and exchange (means that add up), the compute
    /// balance lies in (0, 1], rank 0's exchange timeline has every bucket leave before it returns and
    /// the last leave at the end of the backward; --epoch times exactly the rest of epoch 0.
    func testTwoRankBenchSplitsTheWaitAndShowsTheTimeline() throws {
        let mpirun = try Support.requireMPIRun()
        let tiles = try Support.synth(tiles: 12, tx: 300, seed: 62)
        let r = try Support.run(mpirun, ["-np", "2", "--oversubscribe", "--bind-to", "none", Support.binary, "bench",
                                         "--tiles", tiles, "--epoch", "--warmup", "2", "--num_tx_tokens", "500", "--init_emb", "4",
                                         "--hidden_channels", "8", "--out_channels", "4", "--heads", "2", "--mid_layers", "1",
                                         "--bucket_cap_mb", "0.001"])
        XCTAssertEqual(r.status, 0, r.output)
        let (report, number) = try lastJSONLine(r.stdout, r.output)
        XCTAssertEqual(try number("ranks"), 2)
        XCTAssertEqual(try number("steps"), 12 / 2 - 2, "epoch 0 has 6 global batches of 2, 2 of them warm-up")
        let wait = try number("wait_ms_per_step_mean"), imbalance = try number("wait_imbalance_ms_per_step")
        let exchange = try number("wait_exchange_ms_per_step")
        XCTAssertGreaterThanOrEqual(imbalance, 0)
        XCTAssertGreaterThanOrEqual(exchange, 0)
        XCTAssertGreaterThanOrEqual(imbalance + exchange, wait * (1 - 1e-9), "the split covers the wait")
        let balance = try number("compute_balance")
        XCTAssertTrue(balance > 0 && balance <= 1, "balance \(balance)")
        XCTAssertEqual(report["exchange_progress"] as? String, "thread")
        let timeline = try XCTUnwrap(report["exchange_timeline"] as? [String: Any], "\(report)")
        let buckets = try XCTUnwrap(timeline["buckets"] as? [[String: Any]])
        XCTAssertGreaterThan(buckets.count, 1)
        let end = try XCTUnwrap((timeline["backward_end_ms"] as? NSNumber)?.doubleValue)
        let finishEnd = try XCTUnwrap((timeline["finish_end_ms"] as? NSNumber)?.doubleValue)
        for b in buckets {
            let launch = try XCTUnwrap((b["launch_ms"] as? NSNumber)?.doubleValue)
            let done = try XCTUnwrap((b["done_ms"] as? NSNumber)?.doubleValue)
            // The last bucket leaves inside the backward's last readiness call, just after its start is
            // stamped (and these are medians over steps): "during the backward" within 1 ms.
            XCTAssertTrue(launch > 0 && launch <= done && launch <= end + 1 && done <= finishEnd + 1e-6, "\(b), end \(end)")
        }
        let lastLaunch = try XCTUnwrap((buckets.last?["launch_ms"] as? NSNumber)?.doubleValue)
        XCTAssertEqual(lastLaunch, end, accuracy: 1, "the last bucket leaves when the backward ends")
    }

    func testBenchKernelsReportsPerEdgeCosts() throws {
        let r = try Support.run(Support.binary, ["bench-kernels", "--rows", "200", "--degree", "3", "--heads", "2",
                                                 "--channels", "16", "--reps", "6"])
        XCTAssertEqual(r.status, 0, r.output)
        let (_, number) = try lastJSONLine(r.stdout, r.output)
        XCTAssertEqual(try number("edges"), 600)
        for kernel in ["forward", "backward"] {
            let ms = try number("\(kernel)_ms_median"), ns = try number("\(kernel)_ns_per_edge")
            XCTAssertGreaterThan(ms, 0)
            XCTAssertEqual(ns, ms * 1e6 / 600, accuracy: 1e-9 * ns)
        }
        let bad = try Support.run(Support.binary, ["bench-kernels", "--reps", "2"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("--reps"), bad.output)
    }
}
