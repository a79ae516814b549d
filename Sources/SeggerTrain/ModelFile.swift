// A model read from a checkpoint for inference (eval, digest, predict): every check that training makes
// on a checkpoint, made before the model is allocated or a tile goes through it.
import Foundation
import SafeTensors
import SeggerModel
import SeggerTiles

/// Loading a checkpoint's model and matching tiles against it.
public enum ModelFile {
    /// Reads `path` (named `--flag` in errors), checks its config's sizes and that the model fits in
    /// memory with tiles up to `largestTile`, and loads its weights (refusing non-finite ones when
    /// `requireFinite`).
    public static func load(path: String, flag: String, largestTile: TileExtent = TileExtent(),
                            requireFinite: Bool = true) throws -> (model: SeggerModel, checkpoint: Checkpoint) {
        let ck: Checkpoint
        do { ck = try Checkpoint.read(path: path) } catch { throw OutputError("--\(flag) \(error)") }
        let estimate = MemoryEstimate(config: ck.model, tile: largestTile)
        if let problem = estimate.problem(what: "the model of --\(flag) \(path) (\(ck.model.sizeSummary))") {
            throw OutputError(problem)
        }
        let model = SeggerModel(config: ck.model, seed: 0)
        let weights = ck.weights
        if requireFinite { try TensorChecks.requireFiniteWeights(weights, parameters: model.parameters, source: path) }
        try model.loadWeights(weights, source: path)
        return (model, ck)
    }

    /// The largest sizes over tile files, from their headers alone (no tensor data read).
    public static func extent(of paths: [String]) throws -> TileExtent {
        var e = TileExtent()
        for p in paths {
            let s = try TileCatalog.sizes(path: p)
            // (The tx feature width is not in TileSizes; the formula's D already covers a config's width.)
            e = e.union(TileExtent(nodes: s.numTx + s.numBd, edges: s.numNeighbors + s.numBelongs, labels: s.numLabels))
        }
        return e
    }
}

extension ModelConfig {
    /// Why `tile` cannot go through a model of this config (token vs embedding mode, feature widths,
    /// token ids beyond the vocabulary), naming the file; nil when it can.
    public func incompatibility(with tile: Tile, path: String) -> String? {
        func mode(_ d: Int?) -> String { d.map { "embedding mode (tx.x features of width \($0))" } ?? "token mode" }
        if tile.txFeatureDim != txFeatureDim {
            return "\(path) is in \(mode(tile.txFeatureDim)) but the model was trained in \(mode(txFeatureDim))"
        }
        if tile.bdDim != bdFeatureDim {
            return "\(path) has boundary features (bd.x) of width \(tile.bdDim) but the model expects \(bdFeatureDim)"
        }
        if case .tokens(let ids) = tile.tx, let i = ids.firstIndex(where: { Int($0) >= numTxTokens }) {
            return "\(path): token id \(ids[i]) at row \(i) of tx.x is not below the model's num_tx_tokens \(numTxTokens)"
        }
        return nil
    }
}
