// A validated in-memory tile (or a batch of tiles: PyG's disjoint union is again a tile) with its
// edges grouped by destination once, at load, for the attention kernels.
import Foundation
import SafeTensors

/// One edge type (src → dst) of a tile: the edges in file order and the same edges grouped by
/// destination (CSR), stable within a destination, so that attention softmax and aggregation run
/// over contiguous slices.
public struct Relation: Sendable, Equatable {
    public private(set) var numSrc: Int
    public private(set) var numDst: Int
    /// Source and destination of edge e, in file order (the order of PyG's `edge_index`).
    public private(set) var src: [Int32]
    public private(set) var dst: [Int32]
    /// Edges into destination i are the grouped positions `dstStart[i] ..< dstStart[i+1]`.
    public private(set) var dstStart: [Int32]
    /// Source node of the k-th grouped edge.
    public private(set) var srcByDst: [Int32]
    /// File-order edge id of the k-th grouped edge.
    public private(set) var edgeByDst: [Int32]

    public var count: Int { src.count }

    /// Builds the relation; indices must already be validated to lie in range.
    public init(numSrc: Int, numDst: Int, src: [Int32], dst: [Int32]) {
        precondition(src.count == dst.count)
        self.numSrc = numSrc
        self.numDst = numDst
        self.src = src
        self.dst = dst
        var start = [Int32](repeating: 0, count: numDst + 1)
        for d in dst { start[Int(d) + 1] += 1 }
        for i in 0..<numDst { start[i + 1] += start[i] }
        var fill = Array(start[0..<numDst])
        var bySrc = [Int32](repeating: 0, count: src.count)
        var byEdge = [Int32](repeating: 0, count: src.count)
        for e in 0..<src.count {
            let d = Int(dst[e])
            let k = Int(fill[d])
            fill[d] += 1
            bySrc[k] = src[e]
            byEdge[k] = Int32(e)
        }
        self.dstStart = start
        self.srcByDst = bySrc
        self.edgeByDst = byEdge
    }

    /// Destinations that have at least one incoming edge.
    public var destinationsWithEdges: Int {
        var n = 0
        for i in 0..<numDst where dstStart[i + 1] > dstStart[i] { n += 1 }
        return n
    }

    /// The disjoint union: sources and destinations of part k are offset by the sizes of parts 0..<k.
    public static func union(_ parts: [Relation]) -> Relation {
        if parts.count == 1 { return parts[0] }
        var out = Relation(numSrc: 0, numDst: 0, src: [], dst: [])
        out.dstStart = [0]
        let edges = parts.reduce(0) { $0 + $1.count }
        out.src.reserveCapacity(edges); out.dst.reserveCapacity(edges)
        out.srcByDst.reserveCapacity(edges); out.edgeByDst.reserveCapacity(edges)
        for p in parts {
            let so = Int32(out.numSrc), dOff = Int32(out.numDst), eo = Int32(out.count)
            out.src.append(contentsOf: p.src.map { $0 + so })
            out.dst.append(contentsOf: p.dst.map { $0 + dOff })
            out.srcByDst.append(contentsOf: p.srcByDst.map { $0 + so })
            out.edgeByDst.append(contentsOf: p.edgeByDst.map { $0 + eo })
            out.dstStart.append(contentsOf: p.dstStart.dropFirst().map { $0 + eo })
            out.numSrc += p.numSrc
            out.numDst += p.numDst
        }
        return out
    }
}

/// What the transcripts carry: gene token ids (token mode) or a feature row each (embedding mode).
public enum TranscriptInput: Sendable, Equatable {
    /// Token ids in [0, num_tx_tokens), one per transcript.
    case tokens([Int32])
    /// Row-major [N_tx, dim] float features, NaN/inf already replaced.
    case features([Float], dim: Int)
}

/// One tile, or a batch of tiles as PyG's disjoint union.
public struct Tile: Sendable {
    /// The files this tile (or batch) came from.
    public var sources: [String]
    public var numTx: Int
    public var numBd: Int
    public var tx: TranscriptInput
    /// Row-major [numBd, bdDim] boundary features, NaN/inf already replaced.
    public var bdX: [Float]
    public var bdDim: Int
    /// (tx, neighbors, tx): kNN graph over transcripts, self-loops included.
    public var neighbors: Relation
    /// (tx, belongs, bd): message-passing edges and positive labels.
    public var belongs: Relation
    /// Supervision pairs (transcript, boundary) and their 0/1 labels.
    public var labelTx: [Int32]
    public var labelBd: [Int32]
    public var labels: [Float]
    /// Feature values that were NaN or ±inf and were replaced as torch.nan_to_num does.
    public var nonFiniteReplaced: Int

