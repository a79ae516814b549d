import ArgumentParser
import Foundation
import SeggerTiles

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a realistic, learnable tile directory (deterministic per seed).",
        discussion: """
        Cells with nuclei and cell-type gene programs, a kNN transcript graph with
        self-loops (k within a radius), belongs edges for nuclear transcripts, and
        segger-style negatives (a nuclear transcript paired with a wrong nucleus of the
        same tile). Files: tile_00000.safetensors, … in the segger-tile v2 contract
        (docs/tile-format.md) with positions (tx.pos, bd.pos, µm), transcript ids
        (tx.id: int64, unique, from --seed and the transcript's global index) and
        boundary ids (bd.id: 8 lowercase letters and "-1", as Xenium's), and
        manifest.json. The training tensors are those of earlier versions, bit for bit.

        Overlap mode (--overlap_margin M): one slide region of tiles × tx_per_tile
        transcripts is cut into a grid of C × R cores (R the largest divisor of --tiles
        not above its square root), numbered row by row from the origin; tile k holds
        every transcript and nucleus centroid within M µm of its core (bounds
        included), so those near a border appear in 2–4 tiles with the same id,
        position and gene, as in segger's tiles. Each tile's kNN, belongs and label
        edges are built within the tile. --tx_per_tile is then the mean per core (a
        tile holds more: its margins); manifest.json records the grid and the cores.

        A whole slide (--size_spread slide): tile sizes vary as over a real slide —
        log-normal with median --tx_per_tile and σ 0.8, clipped at its 1st and 99th
        percentiles (×0.155 and ×6.45), each tile's size from its own stream. With
        --tx_per_tile 3000: about 470 to 19,350 transcripts per tile, mean ≈ 4,100:
          segger-train synth --out slide --tiles 1500 --tx_per_tile 3000 --size_spread slide
        manifest.json records each tile's sizes.
        """)

    @Option(name: .customLong("out"), help: "Output directory (created).")
    var out: String
    @Option(name: .customLong("tiles"), help: "Number of tiles.")
    var tiles: Int = 8
    @Option(name: .customLong("tx_per_tile"), help: "Transcripts per tile (approximately).")
    var txPerTile: Int = 5000
    @Option(name: .customLong("seed"), help: "Seed of the tiles' layout and sampling.")
    var seed: UInt64 = 0
    @Option(name: .customLong("num_tx_tokens"), help: "Gene vocabulary size.")
    var numTxTokens: Int = 500
    @Option(name: .customLong("k"), help: "Neighbours per transcript, itself included.")
    var k: Int = 3
    @Option(name: .customLong("embedding_dim"), help: "Write embedding-mode tiles (tx.x float [N, C]) of this width instead of token ids.")
    var embeddingDim: Int?
    @Option(name: .customLong("overlap_margin"), help: "Overlap mode: cut one region into overlapping tiles, each holding everything within this many µm of its core (see below).")
    var overlapMargin: Double?
    @Option(name: .customLong("size_spread"), help: "none (every tile holds --tx_per_tile transcripts) or slide (sizes spread as over a whole slide, see below).")
    var sizeSpread: String = "none"

    func run() throws {
        guard tiles >= 1, txPerTile >= 10, numTxTokens >= 1, k >= 1 else {
            throw ValidationError("--tiles ≥ 1, --tx_per_tile ≥ 10, --num_tx_tokens ≥ 1 and --k ≥ 1 are required")
        }
        if let m = overlapMargin, !(m >= 0 && m.isFinite) {
            throw ValidationError("--overlap_margin must be a finite number of µm ≥ 0 (got \(m))")
        }
        let spread: SizeSpread?
        switch sizeSpread {
        case "none": spread = nil
        case let name: guard let s = SizeSpread.named(name) else { throw ValidationError("--size_spread must be none or slide (got \(name))") }
            spread = s
        }
        if spread != nil && overlapMargin != nil {
            throw ValidationError("--size_spread slide cannot be combined with --overlap_margin (overlapping tiles are cut from one region)")
        }
        var c = SynthConfig()
        c.tiles = tiles
        c.txPerTile = txPerTile
        c.seed = seed
        c.numTxTokens = numTxTokens
        c.k = k
        c.embeddingDim = embeddingDim
        c.overlapMargin = overlapMargin
        c.sizeSpread = spread
        do {
            try SeggerTiles.Synth.writeDirectory(config: c, to: out)
        } catch {
            fail("\(error)")
        }
        let sizes = spread.map { s in
            let counts = (0..<tiles).map { SeggerTiles.Synth.txCount(c, $0) }
            return ", \(counts.min()!)–\(counts.max()!) transcripts per tile (mean \(counts.reduce(0, +) / tiles), --size_spread slide: log-normal, median \(txPerTile), σ \(s.sigma))"
        } ?? ""
        print("wrote \(tiles) tile(s) to \(out)\(overlapMargin.map { ", overlapping by a \($0) µm margin" } ?? "")\(sizes)")
    }
}
