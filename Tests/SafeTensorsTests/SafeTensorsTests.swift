import Foundation
import XCTest
@testable import SafeTensors
import TestSupport

final class SafeTensorsTests: XCTestCase {
    func testRoundTrip() throws {
        let t: [(String, Tensor)] = [("a", Tensor([1.5, -2] as [Float], shape: [2])), ("b", Tensor([7, 8, 9] as [Int64]))]
        let bytes = SafeTensorsFile.serialize(t, metadata: ["format": "x"])
        let f = try SafeTensorsFile.parse(bytes: bytes, path: "mem")
        XCTAssertEqual(f.metadata["format"], "x")
        XCTAssertEqual(f.names, ["a", "b"])
        XCTAssertEqual(f["a"]?.floats(), [1.5, -2])
        XCTAssertEqual(f["b"]?.int64s(), [7, 8, 9])
    }

    func testEveryDtypeAndEmptyAndScalarTensorsRoundTrip() throws {
        var tensors: [(String, Tensor)] = []
        for d in DType.allCases {
            tensors.append(("t_\(d.rawValue)", Tensor(dtype: d, shape: [3, 2], data: (0..<(6 * d.size)).map { UInt8($0 % 7) })))
        }
        tensors.append(("empty", Tensor(dtype: .F32, shape: [0, 4], data: [])))
        tensors.append(("scalar", Tensor([Float(3)], shape: [])))
        let bytes = SafeTensorsFile.serialize(tensors)
        XCTAssertEqual((bytes.count - 8 - tensors.reduce(0) { $0 + $1.1.data.count }) % 8, 0, "header padded to 8 bytes")
        let f = try SafeTensorsFile.parse(bytes: bytes, path: "mem")
        for (name, t) in tensors { XCTAssertEqual(f[name], t, name) }
        XCTAssertEqual(f["scalar"]?.count, 1)
    }

    func testHeaderOnlyReadAgreesWithFullRead() throws {
        let dir = Support.tempDir("safetensors", removedAfter: self)
        let path = dir + "/w.safetensors"
        try SafeTensorsFile.write([("w", Tensor([Float](repeating: 1, count: 12), shape: [3, 4])), ("i", Tensor([1, 2] as [Int64]))],
                                  metadata: ["k": "v"], to: path)
        let header = try SafeTensorsFile.readHeader(path: path)
        let full = try SafeTensorsFile.read(path: path)
        XCTAssertEqual(header.metadata, ["k": "v"])
        XCTAssertEqual(header.entries.map(\.name), full.names)
        XCTAssertEqual(header["w"], TensorInfo(name: "w", dtype: .F32, shape: [3, 4], begin: 0, end: 48))
        XCTAssertEqual(header["i"]?.count, 2)
        XCTAssertEqual(header.dataLength, 64)
        // Atomic write leaves no temporary file behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["w.safetensors"])
    }

    func raw(_ header: String, dataBytes: Int) -> [UInt8] {
        let h = Array(header.utf8)
        var out: [UInt8] = (0..<8).map { UInt8((UInt64(h.count) >> (8 * UInt64($0))) & 0xff) }
        out += h
        out += [UInt8](repeating: 0, count: dataBytes)
        return out
    }

    func assertError(_ bytes: [UInt8], tensor: String?, _ phrase: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile.parse(bytes: bytes, path: "f.safetensors"), file: file, line: line) { e in
            guard let e = e as? SafeTensorsError else { return XCTFail("\(e)", file: file, line: line) }
            XCTAssertEqual(e.path, "f.safetensors", file: file, line: line)
            XCTAssertEqual(e.tensor, tensor, "\(e)", file: file, line: line)
            XCTAssertTrue(e.description.contains(phrase), "expected '\(phrase)' in \(e)", file: file, line: line)
        }
    }

    func testDataOffsetsMustTileTheDataExactly() {
        assertError(raw(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#, dataBytes: 6), tensor: "b", "overlap tensor 'a'")
        assertError(raw(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[5,9]}}"#, dataBytes: 9), tensor: "b", "gap of 1")
        assertError(raw(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#, dataBytes: 5), tensor: nil, "1 trailing bytes")
        assertError(raw(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#, dataBytes: 3), tensor: "a", "run past the end of the data")
        // Header order is free; zero-size tensors may sit anywhere.
        XCTAssertNoThrow(try SafeTensorsFile.parse(bytes: raw(#"{"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#, dataBytes: 6), path: "f"))
    }

    func testHeaderFieldsAreValidated() {
        assertError(raw(#"{"a":{"dtype":"U8","shape":[4]}}"#, dataBytes: 0), tensor: "a", "data_offsets")
        assertError(raw(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0]}}"#, dataBytes: 4), tensor: "a", "data_offsets")
        assertError(raw(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,1e300]}}"#, dataBytes: 4), tensor: "a", "data_offsets")
        assertError(raw(#"{"a":{"dtype":"U8","shape":[1e300],"data_offsets":[0,4]}}"#, dataBytes: 4), tensor: "a", "invalid shape")
        assertError(raw(#"{"a":{"dtype":"U8","shape":"4","data_offsets":[0,4]}}"#, dataBytes: 4), tensor: "a", "invalid shape")
        assertError(raw(#"{"a":{"shape":[4],"data_offsets":[0,4]}}"#, dataBytes: 4), tensor: "a", "missing dtype")
        assertError(raw(#"{"a":[1,2]}"#, dataBytes: 0), tensor: "a", "not an object")
        assertError(raw(#"{"__metadata__":{"k":1}}"#, dataBytes: 0), tensor: nil, "not a string")
        assertError(raw(#"{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}"#, dataBytes: 1), tensor: "a", "dimensions")
        assertError(raw("{\"a\"", dataBytes: 0), tensor: nil, "invalid header JSON")
        assertError(raw("", dataBytes: 0), tensor: nil, "too short")
        var big = raw("{}", dataBytes: 0)
        big[3] = 0x10 // header length 2^28 + 2 > the file
        assertError(big, tensor: nil, "runs past the end of the file")
    }

    func testHeaderLengthLimit() throws {
        // A header longer than the limit is refused before it is parsed.
        let n = SafeTensorsFile.maxHeaderLength + 8
        var bytes = [UInt8](repeating: 0x20, count: 8 + n)
        for i in 0..<8 { bytes[i] = UInt8((UInt64(n) >> (8 * UInt64(i))) & 0xff) }
        assertError(bytes, tensor: nil, "exceeds the limit")
    }

    func testReadingAMissingFileOrADirectoryIsAnError() {
        XCTAssertThrowsError(try SafeTensorsFile.read(path: "/nonexistent/x.safetensors")) { XCTAssertTrue("\($0)".contains("No such file")) }
        XCTAssertThrowsError(try SafeTensorsFile.read(path: NSTemporaryDirectory())) { XCTAssertTrue("\($0)".contains("is a directory")) }
        XCTAssertThrowsError(try SafeTensorsFile.readHeader(path: NSTemporaryDirectory())) { XCTAssertTrue("\($0)".contains("is a directory")) }
    }
}
