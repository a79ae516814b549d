// segger-train predict: segmentation with a trained model (SeggerSegment does the work).
import ArgumentParser
import Foundation
import SeggerDistributed
import SeggerSegment

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Assign every transcript to a cell with a trained model (segger's prediction, on CPUs, over MPI ranks).",
        discussion: """
        segger's algorithm (segger_dev `predict_parquet.py`), per tile: the model's embeddings z; for each \
        transcript its --k_bd nearest nucleus centroids (bd.pos) closer than --dist_bd; score = \
        sigmoid(<z_tx, z_bd>) (an exact 0 dot product scores 0); the transcript is bound to its best nucleus \
        when that score reaches --score_cut. Tiles with fewer than --min_bd nuclei are not scored. With \
        --use_cc, transcripts this tile leaves unbound are linked to their --k_tx nearest transcripts \
        (itself excluded) closer than --dist_tx that are unbound too, where sigmoid(<z_i, z_j>) reaches \
        --score_cut.

        Across tiles (they overlap at their margins): per transcript id the best bound row (highest score; \
        equal scores: the smaller cell id), else the best unbound row (equal scores: the tile listed first). With --use_cc, the unbound transcripts on \
        links take the cell of their connected component (links through transcripts bound elsewhere count), \
        named cc-<smallest transcript_id of the component> (bound ones included): the same for any rank count.

        Inputs: --tiles takes directories of segger-tile safetensors tiles, of segger's .pt tiles, or segger's \
        dataset root (then its train, val and test splits). Tiles need transcript ids (tx.id), positions \
        (tx.pos, bd.pos) and nucleus ids (bd.id): `segger-train convert` keeps them from segger's .pt tiles. \
        --checkpoint takes a segger-train checkpoint (.safetensors; the model config is in its metadata) or \
        segger's Lightning .ckpt (the config is read off the weights' shapes; residual linears mean segger's \
        documented architecture with L2-normalized embeddings, none mean segger main's).

        Outputs in --out (written under temporary names and moved into place together at the end; existing \
        ones are refused unless --overwrite): segger_transcripts.parquet (transcript_id, segger_cell_id, \
        score, bound, x, y[, z][, gene]; sorted by transcript_id; score is null for transcripts seen only in \
        tiles below --min_bd), segger_cells.parquet (segger_cell_id, transcript_count, centroid_x, \
        centroid_y, source nucleus|component), segmentation_log.json (parameters, counts, seconds, memory).

        Under `mpirun -np N` the tiles are split over the ranks by size; each rank owns a range of transcript \
        ids, rows and links go to their owners (MPI_Alltoallv), and rank 0 writes the files.

        Example:
          mpirun -np 4 segger-train predict --tiles data/tiles --use_cc \\
              --checkpoint runs/a/checkpoints/last.safetensors --out runs/a/seg
        """)

    @Option(name: .customLong("tiles"), parsing: .upToNextOption, help: "Tile directories (safetensors or segger .pt tiles, or a segger dataset root).")
    var tiles: [String] = []
    @Option(name: .customLong("checkpoint"), help: "Trained model: a segger-train .safetensors checkpoint or segger's Lightning .ckpt.")
    var checkpoint: String
    @Option(name: .customLong("out"), help: "Output directory (created when missing; its parent must exist).")
    var out: String
    @Option(name: .customLong("score_cut"), help: "Bind a transcript when its best score reaches this; also the tx–tx link threshold (0…1).")
    var scoreCut: Double = 0.5
    @Option(name: .customLong("k_bd"), help: "Candidate nuclei per transcript (nearest centroids).")
    var kBd: Int = 4
    @Option(name: .customLong("dist_bd"), help: "Candidate nuclei lie strictly closer than this (tile units, µm).")
    var distBd: Double = 10
    @Option(name: .customLong("k_tx"), help: "Neighbour transcripts for --use_cc, the transcript itself counted.")
    var kTx: Int = 5
    @Option(name: .customLong("dist_tx"), help: "Neighbour transcripts lie strictly closer than this.")
    var distTx: Double = 3
    @Flag(name: .customLong("use_cc"), help: "Give unbound transcripts the cell of their connected component of similar unbound neighbours.")
    var useCC = false
    @Option(name: .customLong("min_bd"), help: "Tiles with fewer nuclei are not scored (their transcripts stay unassigned).")
    var minBd: Int = 10
    @Flag(name: .customLong("overwrite"), help: "Replace existing outputs in --out.")
    var overwrite = false
    @Option(name: .customLong("format"), help: "parquet or csv.")
    var format: String = "parquet"
    @Option(name: .customLong("num_threads"), help: "OpenBLAS threads per rank (default: $OPENBLAS_NUM_THREADS or 1).")
    var numThreads: Int?
    @Option(name: .customLong("progress_seconds"), help: "Seconds between progress lines when stdout is not a terminal.")
    var progressSeconds: Double = 30

    func options() throws -> PredictOptions {
        var o = PredictOptions()
        guard !tiles.isEmpty else { throw ValidationError("--tiles needs at least one directory") }
        for t in tiles { try Flags.path("tiles", t) }
        try Flags.path("checkpoint", checkpoint)
        try Flags.path("out", out)
        o.tiles = tiles
        o.checkpoint = checkpoint
        o.out = out
        var p = SegmentParameters()
        p.scoreCut = scoreCut
        p.kBd = kBd
        p.distBd = distBd
        p.kTx = kTx
        p.distTx = distTx
        p.useCC = useCC
        p.minBd = minBd
        if let problem = p.problem { throw ValidationError(problem) }
        o.parameters = p
        o.overwrite = overwrite
        guard let f = TableFormat(rawValue: format) else { throw ValidationError("--format must be parquet or csv, not '\(format)'") }
        o.format = f
        try checkThreads(numThreads)
        try Flags.real("progress_seconds", progressSeconds, 0...1e9, openBelow: true)
        return o
    }

    func run() throws {
        // SIGTERM, SIGINT and SLURM's warning signals stop the run between tiles, removing what it staged
        // (installed first: MPI's start-up takes a moment, and a signal then would kill the process).
        StopSignals.install([SIGUSR1, SIGUSR2, SIGTERM, SIGINT])
        let comm: Communicator
        do { comm = try Communicator.world() } catch { fail("MPI initialization failed: \(error)") }
        runOnEveryRank(comm) {
            let o = try options()
            configureThreads(numThreads)  // after the checks: an absurd count would start that many threads
            let progress = PredictProgressLine(enabled: comm.isRoot, plainInterval: progressSeconds)
            let log = try runPrediction(o, comm: comm, progress: { p in
                progress.update(String(format: "predict: rank 0 tiles %d/%d (%d tiles on %d ranks), %.0f transcripts/s",
                                       p.tilesDone, p.tilesOfRank, p.tilesTotal, comm.size,
                                       Double(p.transcripts) / max(p.seconds, 1e-9)),
                                force: p.tilesDone == p.tilesOfRank)
            }, note: { progress.line("predict: \($0)") })
            if comm.isRoot {
                let names = outputNames(o.format)
                progress.line(String(format: "predict: %d transcripts from %d tiles (%d below --min_bd): %d bound, %d in %d component cells, %d unassigned; %d nucleus cells",
                                     log.transcriptsWritten, log.tilesRead, log.tilesSkippedMinBd, log.transcriptsBound,
                                     log.transcriptsInComponentCells, log.componentCells, log.transcriptsUnassigned, log.nucleusCells))
                progress.line(String(format: "predict: %.2f s on %d rank(s), %.0f tile transcripts/s per rank", log.seconds.total,
                                     comm.size, log.tileTranscriptsPerSecondPerRank)
                              + "; wrote \(names.transcripts), \(names.cells), \(names.log) in \(o.out)")
            }
        }
    }
}

