// The decisive check: files written here, read back by pyarrow and by DuckDB (Tests/parquet_check.py) and
// compared with the values written, value by value.
import Foundation
import XCTest
@testable import Parquet
import TestSupport

final class IndependentReadersTests: XCTestCase {
    func testPyarrowAndDuckDBReadEveryKindNullPatternEdgeValueAndLayout() throws {
        let python = try readerPython()
        let dir = Support.tempDir("parquet")
        var files: [ExpectedFile] = []

        // Every kind, required and nullable, one row group, uncompressed.
        var rng = SplitMix(seed: 1)
        files.append(try write(dir, "all_kinds_uncompressed", randomColumns(rows: 1000, &rng), compression: .uncompressed))

        // The same kinds in many row groups of many small pages, zstd, fed in batches of odd sizes in all
        // three input styles (the way rows received from several ranks arrive one batch after another).
        files.append(try write(dir, "all_kinds_zstd_many_groups", randomColumns(rows: 2000, &rng), compression: .zstd(level: 3),
                               rowGroupRows: 300, pageTargetBytes: 100, pageMaxRows: 37,
                               batches: [1, 0, 7, 250, 3, 999, 0, 1, 500, 239], metadata: ["segger.score_cut": "0.5", "ünï": "cödé\u{0}"]))

        // Nulls everywhere, nowhere, first, last, alternating, in long runs, and a column that is all null.
        files.append(try write(dir, "null_patterns", nullPatternColumns(), compression: .uncompressed,
                               rowGroupRows: 64, pageMaxRows: 10, batches: [100, 156]))
        files.append(try write(dir, "null_patterns_zstd", nullPatternColumns(), compression: .zstd(level: 1),
                               rowGroupRows: 200))

        // Extremes: integer limits, ±0, ±inf, NaNs, subnormals, empty and NUL-holding strings, non-ASCII,
        // canonically equivalent strings with different bytes, strings too long for statistics.
        files.append(try write(dir, "edge_values", edgeColumns(), compression: .zstd(level: 19), rowGroupRows: 4))
        files.append(try write(dir, "edge_values_uncompressed", edgeColumns(), compression: .uncompressed, rowGroupRows: 5))

        // No rows at all: a valid file with the schema and no row groups (also after an empty batch).
        files.append(try write(dir, "zero_rows_uncompressed", randomColumns(rows: 0, &rng), compression: .uncompressed))
        files.append(try write(dir, "zero_rows_zstd", randomColumns(rows: 0, &rng), compression: .zstd(level: 3), batches: [0]))

        // Row groups closed by size: fixed-width rows, then strings of varying length.
        files.append(try write(dir, "row_group_bytes_fixed", Array(randomColumns(rows: 50, &rng)[0..<2]), compression: .uncompressed,
                               rowGroupBytes: 100, batches: [13, 37]))
        var strings = ExpectedColumn(name: "s", type: .string, nullable: true)
        strings.strings = (0..<120).map { i in i % 7 == 3 ? nil : String(repeating: "é", count: Int(rng.next() % 30)) }
        var ids = ExpectedColumn(name: "id", type: .int64, nullable: false)
        ids.int64s = (0..<120).map { Int64($0) }
        files.append(try write(dir, "row_group_bytes_strings", [ids, strings], compression: .zstd(level: 3),
                               rowGroupBytes: 500, batches: [60, 1, 59]))

        // segger_transcripts.parquet's shape at real page sizes (several 1 MiB pages per column chunk).
        files.append(try write(dir, "transcripts_default_pages", transcriptColumns(rows: 300_000, &rng), compression: .zstd(level: 3),
                               rowGroupRows: 200_000))

        let expected = dir + "/expected.json"
        let encoder = JSONEncoder()
        try encoder.encode(["files": files]).write(to: URL(fileURLWithPath: expected))
        let r = try Support.run(python, [Self.checkScript, expected])
        XCTAssertEqual(r.status, 0, "parquet_check.py failed (files kept in \(dir)):\n\(r.output)")
        XCTAssertTrue(r.output.contains("parquet_check: \(files.count) files agree"), r.output)
        if r.status == 0 { try? FileManager.default.removeItem(atPath: dir) }
    }

    // MARK: - files

