import Foundation
import XCTest
@testable import SafeTensors
@testable import SeggerTiles
import TestSupport

final class CatalogTests: XCTestCase {
    func checkCatalogMatchesFullRead(_ paths: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertFalse(paths.isEmpty, file: file, line: line)
        let catalog = try TileCatalog.sizes(paths: paths)
        XCTAssertEqual(catalog.map(\.path), paths, file: file, line: line)
        for (sizes, path) in zip(catalog, paths) {
            let tile = try Tile.read(path: path)
            XCTAssertEqual(sizes, TileSizes(tile, path: path), path, file: file, line: line)
            XCTAssertEqual(sizes.cost, tile.cost, path, file: file, line: line)
            XCTAssertGreaterThan(sizes.cost, 0, file: file, line: line)
        }
    }

    func testCatalogEqualsFullReadOnGeneratedTiles() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        try Synth.writeDirectory(config: SynthConfig(tiles: 3, txPerTile: 900, seed: 4), to: dir)
        // A tile without labels (tensor absent) and one with a single label stored 1-D, as segger does.
        var t = Synth.tile(config: SynthConfig(txPerTile: 200, seed: 9), index: 0)
        let tensors = t.tensors().filter { $0.0 != TileTensor.labelIndex && $0.0 != TileTensor.label }
        try SafeTensorsFile.write(tensors, metadata: ["format": "segger-tile", "version": "1"], to: dir + "/tile_nolabels.safetensors")
        t.labelTx = [t.labelTx[0]]; t.labelBd = [t.labelBd[0]]; t.labels = [t.labels[0]]
        let flat = t.tensors().map { $0.0 == TileTensor.labelIndex ? ($0.0, Tensor([Int64(t.labelTx[0]), Int64(t.labelBd[0])])) : $0 }
        try SafeTensorsFile.write(flat, metadata: ["format": "segger-tile", "version": "1"], to: dir + "/tile_onelabel.safetensors")
        try checkCatalogMatchesFullRead(try TileDirectory.list(dir))
        let sizes = try TileCatalog.sizes(directory: dir)
        XCTAssertEqual(sizes.first { $0.path.hasSuffix("tile_nolabels.safetensors") }?.numLabels, 0)
        XCTAssertEqual(sizes.first { $0.path.hasSuffix("tile_onelabel.safetensors") }?.numLabels, 1)
    }

    func testCatalogEqualsFullReadOnRealTiles() throws {
        try checkCatalogMatchesFullRead(try realTilePaths())
    }

    func testCatalogEqualsFullReadOnGoldenTiles() throws {
        for mode in ["token", "embedding"] { try checkCatalogMatchesFullRead(try TileDirectory.list(goldenFixtureTiles(mode))) }
    }

    func testCatalogReadsOnlyTheHeader() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        let path = dir + "/t.safetensors"
        try Synth.tile(config: SynthConfig(txPerTile: 300, seed: 1), index: 0).write(to: path)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // Corrupt only data bytes (not the header): the catalog does not see it, the full read does.
        var headerLength = 0
        for i in 0..<8 { headerLength |= Int(bytes[i]) << (8 * i) }
        let header = try SafeTensorsFile.readHeader(path: path)
        let nn = try XCTUnwrap(header[TileTensor.neighborsEdgeIndex])
        let at = 8 + headerLength + nn.begin
        for k in 0..<8 { bytes[at + k] = 0xff } // edge 0's source becomes -1
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try TileCatalog.sizes(path: path).numTx, 300)
        XCTAssertThrowsError(try Tile.read(path: path)) { e in
            XCTAssertTrue("\(e)".contains("negative index"), "\(e)")
        }
        // Truncation is caught from the file size alone, naming the file and the tensor.
        try Data(bytes.prefix(bytes.count - 5)).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TileCatalog.sizes(path: path)) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains(path) && s.contains("truncated"), s)
        }
    }

    func testCatalogErrorsNameTheFile() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        let path = dir + "/bad.safetensors"
        try Data("not a tile at all".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TileCatalog.sizes(path: path)) { e in
            XCTAssertTrue(e is InputError); XCTAssertTrue("\(e)".contains(path), "\(e)")
        }
        let t = Synth.tile(config: SynthConfig(txPerTile: 100, seed: 1), index: 0)
        try SafeTensorsFile.write(t.tensors().filter { $0.0 != TileTensor.bdX }, to: path)
        XCTAssertThrowsError(try TileCatalog.sizes(path: path)) { e in
            XCTAssertEqual(e as? InputError, InputError(path: path, tensor: TileTensor.bdX, "missing required tensor"))
        }
        XCTAssertThrowsError(try TileCatalog.sizes(path: dir + "/missing.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("missing.safetensors") && "\(e)".contains("No such file"), "\(e)")
        }
    }
}

