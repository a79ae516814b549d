// A run writes and deletes only its own checkpoints: another run's files — in another root, or earlier
// in the same root — stay byte for byte what they were (checked with checksums of every file).
import Foundation
import SafeTensors
import TestSupport
import XCTest

final class RunLineageTests: XCTestCase {
    let tiny = ["--batch_size_train", "2", "--lr", "3e-3"] + smallModel

    static func runID(_ checkpoint: String) throws -> String? {
        let meta = try SafeTensorsFile.readHeader(path: checkpoint).metadata
        let pos = try JSONSerialization.jsonObject(with: Data(meta["training_position"]!.utf8)) as! [String: Any]
        return pos["runID"] as? String
    }

    func epochFiles(_ root: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root + "/checkpoints")) ?? []).filter { $0.hasPrefix("epoch=") }.sorted()
    }

    /// Resuming run A's checkpoint into another root B starts a lineage of B's own: B rotates and replaces
    /// its best checkpoint as it trains, and not one file of A changes, even when A's position names one
    /// of A's files as the best (the path a trusting implementation deleted).
    func testResumingRunAIntoRootBLeavesEveryFileOfAUntouched() throws {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 101)
        let a = Support.tempDir("lineage-a"), b = Support.tempDir("lineage-b"), c = Support.tempDir("lineage-c")
        var r = try Support.runBinary(["train", "--train_dir", tiles, "--val_dir", tiles, "--default_root_dir", a,
                                   "--epochs", "3", "--save_top_k", "1"] + tiny)
        XCTAssertEqual(r.status, 0, r.output)
        let aEpochs = epochFiles(a)
        XCTAssertFalse(aEpochs.isEmpty)
        // A's position names one of A's epoch files, by absolute path as older versions stored it.
        try Support.editPosition(a + "/checkpoints/last.safetensors") { pos in
            pos["bestCheckpoint"] = a + "/checkpoints/" + aEpochs[0]
            pos["bestAUROC"] = 0.0
        }
        let before = Support.checksums(a)
        XCTAssertGreaterThanOrEqual(before.count, 4, "\(before.keys.sorted())")

        r = try Support.runBinary(["train", "--train_dir", tiles, "--val_dir", tiles, "--default_root_dir", b, "--epochs", "6",
                               "--save_top_k", "0", "--resume", a + "/checkpoints/last.safetensors"] + tiny)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("resumed from") && r.stdout.contains("lineage of its own"), r.stdout)
        XCTAssertTrue(r.stdout.contains("removed old checkpoint"), "B rotates its own files: \(r.stdout)")
        XCTAssertEqual(Support.checksums(a), before, "a file of run A changed")
        XCTAssertNotEqual(try Self.runID(b + "/checkpoints/last.safetensors"), try Self.runID(a + "/checkpoints/last.safetensors"))

        // From one of A's epoch files (not its last) likewise.
        r = try Support.runBinary(["train", "--train_dir", tiles, "--val_dir", tiles, "--default_root_dir", c, "--epochs", "5",
                               "--save_top_k", "0", "--resume", a + "/checkpoints/" + aEpochs.last!] + tiny)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(Support.checksums(a), before, "a file of run A changed")
    }

    /// A second, fresh run into a root that holds a run's checkpoints is refused before any work and
    /// changes nothing; `--resume auto` without `last` but with epoch files is refused likewise; `--resume
    /// auto` with `last` continues the same lineage.
    func testASecondRunIntoOneRootIsRefusedAndChangesNothing() throws {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 102)
        let d = Support.tempDir("twice")
        var r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", d, "--epochs", "3", "--seed", "1"] + tiny)
        XCTAssertEqual(r.status, 0, r.output)
        let id = try Self.runID(d + "/checkpoints/last.safetensors")
        XCTAssertNotNil(id)
        let before = Support.checksums(d)

        r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", d, "--epochs", "1", "--seed", "2"] + tiny)
        XCTAssertEqual(r.status, 1, r.output)
        for needle in [d + "/checkpoints", "last.safetensors", "epoch=2-step=6.safetensors", "--resume auto", "--default_root_dir"] {
            XCTAssertTrue(r.stderr.contains(needle), "the refusal names \(needle): \(r.stderr)")
        }
        XCTAssertEqual(Support.checksums(d), before, "a refused run changed the root")

        // Epoch files without a last: which run they belong to cannot be told.
        let last = d + "/checkpoints/last.safetensors", aside = Support.tempDir("aside") + "/last.safetensors"
        try FileManager.default.moveItem(atPath: last, toPath: aside)
        r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", d, "--epochs", "5", "--resume", "auto"] + tiny)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("--resume auto") && r.stderr.contains("no last.safetensors"), r.stderr)
        try FileManager.default.moveItem(atPath: aside, toPath: last)
        XCTAssertEqual(Support.checksums(d), before, "a refused run changed the root")

        // The same run continues, in the same lineage.
        r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", d, "--epochs", "5", "--resume", "auto"] + tiny)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(try Self.runID(last), id)
        for name in epochFiles(d) { XCTAssertEqual(try Self.runID(d + "/checkpoints/" + name), id, name) }
    }

    /// Edited metadata cannot make a run delete a file it did not write: a best-checkpoint path outside
    /// the root, a foreign epoch file of another run id, and a symbolic link named like an epoch file
    /// that leads out of the root all survive the deletions the run makes.
    func testEditedMetadataCannotMakeARunDeleteFilesItDidNotWrite() throws {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 103)
        let root = Support.tempDir("hostile"), outside = Support.tempDir("victims")
        var r = try Support.runBinary(["train", "--train_dir", tiles, "--val_dir", tiles, "--default_root_dir", root,
                                   "--epochs", "2", "--save_top_k", "0"] + tiny)
        XCTAssertEqual(r.status, 0, r.output)
        let last = root + "/checkpoints/last.safetensors"
        // Victims: a copy of this run's own checkpoint outside the root (same run id), a symbolic link to
        // it named like an epoch file, and an epoch file of another run id.
        let victim = outside + "/epoch=0-step=2.safetensors"
        try FileManager.default.copyItem(atPath: last, toPath: victim)
        try FileManager.default.createSymbolicLink(atPath: root + "/checkpoints/epoch=0-step=3.safetensors", withDestinationPath: victim)
        let foreign = root + "/checkpoints/epoch=0-step=1.safetensors"
        try FileManager.default.copyItem(atPath: last, toPath: foreign)
        try Support.editPosition(foreign) { $0["runID"] = "00000000000000000000000000000001" }
        let victims = Support.checksums(outside).merging(["foreign": Support.checksums(root + "/checkpoints")["epoch=0-step=1.safetensors"]!]) { a, _ in a }

        for (k, best) in [victim, "epoch=0-step=1.safetensors", "../../" + outside + "/epoch=0-step=2.safetensors"].enumerated() {
            // A best-so-far of 0 makes the next epoch the best, so the run removes the "previous best".
            try Support.editPosition(last) { pos in
                pos["bestCheckpoint"] = best
                pos["bestAUROC"] = 0.0
            }
            r = try Support.runBinary(["train", "--train_dir", tiles, "--val_dir", tiles, "--default_root_dir", root,
                                   "--epochs", "\(3 + k)", "--save_top_k", "0", "--resume", "auto"] + tiny)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertTrue(r.stdout.contains("not removing"), "says what it kept: \(r.stdout)")
            var now = Support.checksums(outside)
            now["foreign"] = Support.checksums(root + "/checkpoints")["epoch=0-step=1.safetensors"]
            XCTAssertEqual(now, victims, "round \(k) (best = \(best)) touched a file the run did not write")
            XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root + "/checkpoints/epoch=0-step=3.safetensors"), victim)
        }
    }

    /// Temporary files that killed writes of this program leave in the checkpoints directory are removed
    /// at start-up and named; other files that merely look alike stay.
    func testStaleTemporaryFilesAreRemovedAndNamed() throws {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 104)
        let root = Support.tempDir("stale")
        let ck = root + "/checkpoints"
        try FileManager.default.createDirectory(atPath: ck, withIntermediateDirectories: true)
        let stale = [".last.safetensors.tmp-999999", ".epoch=3-step=12.safetensors.tmp-17", ".write-test-4242"]
        let kept = [".notes.txt.tmp-12", "last.safetensors.tmp-5", ".epoch=3-step=12.safetensors.tmp-x", "mine.tmp-1"]
        for name in stale + kept { _ = FileManager.default.createFile(atPath: ck + "/" + name, contents: Data("partial".utf8)) }
        let r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "1"] + tiny)
        XCTAssertEqual(r.status, 0, r.output)
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: ck))
        for name in stale {
            XCTAssertFalse(left.contains(name), "\(name) should be removed")
            XCTAssertTrue(r.stdout.contains("removed \(ck)/\(name)"), "names \(name): \(r.stdout)")
        }
        for name in kept { XCTAssertTrue(left.contains(name), "\(name) is not this program's temporary file") }
    }

    /// Two runs never write into one root at once: the second is refused while the first holds the root.
    func testARootInUseIsRefused() throws {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 105)
        let root = Support.tempDir("inuse")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Support.binary)
        p.arguments = ["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "100000"] + tiny
        p.environment = Support.cleanEnvironment
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) }; p.waitUntilExit() }
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: root + "/checkpoints/last.safetensors") && Date() < deadline { usleep(20_000) }
        let r = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", root, "--epochs", "3", "--resume", "auto"] + tiny)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("in use by another segger-train run") && r.stderr.contains("pid \(p.processIdentifier)"), r.stderr)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "SIGTERM: checkpoint and a clean exit")
    }
}
