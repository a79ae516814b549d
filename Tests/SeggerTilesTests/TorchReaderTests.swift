import Foundation
import XCTest
@testable import SeggerTiles
import SafeTensors
import TestSupport

final class TorchFixtureTests: XCTestCase {
    static let tiles = ["tile_basic", "tile_label_1d", "tile_no_belongs", "tile_nan_bd", "tile_embedding", "tile_xenium_ids"]
    // (tile_basic_protocol4.pt: tile_basic pickled with protocol 4, compared to tile_basic's expected tensors.)

    func testFixturesEqualTheirExpectedTensors() throws {
        for name in Self.tiles {
            let got = try TorchTiles.readTensors(path: torchFixture(name + ".pt"))
            let want = try SafeTensorsFile.read(path: torchFixture(name + ".expected.safetensors"))
            XCTAssertEqual(Set(got.tensors.keys), Set(want.tensors.keys), name)
            for (k, t) in want.tensors {
                XCTAssertEqual(got.tensors[k], t, "\(name): \(k)")
            }
            let ids = try JSONSerialization.jsonObject(with: Data(want.metadata["bd.id"]!.utf8)) as! [String]
            XCTAssertEqual(got.boundaryIDs, ids, name)
        }
    }

    func testProtocol4PickleReadsTheSame() throws {
        let got = try TorchTiles.readTensors(path: torchFixture("tile_basic_protocol4.pt"))
        let want = try SafeTensorsFile.read(path: torchFixture("tile_basic.expected.safetensors"))
        XCTAssertEqual(Set(got.tensors.keys), Set(want.tensors.keys))
        for (k, t) in want.tensors { XCTAssertEqual(got.tensors[k], t, k) }
        XCTAssertEqual(got.boundaryIDs, ["cell000-1", "cell001-1", "cell002-1"])
    }

    func testBigEndianStorages() throws {
        var w = PickleWriter()
        w.op(0x7d); w.string("w"); w.tensor(storage: "0", numel: 2, offset: 0, size: [2], stride: [1]); w.op(0x73); w.stop()
        let big: [UInt8] = [0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0] // 1.0, -2.5 big-endian
        let zip = storedZip([("archive/data.pkl", w.bytes), ("archive/byteorder", Array("big".utf8)), ("archive/data/0", big)])
        let archive = try TorchArchive(bytes: zip, path: "big.pt")
        XCTAssertEqual(try TorchCheckpoint.readStateDict(archive: archive)["w"]?.floats(), [1.0, -2.5])
    }

    func testFixturesValidateAsTiles() throws {
        let basic = try Tile.read(path: torchFixture("tile_basic.pt"))
        XCTAssertEqual(basic.numTx, 12)
        XCTAssertEqual(basic.numBd, 3)
        XCTAssertEqual(basic.belongs.count, 6)
        XCTAssertEqual(basic.numLabels, 9)
        XCTAssertEqual(basic.labels, [1, 1, 1, 1, 1, 1, 0, 0, 0])
        let basicWant = try SafeTensorsFile.read(path: torchFixture("tile_basic.expected.safetensors"))
        XCTAssertEqual(basic.neighbors.count, basicWant["tx__neighbors__tx.edge_index"]!.shape[1])
        XCTAssertEqual(basic.neighbors.src.count, 34)
        XCTAssertEqual(basic.sources, [torchFixture("tile_basic.pt")])

        let flat = try Tile.read(path: torchFixture("tile_label_1d.pt"))
        XCTAssertEqual(flat.numLabels, 1)
        XCTAssertEqual(flat.labelTx, [flat.belongs.src[0]])
        XCTAssertEqual(flat.labelBd, [flat.belongs.dst[0]])

        let empty = try Tile.read(path: torchFixture("tile_no_belongs.pt"))
        XCTAssertEqual(empty.belongs.count, 0)
        XCTAssertEqual(empty.numLabels, 0)
        XCTAssertEqual(empty.numBd, 2)

        let nan = try TorchTiles.readTensors(path: torchFixture("tile_nan_bd.pt"))
        XCTAssertEqual(nan.tensors["bd.x"]?.shape, [3, 4])
        XCTAssertEqual(nan.tensors["bd.x"]?.floats(), [Float](repeating: 0, count: 12))
        XCTAssertEqual(nan.notes.count, 1)
        XCTAssertTrue(nan.notes[0].contains("39 all-NaN rows"), nan.notes[0])
        let nanTile = try Tile.read(path: torchFixture("tile_nan_bd.pt"))
        XCTAssertEqual(nanTile.numBd, 3)

        // Ids (segger-tile v2): tx.id int64 as stored, bd.id strings.
        XCTAssertEqual(basic.txIDs, (1000..<1012).map { Int64($0) })
        XCTAssertEqual(basic.bdIDs, ["cell000-1", "cell001-1", "cell002-1"])
        XCTAssertEqual(basic.txPosDim, 3)
        XCTAssertEqual(basic.txPos, basicWant["tx.pos"]!.floats())
        XCTAssertEqual(basic.bdPosDim, 2)
        let xenium = try Tile.read(path: torchFixture("tile_xenium_ids.pt"))
        XCTAssertEqual(xenium.txIDs?[0], 282063387231058)
        XCTAssertEqual(xenium.txIDs?[4], (Int64(1) << 62) + 12345, "exact above 2^53")
        XCTAssertEqual(xenium.bdIDs, ["cpikcgfm-1", "cpikgbka-1", "zellkern-éè-1"])
        let xeniumWant = try SafeTensorsFile.read(path: torchFixture("tile_xenium_ids.expected.safetensors"))
        XCTAssertEqual(xeniumWant["bd.id"]?.shape, [3, 15])

        let emb = try Tile.read(path: torchFixture("tile_embedding.pt"))
        XCTAssertEqual(emb.txFeatureDim, 5)
        XCTAssertEqual(emb.nonFiniteReplaced, 3)
        guard case .features(let v, _) = emb.tx else { return XCTFail("not embedding mode") }
        XCTAssertEqual(v[1 * 5 + 2], 0)
        XCTAssertEqual(v[2 * 5 + 0], Float.greatestFiniteMagnitude)
        XCTAssertEqual(v[3 * 5 + 4], -Float.greatestFiniteMagnitude)
    }

