// The cells table: one row per cell that holds transcripts, with their count and centroid. Each cell
// name is owned by one rank (key ranges over the names); the transcripts' owners send it the members,
// and it sums their positions in transcript-id order, so the centroid is the same bits for any rank count.
import Foundation
import SeggerDistributed

/// One output cell.
public struct CellRow: Sendable, Equatable {
    public var name: String
    public var transcripts: Int
    public var centroidX: Float
    public var centroidY: Float
    /// A component cell (--use_cc) rather than a nucleus.
    public var isComponent: Bool
}

/// This rank's share of the cells (sorted by name), or the names that are both a nucleus and a
/// component (an error the caller reports). Collective.
func aggregateCells(rows: [TranscriptRow], names: CellNames, comm: Communicator) -> (cells: [CellRow], clashes: [String]) {
    // Members of each local cell index, grouped (counting sort).
    let nNames = names.names.count
    var start = [Int](repeating: 0, count: nNames + 1)
    var component = [Bool](repeating: false, count: nNames)
    for r in rows where r.cell >= 0 {
        start[Int(r.cell) + 1] += 1
        if r.isComponent { component[Int(r.cell)] = true }
    }
    for c in 0..<nNames { start[c + 1] += start[c] }
    var fill = Array(start.dropLast())
    var members = [Int32](repeating: 0, count: start[nNames])
    for (i, r) in rows.enumerated() where r.cell >= 0 {
        members[fill[Int(r.cell)]] = Int32(i)
        fill[Int(r.cell)] += 1
    }
    let used = (0..<nNames).filter { start[$0 + 1] > start[$0] }
        .sorted { CellKey(names.names[$0]) < CellKey(names.names[$1]) }
    let ranges = cellRanges(sortedNames: used.map { CellKey(names.names[$0]) }, comm: comm)
    var out = [ByteWriter](repeating: ByteWriter(), count: comm.size)
    for c in used {
        let dest = ranges.owner(CellKey(names.names[c]))
        out[dest].string(names.names[c])
        out[dest].value(UInt8(component[c] ? 1 : 0))
        out[dest].value(UInt32(start[c + 1] - start[c]))
        for m in start[c]..<start[c + 1] {
            let r = rows[Int(members[m])]
            out[dest].value(r.id)
            out[dest].value(r.x)
            out[dest].value(r.y)
        }
    }
    let got = comm.alltoallv(out.map(\.bytes))
    struct Member { var id: Int64; var x: Float; var y: Float }
    var cells: [String: (component: Bool, clash: Bool, members: [Member])] = [:]
    for bytes in got {
        var reader = ByteReader(bytes)
        while !reader.atEnd {
            let name = reader.string()
            let isComponent = reader.value(UInt8.self) != 0
            let count = Int(reader.value(UInt32.self))
            var list: [Member] = []
            list.reserveCapacity(count)
            for _ in 0..<count {
                let id = reader.value(Int64.self), x = reader.value(Float.self), y = reader.value(Float.self)
                list.append(Member(id: id, x: x, y: y))
            }
            if var e = cells[name] {
                if e.component != isComponent { e.clash = true }
                e.members += list
                cells[name] = e
            } else {
                cells[name] = (isComponent, false, list)
            }
        }
    }
    var result: [CellRow] = []
    var clashes: [String] = []
    for (name, var e) in cells {
        if e.clash { clashes.append(name) }
        e.members.sort { $0.id < $1.id }
        var sx = 0.0, sy = 0.0
        for m in e.members { sx += Double(m.x); sy += Double(m.y) }
        let n = Double(e.members.count)
        result.append(CellRow(name: name, transcripts: e.members.count, centroidX: Float(sx / n),
                              centroidY: Float(sy / n), isComponent: e.component))
    }
    result.sort { CellKey($0.name) < CellKey($1.name) }
    return (result, clashes.sorted { CellKey($0) < CellKey($1) })
}
