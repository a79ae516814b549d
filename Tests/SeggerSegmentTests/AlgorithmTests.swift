// The pieces of the segmentation algorithm on their own: neighbours within a radius, union–find, the
// merge rule, scores, splitters.
import XCTest
@testable import SeggerSegment

final class PointGridTests: XCTestCase {
    func check(xs: [Double], ys: [Double], queries: [(Double, Double)], ks: [Int], radii: [Double],
               file: StaticString = #filePath, line: UInt = #line) {
        let grid = PointGrid(xs: xs, ys: ys)
        var out: [Neighbor] = []
        var compared = 0
        for (qx, qy) in queries {
            for k in ks {
                for r in radii {
                    grid.nearest(x: qx, y: qy, k: k, radius: r, into: &out)
                    let want = bruteForceNearest(xs: xs, ys: ys, x: qx, y: qy, k: k, radius: r)
                    if out != want {
                        XCTFail("query (\(qx), \(qy)) k \(k) r \(r): got \(out.map(\.index)) want \(want.map(\.index))", file: file, line: line)
                        return
                    }
                    compared += 1
                }
            }
        }
        XCTAssertGreaterThan(compared, 0, file: file, line: line)
    }

    func testRandomPointsMatchBruteForce() {
        var rng = Rand(7)
        let n = 600
        let xs = (0..<n).map { _ in rng.unit() * 120 - 10 }, ys = (0..<n).map { _ in rng.unit() * 90 + 1000 }
        var queries = (0..<200).map { _ in (rng.unit() * 140 - 20, rng.unit() * 110 + 990) }
        queries += [(xs[3], ys[3]), (-1e6, 1e6), (55, 1e9), (1e300, -1e300)]  // a point itself, far outside
        check(xs: xs, ys: ys, queries: queries, ks: [1, 3, 5, 40, 1000], radii: [0.25, 3, 10, 200, 1e12])
    }

    /// Integer coordinates: many points at exactly the same distance, and points exactly at the radius.
    func testTiesAndPointsOnTheRadius() {
        var xs: [Double] = [], ys: [Double] = []
        for y in 0..<12 { for x in 0..<12 { xs.append(Double(x)); ys.append(Double(y)) } }
        xs += [5, 5, 5]; ys += [5, 5, 5]  // duplicates of (5, 5)
        var queries: [(Double, Double)] = []
        for y in stride(from: -1.0, through: 12, by: 0.5) { for x in stride(from: -1.0, through: 12, by: 0.5) { queries.append((x, y)) } }
        check(xs: xs, ys: ys, queries: queries, ks: [1, 2, 4, 5, 9, 13, 200], radii: [1, 1.5, 2, 3, 5, 25])
        // (3, 4) lies exactly 5 from (0, 0): not within 5; the four points at distance 1 come by index.
        let grid = PointGrid(xs: [0, 3, 3, 1, 0, -1, 0], ys: [0, 4, 3.99, 0, 1, 0, -1])
        var out: [Neighbor] = []
        grid.nearest(x: 0, y: 0, k: 10, radius: 5, into: &out)
        XCTAssertEqual(out.map(\.index), [0, 3, 4, 5, 6, 2])
        grid.nearest(x: 0, y: 0, k: 3, radius: 5, into: &out)
        XCTAssertEqual(out.map(\.index), [0, 3, 4])
        grid.nearest(x: 0, y: 0, k: 10, radius: 1, into: &out)
        XCTAssertEqual(out.map(\.index), [0], "points at exactly the radius are not within it")
    }

    func testDegenerateSets() {
        check(xs: [], ys: [], queries: [(0, 0)], ks: [1, 3], radii: [1, 1e9])
        check(xs: [2], ys: [3], queries: [(2, 3), (2, 4), (100, 3)], ks: [1, 3], radii: [0.5, 1, 1.0000001, 1e9])
        check(xs: Array(repeating: 7, count: 50), ys: Array(repeating: -7, count: 50),
              queries: [(7, -7), (8, -7)], ks: [1, 5, 60], radii: [0.1, 1, 1.5])
        let line = (0..<400).map { Double($0) * 0.37 }
        check(xs: line, ys: Array(repeating: 0, count: 400), queries: [(0, 0), (50, 0.1), (148, -2), (-5, 0)],
              ks: [1, 4, 17], radii: [0.3, 0.37, 2, 1e6])
    }
}

final class UnionFindTests: XCTestCase {
    func testMatchesNaiveComponents() {
        var rng = Rand(3)
        for trial in 0..<20 {
            let n = 1 + rng.below(200)
            var uf = UnionFind(count: n)
            var label = Array(0..<n)  // naive: relabel the whole set on each union
            for _ in 0..<(trial * 10) {
                let a = rng.below(n), b = rng.below(n)
                uf.union(a, b)
                let (la, lb) = (label[a], label[b])
                if la != lb { for i in 0..<n where label[i] == lb { label[i] = la } }
            }
            for i in 0..<n {
                for j in 0..<n where (label[i] == label[j]) != (uf.find(i) == uf.find(j)) {
                    XCTFail("trial \(trial): \(i) and \(j)")
                    return
                }
                // The root is the smallest element of the set.
                XCTAssertEqual(uf.find(i), (0..<n).first { label[$0] == label[i] }!)
            }
        }
    }
}

