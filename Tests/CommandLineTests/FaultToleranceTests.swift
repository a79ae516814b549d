// Bad input and faults end in a clear message (naming the file, the step, the rank), never a crash or a
// hang, and nothing already written is lost.
import Foundation
import SafeTensors
import TestSupport
import XCTest

final class FaultToleranceTests: XCTestCase {
    /// A copy of generated tiles with one tile corrupted (an edge index out of range).
    func directoryWithABadTile() throws -> (dir: String, bad: String) {
        let src = try Support.synth(tiles: 6, tx: 300, seed: 71)
        let dir = Support.tempDir("bad")
        for name in try FileManager.default.contentsOfDirectory(atPath: src) where name.hasSuffix(".safetensors") {
            try FileManager.default.copyItem(atPath: src + "/" + name, toPath: dir + "/" + name)
        }
        let bad = dir + "/tile_00003.safetensors"
        let f = try SafeTensorsFile.read(path: bad)
        var tensors = f.names.map { ($0, f[$0]!) }
        let i = tensors.firstIndex { $0.0 == "tx__neighbors__tx.edge_index" }!
        var v = tensors[i].1.int64s()!
        v[0] = 1_000_000
        tensors[i].1 = Tensor(v, shape: tensors[i].1.shape)
        try SafeTensorsFile.write(tensors, metadata: f.metadata, to: bad)
        FileManager.default.createFile(atPath: dir + "/notes.txt", contents: Data("not a tile".utf8))
        return (dir, bad)
    }

    func testBadTileStopsWithItsNameOrIsSkippedIdenticallyOnEveryRank() throws {
        let (dir, bad) = try directoryWithABadTile()
        var r = try Support.runBinary(["train", "--train_dir", dir, "--default_root_dir", Support.tempDir("bad1"), "--epochs", "1"] + smallModel)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains(bad) && r.stderr.contains("tx__neighbors__tx.edge_index") && r.stderr.contains("out of range"), r.stderr)
        XCTAssertTrue(r.stderr.contains("--skip_bad_tiles"), "the error says how to skip: \(r.stderr)")

        let ranks = Support.mpirun == nil ? 1 : 2
        let root = Support.tempDir("bad2")
        r = try Support.runBinary(["train", "--train_dir", dir, "--default_root_dir", root, "--epochs", "2", "--skip_bad_tiles",
                               "--batch_size_train", "1"] + smallModel, ranks: ranks)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("skipped 1 bad tile(s)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("5 training tiles"), r.stdout)
        XCTAssertTrue(r.stdout.contains(Support.finalDigestLine(ranks: ranks)), r.output)
    }

    func testNonFiniteLossStopsWithStepTilesAndRank() throws {
        let train = try Support.synth(tiles: 4, tx: 300, seed: 72)
        let root = Support.tempDir("nan")
        // An absurd learning rate drives the weights to inf within a step or two.
        let r = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", root, "--epochs", "5",
                                   "--lr", "1e37", "--no-residual", "--no-l2-normalize"] + smallModel)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertNotNil(r.stderr.range(of: #"non-finite loss at epoch \d+, step \d+"#, options: .regularExpression), r.stderr)
        XCTAssertTrue(r.stderr.contains("rank 0:") && r.stderr.contains(train + "/tile_"), "names the rank and the tiles: \(r.stderr)")
    }

    func testResumeWithDifferentConfigSaysWhatDiffers() throws {
        let train = try Support.synth(tiles: 2, tx: 200, seed: 73)
        let root = Support.tempDir("cfg")
        XCTAssertEqual(try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", root, "--epochs", "1"] + smallModel).status, 0)
        let other = smallModel.map { $0 == "16" ? "32" : $0 } // hidden_channels 16 → 32
        let r = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", root, "--epochs", "2", "--resume", "last"] + other)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("hidden_channels: 16 vs 32"), r.stderr)
        let missing = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", Support.tempDir("nolast"), "--resume", "last"] + smallModel)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("--resume last: no checkpoint at"), missing.stderr)
    }

    func testDevicesMustMatchTheRanksStarted() throws {
        let train = try Support.synth(tiles: 2, tx: 200, seed: 73)
        let r = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", Support.tempDir("dev"), "--devices", "4"] + smallModel)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--devices 4 does not match the 1 MPI rank(s)"), r.stderr)
    }

    func testSLURMNTasksMismatchIsCaught() throws {
        let train = try Support.synth(tiles: 2, tx: 200, seed: 73)
        let r = try Support.run(Support.binary, ["train", "--train_dir", train, "--default_root_dir", Support.tempDir("slurm")] + smallModel,
                                env: ["SLURM_NTASKS": "4"])
        // Support.run drops SLURM_NTASKS from the inherited environment, but `env` puts it back.
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("SLURM_NTASKS is 4 but MPI started 1 rank(s)"), r.stderr)
    }
}

