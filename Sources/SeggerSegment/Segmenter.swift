// segger's prediction over MPI ranks, start to end:
//   tile files → (rank's share, by cost) read → forward → candidates / scores → rows and edges
//   → rows to the owner of their id (alltoallv) → best row per id → components (--use_cc)
//   → cells to the owner of their name → rank 0 writes, receiving each rank's rows in bounded chunks
//   in rank order (owners hold ascending id ranges, so the file is sorted by transcript id).
// Every error is agreed by all ranks before anyone stops; outputs appear only when all are complete.
import Foundation
import SafeTensors
import SeggerDistributed
import SeggerModel
import SeggerTiles

/// What `segger-train predict` was asked to do.
public struct PredictOptions: Sendable {
    /// Tile directories: safetensors tiles, segger `.pt` tiles, or segger dataset roots (all splits).
    public var tiles: [String] = []
    public var checkpoint: String = ""
    public var out: String = ""
    public var parameters = SegmentParameters()
    public var overwrite = false
    public var format: TableFormat = .parquet
    /// Rows per message from a rank to the writer (bounds the writer's memory).
    public var chunkRows = 1 << 16

    public init() {}
}

/// Where the tiles come from: files (``FileTiles``) or, in tests, memory.
public protocol TileSource {
    /// Tile names in run order (the order decides ties between tiles).
    var names: [String] { get }
    /// A cost proportional to the tile's work, for balancing ranks (each rank asks for a stride of them).
    func cost(_ i: Int) throws -> Double
    func read(_ i: Int) throws -> Tile
}

/// The tile files of `--tiles` (``listPredictionTiles(_:)``), costed from their headers.
public struct FileTiles: TileSource {
    public let names: [String]

    public init(directories: [String]) throws {
        names = try listPredictionTiles(directories)
    }

    public func cost(_ i: Int) throws -> Double {
        let s = try TileCatalog.sizes(path: names[i])
        return Double(s.numTx) + 2 * Double(s.numNeighbors) + Double(s.numBelongs)
    }

    public func read(_ i: Int) throws -> Tile { try Tile.read(path: names[i]) }
}

/// Progress of rank 0's own share of the tiles.
public struct PredictProgress: Sendable {
    public var tilesDone: Int
    public var tilesOfRank: Int
    public var tilesTotal: Int
    public var transcripts: Int
    public var seconds: Double
}

/// The run's record, written as `segmentation_log.json`.
public struct SegmentationLog: Codable, Sendable {
    public struct Parameters: Codable, Sendable {
        public var scoreCut: Double
        public var useCc: Bool
        public var minBd: Int
        public var receptiveField: [String: Double]
    }
    public struct Seconds: Codable, Sendable {
        public var total: Double
        /// Slowest rank per phase.
        public var tiles: Double, merge: Double, components: Double, cells: Double, write: Double
        /// Within `tiles` (slowest rank each): reading files, the model's forward, candidates/scores/links.
        public var read: Double, forward: Double, score: Double
    }
    public var tool = "segger-train predict"
    public var tileDirectories: [String]
    public var checkpoint: String
    /// "metadata" or "shapes".
    public var modelConfigSource: String
    public var modelConfig: ModelConfig
    public var parameters: Parameters
    public var format: String
    public var outputs: [String]
    public var cellIds: String
    public var tilesRead: Int
    public var tilesSkippedMinBd: Int
    /// Transcript rows over all tiles (a transcript in the overlap of two tiles counts twice).
    public var tileTranscripts: Int
    public var transcriptsWritten: Int
    public var transcriptsBound: Int
    public var transcriptsInComponentCells: Int
    public var transcriptsUnassigned: Int
    /// Transcripts seen only in tiles below --min_bd (score null).
    public var transcriptsUnscored: Int
    public var nucleusCells: Int
    public var componentCells: Int
    /// Similar unbound pairs found by the tiles (--use_cc; a pair found by two overlapping tiles counts twice).
    public var txTxPairsInTiles: Int
    public var componentRounds: Int
    public var ranks: Int
    public var seconds: Seconds
    /// Tile transcripts per second per rank, end to end.
    public var tileTranscriptsPerSecondPerRank: Double
    /// Written (distinct) transcripts per second per rank, end to end.
    public var transcriptsPerSecondPerRank: Double
    public var peakRssMbPerRank: [Double]
    /// CPU time (user + system) of each rank: on a busy machine, transcripts per CPU second are steadier
    /// than per wall second.
    public var cpuSecondsPerRank: [Double]

