// Tile helpers shared by this target's tests: the golden fixture tiles, the real tiles, every invariant of a tile.
import Foundation
@testable import SafeTensors
@testable import SeggerTiles
import TestSupport
import XCTest

/// The tiles of the repository's golden files: `Tests/Fixtures/golden/<mode>/tiles`, mode `token` or `embedding`.
func goldenFixtureTiles(_ mode: String) -> String {
    Support.fixture("golden/\(mode)/tiles")
}

/// The real Xenium tiles (train, val, test), or a skip.
func realTilePaths() throws -> [String] {
    let base = try Support.requireShared("data/xenium-lung-10k/tiles", for: "real Xenium tiles unavailable")
    var out: [String] = []
    for split in ["train", "val", "test"] {
        out += try TileDirectory.list((base as NSString).appendingPathComponent(split))
    }
    return out
}

/// Every invariant a loaded tile must satisfy (indices in range, CSR consistent, label counts).
func checkInvariants(_ t: Tile, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertGreaterThan(t.numTx, 0, file: file, line: line)
    switch t.tx {
    case .tokens(let v): XCTAssertEqual(v.count, t.numTx, file: file, line: line); XCTAssertTrue(v.allSatisfy { $0 >= 0 }, file: file, line: line)
    case .features(let v, let d): XCTAssertEqual(v.count, t.numTx * d, file: file, line: line); XCTAssertTrue(v.allSatisfy(\.isFinite), file: file, line: line)
    }
    XCTAssertEqual(t.bdX.count, t.numBd * t.bdDim, file: file, line: line)
    XCTAssertTrue(t.bdX.allSatisfy(\.isFinite), file: file, line: line)
    for (r, ns, nd) in [(t.neighbors, t.numTx, t.numTx), (t.belongs, t.numTx, t.numBd)] {
        XCTAssertEqual(r.numSrc, ns, file: file, line: line); XCTAssertEqual(r.numDst, nd, file: file, line: line)
        XCTAssertEqual(r.src.count, r.dst.count, file: file, line: line)
        XCTAssertTrue(r.src.allSatisfy { $0 >= 0 && Int($0) < ns }, file: file, line: line)
        XCTAssertTrue(r.dst.allSatisfy { $0 >= 0 && Int($0) < nd }, file: file, line: line)
        XCTAssertEqual(r.dstStart.count, nd + 1, file: file, line: line)
        XCTAssertEqual(Int(r.dstStart.last ?? -1), r.count, file: file, line: line)
        for i in 0..<nd {
            for k in Int(r.dstStart[i])..<Int(r.dstStart[i + 1]) {
                let e = Int(r.edgeByDst[k])
                if r.dst[e] != Int32(i) || r.src[e] != r.srcByDst[k] { XCTFail("CSR inconsistent at destination \(i)", file: file, line: line); return }
            }
        }
    }
    XCTAssertEqual(t.labelTx.count, t.labels.count, file: file, line: line)
    XCTAssertEqual(t.labelBd.count, t.labels.count, file: file, line: line)
    XCTAssertTrue(t.labelTx.allSatisfy { $0 >= 0 && Int($0) < t.numTx }, file: file, line: line)
    XCTAssertTrue(t.labelBd.allSatisfy { $0 >= 0 && Int($0) < t.numBd }, file: file, line: line)
    XCTAssertTrue(t.labels.allSatisfy { $0 == 0 || $0 == 1 }, file: file, line: line)
}
