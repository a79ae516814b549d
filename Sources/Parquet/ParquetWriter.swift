// ParquetWriter: rows in (batches), one Parquet file out, written under a temporary name and renamed into
// place at close.
import Foundation

/// Writes one Parquet file of flat columns: PLAIN-encoded data pages (v1), definition levels for nullable
/// columns, per-column-chunk statistics, pages uncompressed or zstd-compressed.
///
/// Rows arrive in batches of any size; they are buffered until a row group is full (``rowGroupRows`` rows
/// or about ``rowGroupBytes`` bytes of values, whichever comes first), then that row group is encoded and
/// written, so memory stays bounded by one row group. The file is written under a temporary name in the
/// destination's directory and renamed into place by ``close()``; until then the destination is untouched.
/// A writer that is neither closed nor abandoned deletes its temporary file when released.
///
/// ```swift
/// let w = try ParquetWriter(path: out + "/segger_transcripts.parquet", schema: [
///     ParquetColumn(name: "transcript_id", type: .int64),
///     ParquetColumn(name: "segger_cell_id", type: .string, nullable: true),
///     ParquetColumn(name: "score", type: .float32),
/// ], compression: .zstd(level: 3))
/// do {
///     for part in parts { try w.append(ParquetBatch(columns: [.int64(part.ids), .string(part.cells), .float32(part.scores)])) }
///     try w.close()
/// } catch { w.abandon(); throw error }
/// ```
///
/// Batches from several sources (say, rows received from each MPI rank in turn) are simply appended one
/// after another. Not thread-safe: one writer is used by one thread at a time.
public final class ParquetWriter {
    /// The destination path.
    public let path: String
    public let schema: [ParquetColumn]
    public let compression: ParquetCompression
    /// The most rows a row group holds.
    public let rowGroupRows: Int
    /// A row group is closed once its buffered values reach this many bytes (PLAIN-encoded size), so wide
    /// strings cannot grow it without bound; a single row larger than this still makes a row group of one.
    public let rowGroupBytes: Int
    /// Rows accepted so far (written or buffered).
    public private(set) var rowCount: Int64 = 0
    /// Row groups written to the temporary file so far.
    public private(set) var rowGroupCount: Int = 0

