import ArgumentParser
import Foundation
import SeggerTiles

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a realistic, learnable tile directory (deterministic per seed).",
        discussion: """
        Cells with nuclei and cell-type gene programs, a kNN transcript graph with self-loops (k within a radius),
        belongs edges for nuclear transcripts, and segger-style negatives (a nuclear transcript paired with a
        wrong nucleus of the same tile). Files: tile_00000.safetensors, … in the segger-tile v1 contract.
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

    func run() throws {
        guard tiles >= 1, txPerTile >= 10, numTxTokens >= 1, k >= 1 else {
            throw ValidationError("--tiles ≥ 1, --tx_per_tile ≥ 10, --num_tx_tokens ≥ 1 and --k ≥ 1 are required")
        }
        var c = SynthConfig()
        c.tiles = tiles
        c.txPerTile = txPerTile
        c.seed = seed
        c.numTxTokens = numTxTokens
        c.k = k
        c.embeddingDim = embeddingDim
        do {
            try SeggerTiles.Synth.writeDirectory(config: c, to: out)
        } catch {
            fail("\(error)")
        }
        print("wrote \(tiles) tile(s) to \(out)")
    }
}
