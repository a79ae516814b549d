// One tile's part of segger's prediction (segger_dev `predict_parquet.py`: `predict_batch`,
// `get_similarity_scores`): the model's embeddings, each transcript's best nearby nucleus and, with
// --use_cc, the similar pairs among the transcripts this tile leaves unbound.
import Foundation
import SeggerDistributed
import SeggerModel
import SeggerTiles

/// segger's prediction parameters (`segment(score_cut, use_cc, receptive_field)`), its defaults.
public struct SegmentParameters: Codable, Equatable, Sendable {
    /// A transcript is bound to its best nucleus when the score reaches this; tx–tx pairs likewise.
    public var scoreCut: Double = 0.5
    /// Candidate nuclei per transcript: the k_bd nearest centroids closer than dist_bd.
    public var kBd: Int = 4
    public var distBd: Double = 10
    /// Transcript neighbours for components: the k_tx nearest (itself included) closer than dist_tx.
    public var kTx: Int = 5
    public var distTx: Double = 3
    /// Give transcripts left unbound a cell from the connected components of similar unbound pairs.
    public var useCC: Bool = false
    /// Tiles with fewer boundaries are not scored (segger: 10).
    public var minBd: Int = 10

    public init() {}

    /// What is wrong with these values, naming the flag, or nil.
    public var problem: String? {
        if !(scoreCut >= 0 && scoreCut <= 1) { return "--score_cut must lie in [0, 1] (got \(scoreCut))" }
        for (flag, k) in [("k_bd", kBd), ("k_tx", kTx)] {
            if k < 1 { return "--\(flag) must be at least 1 (got \(k))" }
            if k > 100_000 { return "--\(flag) must be at most 100000 (got \(k))" }
        }
        for (flag, d) in [("dist_bd", distBd), ("dist_tx", distTx)] where !(d > 0 && d.isFinite) {
            return "--\(flag) must be a finite distance above 0 (got \(d))"
        }
        if minBd < 0 { return "--min_bd must be 0 or more (got \(minBd))" }
        return nil
    }
}

/// One transcript as one tile saw it.
public struct TranscriptRow: Sendable, Equatable, BitwiseCopyable {
    public var id: Int64
    /// The best candidate's score (0 without candidates); meaningless unless ``RowFlags/scored``.
    public var score: Float
    public var x: Float, y: Float, z: Float
    /// Gene token (token mode), -1 in embedding mode.
    public var gene: Int32
    /// Index of the tile in the run's tile list (decides ties between tiles).
    public var tile: Int32
    /// The nucleus it is bound to, as an index into the rank's ``CellNames``; -1 when unbound.
    public var cell: Int32
    public var flags: UInt8

    public init(id: Int64, score: Float, x: Float, y: Float, z: Float, gene: Int32, tile: Int32, cell: Int32, flags: UInt8) {
        self.id = id
        self.score = score
        self.x = x
        self.y = y
        self.z = z
        self.gene = gene
        self.tile = tile
        self.cell = cell
        self.flags = flags
    }

    public var isScored: Bool { flags & RowFlags.scored != 0 }
    public var isBound: Bool { flags & RowFlags.bound != 0 }
    public var hasZ: Bool { flags & RowFlags.hasZ != 0 }
    public var isComponent: Bool { flags & RowFlags.component != 0 }
}

/// Bits of ``TranscriptRow/flags``.
public enum RowFlags {
    /// The tile was scored (it had at least --min_bd boundaries).
    public static let scored: UInt8 = 1
    /// Bound to a nucleus (best score ≥ --score_cut).
    public static let bound: UInt8 = 2
    /// `z` holds the third coordinate of `tx.pos`.
    public static let hasZ: UInt8 = 4
    /// `cell` is a component cell (--use_cc), not a nucleus.
    public static let component: UInt8 = 8
}

/// An undirected pair of similar unbound transcripts (by id, `a < b`).
public struct TranscriptEdge: Sendable, Equatable, Hashable, BitwiseCopyable {
    public var a: Int64
    public var b: Int64

    public init(_ i: Int64, _ j: Int64) {
        a = min(i, j)
        b = max(i, j)
    }
}

/// Cell (nucleus) names met by one rank, each stored once; rows refer to them by index.
public struct CellNames: Sendable {
    public private(set) var names: [String] = []
    private var index: [String: Int32] = [:]

    public init() {}

    public mutating func intern(_ name: String) -> Int32 {
        if let i = index[name] { return i }
        let i = Int32(names.count)
        names.append(name)
        index[name] = i
        return i
    }

    public subscript(i: Int32) -> String { names[Int(i)] }
}