/// Rank 0's progress: one line redrawn in place on a terminal, a plain line every `plainInterval` seconds
/// otherwise (a log file, mpirun, SLURM), as training's progress does.
final class PredictProgressLine {
    let enabled: Bool
    let isTerminal: Bool
    let interval: Double
    var lastPrint = 0.0
    var lineOpen = false

    init(enabled: Bool, plainInterval: Double) {
        self.enabled = enabled
        let env = ProcessInfo.processInfo.environment
        if let mode = env["SEGGER_PROGRESS"] {
            isTerminal = mode == "tty"
        } else {
            isTerminal = isatty(STDOUT_FILENO) == 1 && env["SLURM_JOB_ID"] == nil && env["OMPI_COMM_WORLD_SIZE"] == nil
        }
        interval = isTerminal ? 0.1 : plainInterval
    }

    /// Shows `text` (rate-limited unless `force`).
    func update(_ text: @autoclosure () -> String, force: Bool = false) {
        guard enabled else { return }
        let now = monotonicSeconds()
        guard force || now - lastPrint >= interval else { return }
        lastPrint = now
        if isTerminal {
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + text()).utf8))
            lineOpen = true
        } else {
            print(text())
            fflush(stdout)
        }
    }

    /// A full line, after ending any live line.
    func line(_ text: String) {
        guard enabled else { return }
        if lineOpen { FileHandle.standardOutput.write(Data("\n".utf8)); lineOpen = false }
        print(text)
        fflush(stdout)
    }
}
