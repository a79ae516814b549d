// --use_cc: the weakly connected components of all similar unbound pairs (segger's
// `connected_components(..., connection="weak")`), distributed. Each rank owns the transcript ids of its
// key range and receives every edge that touches one of them. Union–find joins the edges whose ends it
// both owns; each local component then carries a label, the smallest transcript id it has seen of its
// component. Components that span ranks are joined in rounds of two steps, each an MPI_Alltoallv:
//   push     a local component whose label fell sends it along its edges to other ranks; the receiving
//            end keeps the smaller label;
//   shortcut a local component whose label fell asks the owner of that label's transcript for the label
//            of the transcript's own local component (also in the component, and maybe smaller yet).
// Labels only fall and are always ids of the component, so they settle on its smallest id; the
// shortcut lets a small label jump along chains instead of one rank boundary per round. Work per round
// follows the labels that changed. The rounds end when no label changed anywhere (an all-reduce).
//
// The label is the component's smallest transcript id (all of its transcripts, those bound to a nucleus
// elsewhere included: they link their neighbours). The component's unbound transcripts form the cell
// "cc-<that id>": the same for any rank count and every rerun.
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

/// A label for the local component of transcript `id` (push), or a question about it (shortcut: `label`
/// carries the asking component's token) and its answer.
struct LabelMessage {
    var id: Int64
    var label: Int64
}

/// Prefix of component cell names.
public let componentCellPrefix = "cc-"

/// Gives each unbound transcript on an edge the cell of its component. `rows` are this rank's rows
/// (sorted by id, one per id); `localEdges` the pairs its tiles found (emptied here). Collective.
func assignComponents(rows: inout [TranscriptRow], names: inout CellNames, localEdges: inout [TranscriptEdge],
                      ranges: KeyRanges<Int64>, comm: Communicator) -> ComponentStats {
    let size = comm.size, me = comm.rank
    var stats = ComponentStats()
    sortUnique(&localEdges)
    var counts = [Int](repeating: 0, count: size)
    for e in localEdges {
        let oa = ranges.owner(e.a), ob = ranges.owner(e.b)
        counts[oa] += 1
        if ob != oa { counts[ob] += 1 }
    }
    var start = [Int](repeating: 0, count: size)
    for r in 1..<max(size, 1) { start[r] = start[r - 1] + counts[r - 1] }
    var send = [TranscriptEdge](repeating: TranscriptEdge(0, 0), count: counts.reduce(0, +))
    var fill = start
    for e in localEdges {
        let oa = ranges.owner(e.a), ob = ranges.owner(e.b)
        send[fill[oa]] = e; fill[oa] += 1
        if ob != oa { send[fill[ob]] = e; fill[ob] += 1 }
    }
    localEdges = []
    var mine = comm.alltoallv(send, sendCounts: counts).values
    send = []
    sortUnique(&mine)
    // Each distinct edge is held by one rank (both ends there) or two (one end each): count it once,
    // at the owner of its smaller end.
    stats.edges = mine.reduce(0) { $0 + (ranges.owner($1.a) == me ? 1 : 0) }

    // Local components; the edges to other ranks' transcripts, by local end.
    let n = rows.count
    var uf = UnionFind(count: n)
    var onEdge = [Bool](repeating: false, count: n)
    var crossLocal: [Int32] = [], crossRemote: [Int64] = []
    rows.withUnsafeBufferPointer { rb in
        func local(_ id: Int64) -> Int? {
            guard ranges.owner(id) == me else { return nil }
            guard let v = rowIndex(rb, id) else { preconditionFailure("edge end \(id) owned here but has no row") }
            return v
        }
        for e in mine {
            switch (local(e.a), local(e.b)) {
            case let (a?, b?):
                uf.union(a, b); onEdge[a] = true; onEdge[b] = true
            case let (a?, nil):
                crossLocal.append(Int32(a)); crossRemote.append(e.b); onEdge[a] = true
            case let (nil, b?):
                crossLocal.append(Int32(b)); crossRemote.append(e.a); onEdge[b] = true
            case (nil, nil):
                preconditionFailure("edge \(e.a)–\(e.b) received by a rank that owns neither end")
            }
        }
    }
    mine = []
    var label = [Int64](repeating: .max, count: n)
    for v in 0..<n where onEdge[v] {
        let r = uf.find(v)
        label[r] = min(label[r], rows[v].id)
    }
    // Cross edges grouped by the root of their local end (CSR over roots), repeats dropped.
    var order = Array(crossLocal.indices)
    var crossRoot = crossLocal.map { Int32(uf.find(Int($0))) }
    order.sort { crossRoot[$0] != crossRoot[$1] ? crossRoot[$0] < crossRoot[$1] : crossRemote[$0] < crossRemote[$1] }
    var edgeStart = [Int32](repeating: -1, count: n)  // first cross edge of a root, -1 when none
    var edgeEnd = [Int32](repeating: -1, count: n)
    var remote: [Int64] = []
    remote.reserveCapacity(order.count)
    for (k, i) in order.enumerated() {
        let r = Int(crossRoot[i])
        if k > 0, crossRoot[order[k - 1]] == crossRoot[i], crossRemote[order[k - 1]] == crossRemote[i] { continue }
        if edgeStart[r] < 0 { edgeStart[r] = Int32(remote.count) }
        remote.append(crossRemote[i])
        edgeEnd[r] = Int32(remote.count)
    }
    crossLocal = []; crossRemote = []; crossRoot = []; order = []
    var dirty: [Int32] = (0..<n).filter { edgeStart[$0] >= 0 }.map { Int32($0) }
    var marked = [Bool](repeating: false, count: n)

    while true {
        // Push: the labels that fell, along the edges to other ranks.
        var out = [[LabelMessage]](repeating: [], count: size)
        for r in dirty where edgeStart[Int(r)] >= 0 {
            let l = label[Int(r)]
            for k in Int(edgeStart[Int(r)])..<Int(edgeEnd[Int(r)]) {
                out[ranges.owner(remote[k])].append(LabelMessage(id: remote[k], label: l))
            }
        }
        var changed: [Int32] = []
        rows.withUnsafeBufferPointer { rb in
            for part in comm.alltoallv(out) {
                for m in part {
                    guard let v = rowIndex(rb, m.id) else { preconditionFailure("label for \(m.id), which has no row here") }
                    let r = uf.find(v)
                    if m.label < label[r] {
                        label[r] = m.label
                        if !marked[r] { marked[r] = true; changed.append(Int32(r)) }
                    }
                }
            }
        }
        // Shortcut: ask the owner of each new label for the label of that transcript's component.
        var ask = [[LabelMessage]](repeating: [], count: size)
        for r in changed { ask[ranges.owner(label[Int(r)])].append(LabelMessage(id: label[Int(r)], label: Int64(r))) }
        let questions = comm.alltoallv(ask)
        var answers = [[LabelMessage]](repeating: [], count: size)
        rows.withUnsafeBufferPointer { rb in
            for (from, part) in questions.enumerated() {
                for q in part {
                    guard let v = rowIndex(rb, q.id) else { preconditionFailure("label \(q.id) has no row at its owner") }
                    answers[from].append(LabelMessage(id: label[uf.find(v)], label: q.label))
                }
            }
        }
        for part in comm.alltoallv(answers) {
            for a in part where a.id < label[Int(a.label)] { label[Int(a.label)] = a.id }
        }
        for r in changed { marked[Int(r)] = false }
        dirty = changed
        stats.rounds += 1
        if comm.allreduceSum([Double(changed.count)])[0] == 0 { break }
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