final class RealDataTests: XCTestCase {
    func testEveryRealTileReadsAndValidates() throws {
        let paths = try realTilePaths()
        XCTAssertEqual(paths.count, 9)
        let report = Tile.validate(paths: paths, options: TileReadOptions(numTxTokens: 500))
        XCTAssertEqual(report.kept, paths)
        XCTAssertEqual(report.skipped, [])
        for p in paths {
            let t = try Tile.read(path: p, options: TileReadOptions(numTxTokens: 500))
            checkInvariants(t)
            XCTAssertEqual(t.neighbors.count, 3 * t.numTx, "segger's kNN: k = 3 with the self-loop")
            XCTAssertEqual(t.neighbors.destinationsWithEdges, t.numTx, "every transcript has its self-loop")
            XCTAssertEqual(Array(t.labelTx.prefix(t.belongs.count)), t.belongs.src)
            XCTAssertEqual(t.labels.filter { $0 == 1 }.count, t.belongs.count)
        }
    }

    /// The repository's golden tiles collated equal PyG's collated batch (`input.*` of the golden file).
    func testBatchOfGoldenTilesEqualsPyGCollate() throws {
        for mode in ["token", "embedding"] {
            let tilesDir = goldenFixtureTiles(mode)
            let golden = try SafeTensorsFile.read(path: (tilesDir as NSString).deletingLastPathComponent + "/golden_main.f64.safetensors")
            let paths = try TileDirectory.list(tilesDir)
            let batch = Tile.batch([try Tile.read(path: paths[0]), try Tile.read(path: paths[1])])
            checkInvariants(batch)
            func ints(_ name: String) throws -> [Int64] { try XCTUnwrap(golden.require("input." + name).int64s()) }
            switch batch.tx {
            case .tokens(let tokens):
                XCTAssertEqual(mode, "token")
                XCTAssertEqual(tokens.map { Int64($0) }, try ints(TileTensor.txX))
            case .features(let x, let dim):
                XCTAssertEqual(mode, "embedding")
                XCTAssertEqual(x.map { Double($0) }, try golden.require("input." + TileTensor.txX).doubles())
                XCTAssertEqual(try golden.require("input." + TileTensor.txX).shape, [batch.numTx, dim])
            }
            XCTAssertEqual(batch.bdX.map { Double($0) }, try golden.require("input." + TileTensor.bdX).doubles())
            XCTAssertEqual(try golden.require("input." + TileTensor.bdX).shape, [batch.numBd, batch.bdDim])
            func pairs(_ s: [Int32], _ d: [Int32]) -> [Int64] { (s + d).map { Int64($0) } }
            XCTAssertEqual(pairs(batch.neighbors.src, batch.neighbors.dst), try ints(TileTensor.neighborsEdgeIndex))
            XCTAssertEqual(pairs(batch.belongs.src, batch.belongs.dst), try ints(TileTensor.belongsEdgeIndex))
            XCTAssertEqual(pairs(batch.labelTx, batch.labelBd), try ints(TileTensor.labelIndex))
            XCTAssertEqual(batch.labels.map { Double($0) }, try golden.require("input." + TileTensor.label).doubles())
        }
    }
}