final class EmbeddingModeTests: XCTestCase {
    /// Embedding-mode tiles (tx.x float features) train end to end in both architectures.
    func testEmbeddingModeTrains() throws {
        let train = try Support.synth(tiles: 4, tx: 300, seed: 81, extra: ["--embedding_dim", "12"])
        for arch in [[], ["--no-residual", "--no-l2-normalize"]] {
            let root = Support.tempDir("emb")
            let r = try Support.runBinary(["train", "--train_dir", train, "--val_dir", train, "--default_root_dir", root, "--epochs", "2"] + smallModel + arch)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertTrue(r.stdout.contains("embedding mode"), r.stdout)
            let f = try SafeTensorsFile.read(path: root + "/checkpoints/last.safetensors")
            XCTAssertEqual(f["model.lin0.tx.weight"]?.shape, [8, 12], "lin0.tx projects the 12 features")
        }
    }
}

final class KillAndDiskTests: XCTestCase {
    /// kill -9 in the middle of training, then `--resume last`: the final weights equal an uninterrupted
    /// run's bit for bit (the epoch checkpoint carries weights, optimizer moments and the position).
    func testSIGKILLMidTrainingThenResumeIsBitIdentical() throws {
        let train = try Support.synth(tiles: 8, tx: 300, seed: 91)
        let args = ["--train_dir", train, "--epochs", "300", "--batch_size_train", "2", "--lr", "1e-3"] + smallModel
        let reference = Support.tempDir("kill-ref")
        XCTAssertEqual(try Support.runBinary(["train", "--default_root_dir", reference] + args).status, 0)

        let root = Support.tempDir("kill-run")
        let p = Process()
        p.environment = Support.cleanEnvironment
        p.executableURL = URL(fileURLWithPath: Support.binary)
        p.arguments = ["train", "--default_root_dir", root] + args
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: root + "/checkpoints")) ?? []
            if names.filter({ $0.hasPrefix("epoch=") }).count >= 3 { break }
            usleep(2_000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "killed mid-run, not finished")
        let r = try Support.runBinary(["train", "--default_root_dir", root, "--resume", "last"] + args)
        XCTAssertEqual(r.status, 0, r.output)
        let digest = { (dir: String) in try Support.run(Support.binary, ["digest", "--checkpoint", dir + "/checkpoints/last.safetensors"]).stdout }
        XCTAssertEqual(try digest(root), try digest(reference))
    }

    /// A full disk at a checkpoint write: a clear error naming the file, and the last good checkpoint intact.
    func testFullDiskReportsAndKeepsLastCheckpoint() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to mount a small tmpfs") }
        let train = try Support.synth(tiles: 4, tx: 300, seed: 92)
        let mnt = Support.tempDir("fulldisk")
        // Room for a few checkpoints of this small model (~240 KB each with the optimizer state), not for many.
        let m = try Support.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1200k", "tmpfs", mnt])
        guard m.status == 0 else { throw XCTSkip("cannot mount tmpfs here: \(m.output)") }
        defer { _ = try? Support.run("/bin/umount", [mnt]) }
        let r = try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", mnt + "/run", "--epochs", "200",
                                   "--save_top_k", "100"] + smallModel)
        XCTAssertNotEqual(r.status, 0, "the run cannot finish on a full disk")
        XCTAssertTrue(r.stderr.contains("writing a checkpoint failed") && r.stderr.contains("No space left on device"), r.stderr)
        XCTAssertTrue(r.stderr.contains(mnt + "/run/checkpoints/"), "names the file: \(r.stderr)")
        let d = try Support.run(Support.binary, ["digest", "--checkpoint", mnt + "/run/checkpoints/last.safetensors"])
        XCTAssertEqual(d.status, 0, "the last good checkpoint still loads: \(d.output)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: mnt + "/run/checkpoints").filter { $0.contains(".tmp") }
        XCTAssertEqual(leftovers, [], "no temporary files left behind")
    }
}
