import ArgumentParser
import Foundation
import SeggerModel
import SeggerTiles
import SeggerTrain

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

        --out must be a new or empty directory: tiles of an earlier synth are never overwritten or mixed in.
        """)

    @Option(name: .customLong("out"), help: "Output directory (created; must hold no tiles yet).")
    var out: String
    @Option(name: .customLong("tiles"), help: "Number of tiles.")
    var tiles: Int = 8
    @Option(name: .customLong("tx_per_tile"), help: "Transcripts per tile.")
    var txPerTile: Int = 5000
    @Option(name: .customLong("seed"), help: "Seed of the tiles' layout and sampling.")
    var seed: UInt64 = 0
    @Option(name: .customLong("num_tx_tokens"), help: "Gene vocabulary size.")
    var numTxTokens: Int = 500
    @Option(name: .customLong("k"), help: "Neighbours per transcript, itself included.")
    var k: Int = 3
    @Option(name: .customLong("embedding_dim"), help: "Write embedding-mode tiles (tx.x float [N, C]) of this width instead of token ids.")
    var embeddingDim: Int?
    @Option(name: .customLong("tx_per_cell"), help: "Mean transcripts per cell (fewer: more nuclei per tile).")
    var txPerCell: Double = 150
    @Option(name: .customLong("overlap_margin"), help: "Overlap mode: cut one region into overlapping tiles, each holding everything within this many µm of its core (see below).")
    var overlapMargin: Double?
    @Option(name: .customLong("size_spread"), help: "none (every tile holds --tx_per_tile transcripts) or slide (sizes spread as over a whole slide, see below).")
    var sizeSpread: String = "none"

    /// Memory of generating `transcripts` transcripts at once, an upper bound measured on the generator
    /// (bytes per transcript: a fixed part, per neighbour, per embedding feature) plus the runtime.
    static func estimatedBytes(transcripts: Double, k: Int, embeddingDim: Int?) -> Double {
        transcripts * (600 + 64 * Double(k) + 16 * Double(embeddingDim ?? 0)) + 64 * 1_048_576
    }

    func validate() throws {
        try Flags.path("out", out)
        try Flags.int("tiles", tiles, 1...100_000)
        try Flags.int("tx_per_tile", txPerTile, 10...10_000_000)
        try Flags.int("num_tx_tokens", numTxTokens, 1...Int(Int32.max))
        try Flags.int("k", k, 1...64)
        if let d = embeddingDim { try Flags.int("embedding_dim", d, 1...4096) }
        if let m = overlapMargin { try Flags.real("overlap_margin", m, 0...1e9) }
        try Flags.real("tx_per_cell", txPerCell, 1...1e9)
        guard sizeSpread == "none" || SizeSpread.named(sizeSpread) != nil else {
            throw ValidationError("--size_spread must be none or slide (got '\(sizeSpread)')")
        }
        if spread != nil && overlapMargin != nil {
            throw ValidationError("--size_spread slide cannot be combined with --overlap_margin (overlapping tiles are cut from one region)")
        }
        // Overlap mode generates the whole region (tiles × tx_per_tile transcripts), and a wide margin
        // puts all of it in each tile: twice the region bounds both.
        // A slide's largest tiles hold up to 6.45 × --tx_per_tile (its clip at the 99th percentile).
        let transcripts = overlapMargin == nil ? Double(txPerTile) * (spread == nil ? 1 : 6.45)
            : 2 * Double(tiles) * Double(txPerTile)
        let need = SynthCommand.estimatedBytes(transcripts: transcripts, k: k, embeddingDim: embeddingDim)
        let budget = MachineMemory.budget()
        if need > budget.bytes {
            let flags = "--tx_per_tile \(txPerTile) with --k \(k)" + (embeddingDim.map { ", --embedding_dim \($0)" } ?? "")
                + (overlapMargin.map { ", --tiles \(tiles) and --overlap_margin \($0)" } ?? "")
            throw ValidationError("\(flags) needs an estimated \(MachineMemory.format(need)), more than the \(MachineMemory.format(budget.bytes)) available (\(budget.source))")
        }
    }

    /// The size spread named by --size_spread (validated in validate()).
    var spread: SizeSpread? { sizeSpread == "none" ? nil : SizeSpread.named(sizeSpread) }

    func run() throws {
        let spread = self.spread
        var c = SynthConfig()
        c.tiles = tiles
        c.txPerTile = txPerTile
        c.seed = seed
        c.numTxTokens = numTxTokens
        c.k = k
        c.embeddingDim = embeddingDim
        c.overlapMargin = overlapMargin
        c.txPerCell = txPerCell
        c.sizeSpread = spread
        do {
            // Never write over (or mix with) tiles already there.
            let names = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
            let existing = names.filter { $0.hasSuffix(".safetensors") || $0.hasSuffix(".pt") || $0 == "manifest.json" }.sorted()
            if !existing.isEmpty {
                let shown = existing.prefix(4).joined(separator: ", ") + (existing.count > 4 ? ", …" : "")
                throw OutputError("\(out): --out already holds \(existing.count) tile file(s) (\(shown)); synth writes into a new or empty directory: remove them or pick another --out")
            }
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: out, isDirectory: &isDir), !isDir.boolValue {
                throw OutputError("\(out): --out is a file, not a directory")
            }
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
