// What a training run prints on a terminal and in a log, through the real binary (the bar's parts are
// tested in SeggerTrainTests.ProgressTests).
import Foundation
import TestSupport
import XCTest

final class ProgressOutputTests: XCTestCase {
    /// A run with its stdout taken for a terminal (SEGGER_PROGRESS=tty) redraws one bar per epoch with
    /// carriage returns and leaves it finished; in a log, every line — bars and epoch summaries — fits in
    /// 100 columns, and one rank prints no replica check.
    func testTrainingOutputOnATerminalAndInALog() throws {
        let train = try Support.synth(tiles: 4, tx: 300, seed: 33)
        let args = ["train", "--train_dir", train, "--val_dir", train, "--epochs", "2", "--batch_size_train", "1"] + smallModel
        let tty = try Support.run(Support.binary, args + ["--default_root_dir", Support.tempDir("tty")],
                                  env: ["SEGGER_PROGRESS": "tty", "COLUMNS": "100"])
        XCTAssertEqual(tty.status, 0, tty.output)
        XCTAssertTrue(tty.stdout.contains("\r\u{1B}[Kepoch 1/2"), tty.stdout)
        XCTAssertTrue(tty.stdout.contains("100%|"), "the finished bar stays: \(tty.stdout)")
        let plain = try Support.run(Support.binary, args + ["--default_root_dir", Support.tempDir("log"), "--progress_seconds", "0"])
        XCTAssertEqual(plain.status, 0, plain.output)
        XCTAssertFalse(plain.stdout.contains("\r"), "no carriage returns in a log")
        XCTAssertTrue(plain.stdout.contains("epoch 2/2  batch 4/4"), plain.stdout)
        for r in [tty, plain] {
            XCTAssertFalse(r.stdout.contains("replicas:"), "one rank has no replicas to compare")
            XCTAssertTrue(r.stdout.contains(Support.finalDigestLine(ranks: 1)), r.stdout)
            let lines = r.stdout.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
                .map { $0.replacingOccurrences(of: "\u{1B}[K", with: "") }
            let summaries = lines.filter { $0.contains("train_loss") }
            XCTAssertEqual(summaries.count, 2, r.stdout)
            for line in lines where line.hasPrefix("epoch") || line.hasPrefix("  ") {
                XCTAssertLessThanOrEqual(line.count, 100, line)
            }
        }
    }
}
