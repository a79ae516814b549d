// One column's rows of the row group being filled, and their encoding into PLAIN data pages (v1) plus the
// column chunk's statistics.
import Foundation

#if !_endian(little)
#error("PLAIN encoding is little-endian; this writer copies values in host byte order")
#endif

/// The buffered rows of one column. Only non-null values are stored (PLAIN pages hold nothing for a null);
/// `valid` (nullable columns only) has one entry per row.
struct ColumnBuffer {
    let column: ParquetColumn
    private(set) var rowCount = 0
    var valid: [Bool] = []
    var int64s: [Int64] = []
    var int32s: [Int32] = []
    var int8s: [Int8] = []
    var floats: [Float] = []
    /// Strings: UTF-8 bytes back to back, and the end offset of each value.
    var stringBytes: [UInt8] = []
    var stringEnds: [Int] = []

    init(column: ParquetColumn) { self.column = column }

    /// PLAIN bytes of one non-null value of a fixed-width kind (strings: the length prefix only).
    var fixedWidth: Int {
        switch column.type {
        case .int64: return 8
        case .int32, .int8, .float32, .string: return 4
        }
    }

    mutating func removeAll() {
        rowCount = 0
        valid.removeAll(keepingCapacity: true)
        int64s.removeAll(keepingCapacity: true)
        int32s.removeAll(keepingCapacity: true)
        int8s.removeAll(keepingCapacity: true)
        floats.removeAll(keepingCapacity: true)
        stringBytes.removeAll(keepingCapacity: true)
        stringEnds.removeAll(keepingCapacity: true)
    }

    /// Appends rows `range` of `values` (already validated against this column).
    mutating func append(_ values: ParquetColumnValues, rows range: Range<Int>) {
        rowCount += range.count
        func appendValid(_ mask: [Bool]?) {
            guard column.nullable else { return }
            if let mask { valid.append(contentsOf: mask[range]) } else { valid.append(contentsOf: repeatElement(true, count: range.count)) }
        }
        func appendNonNull<T>(_ v: [T], _ mask: [Bool]?, to dst: inout [T]) {
            if let mask {
                for i in range where mask[i] { dst.append(v[i]) }
            } else {
                dst.append(contentsOf: v[range])
            }
        }
        func appendString(_ s: String) {
            var s = s
            s.withUTF8 { stringBytes.append(contentsOf: $0) }
            stringEnds.append(stringBytes.count)
        }
        switch values.storage {
        case .int64(let v, let m): appendValid(m); appendNonNull(v, m, to: &int64s)
        case .int32(let v, let m): appendValid(m); appendNonNull(v, m, to: &int32s)
        case .int8(let v, let m): appendValid(m); appendNonNull(v, m, to: &int8s)
        case .float32(let v, let m): appendValid(m); appendNonNull(v, m, to: &floats)
        case .string(let v, let m):
            appendValid(m)
            for i in range where m?[i] ?? true { appendString(v[i]) }
        case .optionalString(let v):
            if column.nullable { valid.append(contentsOf: v[range].lazy.map { $0 != nil }) }
            for i in range { if let s = v[i] { appendString(s) } }
        }
    }

    var nonNullCount: Int {
        switch column.type {
        case .int64: return int64s.count
        case .int32: return int32s.count
        case .int8: return int8s.count
        case .float32: return floats.count
        case .string: return stringEnds.count
        }
    }

    func stringStart(_ i: Int) -> Int { i == 0 ? 0 : stringEnds[i - 1] }

    // MARK: pages

    /// Splits the buffered rows into pages of about `targetBytes` of PLAIN values (at most that for
    /// fixed-width kinds; strings: until the page reaches it) and at most `maxRows` rows each: returns (rows,
    /// values) index ranges per page. Every page holds at least one row.
    func pageRanges(targetBytes: Int, maxRows: Int) -> [(rows: Range<Int>, values: Range<Int>)] {
        var pages: [(rows: Range<Int>, values: Range<Int>)] = []
        var r0 = 0, v0 = 0
        if column.type != .string {
            // Fixed width: rows per page from the width alone (nulls counted as if present).
            let perPage = Swift.max(1, Swift.min(maxRows, targetBytes / fixedWidth))
            while r0 < rowCount {
                let r = Swift.min(rowCount, r0 + perPage)
                let v = column.nullable ? v0 + valid[r0..<r].reduce(0) { $0 + ($1 ? 1 : 0) } : r
                pages.append((r0..<r, v0..<v))
                (r0, v0) = (r, v)
            }
            return pages
        }
        while r0 < rowCount {
            var r = r0, v = v0, bytes = 0
            let rowEnd = Swift.min(rowCount, r0 + maxRows)
            while r < rowEnd && (r == r0 || bytes < targetBytes) {
                if !column.nullable || valid[r] {
                    bytes += 4 + stringEnds[v] - stringStart(v)
                    v += 1
                }
                r += 1
            }
            pages.append((r0..<r, v0..<v))
            r0 = r
            v0 = v
        }
        return pages
    }

