// N ranks under a real mpirun train exactly what one rank trains on the same global batches.
import Foundation
import SafeTensors
import TestSupport
import XCTest

final class DataParallelTests: XCTestCase {
    func run(ranks: Int, batch: Int, compression: String, root: String, train: String, epochs: Int = 3,
             extra: [String] = []) throws -> Support.Result {
        let r = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", root, "--epochs", "\(epochs)",
                                   "--batch_size_train", "\(batch)", "--grad_compression", compression, "--lr", "1e-3",
                                   "--seed", "7"] + smallModel + extra, ranks: ranks)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains(Support.finalDigestLine(ranks: ranks)), r.output)
        return r
    }

    /// With fp32 exchange, 2 ranks × b and 4 ranks × b/… equal 1 rank × (ranks·b) within 1e-5 per tensor.
    func testRanksMatchOneRankOnTheSameGlobalBatch() throws {
        _ = try Support.requireMPIRun()
        let train = try Support.synth(tiles: 12, tx: 300, seed: 41)
        let one = Support.tempDir("dp1")
        _ = try run(ranks: 1, batch: 4, compression: "none", root: one, train: train)
        let reference = try Support.weights(one + "/checkpoints/last.safetensors")
        let digest = { (root: String) in try Support.run(Support.binary, ["digest", "--checkpoint", root + "/checkpoints/last.safetensors"]).stdout }
        let referenceDigest = try digest(one)
        for (ranks, batch) in [(2, 2), (4, 1)] {
            let root = Support.tempDir("dp\(ranks)")
            _ = try run(ranks: ranks, batch: batch, compression: "none", root: root, train: train)
            let w = try Support.weights(root + "/checkpoints/last.safetensors")
            let (diff, name) = Support.maxRelativeDifference(reference, w)
            print("ranks \(ranks) × batch \(batch) vs 1 × \(ranks * batch), fp32 exchange: max relative difference \(diff) (\(name))")
            XCTAssertLessThanOrEqual(diff, 1e-5, "\(ranks) ranks differ from 1 rank in \(name)")
            // Stronger: the fp64 exchange of per-tile gradients makes the result independent of the split.
            XCTAssertEqual(try digest(root), referenceDigest, "\(ranks) ranks are not bit-identical to 1 rank")
        }
    }

    /// Many ranks: 16 (oversubscribed here) × batch 1 train 2 epochs bit-identical to 1 rank × batch 16
    /// with the fp64 exchange, every rank bit-identical to the others; the progress thread and the
    /// reduce-scatter/allgather all-reduce run at 16 ranks as at 2. (Across 4 namespace hosts × 4:
    /// Tests/integration/netns_16ranks.sh.)
    func testSixteenRanksMatchOneRankBitForBit() throws {
        _ = try Support.requireMPIRun()
        let train = try Support.synth(tiles: 32, tx: 120, seed: 52)
        let one = Support.tempDir("dp16-1")
        _ = try run(ranks: 1, batch: 16, compression: "none", root: one, train: train, epochs: 2)
        let sixteen = Support.tempDir("dp16-16")
        let r = try run(ranks: 16, batch: 1, compression: "none", root: sixteen, train: train, epochs: 2)
        let digest = { (root: String) in try Support.run(Support.binary, ["digest", "--checkpoint", root + "/checkpoints/last.safetensors"]).stdout }
        XCTAssertEqual(try digest(sixteen), try digest(one), "16 ranks are not bit-identical to 1 rank")
        XCTAssertTrue(r.stdout.contains("16 rank(s), 32 training tiles"), r.stdout)
        print("16 ranks × batch 1 = 1 rank × batch 16 bit for bit after 2 epochs (\(String(format: "%.1f", r.seconds)) s for the 16-rank run)")
    }

    /// fp16-compressed exchange stays within the bound derived from Adam's step size:
    /// each Adam update moves a weight by at most lr·(1−β1)/√(1−β2) ≈ 3.17·lr (Kingma & Ba, §2.1), so two runs
    /// that differ only in gradient rounding can drift apart by at most 2 · 3.17 · lr per step; after K steps
    /// |Δw| ≤ 6.33 · lr · K for every weight, whatever the gradients.
    func testFP16ExchangeWithinDerivedBound() throws {
        _ = try Support.requireMPIRun()
        let train = try Support.synth(tiles: 12, tx: 300, seed: 41)
        let one = Support.tempDir("fp16-1")
        _ = try run(ranks: 1, batch: 4, compression: "none", root: one, train: train)
        let two = Support.tempDir("fp16-2")
        _ = try run(ranks: 2, batch: 2, compression: "fp16", root: two, train: train)
        let a = try Support.weights(one + "/checkpoints/last.safetensors")
        let b = try Support.weights(two + "/checkpoints/last.safetensors")
        let steps = 3 * 3, lr = 1e-3
        let bound = 2 * (1 - 0.9) / (1 - 0.999).squareRoot() * lr * Double(steps)
        var worstAbs = 0.0, worstRel = 0.0
        for (k, ta) in a {
            let x = ta.doubles(), y = b[k]!.doubles()
            let d = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            worstAbs = max(worstAbs, d)
            worstRel = max(worstRel, d / max(x.map { abs($0) }.max() ?? 1, 1e-30))
            XCTAssertLessThanOrEqual(d, bound, k)
        }
        print("fp16 exchange, 2 ranks vs fp32 1 rank after \(steps) steps: max |Δw| \(worstAbs) (bound \(bound)), max relative \(worstRel)")
    }

    /// DDP semantics: --loss_reduction rank_mean still keeps replicas identical and trains.
    func testRankMeanReductionAndBF16() throws {
        _ = try Support.requireMPIRun()
        let train = try Support.synth(tiles: 8, tx: 300, seed: 43)
        _ = try run(ranks: 2, batch: 2, compression: "bf16", root: Support.tempDir("rm"), train: train, epochs: 2,
                    extra: ["--loss_reduction", "rank_mean"])
    }

    func testFewerTilesThanRanksIsAClearError() throws {
        _ = try Support.requireMPIRun()
        let train = try Support.synth(tiles: 2, tx: 200, seed: 44)
        let r = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", Support.tempDir("few"), "--epochs", "1"] + smallModel, ranks: 4)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("fewer than the 4 ranks"), r.output)
    }

    /// A rank killed with SIGKILL takes the whole job down quickly instead of leaving it hanging.
    func testKilledRankEndsTheJob() throws {
        let mpirun = try Support.requireMPIRun()
        let train = try Support.synth(tiles: 8, tx: 300, seed: 45)
        let root = Support.tempDir("kill")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = ["-np", "2", "--oversubscribe", "--bind-to", "none", Support.binary, "train", "--train_dir", train,
                       "--default_root_dir", root, "--epochs", "100000"] + smallModel
        var env = Support.cleanEnvironment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env.removeValue(forKey: "SLURM_NTASKS")
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: root + "/checkpoints/last.safetensors") && Date() < deadline { usleep(50_000) }
        // Find one rank (a child process whose command line names this run's root directory) and kill it.
        let ranks = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { pid in
            guard pid != p.processIdentifier,
                  let cmd = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return false }
            return cmd.contains(root) && cmd.contains("segger-train") && !cmd.hasPrefix(mpirun)
        }
        XCTAssertEqual(ranks.count, 2, "two rank processes")
        let killed = Date()
        kill(ranks[0], SIGKILL)
        while p.isRunning && Date().timeIntervalSince(killed) < 60 { usleep(50_000) }
        let seconds = Date().timeIntervalSince(killed)
        if p.isRunning { p.terminate(); XCTFail("job still running 60 s after a rank was killed") }
        p.waitUntilExit()
        XCTAssertNotEqual(p.terminationStatus, 0)
        print("job ended \(String(format: "%.1f", seconds)) s after a rank was killed, exit \(p.terminationStatus)")
        for r in ranks { kill(r, SIGKILL) }
    }
}
