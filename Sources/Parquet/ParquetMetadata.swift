// Parquet's Thrift structs, only the fields this writer sets, with their ids from apache/parquet-format
// src/main/thrift/parquet.thrift.

/// parquet.thrift enum values.
enum PhysicalType: Int32 { case int32 = 1, int64 = 2, float = 4, byteArray = 6 }
enum Repetition: Int32 { case required = 0, optional = 1 }
enum ConvertedType: Int32 { case utf8 = 0, int8 = 15 }
enum Encoding: Int32 { case plain = 0, rle = 3 }
enum CompressionCodec: Int32 { case uncompressed = 0, zstd = 6 }
enum PageType: Int32 { case dataPage = 0 }

extension ParquetType {
    var physical: PhysicalType {
        switch self {
        case .int64: return .int64
        case .int32, .int8: return .int32
        case .float32: return .float
        case .string: return .byteArray
        }
    }
}

/// Statistics of one column chunk (`min_value`/`max_value` in the column's sort order, PLAIN-encoded
/// without a length prefix; nil when not known exactly).
struct ColumnStatistics: Equatable {
    var nullCount: Int64
    var minValue: [UInt8]?
    var maxValue: [UInt8]?
    /// Floating-point columns only.
    var nanCount: Int64?

    func encode(_ e: inout ThriftCompactEncoder) {
        e.fieldI64(3, nullCount)
        if let maxValue, let minValue {
            e.fieldBinary(5, maxValue)
            e.fieldBinary(6, minValue)
            e.fieldBool(7, true)
            e.fieldBool(8, true)
        }
        if let nanCount { e.fieldI64(9, nanCount) }
    }
}

/// `PageHeader` with a v1 `DataPageHeader`.
struct DataPageHeader {
    var uncompressedSize: Int32
    var compressedSize: Int32
    /// Rows in the page, nulls included.
    var valueCount: Int32

    func encoded() -> [UInt8] {
        var e = ThriftCompactEncoder()
        e.fieldI32(1, PageType.dataPage.rawValue)
        e.fieldI32(2, uncompressedSize)
        e.fieldI32(3, compressedSize)
        e.beginStructField(5)
        e.fieldI32(1, valueCount)
        e.fieldI32(2, Encoding.plain.rawValue)
        e.fieldI32(3, Encoding.rle.rawValue)  // definition levels
        e.fieldI32(4, Encoding.rle.rawValue)  // repetition levels (none: flat schema)
        e.endStruct()
        e.endMessage()
        return e.bytes
    }
}

/// `ColumnChunk` and its `ColumnMetaData`.
struct ColumnChunkMeta {
    var column: ParquetColumn
    var codec: CompressionCodec
    var valueCount: Int64
    /// Page headers included, as parquet.thrift defines both sizes.
    var totalUncompressedSize: Int64
    var totalCompressedSize: Int64
    var dataPageOffset: Int64
    var statistics: ColumnStatistics

    func encode(_ e: inout ThriftCompactEncoder) {
        e.fieldI64(2, 0)  // file_offset: deprecated, 0 when no ColumnMetaData is written outside the footer
        e.beginStructField(3)
        e.fieldI32(1, column.type.physical.rawValue)
        let encodings: [Encoding] = column.nullable ? [.plain, .rle] : [.plain]
        e.fieldList(2, .i32, count: encodings.count)
        for enc in encodings { e.i32(enc.rawValue) }
        e.fieldList(3, .binary, count: 1)
        e.string(column.name)
        e.fieldI32(4, codec.rawValue)
        e.fieldI64(5, valueCount)
        e.fieldI64(6, totalUncompressedSize)
        e.fieldI64(7, totalCompressedSize)
        e.fieldI64(9, dataPageOffset)
        e.beginStructField(12)
        statistics.encode(&e)
        e.endStruct()
        e.endStruct()
    }
}

struct RowGroupMeta {
    var columns: [ColumnChunkMeta]
    var rowCount: Int64
    var fileOffset: Int64
    var ordinal: Int

    func encode(_ e: inout ThriftCompactEncoder) {
        e.fieldList(1, .structure, count: columns.count)
        for c in columns {
            e.beginStruct()
            c.encode(&e)
            e.endStruct()
        }
        e.fieldI64(2, columns.reduce(0) { $0 + $1.totalUncompressedSize })
        e.fieldI64(3, rowCount)
        e.fieldI64(5, fileOffset)
        e.fieldI64(6, columns.reduce(0) { $0 + $1.totalCompressedSize })
        if ordinal <= Int(Int16.max) {
            e.fieldHeader(7, .i16)
            e.i32(Int32(ordinal))
        }
    }
}

/// The footer: `FileMetaData`.
struct FileMetadata {
    var schema: [ParquetColumn]
    var rowCount: Int64
    var rowGroups: [RowGroupMeta]
    /// Sorted by key.
    var keyValues: [(String, String)]
    var createdBy: String

    func encoded() -> [UInt8] {
        var e = ThriftCompactEncoder()
        e.fieldI32(1, 1)  // version 1: what parquet-format recommends for the widest compatibility
        e.fieldList(2, .structure, count: schema.count + 1)
        e.beginStruct()  // the root: a group holding every column
        e.fieldString(4, "schema")
        e.fieldI32(5, Int32(schema.count))
        e.endStruct()
        for c in schema {
            e.beginStruct()
            e.fieldI32(1, c.type.physical.rawValue)
            e.fieldI32(3, (c.nullable ? Repetition.optional : .required).rawValue)
            e.fieldString(4, c.name)
            switch c.type {
            case .int8:
                e.fieldI32(6, ConvertedType.int8.rawValue)
                e.beginStructField(10)  // LogicalType union: INTEGER
                e.beginStructField(10)
                e.fieldI8(1, 8)         // bitWidth
                e.fieldBool(2, true)    // isSigned
                e.endStruct()
                e.endStruct()
            case .string:
                e.fieldI32(6, ConvertedType.utf8.rawValue)
                e.beginStructField(10)  // LogicalType union: STRING (an empty struct)
                e.beginStructField(1)
                e.endStruct()
                e.endStruct()
            case .int64, .int32, .float32:
                break
            }
            e.endStruct()
        }
        e.fieldI64(3, rowCount)
        e.fieldList(4, .structure, count: rowGroups.count)
        for (i, g) in rowGroups.enumerated() {
            precondition(g.ordinal == i)
            e.beginStruct()
            g.encode(&e)
            e.endStruct()
        }
        if !keyValues.isEmpty {
            e.fieldList(5, .structure, count: keyValues.count)
            for (k, v) in keyValues {
                e.beginStruct()
                e.fieldString(1, k)
                e.fieldString(2, v)
                e.endStruct()
            }
        }
        e.fieldString(6, createdBy)
        // column_orders: TYPE_ORDER for every column, which gives min_value/max_value their meaning.
        e.fieldList(7, .structure, count: schema.count)
        for _ in schema {
            e.beginStruct()
            e.beginStructField(1)
            e.endStruct()
            e.endStruct()
        }
        e.endMessage()
        return e.bytes
    }
}
