import Foundation
import XCTest
@testable import SeggerTiles
import SafeTensors
import TestSupport

/// Files that must be rejected with an error naming the file (and never execute anything).
final class TorchHostileInputTests: XCTestCase {
    func archive(_ pickle: [UInt8], storages: [(String, [UInt8])] = [], name: String = "hostile.pt") throws -> String {
        try writeTemporary(storedZip([("archive/data.pkl", pickle)] + storages.map { ("archive/data/\($0.0)", $0.1) }), name: name)
    }

    func testDisallowedGlobalsAreRejected() throws {
        // os.system('echo pwned') via GLOBAL + REDUCE
        var w = PickleWriter()
        w.global("os", "system"); w.op(0x28); w.string("echo pwned"); w.op(0x74); w.op(0x52); w.stop()
        let p1 = try archive(w.bytes)
        assertRejects(p1, ["os.system", "allow-list"]) { _ = try TorchTiles.readTensors(path: p1) }
        assertRejects(p1, ["os.system"]) { _ = try Tile.read(path: p1) }
        assertRejects(p1, ["os.system"]) { _ = try TorchCheckpoint.readStateDict(path: p1) }

        // builtins.eval via protocol 4's STACK_GLOBAL
        var b: [UInt8] = [0x80, 0x04]
        for s in ["builtins", "eval"] { b += [0x8c, UInt8(s.utf8.count)] + Array(s.utf8) }
        b += [0x93, 0x8c, 0x01, 0x31, 0x85, 0x52, 0x2e]
        let p2 = try archive(b)
        assertRejects(p2, ["builtins.eval"]) { _ = try TorchCheckpoint.readStateDict(path: p2) }

        // An inert checkpoint global where a weight should be: named, not returned.
        var d = PickleWriter()
        d.op(0x7d); d.string("state_dict"); d.op(0x7d); d.string("model.w")
        d.global("torch.nn.modules.linear", "Linear"); d.op(0x29); d.op(0x81); d.op(0x73); d.op(0x73); d.stop()
        let p4 = try archive(d.bytes)
        assertRejects(p4, ["'model.w'", "torch.nn.modules.linear.Linear object, not a tensor"]) { _ = try TorchCheckpoint.readStateDict(path: p4) }
        assertRejects(p4, ["torch.nn.modules.linear.Linear", "allow-list"]) { _ = try TorchTiles.readTensors(path: p4) }

        // An allowed class name used for the wrong thing: calling a storage type.
        var c = PickleWriter()
        c.global("torch", "FloatStorage"); c.op(0x29); c.op(0x52); c.stop()
        let p3 = try archive(c.bytes)
        assertRejects(p3, ["torch.FloatStorage cannot be called"]) { _ = try TorchCheckpoint.readStateDict(path: p3) }
    }

    func testWrongOpcodesAreRejected() throws {
        let cases: [([UInt8], String)] = [
            ([0x80, 0x02, 0x69] + Array("os\nsystem\n".utf8) + [0x2e], "INST"),          // INST: calls a class
            ([0x80, 0x02, 0x28, 0x4b, 0x01, 0x6f, 0x2e], "OBJ"),
            ([0x80, 0x02, 0x82, 0x01, 0x2e], "EXT1"),
            ([0x80, 0x02, 0xff, 0x2e], "unknown opcode 0xff"),
            ([0x80, 0x02, 0x50] + Array("0\n".utf8) + [0x2e], "PERSID"),
            ([0x80, 0x02, 0x52, 0x2e], "stack underflow"),
            ([0x80, 0x02, 0x68, 0x07, 0x2e], "memo entry 7"),
            ([0x80, 0x02, 0x58, 0xff, 0x00, 0x00, 0x00, 0x41], "truncated"),
            ([0x80, 0x02, 0x7d], "truncated"),                                             // no STOP
            ([0x80, 0x09, 0x7d, 0x2e], "protocol 9"),
        ]
        for (bytes, fragment) in cases {
            let p = try archive(bytes)
            assertRejects(p, [fragment]) { _ = try TorchCheckpoint.readStateDict(path: p) }
        }
    }