    /// Writes `columns` to `dir/name.parquet` in batches of the given sizes (the rest in one last batch),
    /// cycling through the three input styles; returns what the readers must find.
    private func write(_ dir: String, _ name: String, _ columns: [ExpectedColumn], compression: ParquetCompression,
                       rowGroupRows: Int = 1 << 20, rowGroupBytes: Int = 256 << 20, pageTargetBytes: Int? = nil,
                       pageMaxRows: Int? = nil, batches: [Int] = [], metadata: [String: String] = [:]) throws -> ExpectedFile {
        let path = "\(dir)/\(name).parquet"
        let w = try ParquetWriter(path: path, schema: columns.map(\.column), compression: compression,
                                  rowGroupRows: rowGroupRows, rowGroupBytes: rowGroupBytes, metadata: metadata)
        if let pageTargetBytes { w.pageTargetBytes = pageTargetBytes }
        if let pageMaxRows { w.pageMaxRows = pageMaxRows }
        let n = columns[0].count
        var sizes = batches
        let given = sizes.reduce(0, +)
        precondition(given <= n)
        if given < n { sizes.append(n - given) }
        var start = 0
        for (b, size) in sizes.enumerated() {
            try w.append(ParquetBatch(columns: columns.map { $0.values(start..<(start + size), style: b % 3) }))
            start += size
        }
        XCTAssertEqual(w.rowCount, Int64(n))
        try w.close()
        XCTAssertEqual(w.rowGroupCount, expectedRowGroups(columns, rowGroupRows: rowGroupRows, rowGroupBytes: rowGroupBytes).count)
        return ExpectedFile(name: name, path: path, compression: compression == .uncompressed ? "UNCOMPRESSED" : "ZSTD",
                            columns: columns.map { .init(name: $0.column.name, type: $0.column.type.rawValue, nullable: $0.column.nullable) },
                            row_groups: expectedRowGroups(columns, rowGroupRows: rowGroupRows, rowGroupBytes: rowGroupBytes),
                            metadata: metadata, data: columns.map(\.json))
    }

    /// Rows per row group as the documented rule gives them: a group closes at `rowGroupRows` rows or once
    /// its PLAIN bytes (fixed widths, strings' 4-byte prefix plus UTF-8 bytes) reach `rowGroupBytes`.
    private func expectedRowGroups(_ columns: [ExpectedColumn], rowGroupRows: Int, rowGroupBytes: Int) -> [Int] {
        var groups: [Int] = []
        var rows = 0, bytes = 0
        for i in 0..<columns[0].count {
            for c in columns {
                switch c.column.type {
                case .int64: bytes += 8
                case .int32, .int8, .float32: bytes += 4
                case .string: bytes += 4 + (c.strings[i]?.utf8.count ?? 0)
                }
            }
            rows += 1
            if rows == rowGroupRows || bytes >= rowGroupBytes { groups.append(rows); rows = 0; bytes = 0 }
        }
        if rows > 0 { groups.append(rows) }
        return groups
    }

    private func randomColumns(rows n: Int, _ rng: inout SplitMix) -> [ExpectedColumn] {
        var out: [ExpectedColumn] = []
        for type in ParquetType.allCases {
            for nullable in [false, true] {
                var c = ExpectedColumn(name: "\(type.rawValue)\(nullable ? "_null" : "")", type: type, nullable: nullable)
                for _ in 0..<n {
                    let isNull = nullable && rng.next() % 10 < 3
                    let r = rng.next()
                    switch type {
                    case .int64: c.int64s.append(isNull ? nil : Int64(bitPattern: r) >> (r % 64))
                    case .int32: c.int32s.append(isNull ? nil : Int32(truncatingIfNeeded: r) >> (r % 32))
                    case .int8: c.int8s.append(isNull ? nil : Int8(truncatingIfNeeded: r))
                    case .float32: c.floats.append(isNull ? nil : Float(Int32(truncatingIfNeeded: r >> 8) % 100_000) / 64)
                    case .string:
                        let alphabet = ["a", "b", "Z", "é", "日", "😀", "\u{0}", " ", "cell-"]
                        c.strings.append(isNull ? nil : (0..<Int(r % 9)).map { alphabet[Int((r >> (8 + 4 * UInt64($0))) % 9)] }.joined())
                    }
                }
                out.append(c)
            }
        }
        return out
    }

