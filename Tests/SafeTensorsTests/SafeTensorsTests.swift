import XCTest
@testable import SafeTensors

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
}
