// The whole prediction (one rank, in this process) against the serial reference, on generated
// overlapping tiles; bad inputs; the output directory and stop signals (the checkpoint reader: SeggerModelTests.ModelFileTests).
import Foundation
import SafeTensors
import SeggerDistributed
import SeggerModel
@testable import SeggerSegment
import SeggerTiles
import TestSupport
import XCTest

final class PredictionTests: XCTestCase {
    var comm: Communicator!

    override func setUpWithError() throws {
        comm = try Communicator.world()
        if comm.size != 1 { throw XCTSkip("single-rank test run under mpirun with \(comm.size) ranks") }
    }

    func run(_ world: World, model: SeggerModel, p: SegmentParameters, tiles: [Tile]? = nil) throws -> (SegmentationLog, String) {
        let dir = Support.tempDir("run")
        try writeCheckpoint(model, to: dir + "/model.safetensors")
        var o = PredictOptions()
        o.checkpoint = dir + "/model.safetensors"
        o.out = dir + "/out"
        o.parameters = p
        o.format = .csv
        o.chunkRows = 37  // many chunks even for small tiles
        let log = try runPrediction(o, comm: comm, source: MemoryTiles(tiles: tiles ?? world.tiles))
        return (log, o.out)
    }

    func compare(_ world: World, residual: Bool, p: SegmentParameters, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = SeggerModel(config: smallConfig(residual: residual), seed: 5)
        let (log, out) = try run(world, model: model, p: p)
        let want = referencePrediction(tiles: world.tiles, model: model, p: p)
        let (got, order) = try readOutputs(out)
        XCTAssertEqual(order, order.sorted(), "rows sorted by transcript id", file: file, line: line)
        XCTAssertEqual(got.rows.count, Set(world.tiles.flatMap { $0.txIDs! }).count, file: file, line: line)
        XCTAssertEqual(got.rows.count, want.rows.count, file: file, line: line)
        var bad = 0
        for (id, w) in want.rows where got.rows[id] != w {
            if bad < 5 { XCTFail("transcript \(id): got \(String(describing: got.rows[id])) want \(w)", file: file, line: line) }
            bad += 1
        }
        XCTAssertEqual(bad, 0, file: file, line: line)
        XCTAssertEqual(got.cells.count, want.cells.count, file: file, line: line)
        for (name, w) in want.cells where got.cells[name] != w {
            XCTFail("cell \(name): got \(String(describing: got.cells[name])) want \(w)", file: file, line: line)
        }
        let bound = want.rows.values.filter { $0.bound == 1 }.count
        let inComponents = want.rows.values.filter { $0.cell?.hasPrefix("cc-") == true }.count
        XCTAssertEqual(log.transcriptsBound, bound, file: file, line: line)
        XCTAssertEqual(log.transcriptsInComponentCells, inComponents, file: file, line: line)
        XCTAssertEqual(log.componentCells, want.cells.keys.filter { $0.hasPrefix("cc-") }.count, file: file, line: line)
        XCTAssertEqual(log.tilesRead, world.tiles.count, file: file, line: line)
        XCTAssertEqual(log.tileTranscripts, world.tiles.reduce(0) { $0 + $1.numTx }, file: file, line: line)
        // The check must be able to fail: the run has bound and (with --use_cc) component transcripts,
        // overlapping tiles, and transcripts left unassigned.
        XCTAssertGreaterThan(bound, 0, file: file, line: line)
        XCTAssertLessThan(bound, want.rows.count, file: file, line: line)
        XCTAssertGreaterThan(log.tileTranscripts, log.transcriptsWritten, "tiles overlap", file: file, line: line)
        if p.useCC { XCTAssertGreaterThan(inComponents, 0, file: file, line: line) }
        let files = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        XCTAssertEqual(files, ["segger_cells.csv", "segger_transcripts.csv", "segmentation_log.json"], "no staging left", file: file, line: line)
    }

