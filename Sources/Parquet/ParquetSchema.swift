// The public vocabulary of the Parquet writer: column kinds, schema, compression, column values, errors.

/// The kind of values a column holds, as Parquet readers (pyarrow, DuckDB, Spark, pandas) will see it.
///
/// | kind      | Parquet physical type | annotation                         | pyarrow type |
/// |-----------|-----------------------|------------------------------------|--------------|
/// | `int64`   | INT64                 | —                                  | `int64`      |
/// | `int32`   | INT32                 | —                                  | `int32`      |
/// | `int8`    | INT32                 | `INT(8, signed)` / `INT_8`         | `int8`       |
/// | `float32` | FLOAT                 | —                                  | `float`      |
/// | `string`  | BYTE_ARRAY            | `STRING` / `UTF8`                  | `string`     |
public enum ParquetType: String, Sendable, Equatable, CaseIterable {
    case int64, int32, int8, float32, string
}

/// One column of a file's schema: a flat (non-nested) field.
public struct ParquetColumn: Sendable, Equatable {
    /// The field name readers show; non-empty and unique within a schema.
    public var name: String
    public var type: ParquetType
    /// Whether rows may be null (Parquet `OPTIONAL`); a non-nullable column is `REQUIRED` and a null in it is
    /// an error at `append`.
    public var nullable: Bool

    public init(name: String, type: ParquetType, nullable: Bool = false) {
        self.name = name
        self.type = type
        self.nullable = nullable
    }
}

/// How each page of column data is compressed.
public enum ParquetCompression: Sendable, Equatable {
    case uncompressed
    /// Zstandard through libzstd; `level` in libzstd's range (1…22 are the usual levels, negative ones are
    /// faster; 3 is zstd's default).
    case zstd(level: Int32)
}

/// Why the writer refused an input or could not write; `description` names the file and the problem.
public struct ParquetError: Error, CustomStringConvertible, Equatable {
    /// The destination path of the file being written.
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

/// The values of one column for a run of rows, as handed to ``ParquetWriter/append(_:)``.
///
/// Build one with the factory of the column's kind; each takes plain values (no nulls), optionals
/// (`nil` is a null), or plain values with a validity mask (`valid[i] == false` makes row `i` null and its
/// value is ignored):
///
/// ```swift
/// .int64(ids)                         // [Int64]
/// .string(cellIds)                    // [String?]
/// .float32(scores, valid: isBound)    // [Float] + [Bool]
/// ```
public struct ParquetColumnValues: Sendable {
    enum Storage: Sendable {
        case int64([Int64], valid: [Bool]?)
        case int32([Int32], valid: [Bool]?)
        case int8([Int8], valid: [Bool]?)
        case float32([Float], valid: [Bool]?)
        case string([String], valid: [Bool]?)
        case optionalString([String?])
    }
    let storage: Storage

    /// The kind of values held.
    public var type: ParquetType {
        switch storage {
        case .int64: return .int64
        case .int32: return .int32
        case .int8: return .int8
        case .float32: return .float32
        case .string, .optionalString: return .string
        }
    }

    /// The number of rows (values plus nulls).
    public var count: Int {
        switch storage {
        case .int64(let v, _): return v.count
        case .int32(let v, _): return v.count
        case .int8(let v, _): return v.count
        case .float32(let v, _): return v.count
        case .string(let v, _): return v.count
        case .optionalString(let v): return v.count
        }
    }

    /// The validity mask's length when it differs from the values' (an error `append` reports).
    var mismatchedMaskCount: Int? {
        let mask: [Bool]?
        switch storage {
        case .int64(_, let m), .int32(_, let m), .int8(_, let m), .float32(_, let m), .string(_, let m): mask = m
        case .optionalString: mask = nil
        }
        guard let m = mask, m.count != count else { return nil }
        return m.count
    }

    /// The first null row, if any.
    var firstNullRow: Int? {
        switch storage {
        case .int64(_, let m), .int32(_, let m), .int8(_, let m), .float32(_, let m), .string(_, let m):
            return m?.firstIndex(of: false)
        case .optionalString(let v):
            return v.firstIndex { $0 == nil }
        }
    }

    public static func int64(_ values: [Int64]) -> ParquetColumnValues { .init(storage: .int64(values, valid: nil)) }
    public static func int64(_ values: [Int64], valid: [Bool]) -> ParquetColumnValues { .init(storage: .int64(values, valid: valid)) }
    public static func int64(_ values: [Int64?]) -> ParquetColumnValues {
        .init(storage: .int64(values.map { $0 ?? 0 }, valid: values.map { $0 != nil }))
    }

    public static func int32(_ values: [Int32]) -> ParquetColumnValues { .init(storage: .int32(values, valid: nil)) }
    public static func int32(_ values: [Int32], valid: [Bool]) -> ParquetColumnValues { .init(storage: .int32(values, valid: valid)) }
    public static func int32(_ values: [Int32?]) -> ParquetColumnValues {
        .init(storage: .int32(values.map { $0 ?? 0 }, valid: values.map { $0 != nil }))
    }

    public static func int8(_ values: [Int8]) -> ParquetColumnValues { .init(storage: .int8(values, valid: nil)) }
    public static func int8(_ values: [Int8], valid: [Bool]) -> ParquetColumnValues { .init(storage: .int8(values, valid: valid)) }
    public static func int8(_ values: [Int8?]) -> ParquetColumnValues {
        .init(storage: .int8(values.map { $0 ?? 0 }, valid: values.map { $0 != nil }))
    }

    public static func float32(_ values: [Float]) -> ParquetColumnValues { .init(storage: .float32(values, valid: nil)) }
    public static func float32(_ values: [Float], valid: [Bool]) -> ParquetColumnValues { .init(storage: .float32(values, valid: valid)) }
    public static func float32(_ values: [Float?]) -> ParquetColumnValues {
        .init(storage: .float32(values.map { $0 ?? 0 }, valid: values.map { $0 != nil }))
    }

    /// Strings are written as their UTF-8 bytes, exactly (no normalization); embedded NULs are kept.
    public static func string(_ values: [String]) -> ParquetColumnValues { .init(storage: .string(values, valid: nil)) }
    public static func string(_ values: [String], valid: [Bool]) -> ParquetColumnValues { .init(storage: .string(values, valid: valid)) }
    public static func string(_ values: [String?]) -> ParquetColumnValues { .init(storage: .optionalString(values)) }
}

/// A run of rows: one ``ParquetColumnValues`` per schema column, in schema order, all of the same length.
public struct ParquetBatch: Sendable {
    public var columns: [ParquetColumnValues]
    public init(columns: [ParquetColumnValues]) { self.columns = columns }
}
