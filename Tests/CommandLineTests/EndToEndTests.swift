// Tests that run the real segger-train binary on generated and real tiles.
import Foundation
import SafeTensors
import TestSupport
import XCTest

/// Small model flags shared by the end-to-end tests (fast in any build).
let smallModel = ["--num_tx_tokens", "500", "--init_emb", "8", "--hidden_channels", "16", "--out_channels", "8",
                  "--heads", "2", "--mid_layers", "1"]

final class EndToEndTests: XCTestCase {
    func testTrainingImprovesValidationAUROCAndWritesLightningLayout() throws {
        let train = try Support.synth(tiles: 32, tx: 1500, seed: 11)
        let val = try Support.synth(tiles: 6, tx: 1500, seed: 12)
        let root = Support.tempDir("learn")
        let r = try Support.runBinary(["train", "--train_dir", train, "--val_dir", val, "--default_root_dir", root,
                                   "--epochs", "16", "--batch_size_train", "2", "--lr", "3e-3", "--log_every_n_steps", "4"] + smallModel)
        XCTAssertEqual(r.status, 0, r.output)
        let rows = try Support.metrics(root)
        let epochs = rows.filter { $0["validation_auroc"] != nil }
        XCTAssertEqual(epochs.count, 16, "one validation row per epoch")
        let first = Double(epochs.first!["validation_auroc"]!)!, last = Double(epochs.last!["validation_auroc"]!)!
        XCTAssertGreaterThan(last, first + 0.08, "validation AUROC should improve: \(epochs.map { $0["validation_auroc"]! })")
        XCTAssertGreaterThan(last, 0.68)
        XCTAssertTrue(rows.contains { $0["train_loss"] != nil }, "training-loss rows")
        for col in ["epoch", "step", "validation_loss", "validation_f1"] { XCTAssertNotNil(epochs.last![col], col) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/checkpoints/last.safetensors"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/lightning_logs/version_0/hparams.yaml"))
        let ckpts = try FileManager.default.contentsOfDirectory(atPath: root + "/checkpoints").filter { $0.hasPrefix("epoch=") }
        XCTAssertTrue(ckpts.contains("epoch=15-step=256.safetensors"), "\(ckpts)")
        XCTAssertLessThanOrEqual(ckpts.count, 4, "newest 3 plus the best: \(ckpts)")
        // The checkpoint holds PyG-named weights under model. and the optimizer state.
        let f = try SafeTensorsFile.read(path: root + "/checkpoints/last.safetensors")
        XCTAssertNotNil(f["model.conv_first.tx__belongs__bd.lin_l.weight"])
        XCTAssertNotNil(f["model.lin_first.tx.weight"])
        XCTAssertNotNil(f["optimizer.exp_avg"])
        // eval reproduces the last validation metrics from the checkpoint.
        let e = try Support.run(Support.binary, ["eval", "--tiles", val, "--checkpoint", root + "/checkpoints/last.safetensors"])
        XCTAssertEqual(e.status, 0, e.output)
        let json = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["validation_auroc"] as! Double, last, accuracy: 1e-6)
    }

    func testResumeLastContinuesAndKillResumeIsBitIdentical() throws {
        let train = try Support.synth(tiles: 8, tx: 300, seed: 21)
        let args = ["--train_dir", train, "--epochs", "4", "--batch_size_train", "2", "--lr", "1e-3"] + smallModel
        // Uninterrupted reference.
        let a = Support.tempDir("ref")
        XCTAssertEqual(try Support.runBinary(["train", "--default_root_dir", a] + args).status, 0)
        let ref = try Support.run(Support.binary, ["digest", "--checkpoint", a + "/checkpoints/last.safetensors"]).stdout

        // Two epochs, then --resume last for the rest.
        let b = Support.tempDir("resume")
        var r = try Support.runBinary(["train", "--default_root_dir", b] + args.map { $0 == "4" ? "2" : $0 })
        XCTAssertEqual(r.status, 0, r.output)
        r = try Support.runBinary(["train", "--default_root_dir", b, "--resume", "last"] + args)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("resumed from"), r.output)
        let rows = try Support.metrics(b).filter { $0["train_loss_epoch"] != nil }
        XCTAssertEqual(rows.map { $0["epoch"]! }, ["2", "3"], "the resumed run continues at epoch 2")
        XCTAssertEqual(try Support.run(Support.binary, ["digest", "--checkpoint", b + "/checkpoints/last.safetensors"]).stdout, ref)

        // SIGUSR1 mid-run: checkpoint, exit 0, and --resume auto finishes with the same weights. The run is
        // long (400 epochs of 4 steps) so that the signal, sent as soon as the first checkpoint exists,
        // always lands mid-run however fast the trainer gets.
        let long = args.map { $0 == "4" ? "400" : $0 }
        let c = Support.tempDir("preempt")
        let p = Process()
        p.environment = Support.cleanEnvironment
        p.executableURL = URL(fileURLWithPath: Support.binary)
        p.arguments = ["train", "--default_root_dir", c, "--resume", "auto"] + long
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: c + "/checkpoints/last.safetensors") && Date() < deadline { usleep(20_000) }
        kill(p.processIdentifier, SIGUSR1)
        p.waitUntilExit()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, out)
        XCTAssertTrue(out.contains("preempted: checkpoint written"), out)
        r = try Support.runBinary(["train", "--default_root_dir", c, "--resume", "auto"] + long)
        XCTAssertEqual(r.status, 0, r.output)
        let d = Support.tempDir("preempt-ref")
        XCTAssertEqual(try Support.runBinary(["train", "--default_root_dir", d] + long).status, 0)
        XCTAssertEqual(try Support.run(Support.binary, ["digest", "--checkpoint", c + "/checkpoints/last.safetensors"]).stdout,
                       try Support.run(Support.binary, ["digest", "--checkpoint", d + "/checkpoints/last.safetensors"]).stdout,
                       "preempted + resumed run ends with the weights of the uninterrupted run")
    }

    func testRealXeniumTilesTrainAndResume() throws {
        guard let shared = Support.shared else { throw XCTSkip("../shared is absent: real Xenium tiles unavailable") }
        let base = shared + "/data/xenium-lung-10k/tiles"
        let root = Support.tempDir("xenium")
        let args = ["--train_dir", base + "/train", "--val_dir", base + "/val", "--default_root_dir", root,
                    "--batch_size_train", "2", "--num_tx_tokens", "500"] + smallModel.dropFirst(2)
        var r = try Support.runBinary(["train", "--epochs", "2"] + args)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/checkpoints/last.safetensors"))
        r = try Support.runBinary(["train", "--epochs", "3", "--resume", "last"] + args)
        XCTAssertEqual(r.status, 0, r.output)
        let rows = try Support.metrics(root).filter { $0["validation_auroc"] != nil }
        XCTAssertEqual(rows.map { $0["epoch"]! }, ["2"])
        XCTAssertNotNil(Double(rows[0]["validation_loss"]!))
    }

    func testClearErrorsForBadInvocations() throws {
        let train = try Support.synth(tiles: 2, tx: 200, seed: 31)
        var r = try Support.runBinary(["train", "--train_dir", train, "--accelerator", "cuda", "--default_root_dir", Support.tempDir("cuda")])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--accelerator cuda is not supported"), r.stderr)

        r = try Support.runBinary(["train", "--train_dir", "/nonexistent/tiles", "--default_root_dir", Support.tempDir("missing")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("/nonexistent/tiles: no such directory"), r.stderr)

        // An output "directory" that is a file fails before training.
        let file = Support.tempDir("rootfile") + "/plain-file"
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        r = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", file])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains(file), r.stderr)

        r = try Support.runBinary(["train", "--train_dir", train, "--num_tx_tokens", "3", "--default_root_dir", Support.tempDir("tok")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("tx.x") && r.stderr.contains("--num_tx_tokens 3"), r.stderr)
    }
}

final class CheckpointSafetyTests: XCTestCase {
    /// kill -9 while `last.safetensors` is being rewritten: the previous `last` stays complete and loads.
    func testKillDuringCheckpointWriteLeavesLastLoadable() throws {
        let train = try Support.synth(tiles: 4, tx: 200, seed: 51)
        let root = Support.tempDir("ckptkill")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Support.binary)
        p.arguments = ["train", "--train_dir", train, "--default_root_dir", root, "--epochs", "1000", "--batch_size_train", "2"] + smallModel
        var env = Support.cleanEnvironment
        env["SEGGER_TEST_WRITE_PAUSE_MS"] = "400"
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let ck = root + "/checkpoints"
        let last = ck + "/last.safetensors"
        let deadline = Date().addingTimeInterval(120)
        // Wait for a complete `last`, then for the next write of it to be under way.
        while !FileManager.default.fileExists(atPath: last) && Date() < deadline { usleep(10_000) }
        var caught = false
        while Date() < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: ck)) ?? []
            if names.contains(where: { $0.hasPrefix(".last.safetensors.tmp") }) { caught = true; break }
            usleep(5_000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertTrue(caught, "never saw a checkpoint write in progress")
        let r = try Support.run(Support.binary, ["digest", "--checkpoint", last])
        XCTAssertEqual(r.status, 0, "last must load after a kill mid-write: \(r.output)")
        // And a run can resume from it.
        let resumed = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", root, "--resume", "last",
                                         "--epochs", "1", "--batch_size_train", "2"] + smallModel)
        XCTAssertEqual(resumed.status, 0, resumed.output)
    }
}