    /// Opens the temporary file beside `path`; nothing is created at `path` before ``close()``.
    ///
    /// - Parameters:
    ///   - schema: at least one column; names non-empty and unique.
    ///   - rowGroupRows: 1 ... 2^31 - 1.
    ///   - rowGroupBytes: at least 1.
    ///   - overwrite: replace an existing file at `path` (never a directory); when false an existing file is
    ///     refused here and again, atomically, at ``close()``.
    ///   - metadata: key/value pairs stored in the file footer (`key_value_metadata`), in key order.
    /// - Throws: ``ParquetError`` for a bad schema or parameter, an existing `path` without `overwrite`, or a
    ///   directory where the temporary file cannot be created.
    public init(path: String, schema: [ParquetColumn], compression: ParquetCompression = .zstd(level: 3),
                rowGroupRows: Int = 1 << 20, rowGroupBytes: Int = 256 << 20, overwrite: Bool = false,
                metadata: [String: String] = [:]) throws {
        self.path = path
        self.schema = schema
        self.compression = compression
        self.rowGroupRows = rowGroupRows
        self.rowGroupBytes = rowGroupBytes
        self.overwrite = overwrite
        self.keyValues = metadata.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        func fail(_ m: String) -> ParquetError { ParquetError(path: path, message: m) }

        guard !path.isEmpty else { throw fail("empty output path") }
        guard !schema.isEmpty else { throw fail("the schema has no columns") }
        var seen = Set<String>()
        for c in schema {
            guard !c.name.isEmpty else { throw fail("a column has an empty name") }
            guard seen.insert(c.name).inserted else { throw fail("column name \"\(c.name)\" appears twice in the schema") }
        }
        guard (1...Int(Int32.max)).contains(rowGroupRows) else { throw fail("rowGroupRows \(rowGroupRows) is outside 1...\(Int32.max)") }
        guard rowGroupBytes >= 1 else { throw fail("rowGroupBytes \(rowGroupBytes) is not positive") }
        switch compression {
        case .uncompressed:
            zstd = nil
        case .zstd(let level):
            guard ZstdCompressor.levelRange.contains(level) else {
                throw fail("zstd level \(level) is outside libzstd's \(ZstdCompressor.levelRange)")
            }
            guard let z = ZstdCompressor(level: level, path: path) else { throw fail("libzstd could not create a compression context") }
            zstd = z
        }

        var st = stat()
        if lstat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { throw fail("is a directory") }
            if !overwrite { throw fail("already exists; refusing to overwrite it") }
        }
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        directory = dir
        temporaryPath = dir + "/.\(url.lastPathComponent).tmp-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("cannot create the temporary file \(temporaryPath): \(String(cString: strerror(errno)))") }
        columns = schema.map { ColumnBuffer(column: $0) }
        output.reserveCapacity(Self.outputBufferBytes)
        output.append(contentsOf: Self.magic)
        offset = Int64(Self.magic.count)
    }

    deinit { abandon() }

    /// Validates `batch` against the schema (column count, kinds, equal lengths, no nulls in non-nullable
    /// columns) and buffers its rows, writing every row group that fills. A batch of zero rows is valid.
    /// A batch that fails validation changes nothing; after an I/O error the writer refuses further use and
    /// should be abandoned.
    public func append(_ batch: ParquetBatch) throws {
        try checkUsable()
        let (n, stringBytes) = try validate(batch)
        let fixedRowBytes = columns.reduce(0) { $0 + $1.fixedWidth }
        var row = 0
        while row < n {
            // Rows to take: up to the row-count limit, stopping after the row that reaches the byte limit.
            var take = min(n - row, rowGroupRows - bufferedRows)
            if stringBytes.isEmpty {
                let room = max(1, (rowGroupBytes - bufferedBytes + fixedRowBytes - 1) / fixedRowBytes)
                take = min(take, room)
                bufferedBytes += take * fixedRowBytes
            } else {
                var k = 0
                while k < take && bufferedBytes < rowGroupBytes {
                    var b = fixedRowBytes
                    for lengths in stringBytes { b += lengths[row + k] }
                    bufferedBytes += b
                    k += 1
                }
                take = k
            }
            for c in columns.indices { columns[c].append(batch.columns[c], rows: row..<(row + take)) }
            bufferedRows += take
            rowCount += Int64(take)
            row += take
            if bufferedRows >= rowGroupRows || bufferedBytes >= rowGroupBytes { try writeRowGroup() }
        }
    }

    /// Writes the buffered rows and the footer, flushes to disk and renames the file into place. With zero
    /// rows in all, the result is a valid file holding the schema and no row groups. After an error the
    /// destination is untouched and the temporary file removed.
    public func close() throws {
        try checkUsable()
        do {
            if bufferedRows > 0 { try writeRowGroup() }
            let footer = FileMetadata(schema: schema, rowCount: rowCount, rowGroups: rowGroups, keyValues: keyValues,
                                      createdBy: Self.createdBy).encoded()
            guard footer.count <= Int(UInt32.max) else { throw failure("the footer would be \(footer.count) bytes; at most 2^32 - 1 fit") }
            try emit(footer)
            let n = UInt32(footer.count)
            try emit((0..<4).map { UInt8(truncatingIfNeeded: n >> (8 * UInt32($0))) })
            try emit(Self.magic)
            try flushOutput()
            guard fsync(fd) == 0 else { throw failure("fsync of \(temporaryPath) failed: \(String(cString: strerror(errno)))") }
            let fdToClose = fd
            fd = -1
            guard Foundation.close(fdToClose) == 0 else { throw failure("closing \(temporaryPath) failed: \(String(cString: strerror(errno)))") }
            try publish()
        } catch {
            abandon()
            throw error
        }
        state = .closed
        let dfd = open(directory, O_RDONLY)
        if dfd >= 0 { fsync(dfd); Foundation.close(dfd) }
    }

    /// Stops writing and deletes the temporary file; the destination is untouched. Safe to call at any
    /// time, also after ``close()`` (then it does nothing).
    public func abandon() {
        guard state != .closed, state != .abandoned else { return }
        if fd >= 0 { Foundation.close(fd); fd = -1 }
        unlink(temporaryPath)
        state = .abandoned
        for c in columns.indices { columns[c].removeAll() }
    }

    // MARK: - internals

    static let magic: [UInt8] = Array("PAR1".utf8)
    static let createdBy = "segger-train version 1.0"
    /// File writes are batched into chunks of this size.
    static let outputBufferBytes = 4 << 20
    /// Target PLAIN bytes and most rows per data page (tests lower them to get many pages from few rows).
    var pageTargetBytes = 1 << 20
    var pageMaxRows = 1 << 20
    /// The longest string accepted: a page holds about `pageTargetBytes` plus one value and must stay below
    /// 2^31 bytes, compressed or not (page sizes are Thrift i32). Tests lower it to reach the guard.
    var maxStringBytes = Int(Int32.max) - (4 << 20)

    private enum State: Equatable { case open, failed(String), closed, abandoned }
    private var state = State.open
    private let overwrite: Bool
    private let keyValues: [(String, String)]
    private let zstd: ZstdCompressor?
    private let directory: String
    /// The temporary file being written, in the destination's directory.
    let temporaryPath: String
    private var fd: Int32 = -1
    private var columns: [ColumnBuffer]
    private var bufferedRows = 0
    private var bufferedBytes = 0
    /// Bytes written to the file, buffered ones included: the offset of the next byte.
    private var offset: Int64 = 0
    private var output: [UInt8] = []
    private var rowGroups: [RowGroupMeta] = []
    private var page: [UInt8] = []
    private var compressed: [UInt8] = []

    private func failure(_ m: String) -> ParquetError { ParquetError(path: path, message: m) }

    private func checkUsable() throws {
        switch state {
        case .open: return
        case .failed(let why): throw failure("an earlier write failed (\(why)); the writer must be abandoned")
        case .closed: throw failure("the writer is already closed")
        case .abandoned: throw failure("the writer was abandoned")
        }
    }

    /// Checks every column of `batch` against the schema; returns the row count and, for each string column,
    /// each row's UTF-8 bytes (0 for a null).
    private func validate(_ batch: ParquetBatch) throws -> (rows: Int, stringBytes: [[Int]]) {
        var stringBytes: [[Int]] = []
        guard batch.columns.count == schema.count else {
            throw failure("a batch has \(batch.columns.count) columns; the schema has \(schema.count)")
        }
        let n = batch.columns.first?.count ?? 0
        for (c, values) in zip(schema, batch.columns) {
            guard values.type == c.type else {
                throw failure("column \"\(c.name)\" is \(c.type.rawValue); the batch gives \(values.type.rawValue) values")
            }
            guard values.count == n else {
                throw failure("column \"\(c.name)\" has \(values.count) rows in a batch whose first column has \(n)")
            }
            if let m = values.mismatchedMaskCount {
                throw failure("column \"\(c.name)\" has \(values.count) values but a validity mask of \(m)")
            }
            if !c.nullable, let r = values.firstNullRow {
                throw failure("column \"\(c.name)\" is not nullable, but row \(r) of the batch is null")
            }
            let lengths: [Int]
            switch values.storage {
            case .string(let v, let m): lengths = m.map { m in zip(v, m).map { $1 ? $0.utf8.count : 0 } } ?? v.map(\.utf8.count)
            case .optionalString(let v): lengths = v.map { $0?.utf8.count ?? 0 }
            default: continue
            }
            if let r = lengths.firstIndex(where: { $0 > maxStringBytes }) {
                throw failure("column \"\(c.name)\", row \(r) of the batch: a string of \(lengths[r]) bytes; at most \(maxStringBytes) fit in a Parquet page")
            }
            stringBytes.append(lengths)
        }
        return (n, stringBytes)
    }

    /// Encodes the buffered rows as one row group: for each column, its pages back to back.
    private func writeRowGroup() throws {
        let groupOffset = offset
        var chunks: [ColumnChunkMeta] = []
        for c in columns.indices {
            let chunkOffset = offset
            var uncompressedTotal: Int64 = 0
            for p in columns[c].pageRanges(targetBytes: pageTargetBytes, maxRows: pageMaxRows) {
                columns[c].encodePage(rows: p.rows, values: p.values, into: &page)
                let tooLarge = "a page of column \"\(schema[c].name)\" would exceed 2^31 - 1 bytes, Parquet's limit"
                guard page.count <= Int(Int32.max) else { throw fail(tooLarge) }
                var bodyCount = page.count
                if let zstd {
                    do { bodyCount = try zstd.compress(page, into: &compressed, column: schema[c].name) } catch let e as ParquetError {
                        throw fail(e.message)  // (marks the writer failed)
                    }
                    guard bodyCount <= Int(Int32.max) else { throw fail(tooLarge) }
                }
                let header = DataPageHeader(uncompressedSize: Int32(page.count), compressedSize: Int32(bodyCount),
                                            valueCount: Int32(p.rows.count)).encoded()
                try emit(header)
                try emit(zstd == nil ? page : compressed, count: bodyCount)
                uncompressedTotal += Int64(header.count + page.count)
            }
            chunks.append(ColumnChunkMeta(column: schema[c], codec: zstd == nil ? .uncompressed : .zstd,
                                          valueCount: Int64(columns[c].rowCount),
                                          totalUncompressedSize: uncompressedTotal,
                                          totalCompressedSize: offset - chunkOffset,
                                          dataPageOffset: chunkOffset, statistics: columns[c].statistics()))
            columns[c].removeAll()
        }
        rowGroups.append(RowGroupMeta(columns: chunks, rowCount: Int64(bufferedRows), fileOffset: groupOffset,
                                      ordinal: rowGroups.count))
        rowGroupCount = rowGroups.count
        bufferedRows = 0
        bufferedBytes = 0
    }

    /// Marks the writer failed and returns the error to throw.
    private func fail(_ m: String) -> ParquetError {
        state = .failed(m)
        return failure(m)
    }

    private func emit(_ bytes: [UInt8], count: Int? = nil) throws {
        let n = count ?? bytes.count
        if output.count + n > Self.outputBufferBytes { try flushOutput() }
        if n >= Self.outputBufferBytes {
            try writeAll(bytes, count: n)
        } else {
            output.append(contentsOf: bytes[0..<n])
        }
        offset += Int64(n)
    }

    private func flushOutput() throws {
        try writeAll(output, count: output.count)
        output.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: [UInt8], count: Int) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < count {
                let k = Foundation.write(fd, raw.baseAddress! + done, count - done)
                if k < 0 {
                    if errno == EINTR { continue }
                    throw fail("writing \(temporaryPath) failed: \(String(cString: strerror(errno)))")
                }
                done += k
            }
        }
    }

    /// Moves the finished temporary file to `path`. Without `overwrite`, a hard link is the atomic
    /// "create only if absent"; filesystems without hard links fall back to a check, then rename.
    private func publish() throws {
        if !overwrite {
            if link(temporaryPath, path) == 0 {
                unlink(temporaryPath)
                return
            }
            let e = errno
            if e == EEXIST { throw failure("appeared while it was being written; refusing to overwrite it") }
            guard [EPERM, EXDEV, EMLINK, ENOSYS, EOPNOTSUPP, ENOTSUP].contains(e) else {
                throw failure("cannot create it: \(String(cString: strerror(e)))")
            }
            var st = stat()
            if lstat(path, &st) == 0 { throw failure("appeared while it was being written; refusing to overwrite it") }
        }
        guard rename(temporaryPath, path) == 0 else {
            throw failure("cannot rename \(temporaryPath) to it: \(String(cString: strerror(errno)))")
        }
    }
}
