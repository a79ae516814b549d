// The Thrift compact encoder against bytes worked out by hand from the protocol spec.
import XCTest
@testable import Parquet

final class ThriftCompactTests: XCTestCase {
    private func bytes(_ build: (inout ThriftCompactEncoder) -> Void) -> [UInt8] {
        var e = ThriftCompactEncoder()
        build(&e)
        return e.bytes
    }

    func testVarints() {
        XCTAssertEqual(bytes { $0.varint(0) }, [0x00])
        XCTAssertEqual(bytes { $0.varint(1) }, [0x01])
        XCTAssertEqual(bytes { $0.varint(127) }, [0x7F])
        XCTAssertEqual(bytes { $0.varint(128) }, [0x80, 0x01])
        XCTAssertEqual(bytes { $0.varint(300) }, [0xAC, 0x02])
        XCTAssertEqual(bytes { $0.varint(50399) }, [0xDF, 0x89, 0x03])  // the spec's worked example
        XCTAssertEqual(bytes { $0.varint(UInt64.max) }, [UInt8](repeating: 0xFF, count: 9) + [0x01])
    }

    func testZigzag() {
        XCTAssertEqual(ThriftCompactEncoder.zigzag(0), 0)
        XCTAssertEqual(ThriftCompactEncoder.zigzag(-1), 1)
        XCTAssertEqual(ThriftCompactEncoder.zigzag(1), 2)
        XCTAssertEqual(ThriftCompactEncoder.zigzag(-2), 3)
        XCTAssertEqual(ThriftCompactEncoder.zigzag(Int64.max), UInt64.max - 1)
        XCTAssertEqual(ThriftCompactEncoder.zigzag(Int64.min), UInt64.max)
        XCTAssertEqual(bytes { $0.i32(-1) }, [0x01])
        XCTAssertEqual(bytes { $0.i32(-64) }, [0x7F])
        XCTAssertEqual(bytes { $0.i32(64) }, [0x80, 0x01])
        XCTAssertEqual(bytes { $0.i32(Int32.min) }, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
        XCTAssertEqual(bytes { $0.i32(Int32.max) }, [0xFE, 0xFF, 0xFF, 0xFF, 0x0F])
        XCTAssertEqual(bytes { $0.i64(Int64.min) }, [UInt8](repeating: 0xFF, count: 9) + [0x01])
    }

    func testFieldHeadersUseDeltasFromOneToFifteenElseTheLongForm() {
        XCTAssertEqual(bytes {
            $0.fieldI32(1, 5)        // delta 1, type i32 (5); zigzag(5) = 10
            $0.fieldI32(3, 1)        // delta 2
            $0.fieldI64(18, -1)      // delta 15, type i64 (6)
            $0.fieldI32(40, 0)       // delta 22: long form, id zigzag(40) = 80
            $0.fieldI8(2, -2)        // backwards: long form; i8 is one raw byte
            $0.endMessage()
        }, [0x15, 0x0A, 0x25, 0x02, 0xF6, 0x01, 0x05, 0x50, 0x00, 0x03, 0x04, 0xFE, 0x00])
    }

    func testBoolsLiveInTheFieldHeaderAndBinaryIsLengthPrefixed() {
        XCTAssertEqual(bytes {
            $0.fieldBool(1, true)
            $0.fieldBool(2, false)
            $0.fieldString(4, "ab")
            $0.fieldBinary(5, [])
            $0.endMessage()
        }, [0x11, 0x12, 0x28, 0x02, 0x61, 0x62, 0x18, 0x00, 0x00])
    }

    func testListsShortAndLongHeaders() {
        XCTAssertEqual(bytes {
            $0.fieldList(2, .i32, count: 3)
            for v: Int32 in [0, 3, -1] { $0.i32(v) }
        }, [0x29, 0x35, 0x00, 0x06, 0x01])
        XCTAssertEqual(bytes { $0.listHeader(.binary, count: 14) }, [0xE8])
        XCTAssertEqual(bytes { $0.listHeader(.binary, count: 15) }, [0xF8, 0x0F])
        XCTAssertEqual(bytes { $0.listHeader(.structure, count: 300) }, [0xFC, 0xAC, 0x02])
        XCTAssertEqual(bytes { $0.listHeader(.i64, count: 0) }, [0x06])
    }

    func testNestedStructsRestartFieldIdsAndRestoreTheOuterOnes() {
        XCTAssertEqual(bytes {
            $0.fieldI32(1, 1)
            $0.beginStructField(3)   // delta 2, struct (12)
            $0.fieldI32(1, 2)        // inner ids start again from 0
            $0.endStruct()
            $0.fieldList(4, .structure, count: 2)  // delta 1 from the outer 3
            $0.beginStruct(); $0.fieldI32(2, 3); $0.endStruct()
            $0.beginStruct(); $0.endStruct()
            $0.fieldI32(5, 0)        // delta 1 from 4
            $0.endMessage()
        }, [0x15, 0x02, 0x2C, 0x15, 0x04, 0x00, 0x19, 0x2C, 0x25, 0x06, 0x00, 0x00, 0x15, 0x00, 0x00])
    }

    func testDataPageHeaderBytes() {
        let h = DataPageHeader(uncompressedSize: 100, compressedSize: 60, valueCount: 10).encoded()
        XCTAssertEqual(h, [0x15, 0x00,        // 1: type DATA_PAGE
                           0x15, 0xC8, 0x01,  // 2: uncompressed_page_size 100
                           0x15, 0x78,        // 3: compressed_page_size 60
                           0x2C,              // 5: data_page_header
                           0x15, 0x14,        //   1: num_values 10
                           0x15, 0x00,        //   2: encoding PLAIN
                           0x15, 0x06,        //   3: definition_level_encoding RLE
                           0x15, 0x06,        //   4: repetition_level_encoding RLE
                           0x00, 0x00])
    }

    func testStatisticsBytes() {
        var e = ThriftCompactEncoder()
        ColumnStatistics(nullCount: 2, minValue: [1], maxValue: [9], nanCount: 0).encode(&e)
        e.endMessage()
        XCTAssertEqual(e.bytes, [0x36, 0x04,        // 3: null_count 2
                                 0x28, 0x01, 0x09,  // 5: max_value
                                 0x18, 0x01, 0x01,  // 6: min_value
                                 0x11, 0x11,        // 7, 8: exact
                                 0x16, 0x00,        // 9: nan_count 0
                                 0x00])
        var f = ThriftCompactEncoder()
        ColumnStatistics(nullCount: 0).encode(&f)  // no min/max: neither exactness flag
        f.endMessage()
        XCTAssertEqual(f.bytes, [0x36, 0x00, 0x00])
    }
}