    private func nullPatternColumns() -> [ExpectedColumn] {
        let n = 256
        let patterns: [(String, (Int) -> Bool)] = [
            ("groups", { i in i < 64 ? false : i < 128 ? true : i < 192 ? i % 2 == 0 : (i / 9) % 3 != 0 }),
            ("first_null", { i in i != 0 }),
            ("last_null", { i in i != n - 1 }),
            ("all_null", { _ in false }),
            ("middle_run", { i in !(100..<200).contains(i) }),
        ]
        var out: [ExpectedColumn] = []
        for (k, type) in ParquetType.allCases.enumerated() {
            for (p, (label, valid)) in patterns.enumerated() where (p + k) % 2 == 0 || p == 3 {
                var c = ExpectedColumn(name: "\(type.rawValue)_\(label)", type: type, nullable: true)
                for i in 0..<n {
                    let v = valid(i)
                    switch type {
                    case .int64: c.int64s.append(v ? Int64(i) * 1_000_000_007 : nil)
                    case .int32: c.int32s.append(v ? Int32(i) - 100 : nil)
                    case .int8: c.int8s.append(v ? Int8(truncatingIfNeeded: i) : nil)
                    case .float32: c.floats.append(v ? Float(i) / 3 : nil)
                    case .string: c.strings.append(v ? "v\(i)" : nil)
                    }
                }
                out.append(c)
            }
        }
        return out
    }

    private func edgeColumns() -> [ExpectedColumn] {
        let i64: [Int64] = [.min, .max, 0, -1, 1, 1 << 53 + 1, -(1 << 53) - 1, 42, 7, 7, 7, 7, .max, .max, -3, 0,
                            5, 4, 3, 2, 1, 0, -1, -2]
        let i32: [Int32] = [.min, .max, 0, -1, 1, 1 << 24 + 1, -7, 42, 7, 7, 7, 7, .max, .max, -3, 0,
                            5, 4, 3, 2, 1, 0, -1, -2]
        let i8: [Int8] = [.min, .max, 0, -1, 1, 100, -100, 42, 7, 7, 7, 7, .max, .max, -3, 0,
                          5, 4, 3, 2, 1, 0, -1, -2]
        let floatBits: [UInt32] = [
            0x0000_0000, 0x3F00_0000, 0x3E80_0000, 0x0000_0000,   // +0, 0.5, 0.25, +0: min written as -0
            0xBFC0_0000, 0x8000_0000, 0xC040_0000, 0x8000_0000,   // -1.5, -0, -3, -0: max written as +0
            0x7F80_0000, 0xFF80_0000, 0x3F80_0000, 0x0000_0001,   // inf, -inf, 1, smallest subnormal
            0x7FC0_0000, 0x3F80_0000, 0x4000_0000, 0x4040_0000,   // NaN among numbers: no min/max
            0xFFC0_0001, 0x7FC0_0000, 0x7FC0_1234, 0xFFFF_FFFF,   // NaNs only, with payloads
            0x7F7F_FFFF, 0xFF7F_FFFF, 0x8000_0001, 0x0080_0000,   // ±greatest finite, -subnormal, least normal
        ]
        let strings: [String] = [
            "", "\u{0}", "a\u{0}b", "a",
            "\u{E9}", "e\u{301}", "😀", "日本語",
            String(repeating: "x", count: 100), "y", "z", "a",
            String(repeating: "z", count: 100), "a", "b", "c",
            "\u{10FFFF}", "\u{7F}", "\u{80}", "\t\n\"\\",
            "same", "same", "same", "same",
        ]
        var out: [ExpectedColumn] = []
        for nullable in [false, true] {
            let keep: (Int) -> Bool = { i in !nullable || i % 3 != 1 }
            var a = ExpectedColumn(name: "i64", type: .int64, nullable: nullable)
            a.int64s = i64.enumerated().map { keep($0.offset) ? $0.element : nil }
            var b = ExpectedColumn(name: "i32", type: .int32, nullable: nullable)
            b.int32s = i32.enumerated().map { keep($0.offset) ? $0.element : nil }
            var c = ExpectedColumn(name: "i8", type: .int8, nullable: nullable)
            c.int8s = i8.enumerated().map { keep($0.offset) ? $0.element : nil }
            var d = ExpectedColumn(name: "f32", type: .float32, nullable: nullable)
            d.floats = floatBits.enumerated().map { keep($0.offset) ? Float(bitPattern: $0.element) : nil }
            var e = ExpectedColumn(name: "s", type: .string, nullable: nullable)
            e.strings = strings.enumerated().map { keep($0.offset) ? $0.element : nil }
            for var col in [a, b, c, d, e] {
                if nullable { col.column.name += "_null" }
                out.append(col)
            }
        }
        return out
    }