    public var json: String {
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? enc.encode(self)) ?? Data(), as: UTF8.self) + "\n"
    }
}

/// The output file names for a format.
public func outputNames(_ format: TableFormat) -> (transcripts: String, cells: String, log: String) {
    ("segger_transcripts.\(format.fileExtension)", "segger_cells.\(format.fileExtension)", "segmentation_log.json")
}

/// The tile files of the `--tiles` arguments, in order: each directory's tiles sorted by name; a segger
/// dataset root (no tiles of its own) gives its train, val and test splits. Repeats are dropped.
public func listPredictionTiles(_ dirs: [String]) throws -> [String] {
    var out: [String] = []
    var seen = Set<String>()
    for dir in dirs {
        var found: [String] = []
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw InputError(path: dir, "no such directory").given(by: "tiles")
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let hasTiles = names.contains { ($0.hasSuffix(".safetensors") || $0.hasSuffix(".pt")) && !$0.hasPrefix(".") }
        if hasTiles || names.contains("processed") {
            do { found = try TileDirectory.list(dir) } catch let e as InputError { throw e.given(by: "tiles") }
        } else {
            for split in ["train", "val", "test"] {
                let d = TileDirectory.resolve(dir, split: split)
                if d != dir, let files = try? TileDirectory.list(d) { found += files }
            }
            if found.isEmpty {
                throw InputError(path: dir, "holds no tiles (*.safetensors or segger's *.pt), nor segger's {train,val,test}_tiles/processed").given(by: "tiles")
            }
        }
        for f in found {
            let key = URL(fileURLWithPath: f).standardizedFileURL.path
            if seen.insert(key).inserted { out.append(f) }
        }
    }
    return out
}

/// Peak resident memory of this process in MB (getrusage; Linux reports KB).
func peakRSSMegabytes() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_maxrss) / 1024
}

/// User + system CPU seconds of this process so far.
func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
}

/// Runs the prediction on every rank (collective) and returns the log (the same on every rank).
/// `source` replaces the files of `o.tiles` (tests).
/// `note` receives rank 0's lines for the log (stale staging directories of killed runs removed).
public func runPrediction(_ o: PredictOptions, comm: Communicator, source: TileSource? = nil,
                          progress: ((PredictProgress) -> Void)? = nil,
                          note: ((String) -> Void)? = nil) throws -> SegmentationLog {
    let t0 = monotonicSeconds()
    let p = o.parameters
    if let problem = p.problem { throw CollectiveError(problem) }
    let files = outputNames(o.format)
    // Rank 0 owns the output directory; its verdict goes to everyone before any work.
    var stage: OutputStage? = nil
    var stageError: String? = nil
    if comm.isRoot {
        do {
            stage = try OutputStage(directory: o.out, names: [files.transcripts, files.cells, files.log], overwrite: o.overwrite)
            for line in stage!.removedStale { note?(line) }
        } catch {
            stageError = "\(error)"
        }
    }
    do {
        try comm.agree(stageError)
        let log = try predictAndWrite(o, comm: comm, source: source, stage: stage, files: files, t0: t0, progress: progress)
        return log
    } catch {
        stage?.abandon()
        throw error
    }
}

