// What a run does with odd but legal settings, as PyTorch / Lightning do it: an epoch padded only to
// the rank count, a batch above the tile count is one batch, --max_steps -1 is no limit, --save_top_k -1
// keeps all; a run that would train nothing says so instead of "succeeding"; a stop signal is honoured
// between tiles; inputs that would be counted twice are refused; messages say the real problem.
import Foundation
import SafeTensors
import TestSupport
import XCTest

final class RunSemanticsTests: XCTestCase {
    func stepsPerEpoch(_ root: String) throws -> [String] {
        try Support.metrics(root).filter { $0["train_loss_epoch"] != nil }.map { $0["step"]! }
    }

    /// A batch size far above the tile count is one batch of every tile (not the tiles repeated up to
    /// the batch size): 2 epochs are 2 steps of 4 tiles, at any size up to the flag's bound.
    func testABatchLargerThanTheTilesIsOneBatch() throws {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 121)
        for batch in ["4096", "2147483647"] {
            let root = Support.tempDir("bigbatch")
            let r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "2",
                                       "--batch_size_train", batch] + smallModel, timeout: 120)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertEqual(try stepsPerEpoch(root), ["1", "2"], "one step per epoch")
            XCTAssertTrue(r.stdout.contains("batch 1/1"), r.stdout)
        }
        // Two ranks, 5 tiles, 2 per rank: the epoch is padded to 6 (a multiple of the ranks, as
        // DistributedSampler pads) and cut into a batch of 4 and a last batch of 2.
        guard Support.mpirun != nil else { return }
        let five = try Support.synth(tiles: 5, tx: 200, seed: 122)
        let root = Support.tempDir("pad2")
        let r = try Support.runBinary(["train", "--train_dir", five, "--default_root_dir", root, "--epochs", "2",
                                   "--batch_size_train", "2", "--log_every_n_steps", "1"] + smallModel, ranks: 2)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(try stepsPerEpoch(root), ["2", "4"], "two steps per epoch: 4 tiles, then 2")
    }

    /// Runs that could take no optimizer step are errors before anything is written; --max_steps and
    /// --save_top_k follow Lightning (-1: no limit, keep all).
    func testRunsThatTrainNothingAreErrorsAndLightningLimits() throws {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 123)
        var root = Support.tempDir("droplast")
        var r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "2",
                                   "--batch_size_train", "8", "--drop_last"] + smallModel)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("--drop_last") && r.stderr.contains("nothing would be trained"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/checkpoints").filter { $0.hasSuffix(".safetensors") }, [])

        // Tiles without label pairs.
        let unlabelled = Support.tempDir("unlabelled")
        for name in try FileManager.default.contentsOfDirectory(atPath: tiles) where name.hasSuffix(".safetensors") {
            try FileManager.default.copyItem(atPath: tiles + "/" + name, toPath: unlabelled + "/" + name)
            try Support.edit(unlabelled + "/" + name) { t, _ in t.removeAll { $0.0.hasPrefix("tx__belongs__bd.edge_label") } }
        }
        root = Support.tempDir("nolabels")
        r = try Support.runBinary(["train", "--train_dir", unlabelled, "--default_root_dir", root, "--epochs", "2"] + smallModel)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("has label pairs") && r.stderr.contains("nothing to train"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/checkpoints").filter { $0.hasSuffix(".safetensors") }, [])

        r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", Support.tempDir("max0"), "--max_steps", "0"] + smallModel)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--max_steps 0"), r.stderr)

        // -1: no limit; 3: exactly 3 steps (mid-epoch: last holds the position); -1 for save_top_k keeps all.
        root = Support.tempDir("maxsteps")
        r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "4", "--batch_size_train", "2",
                               "--max_steps", "-1", "--save_top_k", "-1"] + smallModel)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(try stepsPerEpoch(root), ["2", "4", "6", "8"])
        let kept = try FileManager.default.contentsOfDirectory(atPath: root + "/checkpoints").filter { $0.hasPrefix("epoch=") }
        XCTAssertEqual(kept.count, 4, "--save_top_k -1 keeps every epoch checkpoint: \(kept)")
        root = Support.tempDir("max3")
        r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "10", "--batch_size_train", "2",
                               "--max_steps", "3"] + smallModel)
        XCTAssertEqual(r.status, 0, r.output)
        let meta = try SafeTensorsFile.readHeader(path: root + "/checkpoints/last.safetensors").metadata
        XCTAssertEqual(meta["global_step"], "3")
    }

    /// SIGTERM in the middle of a long step (10 tiles on one rank) ends the run within about one
    /// tile's time, not at the end of the step; the abandoned step is redone on resume, and the result
    /// equals an uninterrupted run's bit for bit.
    func testStopSignalIsHonouredBetweenTilesOfALongStep() throws {
        let tiles = try Support.synth(tiles: 10, tx: 800, seed: 124)
        let args = ["--train_dir", tiles, "--epochs", "1", "--batch_size_train", "10"] + smallModel
        let reference = Support.tempDir("longstep-ref")
        let ref = try Support.runBinary(["train", "--default_root_dir", reference] + args)
        XCTAssertEqual(ref.status, 0, ref.output)
        let stepSeconds = Double(try Support.metrics(reference).first { $0["elapsed_s"] != nil }!["elapsed_s"]!)!

        let root = Support.tempDir("longstep")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Support.binary)
        p.arguments = ["train", "--default_root_dir", root, "--resume", "auto"] + args
        p.environment = Support.cleanEnvironment
        let pipe = Pipe()
        p.standardOutput = pipe
        let output = OutputBuffer()
        pipe.fileHandleForReading.readabilityHandler = { output.append($0.availableData) }
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while !output.text.contains("segger-train: 1 rank(s)") && p.isRunning && Date() < deadline { usleep(10_000) }
        usleep(UInt32(min(0.3 * stepSeconds, 1) * 1e6))  // well inside the step
        let signalled = Date()
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        let stopSeconds = Date().timeIntervalSince(signalled)
        pipe.fileHandleForReading.readabilityHandler = nil
        XCTAssertEqual(p.terminationStatus, 0, output.text)
        print("step of 10 tiles: \(stepSeconds) s; stopped \(String(format: "%.2f", stopSeconds)) s after SIGTERM")
        if stepSeconds > 3 {
            XCTAssertTrue(output.text.contains("preempted: checkpoint written at epoch 0 step 0"), output.text)
            XCTAssertLessThan(stopSeconds, 0.5 * stepSeconds, "the stop waited for the whole step")
        } else {
            // A fast (release) build: the step may end before the signal lands; the stop stays prompt.
            XCTAssertLessThan(stopSeconds, 2, "the stop took too long")
        }

        let r = try Support.runBinary(["train", "--default_root_dir", root, "--resume", "auto"] + args)
        XCTAssertEqual(r.status, 0, r.output)
        let digest = { (dir: String) in try Support.run(Support.binary, ["digest", "--checkpoint", dir + "/checkpoints/last.safetensors"]).stdout }
        XCTAssertEqual(try digest(root), try digest(reference), "the redone step gives the uninterrupted run's weights")
    }

    /// A tile in two formats is refused (it would count twice), and so is `convert --to` the source
    /// directory, into it, or a directory that contains it, or over files already there.
    func testTilesThatWouldCountTwiceAreRefused() throws {
        let fixture = Support.packageRoot.appendingPathComponent("Tests/Fixtures/pt/tile_basic.pt").path
        let parent = Support.tempDir("convert-src"), src = parent + "/pt"
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture, toPath: src + "/tile_basic.pt")
        for (to, says) in [(src, "is --from"), (src + "/converted", "lies inside --from"), (parent, "contains --from"), (src + "/./", "is --from")] {
            let r = try Support.run(Support.binary, ["convert", "--from", src, "--to", to])
            XCTAssertEqual(r.status, 1, "\(to): \(r.output)")
            XCTAssertTrue(r.stderr.contains("--to") && r.stderr.contains(says), "\(to): \(r.stderr)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: src), ["tile_basic.pt"], "nothing written next to the source")
        let out = Support.tempDir("convert-out")
        var r = try Support.run(Support.binary, ["convert", "--from", src, "--to", out])
        XCTAssertEqual(r.status, 0, r.output)
        let written = Support.checksums(out)
        r = try Support.run(Support.binary, ["convert", "--from", src, "--to", out])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("already holds") && r.stderr.contains("tile_basic.safetensors"), r.stderr)
        XCTAssertEqual(Support.checksums(out), written)

        // Both formats of one tile in one directory.
        try FileManager.default.copyItem(atPath: fixture, toPath: out + "/tile_basic.pt")
        r = try Support.runBinary(["train", "--train_dir", out, "--default_root_dir", Support.tempDir("twins")])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("two formats") && r.stderr.contains("tile_basic.pt and tile_basic.safetensors"), r.stderr)
        r = try Support.run(Support.binary, ["eval", "--tiles", out, "--checkpoint", "/nonexistent.safetensors"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("--tiles") && r.stderr.contains("two formats"), r.stderr)

        // synth never writes into a directory that holds tiles.
        let synthOut = try Support.synth(tiles: 2, tx: 200, seed: 125)
        let before = Support.checksums(synthOut)
        r = try Support.run(Support.binary, ["synth", "--out", synthOut, "--tiles", "1", "--tx_per_tile", "100", "--seed", "9"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("--out already holds"), r.stderr)
        XCTAssertEqual(Support.checksums(synthOut), before)
    }

    /// An embedding-mode run resumes (its checkpoint's widths come from the tiles, so the config is
    /// compared once the tiles are read: compared before, every embedding-mode resume was refused).
    func testEmbeddingModeRunResumes() throws {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 128, extra: ["--embedding_dim", "6"])
        let root = Support.tempDir("emb-resume")
        var r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "1"] + smallModel)
        XCTAssertEqual(r.status, 0, r.output)
        r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "2", "--resume", "last"] + smallModel)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("resumed from"), r.stdout)
    }

    /// Messages that used to mislead now say the real problem.
    func testMessagesSayTheRealProblem() throws {
        let tiles = try Support.synth(tiles: 2, tx: 200, seed: 126)
        let dir = Support.tempDir("msg"), file = dir + "/plain-file"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        var r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", file] + smallModel)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("--default_root_dir \(file) is a file, not a directory"), r.stderr)
        r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", file + "/run"] + smallModel)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("\(file) is a file, not a directory"), r.stderr)
        XCTAssertFalse(r.stderr.contains("NSCocoaErrorDomain"), r.stderr)

        // --skip_bad_tiles with every tile bad: the reasons, not just a count.
        let bad = Support.tempDir("allbad")
        for i in 0..<3 { _ = FileManager.default.createFile(atPath: bad + "/t\(i).safetensors", contents: Data("not a tile \(i)".utf8)) }
        r = try Support.runBinary(["train", "--train_dir", bad, "--default_root_dir", Support.tempDir("allbad-run"), "--skip_bad_tiles"] + smallModel)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("all 3 are bad"), r.stderr)
        for i in 0..<3 { XCTAssertTrue(r.stderr.contains(bad + "/t\(i).safetensors: "), "reason for t\(i): \(r.stderr)") }

        // --init_weights with --resume: one would be ignored.
        r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", Support.tempDir("both"),
                               "--init_weights", "w.safetensors", "--resume", "auto"] + smallModel)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--init_weights and --resume"), r.stderr)
    }

    /// hparams.yaml keeps every string a string, whatever it looks like, and every number, bool, null
    /// and list the trainer writes typed (read back with PyYAML, as Lightning would).
    func testHparamsYamlQuotesStringsAndKeepsTypes() throws {
        guard (try? Support.run("/usr/bin/env", ["python3", "-c", "import yaml"]))?.status == 0 else {
            throw XCTSkip("python3 with PyYAML is not installed: cannot read hparams.yaml back as Lightning would")
        }
        let tiles = try Support.synth(tiles: 2, tx: 200, seed: 127)
        let cwd = Support.tempDir("yaml")
        for name in ["1e3", "[x]", "true"] { try FileManager.default.copyItem(atPath: tiles, toPath: cwd + "/" + name) }
        let ok = try Support.run(Support.binary, ["train", "--train_dir", "1e3", "--val_dir", "[x]", "--default_root_dir", "nan",
                                                  "--epochs", "1", "--lr", "1e-5", "--seed", "18446744073709551615"] + smallModel, cwd: cwd)
        XCTAssertEqual(ok.status, 0, ok.output)
        let yaml = cwd + "/nan/lightning_logs/version_0/hparams.yaml"
        let parsed = try Support.run("/usr/bin/env", ["python3", "-c", """
            import json, sys, yaml
            d = yaml.safe_load(open(sys.argv[1]))
            out = {k: [type(v).__name__, v] for k, v in d.items()}
            out["seed"] = [type(d["seed"]).__name__, str(d["seed"])]
            print(json.dumps(out))
            """, yaml])
        XCTAssertEqual(parsed.status, 0, parsed.output)
        let d = try JSONSerialization.jsonObject(with: Data(parsed.stdout.utf8)) as! [String: [Any]]
        func type(_ k: String) -> String { d[k]?[0] as? String ?? "missing" }
        XCTAssertEqual(d["train_dir"]?[1] as? String, "1e3")
        XCTAssertEqual(d["val_dir"]?[1] as? String, "[x]")
        XCTAssertEqual(d["default_root_dir"]?[1] as? String, "nan")
        for k in ["train_dir", "val_dir", "default_root_dir", "aggr", "optimizer", "grad_compression", "loss_reduction", "run_id"] {
            XCTAssertEqual(type(k), "str", k)
        }
        for k in ["epochs", "batch_size_train", "heads", "bd_feature_dim", "seed", "save_top_k", "max_steps"] { XCTAssertEqual(type(k), "int", k) }
        for k in ["lr", "weight_decay", "eps", "grad_clip", "bucket_cap_mb"] { XCTAssertEqual(type(k), "float", k) }
        for k in ["residual", "l2_normalize", "drop_last", "skip_bad_tiles"] { XCTAssertEqual(type(k), "bool", k) }
        XCTAssertEqual(type("tx_feature_dim"), "NoneType")
        XCTAssertEqual(type("betas"), "list")
        XCTAssertEqual(d["lr"]?[1] as? Double, 1e-5)
        XCTAssertEqual(d["eps"]?[1] as? Double, 1e-8)
        XCTAssertEqual(d["seed"]?[1] as? String, "18446744073709551615")
    }
}

/// Output of a child process collected from a pipe's handler thread.
final class OutputBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
}
