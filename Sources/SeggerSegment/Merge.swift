// Across tiles: one row per transcript id (segger's `segment`: per id the best bound row, else the best
// unbound row), each id owned by one rank, rows moved to their owners with MPI_Alltoallv.
import Foundation
import SeggerDistributed

/// The merge rule: is `a` the row to keep rather than `b` (same transcript, two tiles)? Bound beats
/// unbound; scored beats unscored (a tile below --min_bd); then the higher score; two bound rows of equal
/// score keep the smaller cell id (UTF-8 order), whatever the order of the tiles; then the tile listed
/// first. `names` resolves the rows' `cell` indices.
@inline(__always)
public func betterRow(_ a: TranscriptRow, _ b: TranscriptRow, names: CellNames) -> Bool {
    if a.isBound != b.isBound { return a.isBound }
    if a.isScored != b.isScored { return a.isScored }
    if a.score != b.score { return a.score > b.score }
    if a.isBound && a.cell != b.cell { return CellKey(names[a.cell]) < CellKey(names[b.cell]) }
    return a.tile < b.tile
}

/// Sorts rows by id and keeps the best row of each id (``betterRow(_:_:names:)``).
public func keepBestRows(_ rows: inout [TranscriptRow], names: CellNames) {
    rows.sort { $0.id != $1.id ? $0.id < $1.id : betterRow($0, $1, names: names) }
    var w = 0
    for i in rows.indices where i == 0 || rows[i].id != rows[w - 1].id {
        rows[w] = rows[i]
        w += 1
    }
    rows.removeLast(rows.count - w)
}

/// Sends every row to the owner of its id (rows sorted by id, so each destination's rows are one slice)
/// with the names of the cells they refer to; returns the rows received, their `cell` indices now into
/// the returned names. `rows` is consumed (left empty). Collective.
func exchangeRows(_ rows: inout [TranscriptRow], names: CellNames, ranges: KeyRanges<Int64>,
                  comm: Communicator) -> (rows: [TranscriptRow], names: CellNames) {
    let size = comm.size
    var counts = [Int](repeating: 0, count: size)
    var send: [TranscriptRow] = []
    swap(&send, &rows)  // sent as they are, their cell indices rewritten in place
    var nameBytes = [[UInt8]](repeating: [], count: size)
    var remap = [Int32](repeating: -1, count: names.names.count)
    var start = 0
    while start < send.count {
        let dest = ranges.owner(send[start].id)
        var end = start
        while end < send.count && ranges.owner(send[end].id) == dest { end += 1 }
        // ids are sorted and ranges contiguous: the slice start..<end is all of dest's rows.
        counts[dest] = end - start
        var w = ByteWriter()
        var used: [Int32] = []
        for i in start..<end where send[i].cell >= 0 {
            let c = Int(send[i].cell)
            if remap[c] < 0 {
                remap[c] = Int32(used.count)
                used.append(Int32(c))
                w.string(names.names[c])
            }
            send[i].cell = remap[c]
        }
        for c in used { remap[Int(c)] = -1 }
        nameBytes[dest] = w.bytes
        start = end
    }
    let (got, gotCounts) = comm.alltoallv(send, sendCounts: counts)
    let gotNames = comm.alltoallv(nameBytes)
    var table = CellNames()
    var out = got
    var at = 0
    for r in 0..<size {
        var reader = ByteReader(gotNames[r])
        var local: [Int32] = []
        while !reader.atEnd { local.append(table.intern(reader.string())) }
        for i in at..<(at + gotCounts[r]) where out[i].cell >= 0 { out[i].cell = local[Int(out[i].cell)] }
        at += gotCounts[r]
    }
    return (out, table)
}

/// Index of `id` in `rows` (sorted by id), or nil.
@inline(__always)
func rowIndex(_ rows: UnsafeBufferPointer<TranscriptRow>, _ id: Int64) -> Int? {
    var lo = 0, hi = rows.count
    while lo < hi {
        let mid = (lo + hi) >> 1
        if rows[mid].id < id { lo = mid + 1 } else { hi = mid }
    }
    return lo < rows.count && rows[lo].id == id ? lo : nil
}
