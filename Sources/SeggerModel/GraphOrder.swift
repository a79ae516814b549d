// The current batch's relations in reusable index buffers, and the order in which the model numbers
// transcripts: breadth-first over the kNN graph, so that the rows an edge kernel reads for a destination
// lie close to the destination's own row.
import SeggerTiles

/// One relation of the current batch, copied into reusable index buffers.
final class RelationBuffers {
    let dstStart = IndexScratch(), srcByDst = IndexScratch(), edgeByDst = IndexScratch()
    var numSrc = 0, numDst = 0, count = 0
    /// Scratch of `markFirstUse`.
    let seenScratch = IndexScratch()
    /// `firstUse[k]` is 1 at the first grouped edge of each source (see `gatv2Backward`); `unusedSources`
    /// lists the numUnused sources without an edge (their source-gradient rows must be zeroed).
    let firstUse = IndexScratch(), unusedSources = IndexScratch()
    var numUnused = 0
    /// Fills `firstUse` and `unusedSources` for grouped sources `sources` [count] numbered 0..<n.
    func markFirstUse(_ sources: UnsafePointer<Int32>, n: Int) {
        let seen = seenScratch.reserve(n), flags = firstUse.reserve(count), unused = unusedSources.reserve(n)
        seen.update(repeating: 0, count: n)
        for k in 0..<count {
            let j = Int(sources[k])
            flags[k] = seen[j] == 0 ? 1 : 0
            seen[j] = 1
        }
        numUnused = 0
        for j in 0..<n where seen[j] == 0 { unused[numUnused] = Int32(j); numUnused += 1 }
    }
    /// Copies `r` in, renumbering its nodes: source j becomes `srcRank[j]`, and destination i of the
    /// copy is destination `dstOrder[i]` of `r` (nil: unchanged). Each destination keeps its edges in
    /// their grouped order, so softmax and aggregation see the same sequence per destination.
    func load(_ r: Relation, srcRank: UnsafePointer<Int32>? = nil, dstOrder: UnsafePointer<Int32>? = nil) {
        numSrc = r.numSrc; numDst = r.numDst; count = r.count
        let ds = dstStart.reserve(numDst + 1), sb = srcByDst.reserve(count), eb = edgeByDst.reserve(count)
        r.dstStart.withUnsafeBufferPointer { start in
            r.srcByDst.withUnsafeBufferPointer { src in
                r.edgeByDst.withUnsafeBufferPointer { edge in
                    var k = 0
                    ds[0] = 0
                    for i in 0..<numDst {
                        let o = dstOrder.map { Int($0[i]) } ?? i
                        for q in Int(start[o])..<Int(start[o + 1]) {
                            sb[k] = srcRank.map { $0[Int(src[q])] } ?? src[q]
                            eb[k] = edge[q]
                            k += 1
                        }
                        ds[i + 1] = Int32(k)
                    }
                }
            }
        }
    }
}

/// A locality order of the transcripts: breadth-first over the neighbors graph (a node's edges are its
/// incoming grouped edges), each connected part started from a pseudo-peripheral node (the last node
/// reached by a probe search from its lowest-numbered node), so that the rows an edge kernel reads for
/// a destination lie close to the destination's own row.
/// Fills `order` [n] (new → old) and `rank` [n] (old → new); `mark` and `queue` [n] are scratch.
/// Deterministic: depends only on the graph.
func breadthFirstOrder(n: Int, dstStart: UnsafePointer<Int32>, srcByDst: UnsafePointer<Int32>,
                       order: UnsafeMutablePointer<Int32>, rank: UnsafeMutablePointer<Int32>,
                       mark: UnsafeMutablePointer<Int32>, queue: UnsafeMutablePointer<Int32>) {
    rank.update(repeating: -1, count: n)
    mark.update(repeating: -1, count: n)
    var placed = 0
    var stamp: Int32 = 0
    for s in 0..<n where rank[s] < 0 {
        // Probe: the last node a search from s reaches among the unplaced nodes.
        var head = 0, tail = 1
        queue[0] = Int32(s); mark[s] = stamp
        while head < tail {
            let v = Int(queue[head]); head += 1
            for k in Int(dstStart[v])..<Int(dstStart[v + 1]) {
                let u = Int(srcByDst[k])
                if rank[u] < 0 && mark[u] != stamp { mark[u] = stamp; queue[tail] = Int32(u); tail += 1 }
            }
        }
        stamp += 1
        // Placement: breadth-first from that node, then from s if the (directed) search did not reach it.
        for t in [Int(queue[tail - 1]), s] where rank[t] < 0 {
            var front = placed
            rank[t] = Int32(placed); order[placed] = Int32(t); placed += 1
            while front < placed {
                let v = Int(order[front]); front += 1
                for k in Int(dstStart[v])..<Int(dstStart[v + 1]) {
                    let u = Int(srcByDst[k])
                    if rank[u] < 0 { rank[u] = Int32(placed); order[placed] = Int32(u); placed += 1 }
                }
            }
        }
    }
}

/// Moves the nodes with `flag[old] != 0` to the front of `order` [n] (new → old), each part keeping
/// its order, and refills `rank` (old → new); `moved` [n] is scratch. Returns the size of the front part.
func moveFlaggedFirst(n: Int, flag: UnsafePointer<Int32>, order: UnsafeMutablePointer<Int32>,
                      rank: UnsafeMutablePointer<Int32>, moved: UnsafeMutablePointer<Int32>) -> Int {
    var front = 0, back = 0
    for p in 0..<n where flag[Int(order[p])] != 0 { front += 1 }
    for p in 0..<n {
        let v = order[p]
        if flag[Int(v)] != 0 { moved[back] = v; back += 1 } else { moved[front + p - back] = v }
    }
    order.update(from: moved, count: n)
    for p in 0..<n { rank[Int(order[p])] = Int32(p) }
    return front
}
