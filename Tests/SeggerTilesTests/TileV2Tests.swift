import Foundation
import XCTest
@testable import SafeTensors
@testable import SeggerTiles
import TestSupport

/// segger-tile v2: positions and ids travel through write, read, batch and the per-step fast path.
final class TileV2Tests: XCTestCase {
    /// A small generated tile with 3-D transcript positions (as segger's x, y, z) and ids.
    func tileWithIDs(seed: UInt64 = 3, tx: Int = 150) -> Tile {
        var t = Synth.tile(config: SynthConfig(txPerTile: tx, seed: seed, numTxTokens: 50), index: 0)
        var xyz: [Float] = []
        for i in 0..<t.numTx { xyz += [t.txPos[2 * i], t.txPos[2 * i + 1], Float(i % 7) / 2] }
        t.txPos = xyz
        t.txPosDim = 3
        t.txIDs = (0..<t.numTx).map { Int64(seed) << 40 | Int64($0) }
        t.bdIDs = (0..<t.numBd).map { "cpik\(seed)x\($0)-1" }
        return t
    }

    func testRoundTripKeepsPositionsAndIDs() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        let t = tileWithIDs()
        XCTAssertEqual(t.txIDs?.count, t.numTx)
        XCTAssertEqual(t.bdIDs?.count, t.numBd)
        let path = dir + "/v2.safetensors"
        try t.write(to: path)
        let file = try SafeTensorsFile.read(path: path)
        XCTAssertEqual(file.metadata["version"], "2")
        XCTAssertEqual(file[TileTensor.txID]?.dtype, .I64)
        XCTAssertEqual(file[TileTensor.txID]?.shape, [t.numTx])
        XCTAssertEqual(file[TileTensor.bdID]?.dtype, .U8)
        let width = t.bdIDs!.map(\.utf8.count).max()!
        XCTAssertEqual(file[TileTensor.bdID]?.shape, [t.numBd, width])
        XCTAssertEqual(file[TileTensor.txPos]?.shape, [t.numTx, 3])
        let r = try Tile.read(path: path)
        XCTAssertEqual(r.txIDs, t.txIDs)
        XCTAssertEqual(r.bdIDs, t.bdIDs)
        XCTAssertEqual(r.txPos, t.txPos)
        XCTAssertEqual(r.txPosDim, 3)
        XCTAssertEqual(r.bdPos, t.bdPos)
        XCTAssertEqual(r.bdPosDim, 2)
        XCTAssertEqual(r.tx, t.tx)
        XCTAssertEqual(r.neighbors, t.neighbors)
        // Written again, the same bytes.
        try r.write(to: dir + "/again.safetensors")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), try Data(contentsOf: URL(fileURLWithPath: dir + "/again.safetensors")))
        // The header catalog reads v2.
        XCTAssertEqual(try TileCatalog.sizes(path: path), TileSizes(r, path: path))
    }

    func testTileWithoutIDsIsWrittenAsVersionOne() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        var t = tileWithIDs()
        t.txIDs = nil
        t.bdIDs = nil
        try t.write(to: dir + "/v1.safetensors")
        let file = try SafeTensorsFile.read(path: dir + "/v1.safetensors")
        XCTAssertEqual(file.metadata["version"], "1")
        XCTAssertNil(file[TileTensor.txID])
        XCTAssertNil(file[TileTensor.bdID])
        XCTAssertNotNil(file[TileTensor.txPos])
        let r = try Tile.read(path: dir + "/v1.safetensors")
        XCTAssertNil(r.txIDs)
        XCTAssertNil(r.bdIDs)
        XCTAssertEqual(r.txPosDim, 3)
        // Only one kind of id makes the file v2 too.
        t.bdIDs = (0..<t.numBd).map { "b\($0)" }
        try t.write(to: dir + "/bd-only.safetensors")
        XCTAssertEqual(try SafeTensorsFile.read(path: dir + "/bd-only.safetensors").metadata["version"], "2")
        XCTAssertEqual(try Tile.read(path: dir + "/bd-only.safetensors").bdIDs, t.bdIDs)
    }

    func testPerStepReadsSkipPositionsAndIDs() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        let t = tileWithIDs()
        try t.write(to: dir + "/t.safetensors")
        let fast = try Tile.read(path: dir + "/t.safetensors", options: TileReadOptions(positionsAndIDs: false))
        XCTAssertNil(fast.txIDs)
        XCTAssertNil(fast.bdIDs)
        XCTAssertEqual(fast.txPos, [])
        XCTAssertEqual(fast.txPosDim, 0)
        XCTAssertEqual(fast.bdPosDim, 0)
        XCTAssertEqual(fast.tx, t.tx)
        XCTAssertEqual(fast.labels, t.labels)
    }

    func testBatchConcatenatesWhenEveryPartHasThem() throws {
        let a = tileWithIDs(seed: 1, tx: 120), b = tileWithIDs(seed: 2, tx: 90)
        let ab = Tile.batch([a, b])
        XCTAssertEqual(ab.txIDs, a.txIDs! + b.txIDs!)
        XCTAssertEqual(ab.bdIDs, a.bdIDs! + b.bdIDs!)
        XCTAssertEqual(ab.txPos, a.txPos + b.txPos)
        XCTAssertEqual(ab.txPosDim, 3)
        XCTAssertEqual(ab.bdPos, a.bdPos + b.bdPos)
        XCTAssertEqual(ab.bdPosDim, 2)
        XCTAssertEqual(ab.txPos.count, ab.numTx * 3)
        XCTAssertEqual(ab.bdIDs?.count, ab.numBd)
        // A part without ids, or with positions of another width, drops them from the batch.
        var c = tileWithIDs(seed: 4, tx: 80)
        c.txIDs = nil
        var xy: [Float] = []
        for i in 0..<c.numTx { xy += [c.txPos[3 * i], c.txPos[3 * i + 1]] }
        c.txPos = xy
        c.txPosDim = 2
        let abc = Tile.batch([a, b, c])
        XCTAssertNil(abc.txIDs)
        XCTAssertEqual(abc.bdIDs, a.bdIDs! + b.bdIDs! + c.bdIDs!)
        XCTAssertEqual(abc.txPos, [])
        XCTAssertEqual(abc.txPosDim, 0)
        XCTAssertEqual(abc.bdPosDim, 2)
        XCTAssertEqual(abc.bdPos.count, abc.numBd * 2)
    }
}