final class SeggerInteropTests: XCTestCase {
    /// segger's own .pt tiles train directly (dataset root accepted) and give the weights that the
    /// safetensors twins give.
    func testTrainsOnSeggerPtTilesLikeOnSafetensors() throws {
        guard let shared = Support.shared else { throw XCTSkip("../shared is absent: real segger .pt tiles unavailable") }
        let data = shared + "/data/xenium-lung-10k"
        let common = ["--epochs", "2", "--batch_size_train", "2"] + smallModel
        let a = Support.tempDir("pt")
        var r = try Support.runBinary(["train", "--train_dir", data + "/segger-pt", "--val_dir", data + "/segger-pt", "--default_root_dir", a] + common)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("6 training tiles, 1 validation tiles"), r.stdout)
        let b = Support.tempDir("st")
        r = try Support.runBinary(["train", "--train_dir", data + "/tiles/train", "--val_dir", data + "/tiles/val", "--default_root_dir", b] + common)
        XCTAssertEqual(r.status, 0, r.output)
        let digest = { (root: String) in try Support.run(Support.binary, ["digest", "--checkpoint", root + "/checkpoints/last.safetensors"]).stdout }
        XCTAssertEqual(try digest(a), try digest(b))
        XCTAssertEqual(try Support.metrics(a).last?["validation_auroc"], try Support.metrics(b).last?["validation_auroc"])
    }

    func testConvertWritesLoadableSafetensorsTiles() throws {
        guard let shared = Support.shared else { throw XCTSkip("../shared is absent: real segger .pt tiles unavailable") }
        let out = Support.tempDir("convert")
        let r = try Support.run(Support.binary, ["convert", "--from", shared + "/data/xenium-lung-10k/segger-pt/train", "--to", out])
        XCTAssertEqual(r.status, 0, r.output)
        let converted = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasSuffix(".safetensors") }
        XCTAssertEqual(converted.count, 6)
        let t = try Support.runBinary(["train", "--train_dir", out, "--default_root_dir", Support.tempDir("convert-run"), "--epochs", "1"] + smallModel)
        XCTAssertEqual(t.status, 0, t.output)
    }

    /// A Lightning checkpoint written by PyTorch (fixture made with torch + PyG + Lightning) fine-tunes here.
    func testInitWeightsFromLightningCheckpoint() throws {
        let ckpt = Support.packageRoot.appendingPathComponent("Tests/Fixtures/pt/model.ckpt").path
        guard FileManager.default.fileExists(atPath: ckpt) else { return XCTFail("fixture missing: \(ckpt)") }
        // The fixture's config (Scripts/make_pt_fixtures.py): segger main architecture, 20 tokens, init_emb 4,
        // hidden 3, heads 2, one mid layer.
        let flags = ["--num_tx_tokens", "20", "--init_emb", "4", "--hidden_channels", "3", "--out_channels", "2",
                     "--heads", "2", "--mid_layers", "1", "--no-residual", "--no-l2-normalize"]
        let train = try Support.synth(tiles: 2, tx: 200, seed: 61, extra: ["--num_tx_tokens", "20"])
        let r = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", Support.tempDir("ckpt"), "--epochs", "1",
                                   "--init_weights", ckpt] + flags)
        XCTAssertEqual(r.status, 0, r.output)
    }
}