private func predictAndWrite(_ o: PredictOptions, comm: Communicator, source given: TileSource?, stage: OutputStage?,
                             files: (transcripts: String, cells: String, log: String), t0: Double,
                             progress: ((PredictProgress) -> Void)?) throws -> SegmentationLog {
    let p = o.parameters
    let size = comm.size, me = comm.rank

    // The model, on every rank.
    var loaded: LoadedModel? = nil
    var loadError: String? = nil
    do { loaded = try ModelFile.load(path: o.checkpoint, flag: "checkpoint") } catch { loadError = "\(error)" }
    try comm.agree(loadError)
    let pm = loaded!

    // The tiles and their costs (headers only; each rank reads a stride of them), then the assignment.
    var listed: TileSource? = given
    var listError: String? = nil
    if listed == nil {
        do { listed = try FileTiles(directories: o.tiles) } catch { listError = "\(error)" }
    }
    try comm.agree(listError)
    let source = listed!
    let paths = source.names
    var costs = [Double](repeating: 0, count: paths.count)
    var headerError: String? = nil
    for i in stride(from: me, to: paths.count, by: size) where headerError == nil {
        do { costs[i] = try source.cost(i) } catch { headerError = "\(error)" }
    }
    try comm.agree(headerError)
    costs = comm.allreduceSum(costs)
    let owner = ShardPlan.assign(costs: costs, ranks: size)
    let myTiles = paths.indices.filter { owner[$0] == me }

    // This rank's tiles.
    let tTiles = monotonicSeconds()
    var rows: [TranscriptRow] = []
    var edges: [TranscriptEdge] = []
    var names = CellNames()
    var scratch = PredictScratch()
    var skipped = 0, tileTranscripts = 0
    var readSeconds = 0.0, forwardSeconds = 0.0, scoreSeconds = 0.0
    var pairsInTiles = 0
    var tileError: String? = nil
    var compactAt = 1 << 22
    for (k, i) in myTiles.enumerated() {
        // A stop signal (SIGTERM, SIGINT, SLURM's warning) ends the run between tiles: every rank learns
        // of it at the agreement below, and the staged outputs are removed.
        if StopSignals.received != 0 {
            tileError = "stopped by \(StopSignals.name(StopSignals.received)) after \(k) of this rank's \(myTiles.count) tiles; nothing was written (prediction does not resume: run it again)"
            break
        }
        let tile: Tile
        let tRead = monotonicSeconds()
        do { tile = try source.read(i) } catch { tileError = "\(error)"; break }
        readSeconds += monotonicSeconds() - tRead
        if let problem = predictionProblem(tile, config: pm.config) { tileError = problem; break }
        let outcome = predictTile(tile, index: Int32(i), model: pm.model, parameters: p, names: &names,
                                  rows: &rows, edges: &edges, scratch: &scratch)
        if outcome.skipped { skipped += 1 }
        forwardSeconds += outcome.forwardSeconds
        pairsInTiles += outcome.edges
        scoreSeconds += outcome.scoreSeconds
        tileTranscripts += outcome.transcripts
        // Overlapping tiles of one rank: keep the best row per id as we go, so memory follows the
        // distinct transcripts rather than the tile rows.
        if rows.count >= compactAt {
            keepBestRows(&rows, names: names)
            compactAt = max(compactAt, 2 * rows.count)
        }
        progress?(PredictProgress(tilesDone: k + 1, tilesOfRank: myTiles.count, tilesTotal: paths.count,
                                  transcripts: tileTranscripts, seconds: monotonicSeconds() - t0))
    }
    let secondsTiles = monotonicSeconds() - tTiles  // this rank's own work (waiting for the others comes next)
    try comm.agree(tileError)

    // Rows to the owners of their ids; the best row per id.
    let tMerge = monotonicSeconds()
    keepBestRows(&rows, names: names)
    let ranges = transcriptRanges(sortedIDs: rows, comm: comm)
    var (owned, ownedNames) = exchangeRows(&rows, names: names, ranges: ranges, comm: comm)
    names = CellNames()
    keepBestRows(&owned, names: ownedNames)
    let secondsMerge = monotonicSeconds() - tMerge

    let tComponents = monotonicSeconds()
    var cc = ComponentStats()
    if p.useCC {
        cc = assignComponents(rows: &owned, names: &ownedNames, localEdges: &edges, ranges: ranges, comm: comm)
    }
    edges = []
    let secondsComponents = monotonicSeconds() - tComponents

    let tCells = monotonicSeconds()
    let (cells, clashes) = aggregateCells(rows: owned, names: ownedNames, comm: comm)
    try comm.agree(clashes.isEmpty ? nil : "cell id '\(clashes[0])' is both a nucleus id (bd.id) and a component name; rename that nucleus or run without --use_cc")
    let secondsCells = monotonicSeconds() - tCells

    // Global counts.
    var bound = 0, unscored = 0, nucleusCells = 0, componentCellCount = 0, anyZ = 0
    for r in owned {
        if r.isBound { bound += 1 }
        if !r.isScored { unscored += 1 }
        if r.hasZ { anyZ = 1 }
    }
    for c in cells { if c.isComponent { componentCellCount += 1 } else { nucleusCells += 1 } }
    let totals = comm.allreduceSum([Double(myTiles.count), Double(skipped), Double(tileTranscripts), Double(owned.count),
                                    Double(bound), Double(cc.transcripts), Double(unscored), Double(nucleusCells),
                                    Double(componentCellCount), Double(pairsInTiles), Double(anyZ)]).map { Int($0) }
    let zColumn = totals[10] > 0
    let geneColumn = pm.config.txFeatureDim == nil

    // Rank 0 writes; every other rank sends its rows (then its cells) in chunks, in rank order.
    let tWrite = monotonicSeconds()
    let transcriptSchema = transcriptColumns(z: zColumn, gene: geneColumn)
    let cellSchema = cellColumns()
    var writeError: String? = nil
    if let stage {
        var tw: TableWriter? = nil
        var cw: TableWriter? = nil
        do {
            let meta = ["created_by": "segger-train predict", "parameters": parametersJSON(p), "checkpoint": o.checkpoint]
            tw = try TableWriterFactory.make(o.format, path: stage.stagedPath(files.transcripts), schema: transcriptSchema, metadata: meta)
            cw = try TableWriterFactory.make(o.format, path: stage.stagedPath(files.cells), schema: cellSchema, metadata: meta)
        } catch { writeError = "\(error)" }
        func write(_ w: TableWriter?, _ columns: [ColumnValues]) {
            guard writeError == nil, let w else { return }
            do { try w.append(columns) } catch { writeError = "\(error)" }
        }
        for r in 0..<size {
            if r == me {
                var at = 0
                while at < owned.count {
                    let end = min(owned.count, at + o.chunkRows)
                    write(tw, rowColumns(owned[at..<end], name: { ownedNames[$0] }, z: zColumn, gene: geneColumn))
                    at = end
                }
            } else {
                let chunks: [Int64] = comm.receive(from: r, tag: 1)
                for _ in 0..<(chunks.first ?? 0) {
                    let chunk: [TranscriptRow] = comm.receive(from: r, tag: 1)
                    let table = decodeNames(comm.receive(from: r, tag: 1, as: UInt8.self))
                    write(tw, rowColumns(chunk[...], name: { table[Int($0)] }, z: zColumn, gene: geneColumn))
                }
            }
        }
        for r in 0..<size {
            if r == me {
                write(cw, cellColumnValues(cells[...]))
            } else {
                let chunks: [Int64] = comm.receive(from: r, tag: 2)
                for _ in 0..<(chunks.first ?? 0) {
                    write(cw, cellColumnValues(decodeCells(comm.receive(from: r, tag: 2, as: UInt8.self))[...]))
                }
            }
        }
        if writeError == nil {
            do {
                try tw?.close()
                try cw?.close()
            } catch { writeError = "\(error)" }
        }
        if writeError != nil { tw?.abandon(); cw?.abandon() }
    } else {
        var chunks: [Range<Int>] = []
        var at = 0
        while at < owned.count { chunks.append(at..<min(owned.count, at + o.chunkRows)); at = min(owned.count, at + o.chunkRows) }
        comm.send([Int64(chunks.count)], to: 0, tag: 1)
        for c in chunks {
            var chunk = Array(owned[c])
            var table: [Int32: Int32] = [:]
            var w = ByteWriter()
            for i in chunk.indices where chunk[i].cell >= 0 {
                let c = chunk[i].cell
                if let t = table[c] { chunk[i].cell = t } else {
                    let t = Int32(table.count)
                    table[c] = t
                    w.string(ownedNames[c])
                    chunk[i].cell = t
                }
            }
            comm.send(chunk, to: 0, tag: 1)
            comm.send(w.bytes, to: 0, tag: 1)
        }
        let cellChunks = stride(from: 0, to: cells.count, by: o.chunkRows).map { $0..<min(cells.count, $0 + o.chunkRows) }
        comm.send([Int64(cellChunks.count)], to: 0, tag: 2)
        for c in cellChunks { comm.send(encodeCells(cells[c]), to: 0, tag: 2) }
    }
    let secondsWrite = monotonicSeconds() - tWrite

    // The log: slowest rank per phase, memory of every rank.
    let slowest = comm.allreduceMax([secondsTiles, secondsMerge, secondsComponents, secondsCells, secondsWrite,
                                     readSeconds, forwardSeconds, scoreSeconds])
    let rss = comm.allgatherv([peakRSSMegabytes()]).map { $0.first ?? 0 }
    let cpu = comm.allgatherv([cpuSeconds()]).map { $0.first ?? 0 }
    let rounds = Int(comm.allreduceMax([Double(cc.rounds)])[0])
    let total = monotonicSeconds() - t0
    let log = SegmentationLog(
        tileDirectories: o.tiles, checkpoint: o.checkpoint, modelConfigSource: pm.configSource.rawValue, modelConfig: pm.config,
        parameters: .init(scoreCut: p.scoreCut, useCc: p.useCC, minBd: p.minBd,
                          receptiveField: ["k_bd": Double(p.kBd), "dist_bd": p.distBd, "k_tx": Double(p.kTx), "dist_tx": p.distTx]),
        format: o.format.rawValue, outputs: [files.transcripts, files.cells, files.log],
        cellIds: "nucleus cells: the bd.id of the nucleus; component cells: \(componentCellPrefix)<smallest transcript_id of the component, its bound transcripts included>",
        tilesRead: totals[0], tilesSkippedMinBd: totals[1], tileTranscripts: totals[2], transcriptsWritten: totals[3],
        transcriptsBound: totals[4], transcriptsInComponentCells: totals[5],
        transcriptsUnassigned: totals[3] - totals[4] - totals[5], transcriptsUnscored: totals[6],
        nucleusCells: totals[7], componentCells: totals[8], txTxPairsInTiles: totals[9], componentRounds: rounds, ranks: size,
        seconds: .init(total: total, tiles: slowest[0], merge: slowest[1], components: slowest[2], cells: slowest[3], write: slowest[4],
                       read: slowest[5], forward: slowest[6], score: slowest[7]),
        tileTranscriptsPerSecondPerRank: Double(totals[2]) / total / Double(size),
        transcriptsPerSecondPerRank: Double(totals[3]) / total / Double(size),
        peakRssMbPerRank: rss, cpuSecondsPerRank: cpu)
    if let stage, writeError == nil {
        do {
            try AtomicFile.write(log.json, to: stage.stagedPath(files.log))
            try stage.commit()
        } catch { writeError = "\(error)" }
    }
    try comm.agree(writeError)
    return log
}

