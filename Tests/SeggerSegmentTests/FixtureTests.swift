// segger-train predict against the Python reference's outputs committed in Tests/Fixtures/predict
// (Scripts/predict_reference.py: PyG model, scipy cKDTree and connected components; its README says how
// every file was made), through the real binary.
import Foundation
import TestSupport
import XCTest

final class FixtureTests: XCTestCase {
    static let fixture = Support.fixture("predict")

    func compare(_ name: String, _ flags: [String]) throws {
        let f = Self.fixture
        guard FileManager.default.fileExists(atPath: f + "/expected/" + name) else {
            throw XCTSkip("Tests/Fixtures/predict/expected/\(name) is absent")
        }
        _ = try Support.requireBinary()
        let out = Support.tempDir("fixture") + "/seg"
        let r = try runSegger(["predict", "--tiles", f + "/tiles", "--checkpoint", f + "/checkpoint.safetensors", "--out", out,
                                "--format", "csv"] + flags)
        XCTAssertEqual(r.status, 0, r.stderr)
        guard r.status == 0 else { return }
        let want = try readCSV(f + "/expected/\(name)/segger_transcripts.csv")
        let got = try readCSV(out + "/segger_transcripts.csv")
        XCTAssertEqual(got.map { $0["transcript_id"]! }, want.map { $0["transcript_id"]! }, "\(name): the same ids in the same order")
        var unscored = 0
        for (g, w) in zip(got, want) {
            let id = g["transcript_id"]!
            XCTAssertEqual(g["segger_cell_id"], w["segger_cell_id"], "\(name): transcript \(id)")
            XCTAssertEqual(g["bound"], w["bound"], "\(name): transcript \(id)")
            // The reference writes 0 for a transcript seen only in tiles below --min_bd; predict writes null.
            if g["score"]!.isEmpty {
                unscored += 1
                XCTAssertEqual(w["score"], "0.0", "\(name): transcript \(id) unscored here, scored by the reference")
            } else {
                XCTAssertEqual(Double(g["score"]!)!, Double(w["score"]!)!, accuracy: 1e-5, "\(name): transcript \(id)")
            }
        }
        let wantCells = try readCSV(f + "/expected/\(name)/segger_cells.csv")
        let gotCells = try readCSV(out + "/segger_cells.csv")
        XCTAssertEqual(gotCells.map { $0["segger_cell_id"]! }, wantCells.map { $0["segger_cell_id"]! }, "\(name): cells")
        for (g, w) in zip(gotCells, wantCells) {
            XCTAssertEqual(g["transcript_count"], w["transcript_count"], "\(name): cell \(g["segger_cell_id"]!)")
            XCTAssertEqual(g["source"], w["source"], "\(name): cell \(g["segger_cell_id"]!)")
            XCTAssertEqual(Double(g["centroid_x"]!)!, Double(w["x"]!)!, accuracy: 1e-4)
            XCTAssertEqual(Double(g["centroid_y"]!)!, Double(w["y"]!)!, accuracy: 1e-4)
        }
        let log = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/segmentation_log.json"))) as! [String: Any]
        XCTAssertEqual(log["transcripts_unscored"] as? Int, unscored)
        print("fixture \(name): \(got.count) transcripts, \(gotCells.count) cells, \(unscored) unscored: as the reference")
    }

    func testDefaultFlags() throws { try compare("default", []) }

    func testUseCC() throws { try compare("use_cc", ["--use_cc"]) }

    func testUseCCWithATileBelowMinBd() throws {
        try compare("use_cc_min_bd_16", ["--use_cc", "--min_bd", "16"])
    }
}
