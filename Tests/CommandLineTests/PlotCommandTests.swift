// curves.svg through the real binary: a training run redraws it at every epoch end, `segger-train plot`
// draws it for a finished run (the picture itself is tested in SeggerTrainTests.CurvesTests).
import Foundation
import TestSupport
import XCTest

final class PlotCommandTests: XCTestCase {
    /// A training run redraws curves.svg at every epoch end; `plot` draws the same picture for it from a
    /// root dir or a version dir, and refuses what is not a run.
    func testTrainingWritesCurvesAndPlotRedrawsThem() throws {
        let train = try Support.synth(tiles: 4, tx: 300, seed: 31)
        let root = Support.tempDir("plot")
        let r = try Support.runBinary(["train", "--train_dir", train, "--val_dir", train, "--default_root_dir", root,
                                   "--epochs", "3", "--batch_size_train", "2"] + smallModel)
        XCTAssertEqual(r.status, 0, r.output)
        let version = root + "/lightning_logs/version_0"
        let written = try String(contentsOfFile: version + "/curves.svg", encoding: .utf8)
        XCTAssertEqual(written.components(separatedBy: "<polyline").count - 1, 4)
        XCTAssertTrue(written.contains(">2</text>"), "the x axis reaches the last epoch (2)")

        try FileManager.default.removeItem(atPath: version + "/curves.svg")
        var p = try Support.run(Support.binary, ["plot", root])
        XCTAssertEqual(p.status, 0, p.output)
        XCTAssertEqual(try String(contentsOfFile: version + "/curves.svg", encoding: .utf8), written)

        // A second run in the same root (continuing the first: a fresh one would be refused): plot takes the
        // newest version.
        XCTAssertEqual(try Support.runBinary(["train", "--train_dir", train, "--default_root_dir", root, "--epochs", "4",
                                          "--resume", "auto", "--batch_size_train", "2"] + smallModel).status, 0)
        p = try Support.run(Support.binary, ["plot", root])
        XCTAssertTrue(p.stdout.contains("version_1/curves.svg"), p.output)
        let out = root + "/elsewhere.svg"
        p = try Support.run(Support.binary, ["plot", version, "--out", out])
        XCTAssertEqual(p.status, 0, p.output)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), written)

        for bad in [root + "/missing", root + "/checkpoints", root + "/checkpoints/last.safetensors"] {
            p = try Support.run(Support.binary, ["plot", bad])
            XCTAssertEqual(p.status, 1, p.output)
            XCTAssertTrue(p.stderr.hasPrefix("error: ") && p.stderr.contains(bad), p.stderr)
        }
    }
}