// MARK: - Tables

/// The parameters as JSON (segger's names), for the Parquet files' metadata.
func parametersJSON(_ p: SegmentParameters) -> String {
    "{\"score_cut\": \(p.scoreCut), \"use_cc\": \(p.useCC), \"k_bd\": \(p.kBd), \"dist_bd\": \(p.distBd), \"k_tx\": \(p.kTx), \"dist_tx\": \(p.distTx), \"min_bd\": \(p.minBd)}"
}

func transcriptColumns(z: Bool, gene: Bool) -> [ColumnSpec] {
    var s = [ColumnSpec("transcript_id", .int64), ColumnSpec("segger_cell_id", .string, nullable: true),
             ColumnSpec("score", .float32, nullable: true), ColumnSpec("bound", .int8),
             ColumnSpec("x", .float32), ColumnSpec("y", .float32)]
    if z { s.append(ColumnSpec("z", .float32, nullable: true)) }
    if gene { s.append(ColumnSpec("gene", .int32)) }
    return s
}

func cellColumns() -> [ColumnSpec] {
    [ColumnSpec("segger_cell_id", .string), ColumnSpec("transcript_count", .int64), ColumnSpec("centroid_x", .float32),
     ColumnSpec("centroid_y", .float32), ColumnSpec("source", .string)]
}

