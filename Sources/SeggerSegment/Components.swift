// --use_cc: the weakly connected components of all similar unbound pairs (segger's
// `connected_components(..., connection="weak")`), distributed. Each rank owns the transcript ids of its
// key range and receives every edge that touches one of them. Union–find joins the edges whose ends it
// both owns; a component that spans ranks is then joined by label propagation over the edges that cross
// ranks: each rank sends the label of the local part to the owner of the other end, which keeps the
// smaller, round after round until no label changes anywhere (an all-reduce of the changes decides).
//
// The label propagated is the smallest transcript id of the component (all of its transcripts, those
// bound to a nucleus elsewhere included: they link their neighbours). The component's unbound
// transcripts form the cell "cc-<that id>": the same for any rank count and every rerun.
import Foundation
import SeggerDistributed

/// What the components gave.
public struct ComponentStats: Sendable, Equatable {
    /// Distinct tx–tx pairs over all tiles.
    public var edges = 0
    /// Transcripts given a component cell.
    public var transcripts = 0
    /// Label-propagation rounds.
    public var rounds = 0
}

/// A label sent to the owner of transcript `id`.
struct LabelMessage {
    var id: Int64
    var label: Int64
}

/// Prefix of component cell names.
public let componentCellPrefix = "cc-"

/// Gives each unbound transcript on an edge the cell of its component. `rows` are this rank's rows
/// (sorted by id, one per id); `localEdges` the pairs its tiles found. Collective.
func assignComponents(rows: inout [TranscriptRow], names: inout CellNames, localEdges: [TranscriptEdge],
                      ranges: KeyRanges<Int64>, comm: Communicator) -> ComponentStats {
    let size = comm.size, me = comm.rank
    var stats = ComponentStats()
    var edges = localEdges
    sortUnique(&edges)
    var parts = [[TranscriptEdge]](repeating: [], count: size)
    for e in edges {
        let oa = ranges.owner(e.a), ob = ranges.owner(e.b)
        parts[oa].append(e)
        if ob != oa { parts[ob].append(e) }
    }
    var mine = comm.alltoallv(parts).flatMap { $0 }
    sortUnique(&mine)
    // Each distinct edge is held by one rank (both ends there) or two (one end each): count it once,
    // at the owner of its smaller end.
    stats.edges = mine.reduce(0) { $0 + (ranges.owner($1.a) == me ? 1 : 0) }

    let n = rows.count
    var uf = UnionFind(count: n)
    var onEdge = [Bool](repeating: false, count: n)
    var cross: [(local: Int32, remote: Int64, owner: Int32)] = []
    rows.withUnsafeBufferPointer { rb in
        for e in mine {
            let la = ranges.owner(e.a) == me ? rowIndex(rb, e.a) : nil
            let lb = ranges.owner(e.b) == me ? rowIndex(rb, e.b) : nil
            switch (la, lb) {
            case let (a?, b?):
                uf.union(a, b); onEdge[a] = true; onEdge[b] = true
            case let (a?, nil):
                precondition(ranges.owner(e.b) != me, "edge end \(e.b) owned here but has no row")
                cross.append((Int32(a), e.b, Int32(ranges.owner(e.b)))); onEdge[a] = true
            case let (nil, b?):
                precondition(ranges.owner(e.a) != me, "edge end \(e.a) owned here but has no row")
                cross.append((Int32(b), e.a, Int32(ranges.owner(e.a)))); onEdge[b] = true
            case (nil, nil):
                preconditionFailure("edge \(e.a)–\(e.b) received by a rank that owns neither end")
            }
        }
    }
    var label = [Int64](repeating: .max, count: n)
    for v in 0..<n where onEdge[v] {
        let r = uf.find(v)
        label[r] = min(label[r], rows[v].id)
    }
    var dirty = [Bool](repeating: false, count: n)
    for c in cross { dirty[uf.find(Int(c.local))] = true }
    while true {
        var out = [[LabelMessage]](repeating: [], count: size)
        for c in cross {
            let r = uf.find(Int(c.local))
            if dirty[r] { out[Int(c.owner)].append(LabelMessage(id: c.remote, label: label[r])) }
        }
        for c in cross { dirty[uf.find(Int(c.local))] = false }
        let got = comm.alltoallv(out)
        var changed = 0
        rows.withUnsafeBufferPointer { rb in
            for part in got {
                for m in part {
                    guard let v = rowIndex(rb, m.id) else { preconditionFailure("label for \(m.id), which has no row here") }
                    let r = uf.find(v)
                    if m.label < label[r] {
                        label[r] = m.label
                        dirty[r] = true
                        changed += 1
                    }
                }
            }
        }
        stats.rounds += 1
        if comm.allreduceSum([Double(changed)])[0] == 0 { break }
    }
    var nameOfRoot: [Int: Int32] = [:]
    for v in 0..<n where onEdge[v] && !rows[v].isBound {
        let r = uf.find(v)
        let l = label[r]
        precondition(l <= rows[v].id, "component label above a member's id")
        let cell: Int32
        if let c = nameOfRoot[r] { cell = c } else {
            cell = names.intern(componentCellPrefix + String(l))
            nameOfRoot[r] = cell
        }
        rows[v].cell = cell
        rows[v].flags |= RowFlags.component
        stats.transcripts += 1
    }
    return stats
}

/// Sorts edges by (a, b) and drops repeats.
func sortUnique(_ edges: inout [TranscriptEdge]) {
    edges.sort { $0.a != $1.a ? $0.a < $1.a : $0.b < $1.b }
    var w = 0
    for i in edges.indices where i == 0 || edges[i] != edges[w - 1] {
        edges[w] = edges[i]
        w += 1
    }
    edges.removeLast(edges.count - w)
}
