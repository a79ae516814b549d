import Foundation
import XCTest
@testable import SafeTensors
@testable import SeggerTiles

/// One test per way a tile file can be wrong: each must end in a `TileError` that names the file,
/// the tensor at fault (when there is one) and the problem — never a crash, a hang or a huge allocation.
final class BadTileTests: XCTestCase {
    var dir = ""
    let meta = ["format": "segger-tile", "version": "1"]

    override func setUpWithError() throws {
        dir = try temporaryDirectory(self)
    }

    /// A small valid tile as named tensors (file order of `Tile.tensors()`).
    func goodTensors() -> [(String, Tensor)] {
        Synth.tile(config: SynthConfig(txPerTile: 120, seed: 3, numTxTokens: 50), index: 0).tensors()
    }

    func replacing(_ name: String, with t: Tensor?, in tensors: [(String, Tensor)]) -> [(String, Tensor)] {
        if let t { return tensors.map { $0.0 == name ? (name, t) : $0 } }
        return tensors.filter { $0.0 != name }
    }

    func write(_ tensors: [(String, Tensor)], metadata: [String: String]? = nil, name: String = "t.safetensors") throws -> String {
        let path = dir + "/" + name
        try SafeTensorsFile.write(tensors, metadata: metadata ?? meta, to: path)
        return path
    }

    /// A file from a literal JSON header and data bytes.
    func writeRaw(header: String, data: [UInt8], name: String = "raw.safetensors") throws -> String {
        let path = dir + "/" + name
        var bytes: [UInt8] = []
        let h = Array(header.utf8)
        for i in 0..<8 { bytes.append(UInt8((UInt64(h.count) >> (8 * UInt64(i))) & 0xff)) }
        try Data(bytes + h + data).write(to: URL(fileURLWithPath: path))
        return path
    }

    func fileBytes(_ tensors: [(String, Tensor)]) -> [UInt8] { SafeTensorsFile.serialize(tensors, metadata: meta) }