final class MergeRuleTests: XCTestCase {
    func row(_ id: Int64, score: Float, tile: Int32, bound: Bool = false, scored: Bool = true, cell: Int32 = -1) -> TranscriptRow {
        TranscriptRow(id: id, score: score, x: 0, y: 0, z: 0, gene: 0, tile: tile, cell: cell,
                      flags: (scored ? RowFlags.scored : 0) | (bound ? RowFlags.bound : 0))
    }

    func testBetterRow() {
        var names = CellNames()
        let b = names.intern("b-1"), a = names.intern("a-1")
        func better(_ x: TranscriptRow, _ y: TranscriptRow) -> Bool { betterRow(x, y, names: names) }
        XCTAssertTrue(better(row(1, score: 0.5, tile: 3, bound: true, cell: b), row(1, score: 0.9, tile: 0)),
                      "a bound row beats a higher unbound score")
        XCTAssertTrue(better(row(1, score: 0.8, tile: 3, bound: true, cell: b), row(1, score: 0.6, tile: 0, bound: true, cell: a)))
        XCTAssertTrue(better(row(1, score: 0.6, tile: 2, bound: true, cell: a), row(1, score: 0.6, tile: 0, bound: true, cell: b)),
                      "equal bound scores: the smaller cell id, whatever the tile order")
        XCTAssertTrue(better(row(1, score: 0.6, tile: 0, bound: true, cell: a), row(1, score: 0.6, tile: 2, bound: true, cell: a)),
                      "the same cell: the tile listed first")
        XCTAssertTrue(better(row(1, score: 0.3, tile: 0), row(1, score: 0.3, tile: 2)), "equal unbound scores: the tile listed first")
        XCTAssertTrue(better(row(1, score: 0, tile: 5), row(1, score: 0, tile: 0, scored: false)),
                      "a scored row beats one from a tile below --min_bd")
        XCTAssertFalse(better(row(1, score: 0.3, tile: 1), row(1, score: 0.3, tile: 1)))
    }

    func testKeepBestRows() {
        var names = CellNames()
        for c in ["c0", "c1", "c2", "c3", "c4", "c5"] { _ = names.intern(c) }
        var rows = [row(9, score: 0.2, tile: 1), row(4, score: 0.7, tile: 0, bound: true, cell: 2), row(9, score: 0.4, tile: 0),
                    row(4, score: 0.9, tile: 2, bound: true, cell: 5), row(4, score: 0.95, tile: 1), row(-3, score: 0, tile: 0, scored: false),
                    row(9, score: 0.4, tile: 2)]
        keepBestRows(&rows, names: names)
        XCTAssertEqual(rows.map(\.id), [-3, 4, 9])
        XCTAssertEqual(rows[1].cell, 5)
        XCTAssertEqual(rows[2].tile, 0)
        XCTAssertEqual(rows[2].score, 0.4)
    }

    func testScores() {
        XCTAssertEqual(pairScore(0), 0, "an exact zero dot product scores 0 (segger sets it to -inf)")
        XCTAssertEqual(pairScore(-0.0), 0)
        XCTAssertEqual(pairScore(1e-30), 0.5)
        XCTAssertEqual(Double(pairScore(2)), 1 / (1 + exp(-2.0)), accuracy: 1e-7)
        XCTAssertEqual(pairScore(-200), 0)
        XCTAssertEqual(pairScore(200), 1)
        var rng = Rand(11)
        for d in [1, 3, 8, 13, 64] {
            let a = (0..<d).map { _ in Float(rng.normal()) }, b = (0..<d).map { _ in Float(rng.normal()) }
            let want = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            XCTAssertEqual(Double(dot(a, b, d)), want, accuracy: 1e-5)
        }
    }

    func testKeyRanges() {
        // Samples from three ranks with their weights: splitters cut equal weights, owners are monotone.
        let r = KeyRanges<Int64>.choose(samples: [[1, 5, 9], [2, 3], [100, 200, 300, 400]], weights: [10, 10, 10], parts: 3)
        XCTAssertEqual(r.splitters.count, 2)
        var last = 0
        for k in Int64(-5)...500 {
            let o = r.owner(k)
            XCTAssertGreaterThanOrEqual(o, last)
            last = o
        }
        XCTAssertEqual(r.owner(-5), 0)
        XCTAssertEqual(r.owner(500), 2)
        XCTAssertEqual(KeyRanges<Int64>.choose(samples: [[], []], weights: [0, 0], parts: 2).owner(42), 0)
        XCTAssertTrue(CellKey("B") < CellKey("a"))
        XCTAssertTrue(CellKey("z") < CellKey("é"), "names order by UTF-8 bytes")
    }
}
