// --use_cc: the weakly connected components of all similar unbound pairs (segger's
// `connected_components(..., connection="weak")`), distributed in two levels.
//
//   1. Each rank joins the pairs its own tiles found (union–find over transcript ids): its local
//      components, each labelled by its smallest transcript id. Tiles are spatial and a pair lies within
//      one tile, so most of a component is found here, on one rank.
//   2. A transcript in tiles of several ranks (the overlap margins) belongs to a local component on each;
//      each rank sends (transcript, local label) to the transcript's owner, which links the labels it
//      receives for one transcript. Local components with the same label share that transcript, so a
//      label stands for all of them.
//   3. The components of that small label graph (distributedMinima: union–find per owner, then rounds of
//      label pushes across ranks with shortcuts) give every label its component's smallest id.
//   4. The owner of each transcript on a pair asks for its label's final value and, if the transcript is
//      still unbound after the merge, gives it the cell "cc-<that id>".
//
// The component's smallest transcript id counts all of its transcripts, those bound to a nucleus elsewhere
// included (they link their neighbours, as in segger), so the name is the same for any rank count.
import Foundation
import SeggerDistributed

/// What the components gave.
public struct ComponentStats: Sendable, Equatable {
    /// Transcripts given a component cell.
    public var transcripts = 0
    /// Rounds of the label graph's propagation.
    public var rounds = 0
}

/// An id and a label: for the owner of `id` (its local label, or a label pushed to it), or a question
/// about a label and its answer.
struct LabelMessage {
    var id: Int64
    var label: Int64
}

/// Prefix of component cell names.
public let componentCellPrefix = "cc-"

/// Gives each unbound transcript on a pair the cell of its component. `rows` are this rank's rows (sorted
/// by id, one per id); `localEdges` the pairs its tiles found (emptied here). Collective.
func assignComponents(rows: inout [TranscriptRow], names: inout CellNames, localEdges: inout [TranscriptEdge],
                      ranges: KeyRanges<Int64>, comm: Communicator) -> ComponentStats {
    let size = comm.size
    var stats = ComponentStats()

    // 1. Local components over this rank's pairs.
    sortUnique(&localEdges)
    var nodes: [Int64] = []
    nodes.reserveCapacity(2 * localEdges.count)
    for e in localEdges { nodes.append(e.a); nodes.append(e.b) }
    nodes.sort()
    nodes = uniqueSorted(nodes)
    var uf = UnionFind(count: nodes.count)
    nodes.withUnsafeBufferPointer { nb in
        for e in localEdges { uf.union(sortedIndex(nb, e.a)!, sortedIndex(nb, e.b)!) }
    }
    localEdges = []
    // The root of a set is its smallest index, and nodes are sorted: the root's id is the set's smallest id.

    // 2. (transcript, local label) to the transcript's owner.
    var out = [[LabelMessage]](repeating: [], count: size)
    for (i, id) in nodes.enumerated() { out[ranges.owner(id)].append(LabelMessage(id: id, label: nodes[uf.find(i)])) }
    nodes = []
    var got = comm.alltoallv(out).flatMap { $0 }
    out = []
    got.sort { $0.id != $1.id ? $0.id < $1.id : $0.label < $1.label }
    var rowLabel = [Int64](repeating: .max, count: rows.count)  // the first local label of each owned transcript
    var labelEdges: [TranscriptEdge] = []
    rows.withUnsafeBufferPointer { rb in
        var k = 0
        while k < got.count {
            var end = k
            while end < got.count && got[end].id == got[k].id { end += 1 }
            guard let v = rowIndex(rb, got[k].id) else { preconditionFailure("transcript \(got[k].id) on a pair has no row at its owner") }
            rowLabel[v] = got[k].label
            for j in (k + 1)..<end where got[j].label != got[j - 1].label { labelEdges.append(TranscriptEdge(got[k].label, got[j].label)) }
            k = end
        }
    }
    got = []

    // 3. Components of the label graph.
    let (labelIDs, labelMinima, rounds) = distributedMinima(&labelEdges, ranges: ranges, comm: comm)
    stats.rounds = rounds

    // 4. Each owned transcript's final label from its label's owner; the cells.
    var ask = [[LabelMessage]](repeating: [], count: size)
    for v in rows.indices where rowLabel[v] != .max {
        ask[ranges.owner(rowLabel[v])].append(LabelMessage(id: rowLabel[v], label: Int64(v)))
    }
    let questions = comm.alltoallv(ask)
    ask = []
    var answers = [[LabelMessage]](repeating: [], count: size)
    labelIDs.withUnsafeBufferPointer { lb in
        for (from, part) in questions.enumerated() {
            answers[from].reserveCapacity(part.count)
            for q in part {
                let final = sortedIndex(lb, q.id).map { labelMinima[$0] } ?? q.id
                answers[from].append(LabelMessage(id: final, label: q.label))
            }
        }
    }
    var nameOf: [Int64: Int32] = [:]
    for part in comm.alltoallv(answers) {
        for a in part {
            let v = Int(a.label)
            precondition(a.id <= rows[v].id, "component label above a member's id")
            guard !rows[v].isBound else { continue }
            let cell: Int32
            if let c = nameOf[a.id] { cell = c } else {
                cell = names.intern(componentCellPrefix + String(a.id))
                nameOf[a.id] = cell
            }
            rows[v].cell = cell
            rows[v].flags |= RowFlags.component
            stats.transcripts += 1
        }
    }
    return stats
}