func rowColumns(_ rows: ArraySlice<TranscriptRow>, name: (Int32) -> String, z: Bool, gene: Bool) -> [ColumnValues] {
    var ids: [Int64] = [], cell: [String] = [], cellValid: [Bool] = [], score: [Float] = [], scored: [Bool] = []
    var bound: [Int8] = [], xs: [Float] = [], ys: [Float] = [], zs: [Float] = [], hasZ: [Bool] = [], genes: [Int32] = []
    let n = rows.count
    ids.reserveCapacity(n); cell.reserveCapacity(n); cellValid.reserveCapacity(n); score.reserveCapacity(n)
    scored.reserveCapacity(n); bound.reserveCapacity(n); xs.reserveCapacity(n); ys.reserveCapacity(n)
    for r in rows {
        ids.append(r.id)
        if r.cell >= 0 { cell.append(name(r.cell)); cellValid.append(true) } else { cell.append(""); cellValid.append(false) }
        score.append(r.score)
        scored.append(r.isScored)
        bound.append(r.isBound ? 1 : 0)
        xs.append(r.x)
        ys.append(r.y)
        if z { zs.append(r.z); hasZ.append(r.hasZ) }
        if gene { genes.append(r.gene) }
    }
    var c: [ColumnValues] = [.int64(ids), .string(cell, valid: cellValid), .float32(score, valid: scored), .int8(bound),
                             .float32(xs, valid: nil), .float32(ys, valid: nil)]
    if z { c.append(.float32(zs, valid: hasZ)) }
    if gene { c.append(.int32(genes, valid: nil)) }
    return c
}