/// What one tile contributed.
public struct TileOutcome: Sendable, Equatable {
    /// Fewer than --min_bd boundaries: rows written unscored.
    public var skipped: Bool
    public var transcripts: Int
    public var bound: Int
    public var edges: Int
    /// Seconds in the model's forward pass, and in candidates, scores and links.
    public var forwardSeconds = 0.0
    public var scoreSeconds = 0.0
}

/// Why a tile cannot be segmented with this model: ids or positions missing, widths or vocabulary of
/// another model. The message names the tile and says what to do.
public func predictionProblem(_ tile: Tile, config: ModelConfig) -> String? {
    let path = tile.sources.first ?? "tile"
    guard let ids = tile.txIDs else {
        return "\(path): no transcript ids (tensor 'tx.id'): segmentation needs them to merge overlapping tiles and to name transcripts; convert segger's .pt tiles with `segger-train convert` (it keeps tx.id and bd.id), or regenerate the tiles with ids (`segger-train synth` writes them)"
    }
    guard ids.count == tile.numTx else { return "\(path): tensor 'tx.id' has \(ids.count) ids for \(tile.numTx) transcripts" }
    guard tile.txPosDim >= 2, tile.txPos.count == tile.numTx * tile.txPosDim else {
        return "\(path): no transcript positions (tensor 'tx.pos', F32 [N_tx, 2] or [N_tx, 3]): segmentation needs them to find each transcript's candidate nuclei"
    }
    if tile.numBd > 0 {
        guard tile.bdPosDim >= 2, tile.bdPos.count == tile.numBd * tile.bdPosDim else {
            return "\(path): no boundary positions (tensor 'bd.pos', F32 [N_bd, 2] or [N_bd, 3]): segmentation needs the nucleus centroids"
        }
        guard let names = tile.bdIDs else {
            return "\(path): no boundary ids (tensor 'bd.id'): segmentation names cells by them; convert segger's .pt tiles with `segger-train convert`, or regenerate the tiles with ids"
        }
        guard names.count == tile.numBd else { return "\(path): tensor 'bd.id' has \(names.count) ids for \(tile.numBd) boundaries" }
    }
    for (name, v) in [("tx.pos", tile.txPos), ("bd.pos", tile.bdPos)] {
        if let i = v.firstIndex(where: { !$0.isFinite }) {
            return "\(path): tensor '\(name)' holds a non-finite coordinate (\(v[i])) at flat position \(i)"
        }
    }
    var seen = Set<Int64>(minimumCapacity: ids.count)
    for (i, id) in ids.enumerated() where !seen.insert(id).inserted {
        return "\(path): transcript id \(id) appears twice in tensor 'tx.id' (second time at row \(i))"
    }
    if tile.bdDim != config.bdFeatureDim {
        return "\(path): boundaries have \(tile.bdDim) features (bd.x) but the checkpoint's model expects \(config.bdFeatureDim): the checkpoint was trained on other tiles"
    }
    if tile.txFeatureDim != config.txFeatureDim {
        func mode(_ d: Int?) -> String { d.map { "embedding mode with \($0) features" } ?? "token mode (gene ids)" }
        return "\(path): transcripts are in \(mode(tile.txFeatureDim)) but the checkpoint's model is in \(mode(config.txFeatureDim)): the checkpoint was trained on other tiles"
    }
    if case .tokens(let t) = tile.tx, let i = t.firstIndex(where: { Int($0) >= config.numTxTokens }) {
        return "\(path): gene token \(t[i]) at row \(i) is not below the checkpoint's vocabulary of \(config.numTxTokens) (num_tx_tokens): the checkpoint was trained on another gene panel"
    }
    return nil
}

/// Buffers reused from tile to tile.
public struct PredictScratch {
    var neighbors: [Neighbor] = []
    var bound: [Bool] = []
    public init() {}
}

/// ⟨a, b⟩ over d floats, 8 lanes.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Float {
    var acc = SIMD8<Float>.zero
    var c = 0
    while c + 8 <= d {
        acc.addProduct(UnsafeRawPointer(a + c).loadUnaligned(as: SIMD8<Float>.self),
                       UnsafeRawPointer(b + c).loadUnaligned(as: SIMD8<Float>.self))
        c += 8
    }
    var s = acc.sum()
    while c < d { s += a[c] * b[c]; c += 1 }
    return s
}

/// segger's score of a pair: sigmoid(⟨z_a, z_b⟩), an exact 0 dot product counting as −∞ (score 0).
@inline(__always)
func pairScore(_ dotProduct: Float) -> Float {
    if dotProduct == 0 { return 0 }
    return 1 / (1 + expf(-dotProduct))
}