    func testSizesWithoutReadingData() throws {
        for name in Self.tiles {
            let path = torchFixture(name + ".pt")
            let s = try TorchTiles.sizes(path: path)
            let t = try Tile.read(path: path)
            XCTAssertEqual([s.numTx, s.numBd, s.numNeighbors, s.numBelongs, s.numLabels],
                           [t.numTx, t.numBd, t.neighbors.count, t.belongs.count, t.numLabels], name)
        }
    }

    func testNonContiguousPositionsAreMaterializedRowMajor() throws {
        // The fixtures store pos transposed (stride (1, N)), as segger's tiles do.
        let got = try TorchTiles.readTensors(path: torchFixture("tile_basic.pt"))
        let pos = try XCTUnwrap(got.tensors["tx.pos"])
        XCTAssertEqual(pos.shape, [12, 3])
        let want = try SafeTensorsFile.read(path: torchFixture("tile_basic.expected.safetensors"))["tx.pos"]!
        XCTAssertEqual(pos.floats(), want.floats())
        // And a hand-made 2×3 view with stride (1, 2) over storage [0 1 2 3 4 5] reads [[0 2 4] [1 3 5]].
        var w = PickleWriter()
        w.tensor(storage: "0", numel: 6, offset: 0, size: [2, 3], stride: [1, 2]); w.stop()
        let storage = Tensor([0, 1, 2, 3, 4, 5] as [Float]).data
        let archive = try TorchArchive(bytes: storedZip([("archive/data.pkl", w.bytes), ("archive/data/0", storage)]), path: "mem.pt")
        let t = try TorchPickle.withValue(try archive.record("data.pkl")!, archive: archive, path: "mem.pt") { $0.tensor }
        XCTAssertEqual(t?.shape, [2, 3])
        XCTAssertEqual(t?.floats(), [0, 2, 4, 1, 3, 5])
    }

    func testDirectoryListingAndConversion() throws {
        // segger's layout: <root>/train_tiles/processed/*.pt
        let root = Support.tempDir("torch", removedAfter: self)
        let processed = root + "/train_tiles/processed"
        try FileManager.default.createDirectory(atPath: processed, withIntermediateDirectories: true)
        for name in Self.tiles {
            try FileManager.default.copyItem(atPath: torchFixture(name + ".pt"), toPath: processed + "/" + name + ".pt")
        }
        try Data("not a tile".utf8).write(to: URL(fileURLWithPath: processed + "/notes.txt"))
        XCTAssertEqual(try TileDirectory.list(root + "/train_tiles"), Self.tiles.sorted().map { processed + "/" + $0 + ".pt" })
        XCTAssertEqual(try TileDirectory.list(processed), Self.tiles.sorted().map { processed + "/" + $0 + ".pt" })

        // Apart from the .pt tiles: convert refuses an output inside its input (training would read both).
        let out = Support.tempDir("torch", removedAfter: self) + "/converted"
        XCTAssertEqual(try TorchTiles.convert(from: root, to: out), Self.tiles.count)
        for name in Self.tiles {
            let converted = try SafeTensorsFile.read(path: out + "/train/" + name + ".safetensors")
            XCTAssertEqual(converted.metadata["format"], "segger-tile")
            XCTAssertEqual(converted.metadata["version"], "2", "ids travel: v2")
            let a = try Tile.read(path: out + "/train/" + name + ".safetensors")
            let b = try Tile.read(path: torchFixture(name + ".pt"))
            assertSameTile(a, b, name)
            XCTAssertNotNil(a.txIDs, name)
            XCTAssertEqual(a.txIDs, b.txIDs, name)
            XCTAssertEqual(a.bdIDs, b.bdIDs, name)
            XCTAssertEqual(a.bdPos, b.bdPos, name)
            XCTAssertEqual(converted["tx.id"], try SafeTensorsFile.read(path: torchFixture(name + ".expected.safetensors"))["tx.id"], name)
            XCTAssertEqual(converted["tx.pos"], try TorchTiles.readTensors(path: torchFixture(name + ".pt")).tensors["tx.pos"])
        }
        XCTAssertThrowsError(try TorchTiles.convert(from: root + "/converted", to: root + "/again"))
        try? FileManager.default.removeItem(atPath: root)
    }

