// A small generated tissue cut into overlapping tiles, in memory (ids, positions and graphs filled as
// segger's tiles carry them), and an in-memory TileSource over them.
import Foundation
import SafeTensors
import SeggerModel
@testable import SeggerSegment
import SeggerTiles

/// Deterministic generator (SplitMix64).
struct Rand {
    var s: UInt64
    init(_ seed: UInt64) { s = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1 }
    mutating func next() -> UInt64 {
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func normal() -> Double {
        let u = max(unit(), 1e-300), v = unit()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

/// Transcripts and nuclei over a square, cut into overlapping square tiles.
struct World {
    var txX: [Float] = [], txY: [Float] = [], txID: [Int64] = [], gene: [Int32] = []
    var bdX: [Float] = [], bdY: [Float] = [], bdID: [String] = []
    var tiles: [Tile] = []

    /// `side` µm square, `cells` nuclei with ~`perCell` transcripts each (Gaussian, σ 3 µm) plus 10 %
    /// background; tiles of `tile` µm with `margin` µm of overlap on each side; ids scattered over Int64.
    init(seed: UInt64, side: Double = 60, cells: Int = 30, perCell: Int = 40, tile: Double = 30, margin: Double = 4,
         tokens: Int = 20, gridCoordinates: Bool = false) {
        var rng = Rand(seed)
        var usedIDs = Set<Int64>()
        func newID() -> Int64 {
            while true {
                let id = Int64(bitPattern: rng.next() >> 2) + (rng.below(3) == 0 ? 0 : 281_474_976_710_656)
                if usedIDs.insert(id).inserted { return id }
            }
        }
        func coordinate(_ v: Double) -> Float {
            // Integer coordinates make many exactly equal distances (ties) when asked for.
            Float(gridCoordinates ? v.rounded() : v)
        }
        for c in 0..<cells {
            let cx = rng.unit() * side, cy = rng.unit() * side
            bdX.append(coordinate(cx)); bdY.append(coordinate(cy))
            bdID.append(String(format: "c%05d-%d", (c * 7919) % 100_000, 1 + c % 3))
            let type = rng.below(4)
            for _ in 0..<perCell {
                let x = min(max(cx + 3 * rng.normal(), 0), side - 1e-3), y = min(max(cy + 3 * rng.normal(), 0), side - 1e-3)
                txX.append(coordinate(x)); txY.append(coordinate(y)); txID.append(newID())
                gene.append(Int32(rng.below(3) == 0 ? rng.below(tokens) : (type * 5 + rng.below(5)) % tokens))
            }
        }
        for _ in 0..<(cells * perCell / 10) {
            txX.append(coordinate(rng.unit() * side)); txY.append(coordinate(rng.unit() * side)); txID.append(newID())
            gene.append(Int32(rng.below(tokens)))
        }
        var j = 0
        var y0 = 0.0
        while y0 < side {
            var x0 = 0.0
            while x0 < side {
                tiles.append(makeTile(index: j, x0: x0 - margin, y0: y0 - margin, x1: x0 + tile + margin, y1: y0 + tile + margin))
                j += 1
                x0 += tile
            }
            y0 += tile
        }
    }

    /// The transcripts and nuclei inside [x0, x1) × [y0, y1), with a kNN graph (k 3 within 5 µm, self
    /// first) and belongs edges to the nearest nucleus within 2.5 µm, as segger builds its tiles.
    func makeTile(index: Int, x0: Double, y0: Double, x1: Double, y1: Double) -> Tile {
        func inside(_ x: Float, _ y: Float) -> Bool { Double(x) >= x0 && Double(x) < x1 && Double(y) >= y0 && Double(y) < y1 }
        let tx = txX.indices.filter { inside(txX[$0], txY[$0]) }
        let bd = bdX.indices.filter { inside(bdX[$0], bdY[$0]) }
        var pos: [Float] = [], bpos: [Float] = []
        for i in tx { pos += [txX[i], txY[i]] }
        for b in bd { bpos += [bdX[b], bdY[b]] }
        let grid = pos.withUnsafeBufferPointer { PointGrid(points: $0, count: tx.count, stride: 2) }
        var nnSrc: [Int32] = [], nnDst: [Int32] = []
        var out: [Neighbor] = []
        for i in tx.indices {
            grid.nearest(x: Double(pos[2 * i]), y: Double(pos[2 * i + 1]), k: 3, radius: 5, into: &out)
            for nb in out { nnSrc.append(nb.index); nnDst.append(Int32(i)) }
        }
        var bSrc: [Int32] = [], bDst: [Int32] = []
        if !bd.isEmpty {
            let bgrid = bpos.withUnsafeBufferPointer { PointGrid(points: $0, count: bd.count, stride: 2) }
            for i in tx.indices {
                bgrid.nearest(x: Double(pos[2 * i]), y: Double(pos[2 * i + 1]), k: 1, radius: 2.5, into: &out)
                if let nb = out.first { bSrc.append(Int32(i)); bDst.append(nb.index) }
            }
        }
        var bdFeatures: [Float] = []
        for b in bd { bdFeatures += [Float(b % 7) / 7, 0.5, Float(b % 3) / 3, 1] }
        var t = Tile(sources: ["mem:tile_\(index)"], numTx: tx.count, numBd: bd.count, tx: .tokens(tx.map { gene[$0] }),
                     bdX: bdFeatures, bdDim: 4,
                     neighbors: Relation(numSrc: tx.count, numDst: tx.count, src: nnSrc, dst: nnDst),
                     belongs: Relation(numSrc: tx.count, numDst: bd.count, src: bSrc, dst: bDst),
                     labelTx: [], labelBd: [], labels: [])
        t.txPos = pos
        t.txPosDim = 2
        t.bdPos = bpos
        t.bdPosDim = 2
        t.txIDs = tx.map { txID[$0] }
        t.bdIDs = bd.map { bdID[$0] }
        return t
    }
}

/// Tiles from memory.
struct MemoryTiles: TileSource {
    let tiles: [Tile]
    var names: [String] { tiles.map { $0.sources[0] } }
    func cost(_ i: Int) throws -> Double { tiles[i].cost }
    func read(_ i: Int) throws -> Tile { tiles[i] }
}

/// A small model config for tests (token vocabulary 20, 4-wide boundary features).
func smallConfig(residual: Bool) -> ModelConfig {
    var c = ModelConfig()
    c.numTxTokens = 20
    c.initEmb = 4
    c.hiddenChannels = 8
    c.outChannels = 4
    c.heads = 2
    c.midLayers = 1
    c.bdFeatureDim = 4
    c.residual = residual
    c.l2Normalize = residual
    return c
}

/// Writes a segger-train style checkpoint (weights under `model.`, config in the metadata).
func writeCheckpoint(_ model: SeggerModel, to path: String) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    let json = String(decoding: try enc.encode(model.config), as: UTF8.self)
    try SafeTensorsFile.write(model.weightTensors(prefix: "model."), metadata: ["format": "segger-train-checkpoint", "model_config": json], to: path)
}