    func writeBytes(_ bytes: [UInt8], name: String = "b.safetensors") throws -> String {
        let path = dir + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Asserts that reading `path` throws a TileError naming the file, `tensor` and every phrase of `problem`.
    func assertBad(_ path: String, tensor: String?, _ problem: String..., options: TileReadOptions = TileReadOptions(),
                   file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Tile.read(path: path, options: options), file: file, line: line) { error in
            guard let e = error as? TileError else { return XCTFail("not a TileError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.path, path, file: file, line: line)
            XCTAssertEqual(e.tensor, tensor, "\(e)", file: file, line: line)
            let text = e.description
            XCTAssertTrue(text.contains(path), text, file: file, line: line)
            if let tensor { XCTAssertTrue(text.contains("'\(tensor)'"), text, file: file, line: line) }
            for p in problem { XCTAssertTrue(text.contains(p), "expected '\(p)' in: \(text)", file: file, line: line) }
        }
    }

    func testGoodTileReads() throws {
        let t = try Tile.read(path: try write(goodTensors()), options: TileReadOptions(numTxTokens: 50))
        checkInvariants(t)
    }

    // MARK: file and header

    func testTruncatedInsideTheData() throws {
        let bytes = fileBytes(goodTensors())
        let path = try writeBytes(Array(bytes.dropLast(3)))
        assertBad(path, tensor: TileTensor.label, "run past the end of the data", "truncated")
    }

    func testTruncatedBeforeTheHeaderLength() throws {
        assertBad(try writeBytes([1, 2, 3]), tensor: nil, "truncated file", "3 bytes")
        assertBad(try writeBytes([], name: "empty.safetensors"), tensor: nil, "truncated file", "0 bytes")
    }

    func testHeaderLengthPastTheEnd() throws {
        var bytes = fileBytes(goodTensors())
        bytes[6] = 1 // header length += 2^48
        assertBad(try writeBytes(bytes), tensor: nil, "header length", "runs past the end of the file")
        let cut = try writeBytes(Array(fileBytes(goodTensors()).prefix(40)), name: "cut.safetensors")
        assertBad(cut, tensor: nil, "header length", "runs past the end of the file")
    }

    func testInvalidHeaderJSON() throws {
        assertBad(try writeRaw(header: "{\"tx.x\": {\"dtype\": \"I64\", ", data: []), tensor: nil, "invalid header JSON")
        assertBad(try writeRaw(header: "[1, 2, 3]", data: [], name: "array.safetensors"), tensor: nil, "invalid header JSON", "not an object")
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        assertBad(try writeRaw(header: "{\"a\":" + deep + "}", data: [], name: "deep.safetensors"), tensor: nil, "invalid header JSON", "nested")
    }

    func testUnknownDtype() throws {
        let path = try writeRaw(header: #"{"tx.x":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        assertBad(path, tensor: "tx.x", "unknown dtype 'F8_E4M3'")
    }

    func testShapeDoesNotMatchTheBytes() throws {
        let path = try writeRaw(header: #"{"bd.x":{"dtype":"F32","shape":[3,4],"data_offsets":[0,40]}}"#, data: [UInt8](repeating: 0, count: 40))
        assertBad(path, tensor: "bd.x", "needs 48 bytes", "give 40")
        let huge = try writeRaw(header: #"{"bd.x":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}"#,
                                data: [UInt8](repeating: 0, count: 8), name: "huge.safetensors")
        assertBad(huge, tensor: "bd.x", "too large")
        let frac = try writeRaw(header: #"{"bd.x":{"dtype":"F32","shape":[2.5,4],"data_offsets":[0,40]}}"#, data: [UInt8](repeating: 0, count: 40), name: "frac.safetensors")
        assertBad(frac, tensor: "bd.x", "invalid shape")
        let neg = try writeRaw(header: #"{"bd.x":{"dtype":"F32","shape":[-2,4],"data_offsets":[0,40]}}"#, data: [UInt8](repeating: 0, count: 40), name: "neg.safetensors")
        assertBad(neg, tensor: "bd.x", "invalid shape")
    }

    func testOverlappingDataOffsets() throws {
        let path = try writeRaw(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                                data: [UInt8](repeating: 0, count: 12))
        assertBad(path, tensor: "b", "overlap tensor 'a'")
        let same = try writeRaw(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                                data: [UInt8](repeating: 0, count: 8), name: "same.safetensors")
        assertBad(same, tensor: "b", "overlap tensor 'a'")
    }

    func testNonContiguousDataOffsets() throws {
        let gap = try writeRaw(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#,
                               data: [UInt8](repeating: 0, count: 20))
        assertBad(gap, tensor: "b", "gap of 4 unused bytes", "after tensor 'a'")
        let late = try writeRaw(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: [UInt8](repeating: 0, count: 12), name: "late.safetensors")
        assertBad(late, tensor: "a", "gap of 4", "data must start at 0")
        let trailing = try writeRaw(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 11), name: "trail.safetensors")
        assertBad(trailing, tensor: nil, "3 trailing bytes")
        let backwards = try writeRaw(header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: [UInt8](repeating: 0, count: 8), name: "back.safetensors")
        assertBad(backwards, tensor: "a", "end before they begin")
    }

    func testOutOfOrderDataOffsetsAreAccepted() throws {
        // Header order is free (a JSON object has none); only the byte ranges must tile the data.
        var t = goodTensors()
        t.reverse()
        let bytes = SafeTensorsFile.serialize(t, metadata: meta)
        checkInvariants(try Tile.read(path: try writeBytes(bytes)))
    }

    func testWrongFormatMetadata() throws {
        assertBad(try write(goodTensors(), metadata: ["format": "pt"]), tensor: nil, "format is 'pt'")
        assertBad(try write(goodTensors(), metadata: ["format": "segger-tile", "version": "2"], name: "v2.safetensors"), tensor: nil, "version '2'")
    }

    // MARK: tensors

    func testMissingRequiredTensor() throws {
        for name in [TileTensor.txX, TileTensor.bdX, TileTensor.neighborsEdgeIndex, TileTensor.belongsEdgeIndex] {
            let path = try write(replacing(name, with: nil, in: goodTensors()), name: "missing-\(name).safetensors")
            assertBad(path, tensor: name, "missing required tensor")
        }
        // Labels without their index, and an index without labels.
        let noIndex = try write(replacing(TileTensor.labelIndex, with: nil, in: goodTensors()), name: "noindex.safetensors")
        assertBad(noIndex, tensor: TileTensor.labelIndex, "missing")
        let noLabels = try write(replacing(TileTensor.label, with: nil, in: goodTensors()), name: "nolabels.safetensors")
        assertBad(noLabels, tensor: TileTensor.label, "missing required tensor")
    }

    func edgeTensor(_ name: String, _ mutate: (inout [Int64], Int) -> Void) -> [(String, Tensor)] {
        let tensors = goodTensors()
        let t = tensors.first { $0.0 == name }!.1
        var v = t.int64s()!
        mutate(&v, t.shape[1])
        return replacing(name, with: Tensor(v, shape: t.shape), in: tensors)
    }

    func testEdgeIndexOutOfRange() throws {
        let src = try write(edgeTensor(TileTensor.neighborsEdgeIndex) { v, _ in v[5] = 120 }, name: "src.safetensors")
        assertBad(src, tensor: TileTensor.neighborsEdgeIndex, "source index 120 at edge 5 is out of range", "120 source nodes")
        let dst = try write(edgeTensor(TileTensor.belongsEdgeIndex) { v, e in v[e + 1] = 1_000_000_000_000 }, name: "dst.safetensors")
        assertBad(dst, tensor: TileTensor.belongsEdgeIndex, "destination index 1000000000000 at edge 1 is out of range")
        let label = try write(edgeTensor(TileTensor.labelIndex) { v, e in v[e] = Int64.max }, name: "label.safetensors")
        assertBad(label, tensor: TileTensor.labelIndex, "destination index \(Int64.max) at edge 0")
    }

    func testNegativeIndex() throws {
        let path = try write(edgeTensor(TileTensor.neighborsEdgeIndex) { v, _ in v[3] = -1 }, name: "neg.safetensors")
        assertBad(path, tensor: TileTensor.neighborsEdgeIndex, "negative index at edge 3")
        let min = try write(edgeTensor(TileTensor.belongsEdgeIndex) { v, e in v[e] = Int64.min }, name: "min.safetensors")
        assertBad(min, tensor: TileTensor.belongsEdgeIndex, "negative index at edge 0")
    }

    func testEdgeIndexWrongShapeOrDtype() throws {
        let t = goodTensors().first { $0.0 == TileTensor.neighborsEdgeIndex }!.1
        let three = try write(replacing(TileTensor.neighborsEdgeIndex, with: Tensor(t.int64s()!.prefix(3 * 10).map { $0 }, shape: [3, 10]), in: goodTensors()), name: "three.safetensors")
        assertBad(three, tensor: TileTensor.neighborsEdgeIndex, "expected [2, E]")
        let floats = try write(replacing(TileTensor.neighborsEdgeIndex, with: Tensor(t.floats(), shape: t.shape), in: goodTensors()), name: "float.safetensors")
        assertBad(floats, tensor: TileTensor.neighborsEdgeIndex, "dtype F32", "expected I64")
    }

    func testTokenIdNotBelowNumTxTokens() throws {
        let path = try write(goodTensors())
        // The tile uses tokens < 50; a model with 10 tokens cannot embed them.
        assertBad(path, tensor: TileTensor.txX, "is not below --num_tx_tokens 10", options: TileReadOptions(numTxTokens: 10))
        var ids = goodTensors().first { $0.0 == TileTensor.txX }!.1.int64s()!
        ids[7] = -3
        let neg = try write(replacing(TileTensor.txX, with: Tensor(ids), in: goodTensors()), name: "negtok.safetensors")
        assertBad(neg, tensor: TileTensor.txX, "negative token id -3 at row 7")
    }

    func testLabelLengthDiffersFromLabelPairs() throws {
        let labels = goodTensors().first { $0.0 == TileTensor.label }!.1.floats()
        let path = try write(replacing(TileTensor.label, with: Tensor(Array(labels.dropLast())), in: goodTensors()))
        assertBad(path, tensor: TileTensor.label, "has \(labels.count - 1) labels", "has \(labels.count) pairs")
    }

    func testLabelOtherThanZeroOrOne() throws {
        var labels = goodTensors().first { $0.0 == TileTensor.label }!.1.floats()
        labels[2] = 0.5
        assertBad(try write(replacing(TileTensor.label, with: Tensor(labels), in: goodTensors())), tensor: TileTensor.label, "label 0.5 at position 2 is not 0 or 1")
        labels[2] = .nan
        assertBad(try write(replacing(TileTensor.label, with: Tensor(labels), in: goodTensors()), name: "nan.safetensors"), tensor: TileTensor.label, "at position 2 is not 0 or 1")
    }

    func testNonFiniteBoundaryFeaturesAreReplacedAndCounted() throws {
        var bd = goodTensors().first { $0.0 == TileTensor.bdX }!.1.floats()
        bd[0] = .nan; bd[2] = .infinity; bd[3] = -.infinity
        let path = try write(replacing(TileTensor.bdX, with: Tensor(bd, shape: [bd.count / 4, 4]), in: goodTensors()))
        let t = try Tile.read(path: path)
        XCTAssertEqual(t.nonFiniteReplaced, 3)
        XCTAssertEqual(t.bdX[0], 0)
        XCTAssertEqual(t.bdX[2], .greatestFiniteMagnitude)
        XCTAssertEqual(t.bdX[3], -.greatestFiniteMagnitude)
        XCTAssertEqual(t.bdX[1], bd[1])
    }

    func testBoundaryFeaturesWidthZeroIsRejectedWithoutAllocating() throws {
        // [2^40, 0] holds no bytes; building per-boundary arrays for it would allocate terabytes.
        let path = try writeRaw(header: #"{"bd.x":{"dtype":"F32","shape":[1099511627776,0],"data_offsets":[0,0]},"tx.x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
                                data: [UInt8](repeating: 0, count: 8))
        assertBad(path, tensor: TileTensor.bdX, "width 0")
    }

    func testEmptyTile() throws {
        let path = try write(replacing(TileTensor.txX, with: Tensor([Int64]()), in: goodTensors()))
        assertBad(path, tensor: TileTensor.txX, "empty tile")
    }

    func testPositionsWithTheWrongRowCount() throws {
        let path = try write(goodTensors() + [(TileTensor.txPos, Tensor([Float](repeating: 0, count: 6), shape: [3, 2]))])
        assertBad(path, tensor: TileTensor.txPos, "expected F32 [120, 2]")
    }

    // MARK: directories and files

    func testUnreadableFile() throws {
        // Tests run as root, so permissions cannot make a file unreadable: a directory stands in for it.
        let path = dir + "/x.safetensors"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        assertBad(path, tensor: nil, "not a regular file", "is a directory")
        XCTAssertThrowsError(try TileCatalog.sizes(path: path)) { XCTAssertTrue("\($0)".contains("not a regular file")) }
        assertBad(dir + "/absent.safetensors", tensor: nil, "cannot open file", "No such file")
        // A FIFO named like a tile must not hang the reader (open would block waiting for a writer).
        XCTAssertEqual(mkfifo(dir + "/fifo.safetensors", 0o644), 0)
        assertBad(dir + "/fifo.safetensors", tensor: nil, "not a regular file")
        XCTAssertThrowsError(try TileCatalog.sizes(path: dir + "/fifo.safetensors"))
    }

    func testDirectoryWithNoTiles() throws {
        try Data("hello".utf8).write(to: URL(fileURLWithPath: dir + "/README.md"))
        XCTAssertThrowsError(try TileDirectory.list(dir)) { e in
            XCTAssertEqual(e as? TileError, TileError(path: dir, "directory holds no tiles (*.safetensors)"))
        }
        XCTAssertThrowsError(try TileDirectory.list(dir + "/nope")) { XCTAssertTrue("\($0)".contains("no such directory")) }
        XCTAssertThrowsError(try TileDirectory.list(dir + "/README.md")) { XCTAssertTrue("\($0)".contains("not a directory")) }
    }

    func testNonTileFilesInADirectoryAreIgnored() throws {
        let tiles = dir + "/tiles"
        try Synth.writeDirectory(config: SynthConfig(tiles: 2, txPerTile: 100, seed: 1), to: tiles)
        for junk in ["README.md", "manifest.json", ".tile_00000.safetensors.tmp-12", ".hidden.safetensors", "tile.safetensors.bak", "notes.txt"] {
            try Data("junk".utf8).write(to: URL(fileURLWithPath: tiles + "/" + junk))
        }
        let listed = try TileDirectory.list(tiles).map { ($0 as NSString).lastPathComponent }
        XCTAssertEqual(listed, ["tile_00000.safetensors", "tile_00001.safetensors"])
    }

    func testSkipReportKeepsGoodAndNamesBadFiles() throws {
        let good = try write(goodTensors(), name: "a.safetensors")
        let bad = try writeBytes([0, 1], name: "b.safetensors")
        let report = Tile.validate(paths: [good, bad, good])
        XCTAssertEqual(report.kept, [good, good])
        XCTAssertEqual(report.skipped.map(\.path), [bad])
    }
}
