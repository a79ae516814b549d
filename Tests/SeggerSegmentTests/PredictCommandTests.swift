// `segger-train predict` through the real binary: 1, 2 and 4 ranks (mpirun) write the same files, which
// agree with the serial reference on the tiles read back; bad inputs end every rank with a clear error
// and leave nothing behind.
import Foundation
import SafeTensors
import SeggerModel
@testable import SeggerSegment
import SeggerTiles
import TestSupport
import XCTest

/// segger-train with `args` (under mpirun for ranks > 1; the binary's BLAS on one thread, as in a
/// rank), allowed ten minutes.
@discardableResult
func runSegger(_ args: [String], ranks: Int = 1) throws -> Support.Result {
    try Support.runBinary(args, ranks: ranks, env: ["OPENBLAS_NUM_THREADS": "1"], timeout: 600)
}

final class PredictCommandTests: XCTestCase {
    /// Overlapping synthetic tiles (segger-train synth --overlap_margin) and a model of the example's
    /// shape at a small width, shared by the tests of this class.
    static let fixture: (tiles: String, checkpoint: String)? = {
        let dir = Support.tempDir("cli-fixture")
        let r = try? runSegger(["synth", "--out", dir + "/tiles", "--tiles", "6", "--tx_per_tile", "250", "--seed", "5",
                                 "--overlap_margin", "6"])
        guard r?.status == 0 else { return nil }
        var c = ModelConfig()
        c.initEmb = 4
        c.hiddenChannels = 8
        c.outChannels = 4
        c.heads = 2
        c.midLayers = 1
        guard (try? writeCheckpoint(SeggerModel(config: c, seed: 3), to: dir + "/model.safetensors")) != nil else { return nil }
        return (dir + "/tiles", dir + "/model.safetensors")
    }()

    func fixture() throws -> (tiles: String, checkpoint: String) {
        _ = try Support.requireBinary()
        guard let f = Self.fixture else {
            XCTFail("could not make the test tiles with \(Support.binary) synth")
            throw XCTSkip("no fixture")
        }
        return f
    }

    func predict(_ extra: [String], ranks: Int, out: String) throws -> Support.Result {
        let f = try fixture()
        return try runSegger(["predict", "--tiles", f.tiles, "--checkpoint", f.checkpoint, "--out", out, "--min_bd", "2"] + extra,
                              ranks: ranks)
    }