/// Scores one tile: appends one row per transcript to `rows` and, with --use_cc, the similar pairs
/// among the transcripts this tile leaves unbound to `edges`. The tile must pass ``predictionProblem``.
/// Tiles with fewer than --min_bd boundaries are not run through the model: their rows are unscored.
public func predictTile(_ tile: Tile, index: Int32, model: SeggerModel, parameters p: SegmentParameters,
                        names: inout CellNames, rows: inout [TranscriptRow], edges: inout [TranscriptEdge],
                        scratch: inout PredictScratch) -> TileOutcome {
    let n = tile.numTx
    let ids = tile.txIDs!
    let pd = tile.txPosDim
    var gene = [Int32](repeating: -1, count: 0)
    if case .tokens(let t) = tile.tx { gene = t }
    let baseFlags: UInt8 = pd >= 3 ? RowFlags.hasZ : 0
    let firstRow = rows.count
    // Grow geometrically: reserving exactly count + n would reallocate, and copy every row so far, per tile.
    if rows.capacity < rows.count + n { rows.reserveCapacity(max(2 * rows.capacity, rows.count + n)) }
    for i in 0..<n {
        rows.append(TranscriptRow(id: ids[i], score: 0, x: tile.txPos[i * pd], y: tile.txPos[i * pd + 1],
                                  z: pd >= 3 ? tile.txPos[i * pd + 2] : 0, gene: gene.isEmpty ? -1 : gene[i],
                                  tile: index, cell: -1, flags: baseFlags))
    }
    guard tile.numBd >= p.minBd else {
        return TileOutcome(skipped: true, transcripts: n, bound: 0, edges: 0)
    }
    let t0 = monotonicSeconds()
    model.forward(tile)
    let t1 = monotonicSeconds()
    let D = model.outputWidth
    // Names of this tile's nuclei in the rank's table (each looked up once).
    let cellOf = (tile.bdIDs ?? []).map { names.intern($0) }
    let bdGrid = tile.bdPos.withUnsafeBufferPointer { PointGrid(points: $0, count: tile.numBd, stride: tile.bdPosDim) }
    let txGrid: PointGrid? = p.useCC
        ? tile.txPos.withUnsafeBufferPointer { PointGrid(points: $0, count: n, stride: pd) } : nil
    // Compared in float32, as numpy compares a float32 array with a Python float (NEP 50).
    let cut = Float(p.scoreCut)
    var boundCount = 0, edgeCount = 0
    scratch.neighbors.reserveCapacity(max(p.kBd, p.kTx))
    if scratch.bound.count < n { scratch.bound = [Bool](repeating: false, count: n) }
    model.withEmbeddings { ztx, txRow, zbd in
        rows.withUnsafeMutableBufferPointer { out in
            for i in 0..<n {
                let x = Double(tile.txPos[i * pd]), y = Double(tile.txPos[i * pd + 1])
                bdGrid.nearest(x: x, y: y, k: p.kBd, radius: p.distBd, into: &scratch.neighbors)
                let zi = ztx + Int(txRow[i]) * D
                var best: Float = 0, arg = -1
                for nb in scratch.neighbors {
                    let j = Int(nb.index)
                    let s = pairScore(dot(zi, zbd + j * D, D))
                    // The first maximum by boundary index, as argmax over segger's dense score row.
                    if arg < 0 || s > best || (s == best && j < arg) { best = s; arg = j }
                }
                let isBound = arg >= 0 && best >= cut
                scratch.bound[i] = isBound
                var r = out[firstRow + i]
                r.score = best
                r.flags |= RowFlags.scored
                if isBound {
                    r.flags |= RowFlags.bound
                    r.cell = cellOf[arg]
                    boundCount += 1
                }
                out[firstRow + i] = r
            }
        }
        guard let txGrid else { return }
        for i in 0..<n where !scratch.bound[i] {
            txGrid.nearest(x: txGrid.xs[i], y: txGrid.ys[i], k: p.kTx, radius: p.distTx, into: &scratch.neighbors)
            let zi = ztx + Int(txRow[i]) * D
            for nb in scratch.neighbors {
                let j = Int(nb.index)
                if j == i || scratch.bound[j] { continue }
                let s = pairScore(dot(zi, ztx + Int(txRow[j]) * D, D))
                // segger thresholds the scores, then drops the zeros (`eliminate_zeros`).
                if s >= cut && s > 0 {
                    edges.append(TranscriptEdge(ids[i], ids[j]))
                    edgeCount += 1
                }
            }
        }
    }
    return TileOutcome(skipped: false, transcripts: n, bound: boundCount, edges: edgeCount,
                       forwardSeconds: t1 - t0, scoreSeconds: monotonicSeconds() - t1)
}
