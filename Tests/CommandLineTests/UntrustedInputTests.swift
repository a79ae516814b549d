// Checkpoints, weights and tiles are inputs like any other: what a loader would take silently
// (non-finite values, a position out of range, sizes from edited metadata, tiles another model was made
// for) ends in an error that names the file and the tensor or field, never in a crash or a quiet NaN.
import Foundation
import SafeTensors
import TestSupport
import XCTest

final class UntrustedInputTests: XCTestCase {
    let tiny = ["--batch_size_train", "2"] + smallModel

    /// A trained run's checkpoint, copied so that each case edits its own.
    func checkpoint() throws -> (tiles: String, root: String) {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 111)
        let root = Support.tempDir("untrusted")
        let r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "1"] + tiny)
        XCTAssertEqual(r.status, 0, r.output)
        return (tiles, root)
    }

    func copy(_ root: String) throws -> String {
        let dir = Support.tempDir("untrusted-copy")
        try FileManager.default.removeItem(atPath: dir)
        try FileManager.default.copyItem(atPath: root, toPath: dir)
        return dir
    }

    func floats(_ t: Tensor, _ change: (inout [Float]) -> Void) -> Tensor {
        var v = t.floats()
        change(&v)
        return Tensor(v, shape: t.shape)
    }

    func testNonFiniteWeightsAndOptimizerStateAreRefusedNamingTheTensor() throws {
        let (tiles, root) = try checkpoint()
        // --init_weights with an all-NaN lin0.bd.weight.
        let weights = Support.tempDir("nanw") + "/w.safetensors"
        try FileManager.default.copyItem(atPath: root + "/checkpoints/last.safetensors", toPath: weights)
        try Support.edit(weights) { tensors, _ in
            let i = tensors.firstIndex { $0.0 == "model.lin0.bd.weight" }!
            tensors[i].1 = self.floats(tensors[i].1) { $0 = $0.map { _ in .nan } }
        }
        var r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", Support.tempDir("nanw-run"),
                                   "--epochs", "1", "--init_weights", weights] + tiny)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains(weights) && r.stderr.contains("lin0.bd.weight") && r.stderr.contains("non-finite"), r.stderr)
        XCTAssertFalse(r.stderr.contains("non-finite loss"), "named as weights, not as a loss: \(r.stderr)")

        // --resume with one NaN (or inf, or a negative value) in exp_avg_sq, or F64 optimizer state.
        let cases: [(String, (inout [(String, Tensor)]) -> Void, [String])] = [
            ("nan", { t in let i = t.firstIndex { $0.0 == "optimizer.exp_avg_sq" }!; t[i].1 = self.floats(t[i].1) { $0[7] = .nan } },
             ["optimizer.exp_avg_sq", "non-finite", "index 7"]),
            ("inf", { t in let i = t.firstIndex { $0.0 == "optimizer.exp_avg" }!; t[i].1 = self.floats(t[i].1) { $0[0] = .infinity } },
             ["optimizer.exp_avg", "non-finite"]),
            ("negative", { t in let i = t.firstIndex { $0.0 == "optimizer.exp_avg_sq" }!; t[i].1 = self.floats(t[i].1) { $0[3] = -1 } },
             ["optimizer.exp_avg_sq", "negative"]),
            ("f64", { t in let i = t.firstIndex { $0.0 == "optimizer.exp_avg" }!; t[i].1 = Tensor(t[i].1.doubles(), shape: t[i].1.shape) },
             ["optimizer.exp_avg", "dtype F64"]),
            ("weights", { t in let i = t.firstIndex { $0.0 == "model.lin0.tx.weight" }!; t[i].1 = self.floats(t[i].1) { $0[0] = -.infinity } },
             ["lin0.tx.weight", "non-finite"]),
        ]
        for (name, edit, needles) in cases {
            let dir = try copy(root)
            try Support.edit(dir + "/checkpoints/last.safetensors") { t, _ in edit(&t) }
            r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", dir, "--epochs", "2", "--resume", "last"] + tiny)
            XCTAssertEqual(r.status, 1, "\(name): \(r.output)")
            XCTAssertFalse(r.signaled, name)
            for n in needles + [dir + "/checkpoints/last.safetensors"] { XCTAssertTrue(r.stderr.contains(n), "\(name): names \(n): \(r.stderr)") }
            XCTAssertFalse(r.stderr.contains("has 19592 values, the model has"), "the real problem, not a count: \(r.stderr)")
        }
    }

    /// Every field of the training position is range-checked and cross-checked; the error names it.
    func testTrainingPositionOutOfRangeIsAnErrorNamingTheField() throws {
        let (tiles, root) = try checkpoint()
        let cases: [(String, Any, String)] = [
            ("epoch", -5, "epoch"), ("batchInEpoch", 99, "batchInEpoch"), ("batchInEpoch", -1, "batchInEpoch"),
            ("globalStep", 7, "batchesSeen"), ("batchesSeen", 1 << 50, "batchesSeen"), ("worldSize", 0, "worldSize"),
            ("batchSizeTrain", -3, "batchSizeTrain"), ("skippedSteps", -1, "skippedSteps"), ("bestAUROC", 7.5, "bestAUROC"),
            ("runID", "../../etc", "runID"), ("epoch", "three", "epoch"), ("epoch", 1e300, "epoch"),
        ]
        for (field, value, named) in cases {
            let dir = try copy(root)
            try Support.editPosition(dir + "/checkpoints/last.safetensors") { $0[field] = value }
            let r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", dir, "--epochs", "3", "--resume", "auto"] + tiny)
            XCTAssertEqual(r.status, 1, "\(field) = \(value): \(r.output)")
            XCTAssertFalse(r.signaled)
            XCTAssertTrue(r.stderr.contains("'\(named)'"), "\(field) = \(value) names '\(named)': \(r.stderr)")
        }
        // optimizer.step must equal the steps taken.
        let dir = try copy(root)
        try Support.edit(dir + "/checkpoints/last.safetensors") { t, _ in
            let i = t.firstIndex { $0.0 == "optimizer.step" }!
            t[i].1 = Tensor([Int64(-4)])
        }
        let r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", dir, "--epochs", "3", "--resume", "auto"] + tiny)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("optimizer.step"), r.stderr)
    }

    /// Sizes in a checkpoint's metadata are checked before a model is built from them (eval, digest,
    /// resume), and eval refuses tiles the checkpoint's model was not made for, citing only its own flags.
    func testCheckpointSizesAndEvalTilesAreChecked() throws {
        let (tiles, root) = try checkpoint()
        for (field, value) in [("heads", 1_000_000), ("hidden_channels", 60_000), ("num_tx_tokens", 2_000_000_000), ("mid_layers", -1)] {
            let dir = try copy(root)
            let ck = dir + "/checkpoints/last.safetensors"
            try Support.edit(ck) { _, meta in
                var c = try JSONSerialization.jsonObject(with: Data(meta["model_config"]!.utf8)) as! [String: Any]
                c[field.split(separator: "_").enumerated().map { $0.offset == 0 ? String($0.element) : $0.element.capitalized }.joined()] = value
                meta["model_config"] = String(decoding: try JSONSerialization.data(withJSONObject: c), as: UTF8.self)
            }
            for args in [["digest", "--checkpoint", ck], ["eval", "--tiles", tiles, "--checkpoint", ck]] {
                let r = try Support.run(Support.binary, args)
                XCTAssertEqual(r.status, 1, "\(field) \(value) \(args[0]): \(r.output)")
                XCTAssertFalse(r.signaled)
                XCTAssertTrue(r.stderr.contains(field) && r.stderr.contains("--checkpoint"), "\(field): \(r.stderr)")
            }
        }
        let ck = root + "/checkpoints/last.safetensors"
        // Embedding-mode tiles through a token-mode checkpoint.
        let emb = try Support.synth(tiles: 2, tx: 200, seed: 112, extra: ["--embedding_dim", "6"])
        var r = try Support.run(Support.binary, ["eval", "--tiles", emb, "--checkpoint", ck])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertFalse(r.signaled)
        XCTAssertTrue(r.stderr.contains("embedding mode") && r.stderr.contains("token mode") && r.stderr.contains(emb), r.stderr)
        // Token ids beyond the checkpoint's vocabulary: named without a flag eval does not have.
        let big = try Support.synth(tiles: 2, tx: 200, seed: 113, extra: ["--num_tx_tokens", "5000"])
        r = try Support.run(Support.binary, ["eval", "--tiles", big, "--checkpoint", ck])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("num_tx_tokens 500") && !r.stderr.contains("--num_tx_tokens"), r.stderr)
        // eval's JSON: nulls for undefined metrics, through a JSON encoder.
        r = try Support.run(Support.binary, ["eval", "--tiles", tiles, "--checkpoint", ck])
        XCTAssertEqual(r.status, 0, r.output)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(Set(json.keys), ["validation_loss", "validation_auroc", "validation_f1", "pairs", "tiles"])
        XCTAssertEqual(json["tiles"] as? Int, 4)
    }
}