    func testLightningCheckpoint() throws {
        let got = try TorchCheckpoint.readStateDict(path: torchFixture("model.ckpt"))
        let want = try SafeTensorsFile.read(path: torchFixture("model.expected.safetensors"))
        XCTAssertEqual(Set(got.keys), Set(want.tensors.keys))
        for (k, t) in want.tensors { XCTAssertEqual(got[k], t, k) }
        XCTAssertEqual(got["model.conv_first.tx__belongs__bd.att"]?.shape, [1, 2, 3])
        // (The weights by PyG name, the `model.` prefix removed: ModelFile, tested with this file in PredictionTests.)
        // segger main pickles the whole torch.fx model into hyper_parameters: admitted (opaque) in
        // checkpoints only; the strict tile reader names the first such global.
        let archive = try TorchArchive.read(path: torchFixture("model.ckpt"))
        XCTAssertThrowsError(try TorchPickle.withValue(try archive.record("data.pkl")!, archive: archive, path: "model.ckpt") { _ in 0 }) {
            XCTAssertTrue("\($0)".contains("is not on the allow-list"), "\($0)")
        }
        let hp = try TorchPickle.withValue(try archive.record("data.pkl")!, archive: archive, path: "model.ckpt", checkpoint: true) {
            root -> String? in
            guard case .object(let o)? = root.dict?["hyper_parameters"]?.dict?["model"] else { return nil }
            return o.className
        }
        XCTAssertEqual(hp, "torch.fx.graph_module.reduce_graph_module")
        // A tile is not a checkpoint, and says so.
        assertRejects(torchFixture("tile_basic.pt"), ["HeteroData object"]) {
            _ = try TorchCheckpoint.readStateDict(path: torchFixture("tile_basic.pt"))
        }
    }
}

func assertSameTile(_ a: Tile, _ b: Tile, _ name: String, compareBdX: Bool = true, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.numTx, b.numTx, name, file: file, line: line)
    XCTAssertEqual(a.numBd, b.numBd, name, file: file, line: line)
    XCTAssertEqual(a.tx, b.tx, name, file: file, line: line)
    if compareBdX { XCTAssertEqual(a.bdX, b.bdX, name, file: file, line: line) }
    XCTAssertEqual(a.bdDim, b.bdDim, name, file: file, line: line)
    XCTAssertEqual(a.neighbors, b.neighbors, name, file: file, line: line)
    XCTAssertEqual(a.belongs, b.belongs, name, file: file, line: line)
    XCTAssertEqual(a.labelTx, b.labelTx, name, file: file, line: line)
    XCTAssertEqual(a.labelBd, b.labelBd, name, file: file, line: line)
    XCTAssertEqual(a.labels, b.labels, name, file: file, line: line)
}