func cellColumnValues(_ cells: ArraySlice<CellRow>) -> [ColumnValues] {
    [.string(cells.map(\.name), valid: nil), .int64(cells.map { Int64($0.transcripts) }),
     .float32(cells.map(\.centroidX), valid: nil), .float32(cells.map(\.centroidY), valid: nil),
     .string(cells.map { $0.isComponent ? "component" : "nucleus" }, valid: nil)]
}

func decodeNames(_ bytes: [UInt8]) -> [String] {
    var r = ByteReader(bytes)
    var out: [String] = []
    while !r.atEnd { out.append(r.string()) }
    return out
}

func encodeCells(_ cells: ArraySlice<CellRow>) -> [UInt8] {
    var w = ByteWriter()
    for c in cells {
        w.string(c.name)
        w.value(Int64(c.transcripts))
        w.value(c.centroidX)
        w.value(c.centroidY)
        w.value(UInt8(c.isComponent ? 1 : 0))
    }
    return w.bytes
}

func decodeCells(_ bytes: [UInt8]) -> [CellRow] {
    var r = ByteReader(bytes)
    var out: [CellRow] = []
    while !r.atEnd {
        let name = r.string()
        let n = Int(r.value(Int64.self))
        let x = r.value(Float.self), y = r.value(Float.self)
        out.append(CellRow(name: name, transcripts: n, centroidX: x, centroidY: y, isComponent: r.value(UInt8.self) != 0))
    }
    return out
}