    func testMatchesReferenceDocumentedArchitecture() throws {
        var p = SegmentParameters()
        p.minBd = 3
        try compare(World(seed: 1), residual: true, p: p)
        p.useCC = true
        p.scoreCut = 0.52
        try compare(World(seed: 1), residual: true, p: p)
    }

    func testMatchesReferenceSeggerMainArchitecture() throws {
        var p = SegmentParameters()
        p.minBd = 3
        p.useCC = true
        p.scoreCut = 0.5
        p.kTx = 7
        p.distTx = 4
        try compare(World(seed: 2), residual: false, p: p)
        p.useCC = false
        p.kBd = 1
        try compare(World(seed: 2), residual: false, p: p)
    }

    /// Integer coordinates: candidates tie on distance; and a --min_bd that leaves some tiles unscored.
    func testTiesAndUnscoredTiles() throws {
        let world = World(seed: 3, gridCoordinates: true)
        var p = SegmentParameters()
        p.useCC = true
        p.scoreCut = 0.5
        let counts = world.tiles.map(\.numBd).sorted()
        p.minBd = counts[counts.count / 2]  // about half the tiles below it
        try compare(world, residual: true, p: p)
        let model = SeggerModel(config: smallConfig(residual: true), seed: 5)
        let (log, out) = try run(world, model: model, p: p)
        XCTAssertGreaterThan(log.tilesSkippedMinBd, 0)
        XCTAssertGreaterThan(log.transcriptsUnscored, 0)
        let (got, _) = try readOutputs(out)
        XCTAssertEqual(got.rows.values.filter { $0.score == nil }.count, log.transcriptsUnscored)
    }

    /// Embedding-mode tiles (tx.x float features: no gene column) with 3-D positions (a z column).
    func testEmbeddingModeAnd3DPositions() throws {
        var world = World(seed: 8)
        world.tiles = world.tiles.map { t in
            var u = t
            guard case .tokens(let g) = t.tx else { return t }
            var x = [Float](repeating: 0, count: t.numTx * 5)
            for i in 0..<t.numTx { x[i * 5 + Int(g[i]) % 5] = 1; x[i * 5 + (Int(g[i]) / 5) % 5] += 0.5 }
            u.tx = .features(x, dim: 5)
            var pos: [Float] = []
            for i in 0..<t.numTx { pos += [t.txPos[2 * i], t.txPos[2 * i + 1], Float(t.txIDs![i] % 7)] }
            u.txPos = pos
            u.txPosDim = 3
            return u
        }
        var c = smallConfig(residual: true)
        c.txFeatureDim = 5
        let model = SeggerModel(config: c, seed: 4)
        var p = SegmentParameters()
        p.minBd = 3
        p.useCC = true
        p.scoreCut = 0.385  // this untrained model's scores lie around 0.38
        let dir = Support.tempDir("emb")
        try writeCheckpoint(model, to: dir + "/m.safetensors")
        var o = PredictOptions()
        o.checkpoint = dir + "/m.safetensors"
        o.out = dir + "/out"
        o.format = .csv
        o.parameters = p
        _ = try runPrediction(o, comm: comm, source: MemoryTiles(tiles: world.tiles))
        let rows = try readCSV(o.out + "/segger_transcripts.csv")
        XCTAssertNil(rows[0]["gene"], "no gene column in embedding mode")
        var zOf: [Int64: Float] = [:]
        for t in world.tiles { for i in 0..<t.numTx { zOf[t.txIDs![i]] = t.txPos[3 * i + 2] } }
        for r in rows { XCTAssertEqual(Float(r["z"]!), zOf[Int64(r["transcript_id"]!)!]) }
        let want = referencePrediction(tiles: world.tiles, model: model, p: p)
        let (got, _) = try readOutputs(o.out)
        XCTAssertEqual(got.rows.count, want.rows.count)
        XCTAssertEqual(got.rows.filter { want.rows[$0.key] != $0.value }.count, 0)
        XCTAssertEqual(got.cells, want.cells)
        XCTAssertGreaterThan(want.rows.values.filter { $0.bound == 1 }.count, 0)
        XCTAssertGreaterThan(want.cells.keys.filter { $0.hasPrefix("cc-") }.count, 0)
    }