/// segger's real tiles (xenium-lung-10k) against the safetensors conversion of the same tiles.
final class TorchRealTileTests: XCTestCase {
    func testEverySeggerTileEqualsItsSafetensorsTwin() throws {
        let root = try lungDataset()
        var count = 0
        for split in ["train", "val", "test"] {
            for pt in try TileDirectory.list(root + "/segger-pt/" + split) {
                let twin = root + "/tiles/" + split + "/" + ((pt as NSString).lastPathComponent as NSString).deletingPathExtension + ".safetensors"
                let got = try TorchTiles.readTensors(path: pt)
                let want = try SafeTensorsFile.read(path: twin)
                // The twins are v1 (made before ids travelled): the .pt adds tx.id and bd.id.
                XCTAssertEqual(want.metadata["version"], "1", twin)
                XCTAssertEqual(Set(got.tensors.keys), Set(want.tensors.keys).union([TileTensor.txID, TileTensor.bdID]), pt)
                for (k, t) in want.tensors {
                    let mine = try XCTUnwrap(got.tensors[k], "\(pt): \(k)")
                    if k == "tx.pos" {
                        // The conversion kept only x, y; the .pt has x, y, z.
                        XCTAssertEqual(mine.shape, [t.shape[0], 3], pt)
                        let v = mine.floats()
                        XCTAssertEqual((0..<t.shape[0]).flatMap { [v[3 * $0], v[3 * $0 + 1]] }, t.floats(), pt)
                    } else {
                        // bd.x included: segger's all-NaN per-vertex rows read as zeros [N_bd, 4], as converted.
                        XCTAssertEqual(mine, t, "\(pt): \(k)")
                    }
                }
                XCTAssertEqual(got.boundaryIDs?.count, want["bd.pos"]?.shape[0], pt)
                XCTAssertTrue(got.notes.contains { $0.contains("all-NaN") }, pt)
                // segger's transcript ids: int64 [N_tx] (Xenium's transcript_id), unique in the tile;
                // its cell ids: 8 lowercase letters and "-1".
                let txID = try XCTUnwrap(got.tensors[TileTensor.txID], pt)
                XCTAssertEqual(txID.dtype, .I64, pt)
                let tile = try Tile.read(path: pt)
                let ids = try XCTUnwrap(tile.txIDs, pt)
                XCTAssertEqual(ids.count, tile.numTx, pt)
                XCTAssertEqual(Set(ids).count, ids.count, pt)
                XCTAssertTrue(ids.allSatisfy { $0 > 280_000_000_000_000 }, pt)
                XCTAssertEqual(tile.bdIDs, got.boundaryIDs, pt)
                XCTAssertTrue(tile.bdIDs!.allSatisfy { $0.count == 10 && $0.hasSuffix("-1") }, pt)
                XCTAssertEqual(tile.txPosDim, 3, pt)
                assertSameTile(tile, try Tile.read(path: twin), pt)
                let s = try TorchTiles.sizes(path: pt)
                XCTAssertEqual([s.numTx, s.numBd, s.numNeighbors, s.numBelongs, s.numLabels],
                               [tile.numTx, tile.numBd, tile.neighbors.count, tile.belongs.count, tile.numLabels], pt)
                count += 1
            }
        }
        XCTAssertEqual(count, 9)
    }

    /// The header catalog (used to balance tiles without reading data) sizes .pt tiles like their twins.
    func testCatalogSizesSeggerTilesLikeTheirTwins() throws {
        let lung = try lungDataset()
        var n = 0
        for split in ["train", "val", "test"] {
            for pt in try TileDirectory.list(lung + "/segger-pt/" + split) {
                let name = ((pt as NSString).lastPathComponent as NSString).deletingPathExtension + ".safetensors"
                let a = try TileCatalog.sizes(path: pt)
                let b = try TileCatalog.sizes(path: lung + "/tiles/\(split)/" + name)
                XCTAssertEqual([a.numTx, a.numBd, a.numNeighbors, a.numBelongs, a.numLabels],
                               [b.numTx, b.numBd, b.numNeighbors, b.numBelongs, b.numLabels], pt)
                XCTAssertEqual(a.cost, b.cost, pt)
                n += 1
            }
        }
        XCTAssertEqual(n, 9)
    }

    func testConvertSeggerDatasetRoot() throws {
        let root = try lungDataset()
        let out = Support.tempDir("torch", removedAfter: self)
        XCTAssertEqual(try TorchTiles.convert(from: root + "/segger-pt", to: out), 9)
        for split in ["train", "val", "test"] {
            let mine = try TileDirectory.list(out + "/" + split)
            let ref = try TileDirectory.list(root + "/tiles/" + split)
            XCTAssertEqual(mine.map { ($0 as NSString).lastPathComponent }, ref.map { ($0 as NSString).lastPathComponent })
            for (a, b) in zip(mine, ref) {
                let t = try Tile.read(path: a)
                assertSameTile(t, try Tile.read(path: b), a)
                XCTAssertEqual(try SafeTensorsFile.read(path: a).metadata["version"], "2", a)
                let pt = root + "/segger-pt/" + split + "/" + ((a as NSString).lastPathComponent as NSString).deletingPathExtension + ".pt"
                let fromPt = try Tile.read(path: pt)
                XCTAssertEqual(t.txIDs, fromPt.txIDs, a)
                XCTAssertEqual(t.bdIDs, fromPt.bdIDs, a)
                XCTAssertEqual(t.txPos, fromPt.txPos, a)
            }
        }
        try? FileManager.default.removeItem(atPath: out)
    }
}