/// Connected components of a graph on ids, each id owned by its key range: returns the ids on edges that
/// this rank owns (ascending) with the smallest id of each one's component, and the rounds taken.
/// `edges` is emptied. Collective.
///
/// Every edge goes to the owners of both ends; union–find joins the edges a rank owns both ends of; then,
/// in rounds, a local component whose label fell pushes it along its edges to other ranks (the receiver
/// keeps the smaller), and asks the owner of its new label for the label of that id's own local component
/// (a shortcut: also an id of the component, maybe smaller). Labels only fall and are always ids of the
/// component, so they settle on its smallest; the rounds end when no label fell anywhere.
func distributedMinima(_ edges: inout [TranscriptEdge], ranges: KeyRanges<Int64>,
                       comm: Communicator) -> (ids: [Int64], minima: [Int64], rounds: Int) {
    let size = comm.size, me = comm.rank
    sortUnique(&edges)
    var counts = [Int](repeating: 0, count: size)
    for e in edges {
        let oa = ranges.owner(e.a), ob = ranges.owner(e.b)
        counts[oa] += 1
        if ob != oa { counts[ob] += 1 }
    }
    var fill = [Int](repeating: 0, count: size)
    for r in 1..<max(size, 1) { fill[r] = fill[r - 1] + counts[r - 1] }
    var send = [TranscriptEdge](repeating: TranscriptEdge(0, 0), count: counts.reduce(0, +))
    for e in edges {
        let oa = ranges.owner(e.a), ob = ranges.owner(e.b)
        send[fill[oa]] = e; fill[oa] += 1
        if ob != oa { send[fill[ob]] = e; fill[ob] += 1 }
    }
    edges = []
    var mine = comm.alltoallv(send, sendCounts: counts).values
    send = []
    sortUnique(&mine)
    var ids: [Int64] = []
    for e in mine {
        if ranges.owner(e.a) == me { ids.append(e.a) }
        if ranges.owner(e.b) == me { ids.append(e.b) }
    }
    ids.sort()
    ids = uniqueSorted(ids)
    let n = ids.count
    var uf = UnionFind(count: n)
    var crossLocal: [Int32] = [], crossRemote: [Int64] = []
    ids.withUnsafeBufferPointer { ib in
        for e in mine {
            switch (sortedIndex(ib, e.a), sortedIndex(ib, e.b)) {
            case let (a?, b?): uf.union(a, b)
            case let (a?, nil): crossLocal.append(Int32(a)); crossRemote.append(e.b)
            case let (nil, b?): crossLocal.append(Int32(b)); crossRemote.append(e.a)
            case (nil, nil): preconditionFailure("edge \(e.a)–\(e.b) received by a rank that owns neither end")
            }
        }
    }
    mine = []
    // Roots are smallest indices and ids ascend: a root's id is its local component's smallest.
    var label = [Int64](repeating: .max, count: n)
    for v in 0..<n { let r = uf.find(v); label[r] = min(label[r], ids[v]) }
    // Edges to other ranks grouped by the root of their local end, repeats dropped.
    let crossRoot = crossLocal.map { Int32(uf.find(Int($0))) }
    let order = crossLocal.indices.sorted {
        crossRoot[$0] != crossRoot[$1] ? crossRoot[$0] < crossRoot[$1] : crossRemote[$0] < crossRemote[$1]
    }
    var edgeStart = [Int32](repeating: -1, count: n), edgeEnd = [Int32](repeating: -1, count: n)
    var remote: [Int64] = []
    remote.reserveCapacity(order.count)
    for (k, i) in order.enumerated() {
        if k > 0, crossRoot[order[k - 1]] == crossRoot[i], crossRemote[order[k - 1]] == crossRemote[i] { continue }
        let r = Int(crossRoot[i])
        if edgeStart[r] < 0 { edgeStart[r] = Int32(remote.count) }
        remote.append(crossRemote[i])
        edgeEnd[r] = Int32(remote.count)
    }
    var dirty: [Int32] = (0..<n).filter { edgeStart[$0] >= 0 }.map { Int32($0) }
    var marked = [Bool](repeating: false, count: n)
    var rounds = 0
    while true {
        var out = [[LabelMessage]](repeating: [], count: size)
        for r in dirty where edgeStart[Int(r)] >= 0 {
            let l = label[Int(r)]
            for k in Int(edgeStart[Int(r)])..<Int(edgeEnd[Int(r)]) {
                out[ranges.owner(remote[k])].append(LabelMessage(id: remote[k], label: l))
            }
        }
        var changed: [Int32] = []
        ids.withUnsafeBufferPointer { ib in
            for part in comm.alltoallv(out) {
                for m in part {
                    guard let v = sortedIndex(ib, m.id) else { preconditionFailure("label for \(m.id), not on an edge here") }
                    let r = uf.find(v)
                    if m.label < label[r] {
                        label[r] = m.label
                        if !marked[r] { marked[r] = true; changed.append(Int32(r)) }
                    }
                }
            }
        }
        var ask = [[LabelMessage]](repeating: [], count: size)
        for r in changed { ask[ranges.owner(label[Int(r)])].append(LabelMessage(id: label[Int(r)], label: Int64(r))) }
        let questions = comm.alltoallv(ask)
        var answers = [[LabelMessage]](repeating: [], count: size)
        ids.withUnsafeBufferPointer { ib in
            for (from, part) in questions.enumerated() {
                for q in part {
                    guard let v = sortedIndex(ib, q.id) else { preconditionFailure("label \(q.id) is not on an edge at its owner") }
                    answers[from].append(LabelMessage(id: label[uf.find(v)], label: q.label))
                }
            }
        }
        for part in comm.alltoallv(answers) {
            for a in part where a.id < label[Int(a.label)] { label[Int(a.label)] = a.id }
        }
        for r in changed { marked[Int(r)] = false }
        dirty = changed
        rounds += 1
        if comm.allreduceSum([Double(changed.count)])[0] == 0 { break }
    }
    let minima = (0..<n).map { label[uf.find($0)] }
    return (ids, minima, rounds)
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

/// A sorted array without repeats.
func uniqueSorted(_ v: [Int64]) -> [Int64] {
    var out: [Int64] = []
    out.reserveCapacity(v.count)
    for x in v where out.last != x { out.append(x) }
    return out
}

/// Index of `id` in ascending `ids`, or nil.
@inline(__always)
func sortedIndex(_ ids: UnsafeBufferPointer<Int64>, _ id: Int64) -> Int? {
    var lo = 0, hi = ids.count
    while lo < hi {
        let mid = (lo + hi) >> 1
        if ids[mid] < id { lo = mid + 1 } else { hi = mid }
    }
    return lo < ids.count && ids[lo] == id ? lo : nil
}
