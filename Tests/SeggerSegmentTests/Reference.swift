// A plain serial statement of segger's prediction (brute-force neighbours, a dictionary merge, breadth-
// first components) to check the distributed implementation against, and a reader of the CSV outputs.
import Foundation
import SeggerModel
@testable import SeggerSegment
import SeggerTiles

struct ExpectedRow: Equatable {
    var cell: String?
    var score: Float?
    var bound: Int
    var x: Float, y: Float
    var gene: Int32
}

struct ExpectedCell: Equatable {
    var count: Int
    var x: Float, y: Float
    var source: String
}

struct Expected {
    var rows: [Int64: ExpectedRow] = [:]
    var cells: [String: ExpectedCell] = [:]
}

func referencePrediction(tiles: [Tile], model: SeggerModel, p: SegmentParameters) -> Expected {
    struct Seen { var tile: Int; var scored: Bool; var bound: Bool; var score: Float; var cell: String?; var x: Float; var y: Float; var gene: Int32 }
    var seen: [Int64: [Seen]] = [:]
    var links: [Int64: Set<Int64>] = [:]
    let D = model.outputWidth
    for (ti, t) in tiles.enumerated() {
        let ids = t.txIDs!
        var genes = [Int32](repeating: -1, count: t.numTx)
        if case .tokens(let g) = t.tx { genes = g }
        let pd = t.txPosDim
        let xs = (0..<t.numTx).map { Double(t.txPos[pd * $0]) }, ys = (0..<t.numTx).map { Double(t.txPos[pd * $0 + 1]) }
        guard t.numBd >= p.minBd else {
            for i in 0..<t.numTx {
                seen[ids[i], default: []].append(Seen(tile: ti, scored: false, bound: false, score: 0, cell: nil, x: t.txPos[pd * i], y: t.txPos[pd * i + 1], gene: genes[i]))
            }
            continue
        }
        model.forward(t)
        let (ztx, zbd) = model.outputs()
        let bx = (0..<t.numBd).map { Double(t.bdPos[2 * $0]) }, by = (0..<t.numBd).map { Double(t.bdPos[2 * $0 + 1]) }
        func score(_ a: [Float], _ i: Int, _ b: [Float], _ j: Int) -> Float {
            a.withUnsafeBufferPointer { ab in b.withUnsafeBufferPointer { bb in pairScore(dot(ab.baseAddress! + i * D, bb.baseAddress! + j * D, D)) } }
        }
        var bound = [Bool](repeating: false, count: t.numTx)
        for i in 0..<t.numTx {
            let cands = bruteForceNearest(xs: bx, ys: by, x: xs[i], y: ys[i], k: p.kBd, radius: p.distBd)
            var best: Float = 0
            var arg = -1
            for j in cands.map({ Int($0.index) }).sorted() {  // argmax: first maximum by boundary index
                let s = score(ztx, i, zbd, j)
                if arg < 0 || s > best { best = s; arg = j }
            }
            bound[i] = arg >= 0 && best >= Float(p.scoreCut)
            seen[ids[i], default: []].append(Seen(tile: ti, scored: true, bound: bound[i], score: best,
                                                  cell: bound[i] ? t.bdIDs![arg] : nil, x: t.txPos[pd * i], y: t.txPos[pd * i + 1], gene: genes[i]))
        }
        if p.useCC {
            for i in 0..<t.numTx where !bound[i] {
                for nb in bruteForceNearest(xs: xs, ys: ys, x: xs[i], y: ys[i], k: p.kTx, radius: p.distTx) {
                    let j = Int(nb.index)
                    guard j != i, !bound[j] else { continue }
                    let s = score(ztx, i, ztx, j)
                    if s >= Float(p.scoreCut) && s > 0 {
                        links[ids[i], default: []].insert(ids[j])
                        links[ids[j], default: []].insert(ids[i])
                    }
                }
            }
        }
    }
    var e = Expected()
    var final: [Int64: Seen] = [:]
    for (id, list) in seen {
        // Bound rows first, then scored ones, by score, then the earlier tile.
        let best = list.sorted { a, b in
            if a.bound != b.bound { return a.bound }
            if a.scored != b.scored { return a.scored }
            if a.score != b.score { return a.score > b.score }
            if a.bound && a.cell != b.cell { return Array(a.cell!.utf8).lexicographicallyPrecedes(Array(b.cell!.utf8)) }
            return a.tile < b.tile
        }[0]
        final[id] = best
    }
    // Components by breadth-first search over every link.
    var component: [Int64: String] = [:]
    var visited = Set<Int64>()
    for start in links.keys.sorted() where !visited.contains(start) {
        var queue = [start], members: [Int64] = []
        visited.insert(start)
        while let v = queue.popLast() {
            members.append(v)
            for w in links[v] ?? [] where visited.insert(w).inserted { queue.append(w) }
        }
        // Named by the component's smallest id, its bound members included.
        let name = "cc-\(members.min()!)"
        for m in members where !final[m]!.bound { component[m] = name }
    }
    var members: [String: [(Int64, Float, Float, Bool)]] = [:]
    for (id, r) in final {
        let cell = r.cell ?? component[id]
        e.rows[id] = ExpectedRow(cell: cell, score: r.scored ? r.score : nil, bound: r.bound ? 1 : 0, x: r.x, y: r.y, gene: r.gene)
        if let cell { members[cell, default: []].append((id, r.x, r.y, r.cell == nil)) }
    }
    for (name, list) in members {
        let sorted = list.sorted { $0.0 < $1.0 }
        var sx = 0.0, sy = 0.0
        for m in sorted { sx += Double(m.1); sy += Double(m.2) }
        e.cells[name] = ExpectedCell(count: list.count, x: Float(sx / Double(list.count)), y: Float(sy / Double(list.count)),
                                     source: list[0].3 ? "component" : "nucleus")
    }
    return e
}

/// The rows of a CSV file written by CSVTableWriter (no quoted fields in these tests), keyed by header.
func readCSV(_ path: String) throws -> [[String: String]] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    if lines.last == "" { lines.removeLast() }
    let header = lines[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    return lines.dropFirst().map { line in
        let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        var row: [String: String] = [:]
        for (k, v) in zip(header, f) { row[k] = v }
        return row
    }
}

/// The outputs of a run read back in the shape of ``Expected``, and the transcript ids in file order.
func readOutputs(_ dir: String) throws -> (Expected, [Int64]) {
    var e = Expected()
    var order: [Int64] = []
    for r in try readCSV(dir + "/segger_transcripts.csv") {
        let id = Int64(r["transcript_id"]!)!
        order.append(id)
        e.rows[id] = ExpectedRow(cell: r["segger_cell_id"]!.isEmpty ? nil : r["segger_cell_id"]!,
                                 score: r["score"]!.isEmpty ? nil : Float(r["score"]!)!, bound: Int(r["bound"]!)!,
                                 x: Float(r["x"]!)!, y: Float(r["y"]!)!, gene: Int32(r["gene"] ?? "-1")!)
    }
    for r in try readCSV(dir + "/segger_cells.csv") {
        e.cells[r["segger_cell_id"]!] = ExpectedCell(count: Int(r["transcript_count"]!)!, x: Float(r["centroid_x"]!)!,
                                              y: Float(r["centroid_y"]!)!, source: r["source"]!)
    }
    return (e, order)
}