    /// The uncompressed body of one data page v1: definition levels (nullable columns: a 4-byte length, then
    /// the RLE/bit-packed hybrid at bit width 1), then the PLAIN values.
    func encodePage(rows: Range<Int>, values: Range<Int>, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        if column.nullable {
            out.append(contentsOf: [0, 0, 0, 0])
            encodeRLEHybrid(valid[rows].lazy.map { $0 ? UInt32(1) : 0 }, bitWidth: 1, into: &out)
            let n = UInt32(out.count - 4)
            for k in 0..<4 { out[k] = UInt8(truncatingIfNeeded: n >> (8 * UInt32(k))) }
        }
        switch column.type {
        case .int64: int64s[values].withUnsafeBytes { out.append(contentsOf: $0) }
        case .int32: int32s[values].withUnsafeBytes { out.append(contentsOf: $0) }
        case .float32: floats[values].withUnsafeBytes { out.append(contentsOf: $0) }
        case .int8:
            int8s[values].map { Int32($0) }.withUnsafeBytes { out.append(contentsOf: $0) }  // INT32, sign-extended
        case .string:
            stringBytes.withUnsafeBufferPointer { b in
                for i in values {
                    let s = stringStart(i), e = stringEnds[i]
                    withUnsafeBytes(of: UInt32(e - s).littleEndian) { out.append(contentsOf: $0) }
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: b[s..<e]))
                }
            }
        }
    }

    // MARK: statistics

    /// Longest string kept as a min/max statistic; longer extremes leave min/max out (truncating a max would
    /// need a successor string, and exactness is all these statistics promise).
    static let maxStringStatisticBytes = 64

    /// The column chunk's statistics, exact or absent. Integers and strings are ordered as parquet-format's
    /// TYPE_ORDER says (signed, unsigned byte-wise). Floats: a chunk holding a NaN gets no min/max at all
    /// (so no reader can prune a NaN it would match); a zero minimum is written -0.0 and a zero maximum +0.0,
    /// as the spec asks.
    func statistics() -> ColumnStatistics {
        let nulls = Int64(rowCount - nonNullCount)
        func le<T: FixedWidthInteger>(_ x: T) -> [UInt8] { withUnsafeBytes(of: x.littleEndian) { Array($0) } }
        switch column.type {
        case .int64:
            guard let lo = int64s.min(), let hi = int64s.max() else { return ColumnStatistics(nullCount: nulls) }
            return ColumnStatistics(nullCount: nulls, minValue: le(lo), maxValue: le(hi))
        case .int32:
            guard let lo = int32s.min(), let hi = int32s.max() else { return ColumnStatistics(nullCount: nulls) }
            return ColumnStatistics(nullCount: nulls, minValue: le(lo), maxValue: le(hi))
        case .int8:
            guard let lo = int8s.min(), let hi = int8s.max() else { return ColumnStatistics(nullCount: nulls) }
            return ColumnStatistics(nullCount: nulls, minValue: le(Int32(lo)), maxValue: le(Int32(hi)))
        case .float32:
            var nans: Int64 = 0
            var lo = Float.infinity, hi = -Float.infinity
            for x in floats {
                if x.isNaN { nans += 1 } else { lo = Swift.min(lo, x); hi = Swift.max(hi, x) }
            }
            guard nans == 0, !floats.isEmpty else { return ColumnStatistics(nullCount: nulls, nanCount: nans) }
            if lo == 0 { lo = -0.0 }
            if hi == 0 { hi = 0.0 }
            return ColumnStatistics(nullCount: nulls, minValue: le(lo.bitPattern), maxValue: le(hi.bitPattern), nanCount: 0)
        case .string:
            guard !stringEnds.isEmpty else { return ColumnStatistics(nullCount: nulls) }
            return stringBytes.withUnsafeBufferPointer { b -> ColumnStatistics in
                func slice(_ i: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: b[stringStart(i)..<stringEnds[i]]) }
                // Unsigned byte-wise order; a proper prefix sorts first.
                func less(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Bool {
                    let n = Swift.min(x.count, y.count)
                    if n > 0, let xb = x.baseAddress, let yb = y.baseAddress {
                        let c = memcmp(xb, yb, n)
                        if c != 0 { return c < 0 }
                    }
                    return x.count < y.count
                }
                var lo = 0, hi = 0
                for i in 1..<stringEnds.count {
                    let s = slice(i)
                    if less(s, slice(lo)) { lo = i }
                    if less(slice(hi), s) { hi = i }
                }
                let (minBytes, maxBytes) = (Array(slice(lo)), Array(slice(hi)))
                guard minBytes.count <= Self.maxStringStatisticBytes, maxBytes.count <= Self.maxStringStatisticBytes else {
                    return ColumnStatistics(nullCount: nulls)
                }
                return ColumnStatistics(nullCount: nulls, minValue: minBytes, maxValue: maxBytes)
            }
        }
    }
}
