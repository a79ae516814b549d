// The writer's contract without a reader: atomic publication, refusal to overwrite, abandoning, hostile
// batches and parameters, bounded buffering, deterministic bytes.
import Foundation
import XCTest
@testable import Parquet
import TestSupport

final class ParquetWriterTests: XCTestCase {
    private var dir = ""
    override func setUp() { dir = Support.tempDir("parquet") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    private let schema = [ParquetColumn(name: "id", type: .int64), ParquetColumn(name: "cell", type: .string, nullable: true)]
    private func batch(_ ids: [Int64], _ cells: [String?]) -> ParquetBatch { ParquetBatch(columns: [.int64(ids), .string(cells)]) }
    private func listing() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    private func assertThrows<T>(_ expression: @autoclosure () throws -> T, containing text: String,
                              file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(text), "“\(message)” does not say “\(text)”", file: file, line: line)
            XCTAssertTrue(error is ParquetError, "\(type(of: error))", file: file, line: line)
        }
    }

    /// Magic at both ends and a footer length that fits: the frame of a Parquet file.
    private func assertParquetFrame(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertGreaterThanOrEqual(b.count, 12, file: file, line: line)
        XCTAssertEqual(Array(b.prefix(4)), Array("PAR1".utf8), file: file, line: line)
        XCTAssertEqual(Array(b.suffix(4)), Array("PAR1".utf8), file: file, line: line)
        let n = b[(b.count - 8)..<(b.count - 4)].reversed().reduce(0) { $0 << 8 | Int($1) }
        XCTAssertLessThanOrEqual(n + 12, b.count, file: file, line: line)
    }

    func testNothingAppearsBeforeCloseAndCloseRenamesIntoPlace() throws {
        let path = dir + "/out.parquet"
        let w = try ParquetWriter(path: path, schema: schema)
        XCTAssertTrue(FileManager.default.fileExists(atPath: w.temporaryPath))
        try w.append(batch([1, 2, 3], ["a", nil, "c"]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        try w.close()
        XCTAssertEqual(listing(), ["out.parquet"], "the temporary file is gone")
        try assertParquetFrame(path)
        XCTAssertEqual(w.rowCount, 3)
        XCTAssertEqual(w.rowGroupCount, 1)
    }

    func testAbandonAndReleaseWithoutCloseLeaveNothingBehind() throws {
        let path = dir + "/out.parquet"
        let w = try ParquetWriter(path: path, schema: schema, rowGroupRows: 2)
        try w.append(batch([1, 2, 3], ["a", nil, "c"]))  // one row group already written
        w.abandon()
        XCTAssertEqual(listing(), [])
        assertThrows(try w.append(batch([4], ["d"])), containing: "abandoned")
        assertThrows(try w.close(), containing: "abandoned")
        w.abandon()  // again: nothing to do

        do {
            let released = try ParquetWriter(path: path, schema: schema)
            try released.append(batch([1], ["x"]))
            XCTAssertEqual(listing().count, 1)
        }
        XCTAssertEqual(listing(), [], "a writer released unclosed deletes its temporary file")
    }

    func testRefusesAnExistingFileUnlessToldAndNeverReplacesADirectory() throws {
        let path = dir + "/out.parquet"
        try Data("theirs".utf8).write(to: URL(fileURLWithPath: path))
        assertThrows(try ParquetWriter(path: path, schema: schema), containing: "already exists")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "theirs")
        XCTAssertEqual(listing(), ["out.parquet"])

        let w = try ParquetWriter(path: path, schema: schema, overwrite: true)
        try w.append(batch([7], [nil]))
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "theirs", "untouched until close")
        try w.close()
        try assertParquetFrame(path)

        try FileManager.default.createDirectory(atPath: dir + "/d.parquet", withIntermediateDirectories: false)
        assertThrows(try ParquetWriter(path: dir + "/d.parquet", schema: schema, overwrite: true), containing: "is a directory")
    }

    func testAFileThatAppearsWhileWritingIsNotOverwritten() throws {
        let path = dir + "/out.parquet"
        let w = try ParquetWriter(path: path, schema: schema)
        try w.append(batch([1], ["a"]))
        try Data("theirs".utf8).write(to: URL(fileURLWithPath: path))
        assertThrows(try w.close(), containing: "appeared while it was being written")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "theirs")
        XCTAssertEqual(listing(), ["out.parquet"], "the temporary file is removed")
    }

    func testHostileBatchesAreRefusedByNameAndChangeNothing() throws {
        let path = dir + "/out.parquet"
        let w = try ParquetWriter(path: path, schema: schema)
        assertThrows(try w.append(ParquetBatch(columns: [.int64([1])])), containing: "a batch has 1 columns; the schema has 2")
        assertThrows(try w.append(ParquetBatch(columns: [.int32([1]), .string(["a"])])),
                     containing: "column \"id\" is int64; the batch gives int32 values")
        assertThrows(try w.append(batch([1, 2], ["a"])), containing: "column \"cell\" has 1 rows in a batch whose first column has 2")
        assertThrows(try w.append(ParquetBatch(columns: [.int64([1, 2], valid: [true]), .string(["a", "b"])])),
                     containing: "column \"id\" has 2 values but a validity mask of 1")
        assertThrows(try w.append(ParquetBatch(columns: [.int64([1, nil, 3]), .string(["a", "b", "c"])])),
                     containing: "column \"id\" is not nullable, but row 1 of the batch is null")
        assertThrows(try w.append(ParquetBatch(columns: [.int64([1, 2], valid: [true, false]), .string(["a", "b"])])),
                     containing: "row 1 of the batch is null")
        w.maxStringBytes = 3
        assertThrows(try w.append(batch([1, 2], ["abc", "abcd"])), containing: "column \"cell\", row 1 of the batch: a string of 4 bytes; at most 3")
        XCTAssertEqual(w.rowCount, 0, "refused batches add nothing")

        try w.append(batch([], []))
        try w.append(batch([5, 6], ["", "a\u{0}b"]))
        try w.close()
        XCTAssertEqual(w.rowCount, 2)
        try assertParquetFrame(path)
        assertThrows(try w.append(batch([1], ["a"])), containing: "already closed")
        assertThrows(try w.close(), containing: "already closed")
        w.abandon()
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), "abandon after close keeps the file")
    }

    func testBadSchemasAndParametersAreRefusedBeforeAnythingIsCreated() {
        let p = dir + "/out.parquet"
        assertThrows(try ParquetWriter(path: p, schema: []), containing: "no columns")
        assertThrows(try ParquetWriter(path: p, schema: [ParquetColumn(name: "", type: .int8)]), containing: "empty name")
        assertThrows(try ParquetWriter(path: p, schema: [ParquetColumn(name: "a", type: .int8), ParquetColumn(name: "a", type: .string)]),
                     containing: "column name \"a\" appears twice")
        assertThrows(try ParquetWriter(path: p, schema: schema, rowGroupRows: 0), containing: "rowGroupRows 0")
        assertThrows(try ParquetWriter(path: p, schema: schema, rowGroupRows: Int(Int32.max) + 1), containing: "rowGroupRows")
        assertThrows(try ParquetWriter(path: p, schema: schema, rowGroupBytes: 0), containing: "rowGroupBytes 0")
        assertThrows(try ParquetWriter(path: p, schema: schema, compression: .zstd(level: 1000)), containing: "zstd level 1000")
        assertThrows(try ParquetWriter(path: "", schema: schema), containing: "empty output path")
        assertThrows(try ParquetWriter(path: dir + "/missing/out.parquet", schema: schema), containing: "cannot create the temporary file")
        XCTAssertEqual(listing(), [])
    }

    func testRowGroupsAreWrittenAsTheyFillSoBufferingStaysBounded() throws {
        let w = try ParquetWriter(path: dir + "/out.parquet", schema: schema, compression: .uncompressed, rowGroupRows: 1000)
        for k in 0..<10 {
            let ids = (0..<1000).map { Int64(k * 1000 + $0) }
            try w.append(batch(ids, ids.map { $0 % 3 == 0 ? nil : "c\($0)" }))
            XCTAssertEqual(w.rowGroupCount, k + 1, "each full row group leaves the buffer at once")
        }
        try w.append(batch(Array(0..<2500), Array(repeating: "x", count: 2500)))
        XCTAssertEqual(w.rowGroupCount, 12, "a large batch is cut into row groups; the rest stays buffered")
        try w.close()
        XCTAssertEqual(w.rowGroupCount, 13)
    }

    func testTheBytesDoNotDependOnHowRowsAreSplitIntoBatches() throws {
        var rng = SplitMix(seed: 3)
        let ids = (0..<5000).map { _ in Int64(bitPattern: rng.next()) }
        let cells: [String?] = ids.map { $0 % 4 == 0 ? nil : "cell-\($0 % 977)" }
        var files: [[UInt8]] = []
        for split in [[5000], [1, 2, 3, 4994], [2500, 0, 2500], Array(repeating: 50, count: 100)] {
            let path = dir + "/s\(files.count).parquet"
            let w = try ParquetWriter(path: path, schema: schema, compression: .zstd(level: 3), rowGroupRows: 1234,
                                      metadata: ["b": "2", "a": "1"])
            var start = 0
            for n in split {
                try w.append(batch(Array(ids[start..<(start + n)]), Array(cells[start..<(start + n)])))
                start += n
            }
            try w.close()
            files.append([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
        }
        for f in files.dropFirst() { XCTAssertEqual(f, files[0]) }
    }
}
