import Foundation
import XCTest
@testable import SafeTensors
@testable import SeggerTiles

/// `<package root>/../shared`, or nil when absent (as on a user's machine).
func sharedDirectory() -> String? {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let shared = root.deletingLastPathComponent().appendingPathComponent("shared").path
    var isDir: ObjCBool = false
    return FileManager.default.fileExists(atPath: shared, isDirectory: &isDir) && isDir.boolValue ? shared : nil
}

/// The tiles of the repository's golden files: `Tests/Fixtures/golden/<mode>/tiles`, mode `token` or `embedding`.
func goldenFixtureTiles(_ mode: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/golden/\(mode)/tiles").path
}

func requireShared(_ sub: String) throws -> String {
    guard let s = sharedDirectory() else { throw XCTSkip("shared test data (../shared) is absent") }
    let p = (s as NSString).appendingPathComponent(sub)
    guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("\(p) is absent") }
    return p
}

/// The real Xenium tiles (train, val, test), or a skip.
func realTilePaths() throws -> [String] {
    let base = try requireShared("data/xenium-lung-10k/tiles")
    var out: [String] = []
    for split in ["train", "val", "test"] {
        out += try TileDirectory.list((base as NSString).appendingPathComponent(split))
    }
    return out
}

/// A fresh temporary directory, removed at the end of the test.
func temporaryDirectory(_ test: XCTestCase) throws -> String {
    let dir = NSTemporaryDirectory() + "segger-tiles-\(getpid())-\(UInt64.random(in: 0..<UInt64.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
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
