import Foundation
import SafeTensors
import TestSupport
import XCTest

/// `segger-train synth` through the binary: v2 tiles with ids, the overlap mode, its flag errors.
final class SynthCommandTests: XCTestCase {
    func testOverlappingTilesFromTheBinaryTrain() throws {
        let dir = Support.tempDir("synth-overlap")
        var r = try Support.run(Support.binary, ["synth", "--out", dir, "--tiles", "4", "--tx_per_tile", "300", "--seed", "3", "--overlap_margin", "6"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("wrote 4 tile(s)") && r.stdout.contains("6.0 µm margin"), r.stdout)
        var ids: [Int64: Int] = [:]
        for k in 0..<4 {
            let f = try SafeTensorsFile.read(path: dir + "/tile_0000\(k).safetensors")
            XCTAssertEqual(f.metadata["version"], "2")
            XCTAssertEqual(f["tx.id"]?.dtype, .I64)
            XCTAssertEqual(f["bd.id"]?.dtype, .U8)
            for id in f["tx.id"]!.int64s()! { ids[id, default: 0] += 1 }
        }
        XCTAssertEqual(ids.count, 1200, "the region's transcripts, each in at least one tile")
        XCTAssertTrue(ids.values.contains(4), "a transcript near the centre is in all four tiles")
        // v2 tiles (ids, positions) train as v1 tiles do.
        r = try Support.runBinary(["train", "--train_dir", dir, "--default_root_dir", Support.tempDir("synth-overlap-run"), "--epochs", "1"] + smallModel)
        XCTAssertEqual(r.status, 0, r.output)
    }

    /// The predict fixture's tiles are what its README's synth command writes, byte for byte.
    func testPredictFixtureTilesAreReproducible() throws {
        let fixture = Support.packageRoot.appendingPathComponent("Tests/Fixtures/predict/tiles").path
        let dir = Support.tempDir("synth-fixture")
        let r = try Support.run(Support.binary, ["synth", "--out", dir, "--tiles", "4", "--tx_per_tile", "180", "--seed", "17",
                                                 "--overlap_margin", "8", "--num_tx_tokens", "50", "--tx_per_cell", "18"])
        XCTAssertEqual(r.status, 0, r.output)
        for name in ["tile_00000.safetensors", "tile_00001.safetensors", "tile_00002.safetensors", "tile_00003.safetensors", "manifest.json"] {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)),
                           try Data(contentsOf: URL(fileURLWithPath: fixture + "/" + name)), name)
        }
    }

    func testBadOverlapMarginIsAClearError() throws {
        for bad in ["-1", "nan", "inf"] {
            let r = try Support.run(Support.binary, ["synth", "--out", Support.tempDir("synth-bad"), "--tiles", "2", "--tx_per_tile", "100", "--overlap_margin", bad])
            XCTAssertNotEqual(r.status, 0, bad)
            XCTAssertLessThan(r.status, 128, bad)
            XCTAssertTrue(r.stderr.contains("--overlap_margin"), r.stderr)
        }
    }

    func testSlideSizeSpreadFromTheBinary() throws {
        let dir = Support.tempDir("synth-slide")
        let r = try Support.run(Support.binary, ["synth", "--out", dir, "--tiles", "12", "--tx_per_tile", "300", "--seed", "4", "--size_spread", "slide"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("transcripts per tile") && r.stdout.contains("log-normal"), r.stdout)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))) as? [String: Any]
        let rows = try XCTUnwrap(manifest?["tiles"] as? [[String: Any]])
        let sizes = rows.compactMap { $0["n_tx"] as? Int }
        XCTAssertEqual(sizes.count, 12)
        XCTAssertGreaterThan(Set(sizes).count, 6, "sizes vary: \(sizes)")
        for (bad, flag) in [(["--size_spread", "wide"], "--size_spread"), (["--size_spread", "slide", "--overlap_margin", "5"], "--overlap_margin")] {
            let e = try Support.run(Support.binary, ["synth", "--out", Support.tempDir("synth-bad"), "--tiles", "2", "--tx_per_tile", "100"] + bad)
            XCTAssertNotEqual(e.status, 0, "\(bad)")
            XCTAssertLessThan(e.status, 128)
            XCTAssertTrue(e.stderr.contains(flag), e.stderr)
        }
    }
}
