// The distributed components (distributedMinima) on graphs made to be hard for them — long chains whose
// ids alternate between ranks, stars, random edges, singletons — at 2, 3 and 4 ranks: this test bundle
// runs itself under mpirun, and every rank checks its answer against a serial union–find.
import Foundation
import SeggerDistributed
@testable import SeggerSegment
import TestSupport
import XCTest

final class DistributedGraphTests: XCTestCase {
    /// The graph of trial `t`: (vertex ids, edges), the same on every rank.
    static func graph(_ t: Int) -> ([Int64], [TranscriptEdge]) {
        var rng = Rand(UInt64(100 + t))
        var ids = Set<Int64>()
        while ids.count < 3000 { ids.insert(Int64(bitPattern: rng.next()) >> (t % 2 == 0 ? 1 : 40)) }
        let v = Array(ids).sorted()
        var order = v
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.below(i + 1)) }
        var edges: [TranscriptEdge] = []
        // Chains of 1 to 600 vertices in random id order (so consecutive vertices sit on any rank).
        var at = 0
        while at < 2400 {
            let len = min(1 + rng.below(600), 2400 - at)
            for k in at..<(at + len - 1) { edges.append(TranscriptEdge(order[k], order[k + 1])) }
            at += len
        }
        // A star and some random edges among the rest; the last vertices stay alone.
        for k in 2401..<2600 { edges.append(TranscriptEdge(order[2400], order[k])) }
        for _ in 0..<150 { edges.append(TranscriptEdge(order[2600 + rng.below(300)], order[2600 + rng.below(300)])) }
        return (v, edges.filter { $0.a != $0.b })
    }

    /// Runs under mpirun (SEGGER_MPI_GRAPH_TEST set by the launcher below); skipped otherwise.
    func testMinimaOnEveryRank() throws {
        guard ProcessInfo.processInfo.environment["SEGGER_MPI_GRAPH_TEST"] != nil else {
            throw XCTSkip("run by testMinimaUnderMPI under mpirun")
        }
        let comm = try Communicator.world()
        for t in 0..<4 {
            let (ids, edges) = Self.graph(t)
            // The serial answer.
            var uf = UnionFind(count: ids.count)
            let index = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
            for e in edges { uf.union(index[e.a]!, index[e.b]!) }
            // Ranks own id ranges cut from all ids; each rank holds every size-th edge.
            let ranges = KeyRanges<Int64>.choose(samples: [ids], weights: [1], parts: comm.size)
            var mine = edges.enumerated().filter { $0.offset % comm.size == comm.rank }.map(\.element)
            comm.exchangeRoundBytes = t == 3 ? 64 : 1 << 30  // many exchange rounds too
            let (got, minima, rounds) = distributedMinima(&mine, ranges: ranges, comm: comm)
            comm.exchangeRoundBytes = 1 << 30
            var onEdge = Set<Int64>()
            for e in edges { onEdge.insert(e.a); onEdge.insert(e.b) }
            XCTAssertEqual(got, onEdge.filter { ranges.owner($0) == comm.rank }.sorted(), "trial \(t) rank \(comm.rank)")
            for (id, m) in zip(got, minima) {
                XCTAssertEqual(m, ids[uf.find(index[id]!)], "trial \(t) rank \(comm.rank): id \(id)")
            }
            if comm.isRoot { print("PASS trial \(t): \(got.count) ids on rank 0, \(rounds) rounds") }
        }
    }

    func testMinimaUnderMPI() throws {
        if ProcessInfo.processInfo.environment["SEGGER_MPI_GRAPH_TEST"] != nil { throw XCTSkip("already under mpirun") }
        let mpirun = try Support.requireMPIRun()
        // The test bundle's runner: this process.
        let runner = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        for ranks in [2, 3, 4] {
            let r = try Support.run(mpirun, ["-np", "\(ranks)", "--oversubscribe", "--bind-to", "none", "-x", "SEGGER_MPI_GRAPH_TEST=1",
                                             runner, "SeggerSegmentTests.DistributedGraphTests/testMinimaOnEveryRank"])
            let text = r.output
            XCTAssertEqual(r.status, 0, "\(ranks) ranks:\n\(text.suffix(4000))")
            for t in 0..<4 { XCTAssertTrue(text.contains("PASS trial \(t)"), "\(ranks) ranks, trial \(t):\n\(text.suffix(4000))") }
            XCTAssertFalse(text.contains("error:"), "\(ranks) ranks:\n\(text.suffix(4000))")
        }
    }
}
