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
        throw ParquetError(path: path, message: "ParquetWriter is not implemented yet")
    }

    /// Validates `batch` against the schema (column count, kinds, equal lengths, no nulls in non-nullable
    /// columns) and buffers its rows, writing every row group that fills. A batch of zero rows is valid.
    /// A batch that fails validation changes nothing; after an I/O error the writer refuses further use and
    /// should be abandoned.
    public func append(_ batch: ParquetBatch) throws {
        throw ParquetError(path: path, message: "ParquetWriter is not implemented yet")
    }

    /// Writes the buffered rows and the footer, flushes to disk and renames the file into place. With zero
    /// rows in all, the result is a valid file holding the schema and no row groups. After an error the
    /// destination is untouched and the temporary file removed.
    public func close() throws {
        throw ParquetError(path: path, message: "ParquetWriter is not implemented yet")
    }

    /// Stops writing and deletes the temporary file; the destination is untouched. Safe to call at any
    /// time, also after ``close()`` (then it does nothing).
    public func abandon() {}
}