    // Where the nodes lie and who they are (segger-tile v2; optional, training uses none of it).
    // Segmentation (`predict`) needs positions and ids; a tile without them still trains.
    /// Row-major [numTx, txPosDim] positions (`tx.pos`, µm); empty when the file has none.
    public var txPos: [Float] = []
    /// 2 or 3 when `tx.pos` is present, else 0.
    public var txPosDim: Int = 0
    /// Row-major [numBd, bdPosDim] boundary centroids (`bd.pos`); empty when the file has none.
    public var bdPos: [Float] = []
    /// 2 or 3 when `bd.pos` is present, else 0.
    public var bdPosDim: Int = 0
    /// Transcript ids (`tx.id`, int64, segger's `transcript_id`), one per tx row; nil when absent.
    public var txIDs: [Int64]? = nil
    /// Boundary (cell) ids (`bd.id`, segger's cell id strings such as `cpikcgfm-1`); nil when absent.
    public var bdIDs: [String]? = nil

    public init(sources: [String], numTx: Int, numBd: Int, tx: TranscriptInput, bdX: [Float], bdDim: Int,
                neighbors: Relation, belongs: Relation, labelTx: [Int32], labelBd: [Int32], labels: [Float],
                nonFiniteReplaced: Int = 0) {
        self.sources = sources
        self.numTx = numTx
        self.numBd = numBd
        self.tx = tx
        self.bdX = bdX
        self.bdDim = bdDim
        self.neighbors = neighbors
        self.belongs = belongs
        self.labelTx = labelTx
        self.labelBd = labelBd
        self.labels = labels
        self.nonFiniteReplaced = nonFiniteReplaced
    }

    public var numLabels: Int { labels.count }

    /// Width of the transcript features in embedding mode, nil in token mode.
    public var txFeatureDim: Int? {
        if case .features(_, let dim) = tx { return dim }
        return nil
    }

    /// A cost estimate used to balance tiles over ranks (proportional to the step's work).
    public var cost: Double {
        Tile.cost(numTx: numTx, numNeighbors: neighbors.count, numBelongs: belongs.count, numLabels: numLabels)
    }

    /// The cost formula of ``cost`` from sizes alone (``TileCatalog`` uses it without reading data).
    public static func cost(numTx: Int, numNeighbors: Int, numBelongs: Int, numLabels: Int) -> Double {
        Double(numNeighbors) * 2 + Double(numTx) + Double(numBelongs) + Double(numLabels)
    }

    /// PyG's disjoint union of tiles (docs/model-and-training.md): node rows concatenated, every index of tile k offset
    /// by the node counts of tiles 0..<k, labels concatenated.
    public static func batch(_ tiles: [Tile]) -> Tile {
        precondition(!tiles.isEmpty, "batch of zero tiles")
        if tiles.count == 1 { return tiles[0] }
        let first = tiles[0]
        let tx: TranscriptInput
        switch first.tx {
        case .tokens:
            var all: [Int32] = []
            for t in tiles { if case .tokens(let v) = t.tx { all.append(contentsOf: v) } else { preconditionFailure("mixed token and embedding tiles in one batch") } }
            tx = .tokens(all)
        case .features(_, let dim):
            var all: [Float] = []
            for t in tiles {
                guard case .features(let v, let d) = t.tx, d == dim else { preconditionFailure("mixed transcript feature widths in one batch") }
                all.append(contentsOf: v)
            }
            tx = .features(all, dim: dim)
        }
        var bdX: [Float] = []
        var labelTx: [Int32] = [], labelBd: [Int32] = [], labels: [Float] = []
        var txOff: Int32 = 0, bdOff: Int32 = 0
        for t in tiles {
            precondition(t.bdDim == first.bdDim, "mixed boundary feature widths in one batch")
            bdX.append(contentsOf: t.bdX)
            labelTx.append(contentsOf: t.labelTx.map { $0 + txOff })
            labelBd.append(contentsOf: t.labelBd.map { $0 + bdOff })
            labels.append(contentsOf: t.labels)
            txOff += Int32(t.numTx)
            bdOff += Int32(t.numBd)
        }
        var out = Tile(sources: tiles.flatMap(\.sources), numTx: Int(txOff), numBd: Int(bdOff), tx: tx,
                       bdX: bdX, bdDim: first.bdDim,
                       neighbors: Relation.union(tiles.map(\.neighbors)),
                       belongs: Relation.union(tiles.map(\.belongs)),
                       labelTx: labelTx, labelBd: labelBd, labels: labels,
                       nonFiniteReplaced: tiles.reduce(0) { $0 + $1.nonFiniteReplaced })
        // Positions and ids travel when every part has them (positions: of one width); else none do.
        // A batch may hold one transcript id twice (overlapping tiles): ids are unique per tile only.
        if first.txPosDim > 0, tiles.allSatisfy({ $0.txPosDim == first.txPosDim }) {
            out.txPos = tiles.flatMap(\.txPos)
            out.txPosDim = first.txPosDim
        }
        if first.bdPosDim > 0, tiles.allSatisfy({ $0.bdPosDim == first.bdPosDim }) {
            out.bdPos = tiles.flatMap(\.bdPos)
            out.bdPosDim = first.bdPosDim
        }
        if tiles.allSatisfy({ $0.txIDs != nil }) { out.txIDs = tiles.flatMap { $0.txIDs! } }
        if tiles.allSatisfy({ $0.bdIDs != nil }) { out.bdIDs = tiles.flatMap { $0.bdIDs! } }
        return out
    }
}