    func testTruncatedAndDamagedZipsAreRejected() throws {
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: torchFixture("tile_basic.pt"))))
        for cut in [good.count / 2, good.count - 10, 100, 3] {
            let p = try writeTemporary(Array(good[..<cut]), name: "cut\(cut).pt")
            assertRejects(p, []) { _ = try Tile.read(path: p) }
            if cut > 3 { assertRejects(p, ["truncated"]) { _ = try TorchTiles.readTensors(path: p) } }
        }
        // One flipped byte in the middle of a storage: the CRC-32 catches it.
        let archive = try TorchArchive(bytes: good, path: "x")
        let (range, _) = archive.entries[archive.prefix + "data/1"]!
        var bad = good
        bad[range.lowerBound + 3] ^= 0x40
        let p = try writeTemporary(bad, name: "flipped.pt")
        assertRejects(p, ["CRC-32", "data/1"]) { _ = try TorchTiles.readTensors(path: p) }
        // Compressed entries (torch never writes them) are named, not misread.
        let deflated = try writeTemporary(storedZip([("archive/data.pkl", [0x80, 0x02, 0x7d, 0x2e])], method: 8), name: "deflated.pt")
        assertRejects(deflated, ["deflate"]) { _ = try TorchCheckpoint.readStateDict(path: deflated) }
        // Not a zip at all, and the pre-1.6 bare-pickle format.
        let text = try writeTemporary(Array("hello".utf8), name: "text.pt")
        assertRejects(text, ["not a torch.save file"]) { _ = try TorchTiles.readTensors(path: text) }
        let legacy = try writeTemporary([0x80, 0x02, 0x8a, 0x0a], name: "legacy.pt")
        assertRejects(legacy, ["legacy"]) { _ = try TorchTiles.readTensors(path: legacy) }
        let dir = Support.tempDir("torch", removedAfter: self)
        XCTAssertEqual(mkfifo(dir + "/fifo.pt", 0o644), 0)
        assertRejects(dir + "/fifo.pt", ["not a regular file"]) { _ = try Tile.read(path: dir + "/fifo.pt") }
        try FileManager.default.createDirectory(atPath: dir + "/d.pt", withIntermediateDirectories: true)
        assertRejects(dir + "/d.pt", ["not a regular file", "is a directory"]) { _ = try TorchCheckpoint.readStateDict(path: dir + "/d.pt") }
        let missing = "/nonexistent/tile.pt"
        assertRejects(missing, ["cannot read"]) { _ = try Tile.read(path: missing) }
    }

    func testMissingStorageIsRejected() throws {
        // The real fixture with its data/0 entry left out.
        let good = try TorchArchive.read(path: torchFixture("tile_basic.pt"))
        var entries: [(String, [UInt8])] = []
        for name in good.names where name != good.prefix + "data/0" {
            entries.append((name, Array(good.bytes[good.entries[name]!.range])))
        }
        let p = try writeTemporary(storedZip(entries), name: "nostorage.pt")
        assertRejects(p, ["storage '0'", "no entry 'data/0'"]) { _ = try Tile.read(path: p) }

        // A storage whose entry is shorter than its element count says.
        var w = PickleWriter()
        w.op(0x7d); w.string("w"); w.tensor(storage: "0", numel: 8, offset: 0, size: [8], stride: [1]); w.op(0x73); w.stop()
        let q = try archive(w.bytes, storages: [("0", [UInt8](repeating: 0, count: 16))])
        assertRejects(q, ["storage '0' holds 16 bytes", "need 32"]) { _ = try TorchCheckpoint.readStateDict(path: q) }
    }

    func testTensorPastItsStorageIsRejected() throws {
        let storage = [UInt8](repeating: 0, count: 16) // 4 floats
        let views: [(Int, [Int], [Int])] = [
            (0, [10], [1]),        // size past the end
            (2, [3], [1]),         // offset + size past the end
            (0, [2, 2], [3, 1]),   // strided past the end: last element at 4
            (5, [0], [1]),         // an empty view starting past the end
        ]
        for (i, v) in views.enumerated() {
            var w = PickleWriter()
            w.op(0x7d); w.string("w"); w.tensor(storage: "0", numel: 4, offset: v.0, size: v.1, stride: v.2); w.op(0x73); w.stop()
            let p = try archive(w.bytes, storages: [("0", storage)], name: "past\(i).ckpt")
            assertRejects(p, ["storage '0'"]) { _ = try TorchCheckpoint.readStateDict(path: p) }
            let q = try archive(tileWith(txX: { $0.tensor(storage: "0", type: "LongStorage", numel: 4, offset: v.0, size: v.1, stride: v.2) }),
                                storages: [("0", storage + storage)], name: "pastShapes\(i).pt")
            assertRejects(q, ["storage '0'"]) { _ = try TorchTiles.sizes(path: q) }
        }
        // A stride that overflows 64 bits is an error, not a crash.
        let un = Unpickler(bytes: [][...], archive: nil, path: "mem")
        let st = TorchStorage(key: "0", dtype: .F32, count: 4, bytes: storage[...])
        XCTAssertThrowsError(try un.checkView(st, offset: 0, size: [1 << 39, 1 << 39], stride: [1 << 39, 1]))
        // The same writer with an in-bounds view is accepted (the rejections above are about bounds).
        var w = PickleWriter()
        w.op(0x7d); w.string("w"); w.tensor(storage: "0", numel: 4, offset: 1, size: [3], stride: [1]); w.op(0x73); w.stop()
        let ok = try archive(w.bytes, storages: [("0", Tensor([1, 2, 3, 4] as [Float]).data)], name: "ok.ckpt")
        XCTAssertEqual(try TorchCheckpoint.readStateDict(path: ok)["w"]?.floats(), [2, 3, 4])
    }

    /// A HeteroData with tx.x written by `txX` and a 2-edge neighbors graph (storages "0" for tx.x, "1" for edges).
    func tileWith(txX: (inout PickleWriter) -> Void) -> [UInt8] {
        var w = PickleWriter()
        w.global("torch_geometric.data.hetero_data", "HeteroData"); w.op(0x29); w.op(0x81)
        w.op(0x7d)
        w.string("_node_store_dict"); w.op(0x7d); w.string("tx")
        w.global("torch_geometric.data.storage", "NodeStorage"); w.op(0x29); w.op(0x81)
        w.op(0x7d); w.string("_mapping"); w.op(0x7d); w.string("x"); txX(&w); w.op(0x73); w.op(0x73); w.op(0x62)
        w.op(0x73); w.op(0x73)
        w.op(0x62); w.stop()
        return w.bytes
    }

    func testWrongShapesInAHeteroDataAreNamed() throws {
        // bd.x with more rows than boundaries and finite values cannot be mapped: error, not a guess.
        var w = PickleWriter()
        w.global("torch_geometric.data.hetero_data", "HeteroData"); w.op(0x29); w.op(0x81)
        w.op(0x7d); w.string("_node_store_dict"); w.op(0x7d)
        for (node, rows) in [("tx", 2), ("bd", 3)] {
            w.string(node)
            w.global("torch_geometric.data.storage", "NodeStorage"); w.op(0x29); w.op(0x81)
            w.op(0x7d); w.string("_mapping"); w.op(0x7d)
            if node == "bd" {
                w.string("pos"); w.tensor(storage: "1", numel: 4, offset: 0, size: [2, 2], stride: [2, 1]); w.op(0x73)
            }
            w.string("x")
            if node == "tx" { w.tensor(storage: "0", type: "LongStorage", numel: 2, offset: 0, size: [2], stride: [1]) }
            else { w.tensor(storage: "2", numel: rows * 4, offset: 0, size: [rows, 4], stride: [4, 1]) }
            w.op(0x73); w.op(0x73); w.op(0x62); w.op(0x73)
        }
        w.op(0x73); w.op(0x62); w.stop()
        let p = try archive(w.bytes, storages: [("0", Tensor([1, 2] as [Int64]).data), ("1", [UInt8](repeating: 0, count: 16)),
                                                ("2", [UInt8](repeating: 0, count: 48))])
        assertRejects(p, ["bd.x has 3 rows but bd has 2 nodes"]) { _ = try Tile.read(path: p) }
    }
}