    func testRankCountsWriteTheSameFilesAsTheReference() throws {
        let f = try fixture()
        let tiles = try TileDirectory.list(f.tiles).map { try Tile.read(path: $0) }
        let model = try ModelFile.load(path: f.checkpoint, flag: "checkpoint").model
        for cc in [false, true] {
            var p = SegmentParameters()
            p.minBd = 2
            p.useCC = cc
            let want = referencePrediction(tiles: tiles, model: model, p: p)
            var first: [String: Data] = [:]
            for ranks in [1, 2, 4] {
                for format in ["csv", "parquet"] {
                    let out = Support.tempDir("cli") + "/seg"
                    let r = try predict(["--format", format] + (cc ? ["--use_cc"] : []), ranks: ranks, out: out)
                    XCTAssertEqual(r.status, 0, "\(ranks) ranks, \(format), cc \(cc):\n\(r.stdout)\n\(r.stderr)")
                    guard r.status == 0 else { continue }
                    let names = ["segger_transcripts.\(format)", "segger_cells.\(format)"]
                    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(),
                                   (names + ["segmentation_log.json"]).sorted())
                    for name in names {
                        let data = try Data(contentsOf: URL(fileURLWithPath: out + "/" + name))
                        if let d = first[name] {
                            XCTAssertEqual(data, d, "\(name) at \(ranks) ranks (cc \(cc)) differs from 1 rank")
                        } else {
                            first[name] = data
                        }
                    }
                    let log = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/segmentation_log.json"))) as! [String: Any]
                    XCTAssertEqual(log["ranks"] as? Int, ranks)
                    XCTAssertEqual(log["transcripts_written"] as? Int, want.rows.count)
                    if cc && ranks > 1 {
                        XCTAssertGreaterThanOrEqual(log["component_rounds"] as? Int ?? 0, 2, "components spanning ranks were joined")
                    }
                    if format == "csv" && ranks == 1 {
                        let (got, order) = try readOutputs(out)
                        XCTAssertEqual(order, order.sorted())
                        XCTAssertEqual(got.rows.count, want.rows.count)
                        // This process's BLAS may split the GEMMs over other threads than the binary's one
                        // thread, so scores may differ in their last bits; decisions must not.
                        let differing = got.rows.filter { id, g in
                            guard let w = want.rows[id] else { return true }
                            var a = g, b = w
                            a.score = nil; b.score = nil
                            return a != b || (g.score == nil) != (w.score == nil) || abs((g.score ?? 0) - (w.score ?? 0)) > 1e-6
                        }
                        XCTAssertEqual(differing.count, 0, "rows differ from the reference (cc \(cc))")
                        for (id, row) in differing.prefix(3) { XCTFail("\(id): got \(row) want \(String(describing: want.rows[id]))") }
                        XCTAssertEqual(got.cells, want.cells, "cells differ from the reference (cc \(cc))")
                        XCTAssertFalse(want.rows.values.contains { $0.score.map { abs(Double($0) - p.scoreCut) < 1e-5 } ?? false },
                                       "a score this close to the cut could flip: choose another seed")
                        XCTAssertGreaterThan(got.rows.values.filter { $0.bound == 1 }.count, 0)
                        if cc { XCTAssertGreaterThan(got.cells.keys.filter { $0.hasPrefix("cc-") }.count, 1) }
                    }
                }
            }
        }
    }

    /// The Parquet outputs read by pyarrow and by DuckDB hold what the CSV outputs of the same run hold
    /// (needs $SEGGER_TEST_PYTHON with pyarrow and duckdb, which Scripts/test provides).
    func testParquetOutputsReadBackWithPyarrowAndDuckDB() throws {
        let python = try Support.requireTestPython()
        let dir = Support.tempDir("pq")
        for format in ["csv", "parquet"] {
            let r = try predict(["--format", format, "--use_cc"], ranks: 2, out: dir + "/" + format)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let script = """
        import json, sys, duckdb, pyarrow.parquet as pq
        d = sys.argv[1]
        out = {}
        for name in ("segger_transcripts", "segger_cells"):
            t = pq.read_table(f"{d}/{name}.parquet")
            out[name + ".arrow"] = [str(f.type) + ("?" if f.nullable else "") for f in t.schema]
            out[name] = t.to_pylist()
            out[name + ".duck"] = [list(r) for r in duckdb.sql(f"select * from '{d}/{name}.parquet'").fetchall()]
        print(json.dumps(out))
        """
        let p = try Support.run(python, ["-c", script, dir + "/parquet"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let got = try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(got["segger_transcripts.arrow"] as? [String], ["int64", "string?", "float?", "int8", "float", "float", "int32"])
        XCTAssertEqual(got["segger_cells.arrow"] as? [String], ["string", "int64", "float", "float", "string"])
        let csv = try readCSV(dir + "/csv/segger_transcripts.csv")
        let arrow = got["segger_transcripts"] as! [[String: Any]]
        let duck = got["segger_transcripts.duck"] as! [[Any]]
        XCTAssertEqual(arrow.count, csv.count)
        XCTAssertEqual(duck.count, csv.count)
        for (i, c) in csv.enumerated() where i < arrow.count && i < duck.count {
            let a = arrow[i]
            XCTAssertEqual((a["transcript_id"] as! NSNumber).int64Value, Int64(c["transcript_id"]!)!)
            XCTAssertEqual((duck[i][0] as! NSNumber).int64Value, Int64(c["transcript_id"]!)!)
            XCTAssertEqual(a["segger_cell_id"] as? String ?? "", c["segger_cell_id"]!)
            XCTAssertEqual(duck[i][1] as? String ?? "", c["segger_cell_id"]!)
            XCTAssertEqual(Float((a["score"] as! NSNumber).doubleValue), Float(c["score"]!)!)
            XCTAssertEqual((a["bound"] as! NSNumber).intValue, Int(c["bound"]!)!)
            XCTAssertEqual(Float((a["x"] as! NSNumber).doubleValue), Float(c["x"]!)!)
            XCTAssertEqual((a["gene"] as! NSNumber).intValue, Int(c["gene"]!)!)
        }
        let cells = try readCSV(dir + "/csv/segger_cells.csv")
        let arrowCells = got["segger_cells"] as! [[String: Any]]
        XCTAssertEqual(arrowCells.map { $0["segger_cell_id"] as! String }, cells.map { $0["segger_cell_id"]! })
        XCTAssertEqual(arrowCells.map { ($0["transcript_count"] as! NSNumber).intValue }, cells.map { Int($0["transcript_count"]!)! })
        XCTAssertEqual(arrowCells.map { $0["source"] as! String }, cells.map { $0["source"]! })
        XCTAssertTrue(arrowCells.contains { $0["source"] as? String == "component" })
    }

    /// Ranks without a tile still own ids, exchange and write their (empty) share.
    func testMoreRanksThanTiles() throws {
        let f = try fixture()
        let dir = Support.tempDir("few")
        try FileManager.default.createDirectory(atPath: dir + "/tiles", withIntermediateDirectories: true)
        for p in try TileDirectory.list(f.tiles).prefix(2) {
            try FileManager.default.copyItem(atPath: p, toPath: dir + "/tiles/" + (p as NSString).lastPathComponent)
        }
        var files: [[Data]] = []
        for ranks in [1, 4] {
            let out = dir + "/out\(ranks)"
            let r = try runSegger(["predict", "--tiles", dir + "/tiles", "--checkpoint", f.checkpoint, "--out", out, "--min_bd", "2",
                                    "--use_cc", "--format", "csv"], ranks: ranks)
            XCTAssertEqual(r.status, 0, r.stderr)
            files.append(try ["segger_transcripts.csv", "segger_cells.csv"].map { try Data(contentsOf: URL(fileURLWithPath: out + "/" + $0)) })
        }
        XCTAssertEqual(files[0], files[1])
    }

    func testBadInputsStopEveryRankAndLeaveNothing() throws {
        let f = try fixture()
        let dir = Support.tempDir("cli-bad")
        // A tile without ids (written as segger-tile v1, as older tiles are).
        var t = try Tile.read(path: try TileDirectory.list(f.tiles)[0])
        t.txIDs = nil
        t.bdIDs = nil
        try FileManager.default.createDirectory(atPath: dir + "/noids", withIntermediateDirectories: true)
        try t.write(to: dir + "/noids/tile_a.safetensors")
        // A tile without positions.
        t = try Tile.read(path: try TileDirectory.list(f.tiles)[1])
        t.txPos = []
        t.txPosDim = 0
        try FileManager.default.createDirectory(atPath: dir + "/nopos", withIntermediateDirectories: true)
        try t.write(to: dir + "/nopos/tile_b.safetensors")
        // A checkpoint of another vocabulary.
        var c = ModelConfig()
        c.numTxTokens = 7
        c.initEmb = 4; c.hiddenChannels = 8; c.outChannels = 4; c.heads = 2
        try writeCheckpoint(SeggerModel(config: c, seed: 1), to: dir + "/small.safetensors")
        try FileManager.default.createDirectory(atPath: dir + "/existing", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/existing/segger_cells.parquet", contents: Data("not ours".utf8))

        let cases: [(args: [String], status: Int32, fragments: [String])] = [
            (["--tiles", dir + "/noids", "--checkpoint", f.checkpoint], 1, ["tile_a.safetensors", "no transcript ids", "segger-train convert"]),
            (["--tiles", f.tiles, dir + "/nopos", "--checkpoint", f.checkpoint], 1, ["tile_b.safetensors", "no transcript positions"]),
            (["--tiles", f.tiles, "--checkpoint", dir + "/small.safetensors"], 1, ["vocabulary of 7", "trained on another gene panel"]),
            (["--tiles", f.tiles, "--checkpoint", f.checkpoint, "--k_bd", "0"], 64, ["--k_bd must be at least 1"]),
            (["--tiles", f.tiles, "--checkpoint", f.checkpoint, "--dist_tx", "0"], 64, ["--dist_tx must be a finite distance above 0"]),
            (["--tiles", f.tiles, "--checkpoint", f.checkpoint, "--score_cut", "2"], 64, ["--score_cut must lie in [0, 1]"]),
            (["--tiles", f.tiles, "--checkpoint", dir + "/missing.ckpt"], 1, ["missing.ckpt"]),
            (["--tiles", dir + "/nowhere", "--checkpoint", f.checkpoint], 1, ["nowhere", "no such directory"]),
        ]
        for ranks in [1, 2] {
            for (i, k) in cases.enumerated() {
                let out = dir + "/out\(ranks)-\(i)"
                let r = try runSegger(["predict", "--out", out, "--min_bd", "1"] + k.args, ranks: ranks)
                XCTAssertEqual(r.status, k.status, "\(k.args) at \(ranks) ranks:\n\(r.stderr)")
                for frag in k.fragments { XCTAssertTrue(r.stderr.contains(frag), "'\(frag)' not in: \(r.stderr)") }
                XCTAssertFalse(r.stderr.contains("MPI_ABORT"), "every rank stops together, no abort: \(r.stderr)")
                XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(out) left behind (\(k.args))")
            }
            // An existing output: refused, the file that is not ours untouched; --overwrite replaces it.
            let r = try runSegger(["predict", "--tiles", f.tiles, "--checkpoint", f.checkpoint, "--out", dir + "/existing"], ranks: ranks)
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("exists (pass --overwrite"), r.stderr)
            XCTAssertEqual(try String(contentsOfFile: dir + "/existing/segger_cells.parquet", encoding: .utf8), "not ours")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/existing"), ["segger_cells.parquet"])
            // An output directory whose parent does not exist.
            let r2 = try runSegger(["predict", "--tiles", f.tiles, "--checkpoint", f.checkpoint, "--out", dir + "/no/such/out"], ranks: ranks)
            XCTAssertEqual(r2.status, 1, r2.stderr)
            XCTAssertTrue(r2.stderr.contains("parent directory"), r2.stderr)
        }
        let r = try runSegger(["predict", "--tiles", f.tiles, "--checkpoint", f.checkpoint, "--out", dir + "/existing", "--overwrite", "--min_bd", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/existing/segger_cells.parquet")), Data("not ours".utf8))
    }
}
