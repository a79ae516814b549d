// Progress output: the epoch bar's parts and width, and the clock.
import Foundation
@testable import SeggerTrain
import XCTest

final class ProgressTests: XCTestCase {
    func testBarShowsPositionTimesRateAndLossWithin100Columns() {
        let p = Progress(enabled: false, plainInterval: 30)
        p.startEpoch(2, of: 20, batches: 24, resumedAt: 0)
        p.started -= 3
        p.batchFinished(12, step: 60, loss: 0.41234, tilesPerSecond: 8.06)
        let now = p.started + 3
        let bar = p.bar(now: now, width: 200)
        XCTAssertTrue(bar.hasPrefix("epoch 3/20  50%|"), bar)
        XCTAssertTrue(bar.hasSuffix("| 12/24 [00:03<00:03, 8.1 tiles/s, loss 0.4123]"), bar)
        XCTAssertEqual(bar.count, 100, "as wide as 100 columns at most")
        XCTAssertEqual(p.bar(now: now, width: 80).count, 80, "a narrower terminal")
        XCTAssertEqual(p.plainLine(now: now),
                       "epoch 3/20  batch 12/24  step 60  loss 0.4123  8.1 tiles/s  elapsed 00:03  left 00:03")
        // A resumed epoch estimates from the batches done here only.
        p.startEpoch(0, of: 1, batches: 10, resumedAt: 8)
        p.started -= 10
        p.batchFinished(9, step: 9, loss: 1, tilesPerSecond: 1)
        XCTAssertEqual(p.times(now: p.started + 10).remaining!, 10, accuracy: 1e-9)
    }

    func testBarCellsAndClock() {
        XCTAssertEqual(barCells(0, 4), "    ")
        XCTAssertEqual(barCells(1, 4), "████")
        XCTAssertEqual(barCells(0.5, 4), "██  ")
        XCTAssertEqual(barCells(0.55, 4), "██▏ ")
        XCTAssertEqual(barCells(0.999, 3).count, 3)
        XCTAssertEqual(clock(0), "00:00")
        XCTAssertEqual(clock(125.4), "02:05")
        XCTAssertEqual(clock(3725), "1:02:05")
    }
}