    /// Every tile below --min_bd: nothing scored, every transcript written unassigned, an empty cells table.
    func testAllTilesBelowMinBd() throws {
        let world = World(seed: 9)
        var p = SegmentParameters()
        p.minBd = 1000
        p.useCC = true
        let (log, out) = try run(world, model: SeggerModel(config: smallConfig(residual: true), seed: 1), p: p)
        XCTAssertEqual(log.tilesSkippedMinBd, world.tiles.count)
        XCTAssertEqual(log.transcriptsUnscored, log.transcriptsWritten)
        let (got, _) = try readOutputs(out)
        XCTAssertTrue(got.rows.values.allSatisfy { $0.cell == nil && $0.score == nil && $0.bound == 0 })
        XCTAssertEqual(got.cells.count, 0)
    }

    func testRerunIsIdenticalAndOverwriteIsRequired() throws {
        let world = World(seed: 4)
        let model = SeggerModel(config: smallConfig(residual: true), seed: 9)
        let dir = Support.tempDir("rerun")
        try writeCheckpoint(model, to: dir + "/m.safetensors")
        var o = PredictOptions()
        o.checkpoint = dir + "/m.safetensors"
        o.out = dir + "/out"
        o.format = .csv
        o.parameters.useCC = true
        o.parameters.minBd = 2
        _ = try runPrediction(o, comm: comm, source: MemoryTiles(tiles: world.tiles))
        let first = try Data(contentsOf: URL(fileURLWithPath: o.out + "/segger_transcripts.csv"))
        let firstCells = try Data(contentsOf: URL(fileURLWithPath: o.out + "/segger_cells.csv"))
        XCTAssertThrowsError(try runPrediction(o, comm: comm, source: MemoryTiles(tiles: world.tiles))) { e in
            XCTAssertTrue("\(e)".contains("exists (pass --overwrite"), "\(e)")
        }
        o.overwrite = true
        o.chunkRows = 5  // other chunks to the writer: the same bytes
        _ = try runPrediction(o, comm: comm, source: MemoryTiles(tiles: world.tiles))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: o.out + "/segger_transcripts.csv")), first)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: o.out + "/segger_cells.csv")), firstCells)
    }

    /// A stop signal during the tiles: the run ends with an error naming it, and nothing is left behind
    /// (the staged files and the --out directory it created are removed).
    func testAStopSignalEndsTheRunAndLeavesNothing() throws {
        let world = World(seed: 4)
        let dir = Support.tempDir("signal")
        try writeCheckpoint(SeggerModel(config: smallConfig(residual: true), seed: 9), to: dir + "/m.safetensors")
        var o = PredictOptions()
        o.checkpoint = dir + "/m.safetensors"
        o.out = dir + "/out"
        o.format = .csv
        o.parameters.minBd = 2
        StopSignals.install([SIGUSR2])
        defer { signal(SIGUSR2, SIG_DFL); StopSignals.clear() }
        raise(SIGUSR2)
        XCTAssertEqual(StopSignals.received, SIGUSR2)
        XCTAssertThrowsError(try runPrediction(o, comm: comm, source: MemoryTiles(tiles: world.tiles))) { e in
            XCTAssertTrue("\(e)".contains("stopped by SIGUSR2"), "\(e)")
            XCTAssertTrue("\(e)".contains("nothing was written"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.out), "the --out this run created is removed")
        // Into an existing directory: only what the run staged goes.
        try FileManager.default.createDirectory(atPath: o.out, withIntermediateDirectories: false)
        _ = FileManager.default.createFile(atPath: o.out + "/notes.txt", contents: Data("mine".utf8))
        XCTAssertThrowsError(try runPrediction(o, comm: comm, source: MemoryTiles(tiles: world.tiles)))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: o.out), ["notes.txt"])
    }

    /// A staging directory of a run killed outright (SIGKILL) is removed by the next run into the same
    /// --out, when its name says this host and a process that no longer exists; any other is kept.
    func testStagingOfAKilledRunIsRemovedAndNothingElse() throws {
        let world = World(seed: 4)
        let dir = Support.tempDir("stale")
        try writeCheckpoint(SeggerModel(config: smallConfig(residual: true), seed: 9), to: dir + "/m.safetensors")
        let out = dir + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        // A process id that no longer exists: a child that has exited and been reaped.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        let dead = child.processIdentifier
        XCTAssertEqual(kill(dead, 0), -1)
        let host = OutputStage.hostName()
        func stage(_ name: String, files: [String]) throws {
            try FileManager.default.createDirectory(atPath: out + "/" + name, withIntermediateDirectories: false)
            for f in files { _ = FileManager.default.createFile(atPath: out + "/" + name + "/" + f, contents: Data("partial".utf8)) }
        }
        let stale = ".segger-predict-\(host)-\(dead)-123"
        try stage(stale, files: ["segger_cells.parquet", ".segger_transcripts.parquet.tmp-\(dead)-9f3a", ".segmentation_log.json.tmp-\(dead)"])
        let kept = [
            ".segger-predict-otherhost-\(dead)-123",              // another host: its process may live
            ".segger-predict-\(host)-\(getpid())-123",            // a live process (this one)
            ".segger-predict-\(host)-\(dead)-456",                 // holds a file a staging directory never holds
            ".segger-predict-\(host)-\(dead)",                     // not a staging name
        ]
        for k in kept { try stage(k, files: k.hasSuffix("456") ? ["notes.txt"] : ["segger_cells.csv"]) }
        var o = PredictOptions()
        o.checkpoint = dir + "/m.safetensors"
        o.out = out
        o.format = .csv
        o.parameters.minBd = 2
        var notes: [String] = []
        _ = try runPrediction(o, comm: comm, source: MemoryTiles(tiles: world.tiles), note: { notes.append($0) })
        XCTAssertEqual(notes.count, 1, "\(notes)")
        XCTAssertTrue(notes.first?.contains(stale) == true && notes.first?.contains("process \(dead)") == true, "\(notes)")
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: out))
        XCTAssertFalse(left.contains(stale))
        XCTAssertEqual(left, Set(kept + ["segger_transcripts.csv", "segger_cells.csv", "segmentation_log.json"]))
    }

    // MARK: bad inputs

    func expectFailure(_ tiles: [Tile], _ fragments: [String], config: ModelConfig = smallConfig(residual: true),
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = Support.tempDir("bad")
        try writeCheckpoint(SeggerModel(config: config, seed: 1), to: dir + "/m.safetensors")
        var o = PredictOptions()
        o.checkpoint = dir + "/m.safetensors"
        o.out = dir + "/out"
        o.format = .csv
        o.parameters.minBd = 0
        XCTAssertThrowsError(try runPrediction(o, comm: comm, source: MemoryTiles(tiles: tiles)), file: file, line: line) { e in
            XCTAssertTrue(e is CollectiveError, "\(e)", file: file, line: line)
            for f in fragments { XCTAssertTrue("\(e)".contains(f), "'\(f)' not in: \(e)", file: file, line: line) }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.out), "nothing left behind", file: file, line: line)
    }

    func testBadTiles() throws {
        let good = World(seed: 6).tiles
        var t = good[1]
        t.txIDs = nil
        try expectFailure([good[0], t], ["mem:tile_1", "no transcript ids", "segger-train convert"])
        t = good[1]; t.txPos = []; t.txPosDim = 0
        try expectFailure([t], ["mem:tile_1", "no transcript positions", "tx.pos"])
        t = good[1]; t.bdPos = []; t.bdPosDim = 0
        try expectFailure([t], ["no boundary positions", "bd.pos"])
        t = good[1]; t.bdIDs = nil
        try expectFailure([t], ["no boundary ids", "bd.id"])
        t = good[1]; t.txIDs![3] = t.txIDs![0]
        try expectFailure([t], ["transcript id \(t.txIDs![0]) appears twice"])
        t = good[1]; t.txPos[5] = .nan
        try expectFailure([t], ["tx.pos", "non-finite"])
        var other = smallConfig(residual: true)
        other.bdFeatureDim = 3
        try expectFailure([good[0]], ["mem:tile_0", "4 features", "expects 3", "trained on other tiles"], config: other)
        other = smallConfig(residual: true)
        other.numTxTokens = 10
        try expectFailure([good[0]], ["not below the checkpoint's vocabulary of 10"], config: other)
        other = smallConfig(residual: true)
        other.txFeatureDim = 6
        try expectFailure([good[0]], ["token mode", "embedding mode with 6 features"], config: other)
    }

    func testBadParametersAndOutputs() throws {
        for (change, fragment) in [({ (p: inout SegmentParameters) in p.kBd = 0 }, "--k_bd must be at least 1"),
                                   ({ $0.kTx = -1 }, "--k_tx must be at least 1"),
                                   ({ $0.distBd = 0 }, "--dist_bd must be a finite distance above 0"),
                                   ({ $0.distTx = .infinity }, "--dist_tx"),
                                   ({ $0.scoreCut = 1.5 }, "--score_cut must lie in [0, 1]"),
                                   ({ $0.scoreCut = .nan }, "--score_cut"),
                                   ({ $0.minBd = -1 }, "--min_bd")] as [((inout SegmentParameters) -> Void, String)] {
            var p = SegmentParameters()
            change(&p)
            XCTAssertTrue(p.problem?.contains(fragment) == true, "\(String(describing: p.problem))")
        }
        let dir = Support.tempDir("outs")
        _ = FileManager.default.createFile(atPath: dir + "/afile", contents: Data("x".utf8))
        XCTAssertThrowsError(try OutputStage(directory: dir + "/afile", names: ["a"], overwrite: true)) {
            XCTAssertTrue("\($0)".contains("not a directory"), "\($0)")
        }
        XCTAssertThrowsError(try OutputStage(directory: dir + "/missing/out", names: ["a"], overwrite: true)) {
            XCTAssertTrue("\($0)".contains("parent directory"), "\($0)")
        }
        try FileManager.default.createDirectory(atPath: dir + "/o/segger_transcripts.parquet", withIntermediateDirectories: true)
        XCTAssertThrowsError(try OutputStage(directory: dir + "/o", names: ["segger_transcripts.parquet"], overwrite: true)) {
            XCTAssertTrue("\($0)".contains("is a directory"), "\($0)")
        }
        // A stage abandoned leaves the directory as it was (it created none of it here) and a file it did
        // not write untouched.
        _ = FileManager.default.createFile(atPath: dir + "/o/keep.txt", contents: Data("mine".utf8))
        let stage = try OutputStage(directory: dir + "/o", names: ["x.csv"], overwrite: false)
        _ = FileManager.default.createFile(atPath: stage.stagedPath("x.csv"), contents: Data("half".utf8))
        stage.abandon()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/o").sorted(), ["keep.txt", "segger_transcripts.parquet"])
        // A missing checkpoint: an error naming it, nothing created.
        var o = PredictOptions()
        o.checkpoint = dir + "/nope.safetensors"
        o.out = dir + "/new"
        o.format = .csv
        XCTAssertThrowsError(try runPrediction(o, comm: comm, source: MemoryTiles(tiles: World(seed: 1).tiles))) {
            XCTAssertTrue("\($0)".contains("nope.safetensors"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/new"))
    }
}
