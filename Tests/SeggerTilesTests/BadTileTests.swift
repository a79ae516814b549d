import Foundation
import XCTest
@testable import SafeTensors
@testable import SeggerTiles
import TestSupport

/// One test per way a tile file can be wrong: each must end in a `InputError` that names the file,
/// the tensor at fault (when there is one) and the problem — never a crash, a hang or a huge allocation.
final class BadTileTests: XCTestCase {
    var dir = ""
    let meta = ["format": "segger-tile", "version": "1"]

    override func setUpWithError() throws {
        dir = Support.tempDir("tiles", removedAfter: self)
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

    /// Asserts that reading `path` throws a InputError naming the file, `tensor` and every phrase of `problem`.
    func assertBad(_ path: String, tensor: String?, _ problem: String..., options: TileReadOptions = TileReadOptions(),
                   file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Tile.read(path: path, options: options), file: file, line: line) { error in
            guard let e = error as? InputError else { return XCTFail("not a InputError: \(error)", file: file, line: line) }
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
        assertBad(path, tensor: goodTensors().last!.0, "run past the end of the data", "truncated")
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
        assertBad(try write(goodTensors(), metadata: ["format": "segger-tile", "version": "3"], name: "v3.safetensors"), tensor: nil, "version '3'", "versions 1 and 2")
        XCTAssertNoThrow(try Tile.read(path: try write(goodTensors(), metadata: ["format": "segger-tile", "version": "2"], name: "v2.safetensors")))
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
        let path = try write(replacing(TileTensor.txPos, with: Tensor([Float](repeating: 0, count: 6), shape: [3, 2]), in: goodTensors()))
        assertBad(path, tensor: TileTensor.txPos, "expected F32 [120, 2]")
    }

    // MARK: positions and ids (segger-tile v2)

    /// The small good tile with transcript ids (and boundary ids).
    func withIDs() -> [(String, Tensor)] {
        var t = Synth.tile(config: SynthConfig(txPerTile: 120, seed: 3, numTxTokens: 50), index: 0)
        t.txIDs = (0..<t.numTx).map { 282_063_387_231_058 + Int64($0) * 7 }
        t.bdIDs = (0..<t.numBd).map { "cell\($0)-1" }
        return t.tensors()
    }

    func tensor(_ name: String) -> Tensor { withIDs().first { $0.0 == name }!.1 }

    func testPositionsNotFiniteOrWrongWidth() throws {
        var pos = manyCells().first { $0.0 == TileTensor.bdPos }!.1.floats()
        pos[3] = .nan
        let nan = try write(replacing(TileTensor.bdPos, with: Tensor(pos, shape: [pos.count / 2, 2]), in: manyCells()), name: "nanpos.safetensors")
        assertBad(nan, tensor: TileTensor.bdPos, "position nan at row 1, column 1 is not finite")
        var tx = tensor(TileTensor.txPos).floats()
        tx[0] = -.infinity
        let inf = try write(replacing(TileTensor.txPos, with: Tensor(tx, shape: [120, 2]), in: goodTensors()), name: "infpos.safetensors")
        assertBad(inf, tensor: TileTensor.txPos, "position -inf at row 0, column 0 is not finite")
        let four = try write(replacing(TileTensor.txPos, with: Tensor([Float](repeating: 0, count: 480), shape: [120, 4]), in: goodTensors()), name: "pos4.safetensors")
        assertBad(four, tensor: TileTensor.txPos, "shape [120, 4]", "expected F32 [120, 2] or [120, 3]")
        // The trainer's per-step reads do not look at the values (shapes are still checked).
        XCTAssertNoThrow(try Tile.read(path: nan, options: TileReadOptions(positionsAndIDs: false)))
        assertBad(four, tensor: TileTensor.txPos, "expected F32 [120, 2] or [120, 3]", options: TileReadOptions(positionsAndIDs: false))
    }

    func testTranscriptIDsWrongDtypeOrShape() throws {
        let ids = tensor(TileTensor.txID).int64s()!
        let float = try write(replacing(TileTensor.txID, with: Tensor(ids.map { Float($0) }), in: withIDs()), name: "fid.safetensors")
        assertBad(float, tensor: TileTensor.txID, "dtype F32 with shape [120]", "expected I64 [120]")
        let short = try write(replacing(TileTensor.txID, with: Tensor(Array(ids.dropLast())), in: withIDs()), name: "short.safetensors")
        assertBad(short, tensor: TileTensor.txID, "shape [119]", "expected I64 [120]")
        let twoD = try write(replacing(TileTensor.txID, with: Tensor(ids, shape: [120, 1]), in: withIDs()), name: "2d.safetensors")
        assertBad(twoD, tensor: TileTensor.txID, "shape [120, 1]")
        // I32 ids are accepted and widened.
        let i32 = try write(replacing(TileTensor.txID, with: Tensor(ids.indices.map { Int32($0 * 3) }), in: withIDs()), name: "i32.safetensors")
        XCTAssertEqual(try Tile.read(path: i32).txIDs, ids.indices.map { Int64($0 * 3) })
    }

    func testTranscriptIDsRepeated() throws {
        var ids = tensor(TileTensor.txID).int64s()!
        ids[97] = ids[12]
        let path = try write(replacing(TileTensor.txID, with: Tensor(ids), in: withIDs()))
        assertBad(path, tensor: TileTensor.txID, "transcript id \(ids[12]) appears more than once (rows 12 and 97)", "unique within a tile")
        XCTAssertNil(try Tile.read(path: path, options: TileReadOptions(positionsAndIDs: false)).txIDs)
    }

    /// `bd.id` rows from raw bytes, zero-padded to `width`.
    func boundaryIDs(_ rows: [[UInt8]], width: Int) -> Tensor {
        var data: [UInt8] = []
        for r in rows { data += r + [UInt8](repeating: 0, count: width - r.count) }
        return Tensor(dtype: .U8, shape: [rows.count, width], data: data)
    }

    /// A valid tile with several nuclei (the small good tile has one), with ids.
    func manyCells() -> [(String, Tensor)] {
        var t = Synth.tile(config: SynthConfig(txPerTile: 900, seed: 3, numTxTokens: 50), index: 0)
        t.txIDs = (0..<t.numTx).map { Int64($0) }
        t.bdIDs = (0..<t.numBd).map { "nucleus\($0)" }
        return t.tensors()
    }

    func testBoundaryIDsWrongDtypeOrShape() throws {
        let good = manyCells().first { $0.0 == TileTensor.bdID }!.1
        let n = good.shape[0]
        let i64 = try write(replacing(TileTensor.bdID, with: Tensor([Int64](repeating: 1, count: n), shape: [n, 1]), in: manyCells()), name: "i64.safetensors")
        assertBad(i64, tensor: TileTensor.bdID, "dtype I64", "expected U8 [\(n), W]")
        let rows = try write(replacing(TileTensor.bdID, with: boundaryIDs((0..<(n + 1)).map { Array("c\($0)".utf8) }, width: 4), in: manyCells()), name: "rows.safetensors")
        assertBad(rows, tensor: TileTensor.bdID, "shape [\(n + 1), 4]", "expected U8 [\(n), W] with W ≥ 1")
        let zero = try write(replacing(TileTensor.bdID, with: Tensor(dtype: .U8, shape: [n, 0], data: []), in: manyCells()), name: "zero.safetensors")
        assertBad(zero, tensor: TileTensor.bdID, "shape [\(n), 0]")
        let flat = try write(replacing(TileTensor.bdID, with: Tensor([UInt8](repeating: 65, count: n)), in: manyCells()), name: "flat.safetensors")
        assertBad(flat, tensor: TileTensor.bdID, "shape [\(n)]")
    }

    func testBoundaryIDsEmptyNulInvalidOrRepeated() throws {
        let n = manyCells().first { $0.0 == TileTensor.bdID }!.1.shape[0]
        func ids(_ change: (inout [[UInt8]]) -> Void) -> Tensor {
            var rows = (0..<n).map { Array("cell\($0)-1".utf8) }
            change(&rows)
            return boundaryIDs(rows, width: 12)
        }
        let empty = try write(replacing(TileTensor.bdID, with: ids { $0[2] = [] }, in: manyCells()), name: "empty.safetensors")
        assertBad(empty, tensor: TileTensor.bdID, "row 2 is empty", "non-empty")
        let nul = try write(replacing(TileTensor.bdID, with: ids { $0[1] = Array("ab".utf8) + [0] + Array("cd".utf8) }, in: manyCells()), name: "nul.safetensors")
        assertBad(nul, tensor: TileTensor.bdID, "row 1 has a NUL byte inside the id")
        let utf8 = try write(replacing(TileTensor.bdID, with: ids { $0[0] = [0x63, 0xC3, 0x28] }, in: manyCells()), name: "utf8.safetensors")
        assertBad(utf8, tensor: TileTensor.bdID, "row 0 is not valid UTF-8")
        let twice = try write(replacing(TileTensor.bdID, with: ids { $0[n - 1] = $0[0] }, in: manyCells()), name: "twice.safetensors")
        assertBad(twice, tensor: TileTensor.bdID, "boundary id \"cell0-1\" appears more than once (rows 0 and \(n - 1))")
        // Multi-byte UTF-8 and rows that fill the width exactly are fine.
        let ok = try write(replacing(TileTensor.bdID, with: ids { $0[0] = Array("zellé-1".utf8); $0[1] = Array("abcdefghijkl".utf8) }, in: manyCells()), name: "ok.safetensors")
        let t = try Tile.read(path: ok)
        XCTAssertEqual(t.bdIDs?[0], "zellé-1")
        XCTAssertEqual(t.bdIDs?[1], "abcdefghijkl")
        XCTAssertEqual(t.bdIDs?[2], "cell2-1")
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
            XCTAssertEqual(e as? InputError, InputError(path: dir, "directory holds no tiles (*.safetensors)"))
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