    /// segger_transcripts.parquet's columns.
    private func transcriptColumns(rows n: Int, _ rng: inout SplitMix) -> [ExpectedColumn] {
        var id = ExpectedColumn(name: "transcript_id", type: .int64, nullable: false)
        var cell = ExpectedColumn(name: "segger_cell_id", type: .string, nullable: true)
        var score = ExpectedColumn(name: "score", type: .float32, nullable: false)
        var bound = ExpectedColumn(name: "bound", type: .int8, nullable: false)
        var gene = ExpectedColumn(name: "gene", type: .int32, nullable: false)
        for i in 0..<n {
            let r = rng.next()
            let s = Float(r % 1_000_000) / 1_000_000
            id.int64s.append(281_474_976_710_656 + Int64(i) * 3)
            cell.strings.append(s >= 0.5 ? "cell-\(r % 50_000)-1" : nil)
            score.floats.append(s)
            bound.int8s.append(s >= 0.5 ? 1 : 0)
            gene.int32s.append(Int32(r >> 40 % 500))
        }
        return [id, cell, score, bound, gene]
    }

    // MARK: - plumbing

    static let checkScript = Support.packageRoot.appendingPathComponent("Tests/parquet_check.py").path

    /// $SEGGER_TEST_PYTHON when it has pyarrow and duckdb; otherwise the test is skipped, saying why.
    private func readerPython() throws -> String {
        let python = try Support.requireTestPython()
        let r = try Support.run(python, [Self.checkScript, "--versions"])
        guard r.status == 0 else {
            throw XCTSkip("SEGGER_TEST_PYTHON=\(python) lacks pyarrow or duckdb: \(r.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return python
    }
}

/// One column's expected values (nil = null) and the ways of handing them to the writer.
struct ExpectedColumn {
    var column: ParquetColumn
    var int64s: [Int64?] = []
    var int32s: [Int32?] = []
    var int8s: [Int8?] = []
    var floats: [Float?] = []
    var strings: [String?] = []

    init(name: String, type: ParquetType, nullable: Bool) {
        column = ParquetColumn(name: name, type: type, nullable: nullable)
    }

    var count: Int { max(int64s.count, int32s.count, int8s.count, floats.count, strings.count) }

    /// Rows `r` as optionals (style 0), as values plus a validity mask (1), or as plain values (2; used only
    /// when the rows hold no null).
    func values(_ r: Range<Int>, style: Int) -> ParquetColumnValues {
        func pick<T>(_ v: [T?], zero: T, optional: ([T?]) -> ParquetColumnValues, masked: ([T], [Bool]) -> ParquetColumnValues,
                     plain: ([T]) -> ParquetColumnValues) -> ParquetColumnValues {
            let s = Array(v[r])
            if style == 0 { return optional(s) }
            if style == 2, !s.contains(where: { $0 == nil }) { return plain(s.map { $0! }) }
            return masked(s.map { $0 ?? zero }, s.map { $0 != nil })
        }
        switch column.type {
        case .int64: return pick(int64s, zero: 0, optional: { .int64($0) }, masked: { .int64($0, valid: $1) }, plain: { .int64($0) })
        case .int32: return pick(int32s, zero: 0, optional: { .int32($0) }, masked: { .int32($0, valid: $1) }, plain: { .int32($0) })
        case .int8: return pick(int8s, zero: 0, optional: { .int8($0) }, masked: { .int8($0, valid: $1) }, plain: { .int8($0) })
        case .float32: return pick(floats, zero: .nan, optional: { .float32($0) }, masked: { .float32($0, valid: $1) }, plain: { .float32($0) })
        case .string: return pick(strings, zero: "ignored", optional: { .string($0) }, masked: { .string($0, valid: $1) }, plain: { .string($0) })
        }
    }

    var json: [JSONCell] {
        switch column.type {
        case .int64: return int64s.map { $0.map { .int($0) } ?? .null }
        case .int32: return int32s.map { $0.map { .int(Int64($0)) } ?? .null }
        case .int8: return int8s.map { $0.map { .int(Int64($0)) } ?? .null }
        case .float32: return floats.map { $0.map { .int(Int64($0.bitPattern)) } ?? .null }
        case .string: return strings.map { $0.map { .string($0) } ?? .null }
        }
    }
}

enum JSONCell: Encodable {
    case int(Int64), string(String), null
    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let v): try c.encode(v)
        case .string(let s): try c.encode(s)
        case .null: try c.encodeNil()
        }
    }
}

struct ExpectedFile: Encodable {
    struct Column: Encodable { var name: String; var type: String; var nullable: Bool }
    var name: String
    var path: String
    var compression: String
    var columns: [Column]
    var row_groups: [Int]
    var metadata: [String: String]
    var data: [[JSONCell]]
}
