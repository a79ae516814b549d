import Foundation
import XCTest
@testable import SafeTensors
@testable import SeggerTiles
import TestSupport

final class SynthTests: XCTestCase {
    func testSameSeedSameBytesDifferentSeedDifferentBytes() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        var c = SynthConfig(tiles: 2, txPerTile: 800, seed: 7)
        try Synth.writeDirectory(config: c, to: dir + "/a")
        try Synth.writeDirectory(config: c, to: dir + "/b")
        c.seed = 8
        try Synth.writeDirectory(config: c, to: dir + "/c")
        for name in [Synth.fileName(0), Synth.fileName(1)] {
            let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/a/" + name))
            let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/b/" + name))
            let d = try Data(contentsOf: URL(fileURLWithPath: dir + "/c/" + name))
            XCTAssertEqual(a, b, "same seed must give identical bytes")
            XCTAssertNotEqual(a, d, "different seeds must give different tiles")
        }
        let t0 = try Data(contentsOf: URL(fileURLWithPath: dir + "/a/" + Synth.fileName(0)))
        let t1 = try Data(contentsOf: URL(fileURLWithPath: dir + "/a/" + Synth.fileName(1)))
        XCTAssertNotEqual(t0, t1, "tiles of one directory differ")
        XCTAssertEqual(try TileDirectory.list(dir + "/a").map { ($0 as NSString).lastPathComponent },
                       ["tile_00000.safetensors", "tile_00001.safetensors"])
        // The manifest is valid JSON with one row per tile, matching the tiles' sizes.
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/a/manifest.json"))) as? [String: Any]
        let rows = try XCTUnwrap(manifest?["tiles"] as? [[String: Any]])
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(rows[1]["e_nn"] as? Int, Synth.tile(config: SynthConfig(tiles: 2, txPerTile: 800, seed: 7), index: 1).neighbors.count)
    }

    func testInvalidConfigurationIsAnErrorNotACrash() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        var c = SynthConfig(tiles: 1, txPerTile: 0)
        XCTAssertThrowsError(try Synth.writeDirectory(config: c, to: dir)) { XCTAssertTrue("\($0)".contains("txPerTile"), "\($0)") }
        c = SynthConfig(tiles: 1, txPerTile: 100)
        c.backgroundFraction = 1.5
        XCTAssertThrowsError(try Synth.writeDirectory(config: c, to: dir)) { XCTAssertTrue("\($0)".contains("backgroundFraction"), "\($0)") }
        XCTAssertNil(SynthConfig().problem)
    }

    func testSizesAtFiveThousandTranscripts() {
        var c = SynthConfig(txPerTile: 5000, seed: 1)
        var nn = 0, b = 0, l = 0
        for i in 0..<3 {
            c.seed = UInt64(i)
            let t = Synth.tile(config: c, index: i)
            print("synth 5000: N_bd \(t.numBd) E_nn \(t.neighbors.count) E_b \(t.belongs.count) L \(t.numLabels)")
            XCTAssertEqual(t.numTx, 5000)
            XCTAssertTrue((30...90).contains(t.numBd), "N_bd \(t.numBd)")
            XCTAssertTrue((13_500...15_000).contains(t.neighbors.count), "E_nn \(t.neighbors.count)")
            XCTAssertTrue((1_400...2_000).contains(t.belongs.count), "E_b \(t.belongs.count)")
            XCTAssertGreaterThanOrEqual(Double(t.numLabels), 1.0 * Double(t.belongs.count))
            XCTAssertLessThanOrEqual(Double(t.numLabels), 3.0 * Double(t.belongs.count))
            nn += t.neighbors.count; b += t.belongs.count; l += t.numLabels
            checkInvariants(t)
        }
        XCTAssertEqual(Double(nn) / 3, 15_000, accuracy: 1_000)
        XCTAssertEqual(Double(b) / 3, 1_700, accuracy: 250)
        XCTAssertEqual(Double(l) / 3, 4_400, accuracy: 700)
    }

    func testGraphStructure() {
        let c = SynthConfig(txPerTile: 1500, seed: 3)
        let g = Synth.generate(config: c, index: 0)
        let t = g.tile
        checkInvariants(t)
        // kNN: row 0 is the query, k entries at most each, the first being the self-loop; within radius.
        var i = 0, e = 0
        var selfLoops = 0
        while e < t.neighbors.count {
            XCTAssertEqual(Int(t.neighbors.src[e]), i)
            XCTAssertEqual(t.neighbors.dst[e], t.neighbors.src[e], "first neighbour of \(i) is itself")
            selfLoops += 1
            var m = 1
            e += 1
            while e < t.neighbors.count && Int(t.neighbors.src[e]) == i {
                let j = Int(t.neighbors.dst[e])
                XCTAssertNotEqual(j, i)
                let dx = g.txPos[2 * i] - g.txPos[2 * j], dy = g.txPos[2 * i + 1] - g.txPos[2 * j + 1]
                XCTAssertLessThanOrEqual((dx * dx + dy * dy).squareRoot(), c.radius + 1e-4)
                m += 1; e += 1
            }
            XCTAssertLessThanOrEqual(m, c.k)
            i += 1
        }
        XCTAssertEqual(selfLoops, t.numTx, "every transcript has its self-loop")
        // Brute-force check of the kNN on a few points.
        for q in stride(from: 0, to: t.numTx, by: 97) {
            var cand: [(Float, Int)] = []
            for j in 0..<t.numTx where j != q {
                let dx = g.txPos[2 * q] - g.txPos[2 * j], dy = g.txPos[2 * q + 1] - g.txPos[2 * j + 1]
                let d = dx * dx + dy * dy
                if d <= c.radius * c.radius { cand.append((d, j)) }
            }
            cand.sort { $0 < $1 }
            let expected = [Int32(q)] + cand.prefix(c.k - 1).map { Int32($0.1) }
            let got = zip(t.neighbors.src, t.neighbors.dst).filter { $0.0 == Int32(q) }.map(\.1)
            XCTAssertEqual(got, expected, "kNN of \(q)")
        }
        // Belongs: exactly the nuclear transcripts, to their own nucleus.
        XCTAssertEqual(t.belongs.count, g.nuclear.filter { $0 }.count)
        for k in 0..<t.belongs.count {
            XCTAssertTrue(g.nuclear[Int(t.belongs.src[k])])
            XCTAssertEqual(t.belongs.dst[k], g.cellOf[Int(t.belongs.src[k])])
        }
        // Labels: positives first (= belongs edges), then negatives: nuclear transcript, other nucleus, no duplicates.
        let positives = t.labels.firstIndex(of: 0) ?? t.labels.count
        XCTAssertEqual(positives, t.belongs.count)
        XCTAssertTrue(t.labels[positives...].allSatisfy { $0 == 0 }, "negatives after positives")
        XCTAssertEqual(Array(t.labelTx[..<positives]), t.belongs.src)
        XCTAssertEqual(Array(t.labelBd[..<positives]), t.belongs.dst)
        let belongsOf = Dictionary(uniqueKeysWithValues: zip(t.belongs.src, t.belongs.dst))
        var pairs = Set<Int64>()
        for l in 0..<t.numLabels {
            XCTAssertTrue(pairs.insert(Int64(t.labelTx[l]) << 32 | Int64(t.labelBd[l])).inserted, "duplicate label pair")
            guard l >= positives else { continue }
            guard let own = belongsOf[t.labelTx[l]] else { XCTFail("negative \(l) pairs a non-nuclear transcript"); continue }
            XCTAssertNotEqual(own, t.labelBd[l], "negative \(l) pairs a transcript with its own nucleus")
        }
        XCTAssertGreaterThan(t.numLabels - positives, positives / 2)
        // bd.x plausible: area > 0, convexity, elongation, circularity in (0, 1].
        for b in 0..<t.numBd {
            XCTAssertGreaterThan(t.bdX[4 * b], 5); XCTAssertLessThan(t.bdX[4 * b], 200)
            for f in 1..<4 { XCTAssertGreaterThan(t.bdX[4 * b + f], 0.3); XCTAssertLessThanOrEqual(t.bdX[4 * b + f], 1) }
        }
    }

    func testGenesFollowCellTypePrograms() {
        // Learnable: transcripts of one nucleus share its type's over-expressed genes far more than chance.
        let c = SynthConfig(txPerTile: 3000, seed: 5, numTxTokens: 500, cellTypes: 8)
        let g = Synth.generate(config: c, index: 0)
        guard case .tokens(let tokens) = g.tile.tx else { return XCTFail("token mode expected") }
        var perCell: [Int32: [Int32: Int]] = [:]
        for i in 0..<g.tile.numTx where g.cellOf[i] >= 0 { perCell[g.cellOf[i], default: [:]][tokens[i], default: 0] += 1 }
        var topShare = 0.0
        for (_, hist) in perCell {
            let total = hist.values.reduce(0, +)
            let top20 = hist.values.sorted(by: >).prefix(20).reduce(0, +)
            topShare += Double(top20) / Double(total)
        }
        topShare /= Double(perCell.count)
        XCTAssertGreaterThan(topShare, 0.6, "a cell's 20 most frequent genes carry most of its transcripts")
    }

    func testRoundTripThroughTileRead() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        let c = SynthConfig(tiles: 2, txPerTile: 700, seed: 11)
        try Synth.writeDirectory(config: c, to: dir)
        for (i, path) in try TileDirectory.list(dir).enumerated() {
            let read = try Tile.read(path: path, options: TileReadOptions(numTxTokens: c.numTxTokens))
            let made = Synth.tile(config: c, index: i)
            XCTAssertEqual(read.tx, made.tx)
            XCTAssertEqual(read.bdX, made.bdX)
            XCTAssertEqual(read.neighbors, made.neighbors)
            XCTAssertEqual(read.belongs, made.belongs)
            XCTAssertEqual(read.labelTx, made.labelTx); XCTAssertEqual(read.labelBd, made.labelBd); XCTAssertEqual(read.labels, made.labels)
            let file = try SafeTensorsFile.read(path: path)
            XCTAssertEqual(file[TileTensor.txPos]?.shape, [read.numTx, 2])
            XCTAssertEqual(file[TileTensor.bdPos]?.shape, [read.numBd, 2])
            XCTAssertEqual(file.metadata["format"], "segger-tile")
            XCTAssertEqual(file.metadata["version"], "2")
            XCTAssertEqual(read.txPos, made.txPos)
            XCTAssertEqual(read.bdPos, made.bdPos)
            XCTAssertEqual(read.txIDs, made.txIDs)
            XCTAssertEqual(read.bdIDs, made.bdIDs)
            checkInvariants(read)
        }
    }

    func testIDsAreUniqueDeterministicAndXeniumLike() throws {
        let c = SynthConfig(tiles: 3, txPerTile: 400, seed: 17)
        var tx = Set<Int64>(), bd = Set<String>()
        for i in 0..<3 {
            let t = Synth.tile(config: c, index: i)
            let ids = try XCTUnwrap(t.txIDs), names = try XCTUnwrap(t.bdIDs)
            XCTAssertEqual(ids.count, t.numTx)
            XCTAssertEqual(names.count, t.numBd)
            XCTAssertTrue(ids.allSatisfy { $0 >= 0 })
            XCTAssertEqual(ids, (0..<t.numTx).map { Synth.transcriptID(seed: 17, index: i * 400 + $0) })
            for n in names {
                XCTAssertEqual(n.count, 10, n)
                XCTAssertTrue(n.hasSuffix("-1"), n)
                XCTAssertTrue(n.utf8.prefix(8).allSatisfy { (97...122).contains($0) }, n)
            }
            tx.formUnion(ids)
            bd.formUnion(names)
            XCTAssertEqual(Synth.tile(config: c, index: i).txIDs, ids, "deterministic")
        }
        XCTAssertEqual(tx.count, 1200, "transcript ids unique over the directory")
        XCTAssertEqual(bd.count, (0..<3).map { Synth.tile(config: c, index: $0).numBd }.reduce(0, +), "boundary ids unique")
        // Another seed, other ids.
        XCTAssertNotEqual(Synth.tile(config: SynthConfig(tiles: 1, txPerTile: 400, seed: 18), index: 0).txIDs, Synth.tile(config: c, index: 0).txIDs)
        // The id maps are bijections: no two of many indices collide (and ids spread over the range).
        var seen = Set<Int64>(), names = Set<String>()
        for k in 0..<100_000 { seen.insert(Synth.transcriptID(seed: 5, index: k)); names.insert(Synth.boundaryID(seed: 5, index: k)) }
        XCTAssertEqual(seen.count, 100_000)
        XCTAssertEqual(names.count, 100_000)
        XCTAssertGreaterThan(seen.max()!, Int64(1) << 60)
        XCTAssertEqual(Synth.boundaryID(seed: 5, index: Int(Synth.boundaryIDSpace) - 1).count, 10)
    }

    /// --size_spread slide: log-normal sizes around the median, clipped at the 1st/99th percentiles, each
    /// tile's size its own (independent of the tile count), ids still unique, the default mode untouched.
    func testSlideSizeSpread() throws {
        var c = SynthConfig(tiles: 400, txPerTile: 3000, seed: 21)
        c.sizeSpread = .slide
        XCTAssertNil(c.problem)
        let range = SizeSpread.slide.range(median: 3000)
        XCTAssertEqual(range, 467...19286)
        let sizes = (0..<400).map { Synth.txCount(c, $0) }
        XCTAssertTrue(sizes.allSatisfy { range.contains($0) })
        let logs = sizes.map { log(Double($0) / 3000) }
        let mean = logs.reduce(0, +) / 400
        let sd = (logs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 399).squareRoot()
        XCTAssertLessThan(abs(mean), 0.12, "median near 3000")        // 3 standard errors of the mean (0.04)
        XCTAssertEqual(sd, 0.8, accuracy: 0.09, "σ of ln(size) (clipping lowers it slightly)")
        XCTAssertGreaterThan(sizes.max()!, 16 * sizes.min()!, "a slide's spread, not a narrow one")
        var fewer = c
        fewer.tiles = 3
        XCTAssertEqual((0..<3).map { Synth.txCount(fewer, $0) }, Array(sizes.prefix(3)), "a tile's size depends on its index alone")
        // The tiles hold those sizes; ids stay unique with sizes up to the clip.
        fewer.txPerTile = 300
        var ids = Set<Int64>(), names = Set<String>(), total = 0, bds = 0
        for i in 0..<3 {
            let t = Synth.tile(config: fewer, index: i)
            XCTAssertEqual(t.numTx, Synth.txCount(fewer, i))
            ids.formUnion(try XCTUnwrap(t.txIDs)); names.formUnion(try XCTUnwrap(t.bdIDs))
            total += t.numTx; bds += t.numBd
        }
        XCTAssertEqual(ids.count, total)
        XCTAssertEqual(names.count, bds)
        // Without a spread: exactly txPerTile, the same bytes as before.
        XCTAssertEqual(Synth.txCount(SynthConfig(tiles: 2, txPerTile: 800, seed: 7), 1), 800)
        var both = c
        both.overlapMargin = 5
        XCTAssertNotNil(both.problem)
        var bad = c
        bad.sizeSpread = SizeSpread(sigma: .nan, clipZ: 2)
        XCTAssertNotNil(bad.problem)
    }

    func testOverlappingTilesShareTranscriptsAndCells() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        var c = SynthConfig(tiles: 6, txPerTile: 700, seed: 9)
        c.overlapMargin = 8
        try Synth.writeDirectory(config: c, to: dir)
        let paths = try TileDirectory.list(dir)
        XCTAssertEqual(paths.count, 6)
        let grid = Synth.OverlapGrid(tiles: 6, width: 1, height: 1, margin: 0)
        XCTAssertEqual([grid.columns, grid.rows], [3, 2])
        struct Seen: Equatable { var x: Float; var y: Float; var gene: Int32 }
        var tx: [Int64: Seen] = [:], copies: [Int64: Int] = [:]
        var bd: [String: [Float]] = [:], bdCopies: [String: Int] = [:]
        var total = 0
        for path in paths {
            let t = try Tile.read(path: path, options: TileReadOptions(numTxTokens: 500))
            checkInvariants(t)
            guard case .tokens(let genes) = t.tx else { return XCTFail("token mode expected") }
            let ids = try XCTUnwrap(t.txIDs), names = try XCTUnwrap(t.bdIDs)
            total += t.numTx
            for i in 0..<t.numTx {
                let s = Seen(x: t.txPos[2 * i], y: t.txPos[2 * i + 1], gene: genes[i])
                if let old = tx[ids[i]] { XCTAssertEqual(old, s, "transcript \(ids[i]) differs between tiles") }
                tx[ids[i]] = s
                copies[ids[i], default: 0] += 1
            }
            for b in 0..<t.numBd {
                let p = [t.bdPos[2 * b], t.bdPos[2 * b + 1]]
                if let old = bd[names[b]] { XCTAssertEqual(old, p, "cell \(names[b]) differs between tiles") }
                bd[names[b]] = p
                bdCopies[names[b], default: 0] += 1
            }
            // Edges within the tile: the kNN within the radius, belongs to a nucleus of this tile.
            for e in 0..<t.neighbors.count {
                let i = Int(t.neighbors.src[e]), j = Int(t.neighbors.dst[e])
                let dx = t.txPos[2 * i] - t.txPos[2 * j], dy = t.txPos[2 * i + 1] - t.txPos[2 * j + 1]
                XCTAssertLessThanOrEqual((dx * dx + dy * dy).squareRoot(), 5 + 1e-4)
            }
            XCTAssertGreaterThan(t.belongs.count, 0)
        }
        // The region's transcripts: each in 1, 2 or 4 tiles of a 3 × 2 grid of cores wider than 2 margins.
        XCTAssertEqual(tx.count, 6 * 700)
        XCTAssertEqual(copies.values.reduce(0, +), total)
        let histogram = Dictionary(grouping: copies.values, by: { $0 }).mapValues(\.count)
        XCTAssertEqual(Set(histogram.keys), [1, 2, 4], "\(histogram)")
        XCTAssertGreaterThan(histogram[2]!, 200)
        XCTAssertGreaterThan(histogram[4]!, 10)
        XCTAssertTrue(bdCopies.values.contains { $0 > 1 }, "some nuclei lie in several tiles")
        // The manifest describes the grid; the same config writes the same bytes.
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))) as? [String: Any]
        let overlap = try XCTUnwrap(manifest?["overlap"] as? [String: Any])
        XCTAssertEqual(overlap["columns"] as? Int, 3)
        XCTAssertEqual(overlap["rows"] as? Int, 2)
        XCTAssertEqual(overlap["region_tx"] as? Int, 4200)
        let again = Support.tempDir("tiles", removedAfter: self)
        try Synth.writeDirectory(config: c, to: again)
        for p in paths {
            let name = (p as NSString).lastPathComponent
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), try Data(contentsOf: URL(fileURLWithPath: again + "/" + name)))
        }
    }

    func testOverlapGridMembership() {
        // 2 × 2 cores of 10 µm with a 1 µm margin, bounds included; outer cores reach to ±∞.
        let g = Synth.OverlapGrid(tiles: 4, width: 20, height: 20, margin: 1)
        XCTAssertEqual(g.tiles(x: 5, y: 5), [0])
        XCTAssertEqual(g.tiles(x: 9, y: 5), [0, 1])
        XCTAssertEqual(g.tiles(x: 11, y: 5), [0, 1])
        XCTAssertEqual(g.tiles(x: 11.001, y: 5), [1])
        XCTAssertEqual(g.tiles(x: 10, y: 10), [0, 1, 2, 3])
        XCTAssertEqual(g.tiles(x: -50, y: 25), [2])
        XCTAssertEqual(g.tiles(x: 1e6, y: -3), [1])
        XCTAssertEqual(Synth.OverlapGrid(tiles: 7, width: 1, height: 1, margin: 0).columns, 7)
        XCTAssertEqual(Synth.OverlapGrid(tiles: 1000, width: 1, height: 1, margin: 0).rows, 25)
        var c = SynthConfig(tiles: 2, txPerTile: 100)
        c.overlapMargin = -1
        XCTAssertNotNil(c.problem)
        c.overlapMargin = .infinity
        XCTAssertNotNil(c.problem)
        c.overlapMargin = 0
        XCTAssertNil(c.problem)
    }

    func testOverlapEmbeddingModeSameFeaturesInEveryTile() throws {
        let dir = Support.tempDir("tiles", removedAfter: self)
        var c = SynthConfig(tiles: 2, txPerTile: 300, seed: 4, embeddingDim: 6)
        c.overlapMargin = 6
        try Synth.writeDirectory(config: c, to: dir)
        var rows: [Int64: [Float]] = [:]
        var shared = 0
        for p in try TileDirectory.list(dir) {
            let t = try Tile.read(path: p)
            guard case .features(let f, let dim) = t.tx else { return XCTFail("embedding mode expected") }
            XCTAssertEqual(dim, 6)
            for (i, id) in t.txIDs!.enumerated() {
                let row = Array(f[(i * 6)..<(i * 6 + 6)])
                if let old = rows[id] { XCTAssertEqual(old, row); shared += 1 }
                rows[id] = row
            }
        }
        XCTAssertGreaterThan(shared, 20)
    }

    func testEmbeddingMode() throws {
        let c = SynthConfig(txPerTile: 600, seed: 2)
        let t = Synth.tileEmbeddingMode(config: c, index: 0, dim: 16)
        XCTAssertEqual(t.txFeatureDim, 16)
        guard case .features(let f, _) = t.tx, case .tokens(let tokens) = Synth.tile(config: c, index: 0).tx else { return XCTFail() }
        XCTAssertEqual(f.count, 600 * 16)
        var hits = 0
        for i in 0..<600 {
            let row = f[(i * 16)..<(i * 16 + 16)]
            if row.firstIndex(of: row.max()!)! - i * 16 == Int(tokens[i]) % 16 { hits += 1 }
        }
        XCTAssertGreaterThan(hits, 590, "the embedding is a noisy one-hot of the gene")
        let dir = Support.tempDir("tiles", removedAfter: self)
        try t.write(to: dir + "/e.safetensors")
        let read = try Tile.read(path: dir + "/e.safetensors")
        XCTAssertEqual(read.tx, t.tx)
    }

    func testSmallTilesMatchReferenceGenerator() throws {
        // The reference generator's tiles at 300 transcripts: ~2 nuclei, E_nn ≈ 3 N_tx, labels ≈ 1.5–2 × E_b.
        let t = Synth.tile(config: SynthConfig(txPerTile: 300, seed: 21, numTxTokens: 100), index: 0)
        checkInvariants(t)
        XCTAssertTrue((1...4).contains(t.numBd))
        XCTAssertGreaterThan(t.neighbors.count, 2 * 300)
        XCTAssertLessThanOrEqual(t.neighbors.count, 3 * 300)
        let manifestPath = try Support.requireShared("golden/tiles/manifest.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: manifestPath))) as? [String: Any]
        let mean = try XCTUnwrap(json?["mean_per_tile"] as? [String: Any])
        let eb = try XCTUnwrap(mean["e_b"] as? Double), nl = try XCTUnwrap(mean["n_label"] as? Double)
        XCTAssertEqual(Double(t.belongs.count), eb, accuracy: eb * 0.4)
        XCTAssertEqual(Double(t.numLabels), nl, accuracy: nl * 0.5)
    }
}
