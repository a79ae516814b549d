// Synthetic segger tiles: cells with nuclei, cell-type gene programs, background transcripts, a kNN
// transcript graph with self-loops, belongs edges for nuclear transcripts and segger-style negatives.
// Realistic in size and learnable (a transcript's genes and neighbours tell its cell), deterministic
// per seed with an own PRNG, so that benchmarks and tests see the same bytes on every machine.
import Foundation
import SafeTensors
import SeggerRandom

/// Parameters of the synthetic tile generator (defaults match the reference generator that made
/// `golden/tiles` and give ~5,000-transcript tiles close to segger's real Xenium tiles).
public struct SynthConfig: Sendable, Equatable {
    /// Number of tiles ``Synth/writeDirectory(config:to:)`` writes.
    public var tiles: Int = 8
    /// Transcripts per tile (exact; the median with a ``sizeSpread``).
    public var txPerTile: Int = 5000
    /// Seed of the tiles (positions, counts, genes, negatives). Tile i uses its own stream.
    public var seed: UInt64 = 0
    /// Seed of the cell-type gene programs (shared by all tiles, so that train and val tiles made
    /// with different `seed`s describe the same biology).
    public var programSeed: UInt64 = 0
    /// Gene vocabulary size: token ids lie in [0, numTxTokens).
    public var numTxTokens: Int = 500
    /// Neighbours per transcript in the kNN graph, the transcript itself counted as the first (as segger does).
    public var k: Int = 3
    /// kNN neighbours lie within this distance (µm).
    public var radius: Float = 5
    /// Negatives sampled per belongs edge before keeping only nuclear transcripts (segger's neg ratio).
    public var negRatio: Double = 5
    /// Number of cell types, each over-expressing its own set of genes.
    public var cellTypes: Int = 8
    /// Genes over-expressed by each cell type.
    public var programTokens: Int = 20
    /// Fraction of a cell's transcripts drawn from its type's program (the rest from the global mix).
    public var programWeight: Double = 0.6
    /// Mean transcripts per cell.
    public var txPerCell: Double = 150
    /// Mean cell area (µm²).
    public var cellArea: Double = 180
    /// Mean fraction of a cell's transcripts that lie in its nucleus.
    public var nuclearFraction: Double = 0.37
    /// Fraction of a tile's transcripts that belong to no cell.
    public var backgroundFraction: Double = 0.08
    /// Extra nuclei (relative to cells) whose cell lies outside the tile: nuclei with no transcripts.
    public var emptyNucleusFraction: Double = 0.15
    /// Embedding mode when set: `tx.x` is F32 [N_tx, embeddingDim], a noisy one-hot of the gene.
    public var embeddingDim: Int? = nil
    /// Standard deviation of the Gaussian noise added to the one-hot embedding.
    public var embeddingNoise: Float = 0.1
    /// Overlap mode when set (µm): the tiles are one slide region of `tiles × txPerTile` transcripts
    /// cut into a grid, each tile holding everything within this margin of its core (see ``OverlapGrid``).
    public var overlapMargin: Double? = nil
    /// Tile sizes spread like a slide's when set (``SizeSpread``): tile i's transcript count is drawn
    /// around `txPerTile` instead of being exactly `txPerTile`.
    public var sizeSpread: SizeSpread? = nil

    public init(tiles: Int = 8, txPerTile: Int = 5000, seed: UInt64 = 0, numTxTokens: Int = 500, k: Int = 3,
                negRatio: Double = 5, cellTypes: Int = 8, embeddingDim: Int? = nil) {
        self.tiles = tiles
        self.txPerTile = txPerTile
        self.seed = seed
        self.numTxTokens = numTxTokens
        self.k = k
        self.negRatio = negRatio
        self.cellTypes = cellTypes
        self.embeddingDim = embeddingDim
    }
}

extension SynthConfig {
    /// Why this configuration cannot generate tiles, or nil when it can.
    public var problem: String? {
        if tiles < 0 { return "tiles must be ≥ 0 (got \(tiles))" }
        if txPerTile < 1 { return "txPerTile must be ≥ 1 (got \(txPerTile))" }
        if numTxTokens < 1 { return "numTxTokens must be ≥ 1 (got \(numTxTokens))" }
        if k < 1 { return "k must be ≥ 1 (got \(k))" }
        if !(radius > 0) { return "radius must be > 0 (got \(radius))" }
        if !(negRatio >= 0) || !negRatio.isFinite { return "negRatio must be ≥ 0 (got \(negRatio))" }
        if cellTypes < 1 || programTokens < 1 { return "cellTypes and programTokens must be ≥ 1" }
        if !(txPerCell >= 1) || !(cellArea > 0) || !txPerCell.isFinite || !cellArea.isFinite { return "txPerCell must be ≥ 1 and cellArea > 0" }
        for (name, v) in [("programWeight", programWeight), ("nuclearFraction", nuclearFraction),
                          ("backgroundFraction", backgroundFraction), ("emptyNucleusFraction", emptyNucleusFraction)] where !(0...1).contains(v) {
            return "\(name) must lie in [0, 1] (got \(v))"
        }
        if let d = embeddingDim, d < 1 { return "embeddingDim must be ≥ 1 (got \(d))" }
        if !(embeddingNoise >= 0) { return "embeddingNoise must be ≥ 0" }
        if let s = sizeSpread {
            if overlapMargin != nil { return "sizeSpread and overlapMargin cannot be combined (overlapping tiles are cut from one region)" }
            if let p = s.problem { return p }
            if s.range(median: txPerTile).lowerBound < 1 { return "sizeSpread: the smallest tile would hold no transcript" }
        }
        if let m = overlapMargin {
            if !(m >= 0) || !m.isFinite { return "overlapMargin must be a finite number ≥ 0 (got \(m))" }
            if tiles < 1 { return "overlap mode needs tiles ≥ 1" }
            // N_bd ≤ 2.4 N + 3 over the region: every boundary needs its own 8-letter id.
            if Double(tiles) * Double(txPerTile) * 2.4 + 3 >= Double(Synth.boundaryIDSpace) { return "tiles × txPerTile is too large for 8-letter boundary ids" }
        } else if Double(tiles) * Double(Synth.boundaryStride(self)) >= Double(Synth.boundaryIDSpace) {
            return "tiles × txPerTile is too large for 8-letter boundary ids"
        }
        return nil
    }
}

/// How tile sizes spread over a slide: log-normal around the median (`SynthConfig.txPerTile`), clipped.
///
/// A tile's transcript count is its tissue coverage times the local density, both varying by factors
/// across a slide (tiles on the tissue's edge are mostly empty, dense regions hold several times the
/// median): a product of such factors is close to log-normal. `slide` takes σ = 0.8 and clips at the
/// 1st and 99th percentiles (×0.155 and ×6.45 of the median): with a median of 3,000 the tiles hold
/// about 470 to 19,350 transcripts, a 40-fold spread with a long upper tail (mean ≈ 1.36 × median).
public struct SizeSpread: Sendable, Equatable {
    /// Standard deviation of ln(size).
    public var sigma: Double
    /// Clip at median · exp(±clipZ · sigma).
    public var clipZ: Double

    public init(sigma: Double, clipZ: Double) {
        self.sigma = sigma
        self.clipZ = clipZ
    }

    /// The heavy-tailed spread of a whole slide (see the type's description).
    public static let slide = SizeSpread(sigma: 0.8, clipZ: 2.326)

    /// Named spreads for the command line.
    public static func named(_ name: String) -> SizeSpread? { name == "slide" ? .slide : nil }

    public var problem: String? {
        if !(sigma >= 0) || !sigma.isFinite { return "sizeSpread sigma must be a finite number ≥ 0 (got \(sigma))" }
        if !(clipZ >= 0) || !clipZ.isFinite { return "sizeSpread clipZ must be a finite number ≥ 0 (got \(clipZ))" }
        return nil
    }

    /// Smallest and largest size for `median` transcripts.
    public func range(median: Int) -> ClosedRange<Int> {
        let f = Foundation.exp(clipZ * sigma)
        let lo = max(1, Int((Double(median) / f).rounded(.up)))
        return lo...max(lo, Int((Double(median) * f).rounded(.down)))
    }

    /// One size: round(median · exp(σ z)), z standard normal, clipped to `range(median:)`.
    func draw(median: Int, rng: inout SplitMix64) -> Int {
        let n = Int((Double(median) * Foundation.exp(sigma * rng.normal())).rounded())
        let r = range(median: median)
        return min(max(n, r.lowerBound), r.upperBound)
    }
}

/// The synthetic tile generator.
public enum Synth {
    /// A generated tile and what it was made from.
    struct Generated {
        var tile: Tile
        /// The boundary each transcript lies in (its cell's nucleus, as a row of this tile), -1 for
        /// background and, in an overlapping tile, for a cell whose nucleus lies outside the tile.
        var cellOf: [Int32]
        /// Inside its nucleus (and that nucleus in the tile): the transcripts with a belongs edge.
        var nuclear: [Bool]
        /// [N_tx, 2] and [N_bd, 2] row-major, µm (the tile's `tx.pos` and `bd.pos`).
        var txPos: [Float] { tile.txPos }
        var bdPos: [Float] { tile.bdPos }
    }

    /// Cells, nuclei and transcripts of a rectangle before any graph is built: one tile (default
    /// mode) or a whole slide region (overlap mode). Transcripts are in a random order.
    struct Layout {
        var width: Double
        var height: Double
        /// [n, 2] row-major, µm.
        var txPos: [Float]
        var tokens: [Int32]
        /// Row of the transcript's nucleus, -1 for background.
        var cellOf: [Int32]
        var nuclear: [Bool]
        /// [numBd, 2] centroids and [numBd, 4] features (area, convexity, elongation, circularity).
        var bdPos: [Float]
        var bdX: [Float]
        var numTx: Int { tokens.count }
        var numBd: Int { bdPos.count / 2 }
    }

    /// Tile `index` of the configuration (independent of the other tiles; same bytes for the same seed).
    /// Default mode only: overlapping tiles come from ``writeDirectory(config:to:)``.
    public static func tile(config: SynthConfig, index: Int) -> Tile {
        generate(config: config, index: index).tile
    }

    /// Tile `index` in embedding mode: `tx.x` F32 [N_tx, dim] (a noisy one-hot of each gene).
    public static func tileEmbeddingMode(config: SynthConfig, index: Int, dim: Int = 32) -> Tile {
        var c = config
        c.embeddingDim = dim
        return generate(config: c, index: index).tile
    }

    /// Writes `tile_00000.safetensors` … (segger-tile v2: with `tx.pos`, `bd.pos`, `tx.id`, `bd.id`)
    /// into `dir`, creating it when missing, and `manifest.json` (the configuration and each tile's
    /// sizes; not a tile, so tile readers ignore it). With ``SynthConfig/overlapMargin`` set, the
    /// tiles are the overlapping cut of one region (``OverlapGrid``).
    public static func writeDirectory(config: SynthConfig, to dir: String) throws {
        if let problem = config.problem { throw OutputError("\(dir): synthetic tiles: \(problem)") }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw OutputError("\(dir): cannot create directory (\(error.localizedDescription))")
        }
        var rows: [String] = []
        func write(_ g: Generated, _ i: Int, core: String = "") throws {
            let path = (dir as NSString).appendingPathComponent(fileName(i))
            try g.tile.write(to: path)
            let t = g.tile
            rows.append("    {\"file\": \"\(fileName(i))\", \"n_tx\": \(t.numTx), \"n_bd\": \(t.numBd), \"e_nn\": \(t.neighbors.count), \"e_b\": \(t.belongs.count), \"n_label\": \(t.numLabels), \"n_neg\": \(t.numLabels - t.belongs.count)\(core)}")
        }
        let c = config
        var overlap = ""
        if let margin = c.overlapMargin {
            let region = OverlapRegion(config: c)
            let grid = region.grid
            for k in 0..<c.tiles {
                let g = region.tile(k)
                guard g.tile.numTx > 0 else {
                    throw OutputError("\(dir): synthetic tiles: tile \(k) of the \(grid.columns) × \(grid.rows) grid holds no transcript (raise --tx_per_tile or --overlap_margin)")
                }
                let b = grid.core(k)
                try write(g, k, core: ", \"core\": [\(b.x0), \(b.y0), \(b.x1), \(b.y1)]")
            }
            overlap = ",\n  \"overlap\": {\"margin\": \(margin), \"columns\": \(grid.columns), \"rows\": \(grid.rows), \"region\": [\(region.layout.width), \(region.layout.height)], \"region_tx\": \(region.layout.numTx), \"region_bd\": \(region.layout.numBd)}"
        } else {
            for i in 0..<c.tiles { try write(generate(config: c, index: i), i) }
        }
        let manifest = """
        {
          "format": "segger-tile", "version": "2", "generator": "segger-train Synth",
          "config": {"tiles": \(c.tiles), "tx_per_tile": \(c.txPerTile), "seed": \(c.seed), "program_seed": \(c.programSeed), "num_tx_tokens": \(c.numTxTokens), "k_tx": \(c.k), "dist_tx": \(c.radius), "neg_ratio": \(c.negRatio), "n_cell_types": \(c.cellTypes), "tx_per_cell": \(c.txPerCell), "cell_area": \(c.cellArea), "nuclear_frac": \(c.nuclearFraction), "bg_frac": \(c.backgroundFraction), "embedding_dim": \(c.embeddingDim.map(String.init) ?? "null"), "overlap_margin": \(c.overlapMargin.map { "\($0)" } ?? "null"), "size_spread": \(c.sizeSpread.map { "{\"median\": \(c.txPerTile), \"sigma\": \($0.sigma), \"min\": \($0.range(median: c.txPerTile).lowerBound), \"max\": \($0.range(median: c.txPerTile).upperBound)}" } ?? "null")}\(overlap),
          "tiles": [
        \(rows.joined(separator: ",\n"))
          ]
        }

        """
        try AtomicFile.write(manifest, to: (dir as NSString).appendingPathComponent("manifest.json"))
    }

    /// `tile_00000.safetensors` for index 0.
    public static func fileName(_ index: Int) -> String {
        let digits = String(index)
        return "tile_" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits + ".safetensors"
    }

    /// Genes over-expressed by each cell type, [cellTypes][programTokens] (depends on `programSeed` only).
    static func programs(_ c: SynthConfig) -> [[Int32]] {
        var rng = SplitMix64(.synthPrograms, seed: c.programSeed)
        let per = max(1, min(c.programTokens, c.numTxTokens))
        return (0..<max(1, c.cellTypes)).map { _ in
            var picked: [Int32] = []
            var seen = Set<Int32>()
            while picked.count < per {
                let g = Int32(rng.below(c.numTxTokens))
                if seen.insert(g).inserted { picked.append(g) }
            }
            return picked
        }
    }

    /// Cumulative weights of the global gene mix (Zipf-like over a permutation fixed by `programSeed`).
    static func globalMix(_ c: SynthConfig) -> (genes: [Int32], cumulative: [Double]) {
        var rng = SplitMix64(.synthGeneMix, seed: c.programSeed)
        var genes = (0..<c.numTxTokens).map { Int32($0) }
        rng.shuffle(&genes)
        var cumulative = [Double](repeating: 0, count: genes.count)
        var sum = 0.0
        for r in 0..<genes.count {
            sum += 1 / Foundation.pow(Double(r) + 10, 0.8)
            cumulative[r] = sum
        }
        for r in 0..<genes.count { cumulative[r] /= sum }
        return (genes, cumulative)
    }

    /// Tile `index` in default mode: its own layout of `txPerTile` transcripts (or of its drawn size,
    /// with a ``SizeSpread``), graph and ids.
    static func generate(config c: SynthConfig, index: Int) -> Generated {
        precondition(c.problem == nil, "SynthConfig: \(c.problem ?? "")")
        var rng = SplitMix64(.synthTile(index: index), seed: c.seed)
        let L = layout(config: c, n: txCount(c, index), rng: &rng)
        // The embedding is drawn after the negatives (the order of the reference generator's stream).
        var g = graph(L, config: c, source: "synth(seed \(c.seed), tile \(index))", rng: &rng) { rng in
            c.embeddingDim.map { embedding(tokens: L.tokens, dim: $0, noise: c.embeddingNoise, rng: &rng) }
        }
        g.tile.txIDs = (0..<L.numTx).map { transcriptID(seed: c.seed, index: index * maxTxCount(c) + $0) }
        g.tile.bdIDs = (0..<L.numBd).map { boundaryID(seed: c.seed, index: index * boundaryStride(c) + $0) }
        return g
    }

    /// Global boundary indices reserved per default-mode tile: more than any tile's N_bd
    /// (N_bd ≤ 2.4 · txPerTile + 3 for every valid configuration), so that ids never collide.
    static func boundaryStride(_ c: SynthConfig) -> Int { 3 * maxTxCount(c) + 3 }

    /// Transcripts of default-mode tile `index`: `txPerTile`, or its draw from the size spread (its own
    /// stream, so that a tile's size does not depend on the other tiles).
    public static func txCount(_ c: SynthConfig, _ index: Int) -> Int {
        guard let s = c.sizeSpread else { return c.txPerTile }
        var rng = SplitMix64(.synthTileSize(index: index), seed: c.seed)
        return s.draw(median: c.txPerTile, rng: &rng)
    }

    /// The largest `txCount` any tile can have (the stride of transcript and boundary ids per tile).
    static func maxTxCount(_ c: SynthConfig) -> Int {
        c.sizeSpread.map { $0.range(median: c.txPerTile).upperBound } ?? c.txPerTile
    }

    /// `n` transcripts: cells on a jittered grid of slots (square; `aspect` = width / height when
    /// given), nuclei with no transcripts, background; then the transcripts in a random order.
    static func layout(config c: SynthConfig, n: Int, aspect: Double? = nil, rng: inout SplitMix64) -> Layout {
        let programs = programs(c)
        let mix = globalMix(c)
        func globalGene(_ rng: inout SplitMix64) -> Int32 {
            let u = rng.unit()
            var lo = 0, hi = mix.cumulative.count - 1
            while lo < hi { let mid = (lo + hi) / 2; if mix.cumulative[mid] < u { lo = mid + 1 } else { hi = mid } }
            return mix.genes[lo]
        }

        // Cells and their transcript counts; the rest of the transcripts are background.
        let cellTx = Double(n) * (1 - c.backgroundFraction)
        let numCells = max(1, Int((cellTx / c.txPerCell * rng.uniform(0.9, 1.2)).rounded()))
        let numEmpty = Int((Double(numCells) * c.emptyNucleusFraction).rounded())
        let numBd = numCells + numEmpty
        var weights = (0..<numCells).map { _ in rng.uniform(0.6, 1.4) }
        let wsum = weights.reduce(0, +)
        for i in weights.indices { weights[i] /= wsum }
        var counts = weights.map { Int(($0 * cellTx).rounded(.down)) }
        let numBackground = n - counts.reduce(0, +)

        // Cells on a jittered grid of slots; empty nuclei take slots too.
        let spacing = c.cellArea.squareRoot() * 1.05
        let gridX: Int, gridY: Int
        if let aspect {
            gridY = max(1, Int((Double(numBd) / aspect).squareRoot().rounded(.up)))
            gridX = max(1, (numBd + gridY - 1) / gridY)
        } else {
            gridX = Int(Double(numBd).squareRoot().rounded(.up))
            gridY = gridX
        }
        let width = Double(gridX) * spacing, height = Double(gridY) * spacing
        var slots = Array(0..<(gridX * gridY))
        rng.shuffle(&slots)

        // Per cell: type, shape (ellipse radii, angle), nucleus scale.
        var txPos = [Float](repeating: 0, count: 2 * n)
        var bdPos = [Float](repeating: 0, count: 2 * numBd)
        var bdX = [Float](repeating: 0, count: 4 * numBd)
        var tokens = [Int32](repeating: 0, count: n)
        var cellOf = [Int32](repeating: -1, count: n)
        var nuclear = [Bool](repeating: false, count: n)
        let typeScale = (0..<max(1, c.cellTypes)).map { t in 0.8 + 0.4 * Double(t) / Double(max(1, c.cellTypes - 1)) }
        var t = 0
        for b in 0..<numBd {
            let slot = slots[b]
            let cx = (Double(slot % gridX) + 0.5 + rng.uniform(-0.15, 0.15)) * spacing
            let cy = (Double(slot / gridX) + 0.5 + rng.uniform(-0.15, 0.15)) * spacing
            let type = rng.below(max(1, c.cellTypes))
            let area = c.cellArea * typeScale[type] * rng.uniform(0.85, 1.15)
            let elong = rng.uniform(1.0, 1.35)
            let r = (area / Double.pi).squareRoot()
            let (ra, rb) = (r * elong.squareRoot(), r / elong.squareRoot())
            let angle = rng.uniform(0, Double.pi)
            let (ca, sa) = (Foundation.cos(angle), Foundation.sin(angle))
            let frac = min(0.9, c.nuclearFraction * rng.uniform(0.8, 1.2))
            let nscale = frac.squareRoot() // nucleus = the cell ellipse scaled by √frac (area ∝ frac)
            bdPos[2 * b] = Float(cx); bdPos[2 * b + 1] = Float(cy)
            // bd.x: (area, convexity, elongation, circularity) of the nucleus, raw units as segger.
            let na = ra * nscale, nb = rb * nscale
            let nucArea = Double.pi * na * nb
            let h = ((na - nb) * (na - nb)) / ((na + nb) * (na + nb))
            let perimeter = Double.pi * (na + nb) * (1 + 3 * h / (10 + (4 - 3 * h).squareRoot())) * rng.uniform(1.0, 1.08)
            bdX[4 * b] = Float(nucArea)
            bdX[4 * b + 1] = Float(rng.uniform(0.93, 1.0))
            bdX[4 * b + 2] = Float(nb / na)
            bdX[4 * b + 3] = Float(4 * Double.pi * nucArea / (perimeter * perimeter))
            guard b < numCells else { continue } // an empty nucleus: its cell lies outside the tile
            for _ in 0..<counts[b] {
                let isNuclear = rng.unit() < frac
                var u = 0.0, v = 0.0
                repeat { // uniform in the unit disk; nuclear → inside radius √frac, cytoplasm → outside
                    u = rng.uniform(-1, 1); v = rng.uniform(-1, 1)
                    let d2 = u * u + v * v
                    if d2 > 1 { continue }
                    if isNuclear { u *= nscale; v *= nscale; break }
                    if d2 >= frac { break }
                } while true
                let x = cx + ca * u * ra - sa * v * rb
                let y = cy + sa * u * ra + ca * v * rb
                txPos[2 * t] = Float(x); txPos[2 * t + 1] = Float(y)
                tokens[t] = rng.unit() < c.programWeight ? programs[type][rng.below(programs[type].count)] : globalGene(&rng)
                cellOf[t] = Int32(b)
                nuclear[t] = isNuclear
                t += 1
            }
        }
        counts.removeAll()
        for _ in 0..<numBackground {
            txPos[2 * t] = Float(rng.uniform(0, width)); txPos[2 * t + 1] = Float(rng.uniform(0, height))
            tokens[t] = globalGene(&rng)
            t += 1
        }
        precondition(t == n)

        // Transcripts in a random order (as in real tiles; no information in the index).
        var order = Array(0..<n)
        rng.shuffle(&order)
        var pos2 = [Float](repeating: 0, count: 2 * n), tok2 = tokens, cell2 = cellOf, nuc2 = nuclear
        for (newIndex, old) in order.enumerated() {
            pos2[2 * newIndex] = txPos[2 * old]; pos2[2 * newIndex + 1] = txPos[2 * old + 1]
            tok2[newIndex] = tokens[old]; cell2[newIndex] = cellOf[old]; nuc2[newIndex] = nuclear[old]
        }
        return Layout(width: width, height: height, txPos: pos2, tokens: tok2, cellOf: cell2, nuclear: nuc2,
                      bdPos: bdPos, bdX: bdX)
    }

    /// The tile of a layout: kNN graph over its transcripts, belongs edges (nuclear transcripts to
    /// their nucleus) and segger-style negatives drawn with `rng`; then `features(&rng)` gives the
    /// embedding-mode `tx.x` (nil: token mode). Positions kept, ids not yet set.
    static func graph(_ L: Layout, config c: SynthConfig, source: String, rng: inout SplitMix64,
                      features: (inout SplitMix64) -> [Float]?) -> Generated {
        let n = L.numTx, numBd = L.numBd
        // kNN graph: row 0 = the transcript (k times), row 1 = itself then its nearest others within radius.
        let (nnSrc, nnDst) = knn(pos: L.txPos, k: c.k, radius: c.radius)

        // Belongs edges in transcript order; positives = belongs, then segger's negatives.
        var bSrc: [Int32] = [], bDst: [Int32] = []
        for i in 0..<n where L.nuclear[i] { bSrc.append(Int32(i)); bDst.append(L.cellOf[i]) }
        var labelTx = bSrc, labelBd = bDst
        var labels = [Float](repeating: 1, count: bSrc.count)
        let toSample = Int((Double(bSrc.count) * c.negRatio).rounded())
        var seen = Set<Int64>()
        for i in 0..<bSrc.count { seen.insert(Int64(bSrc[i]) << 32 | Int64(bDst[i])) }
        for _ in 0..<toSample {
            let tx = rng.below(n), bd = rng.below(numBd)
            guard L.nuclear[tx], L.cellOf[tx] != Int32(bd) else { continue }
            guard seen.insert(Int64(tx) << 32 | Int64(bd)).inserted else { continue }
            labelTx.append(Int32(tx)); labelBd.append(Int32(bd)); labels.append(0)
        }

        let txInput: TranscriptInput
        if let f = features(&rng), let dim = c.embeddingDim {
            txInput = .features(f, dim: dim)
        } else {
            txInput = .tokens(L.tokens)
        }
        var tile = Tile(sources: [source], numTx: n, numBd: numBd, tx: txInput, bdX: L.bdX, bdDim: 4,
                        neighbors: Relation(numSrc: n, numDst: n, src: nnSrc, dst: nnDst),
                        belongs: Relation(numSrc: n, numDst: numBd, src: bSrc, dst: bDst),
                        labelTx: labelTx, labelBd: labelBd, labels: labels)
        tile.txPos = L.txPos
        tile.txPosDim = 2
        tile.bdPos = L.bdPos
        tile.bdPosDim = 2
        return Generated(tile: tile, cellOf: L.cellOf, nuclear: L.nuclear)
    }

    /// Embedding-mode features: a one-hot of the gene (`token % dim`) plus Gaussian noise, [n, dim].
    static func embedding(tokens: [Int32], dim: Int, noise: Float, rng: inout SplitMix64) -> [Float] {
        precondition(dim > 0)
        let n = tokens.count
        var feats = [Float](repeating: 0, count: n * dim)
        for i in 0..<n {
            for j in 0..<dim { feats[i * dim + j] = noise * Float(rng.normal()) }
            feats[i * dim + Int(tokens[i]) % dim] += 1
        }
        return feats
    }

    // MARK: ids

    /// The transcript id of global transcript `index` under `seed`: a keyed bijection of [0, 2^63)
    /// (xor-shifts and odd multipliers modulo 2^63), so ids are unique, non-negative and unordered.
    static func transcriptID(seed: UInt64, index: Int) -> Int64 {
        let mask: UInt64 = (1 << 63) - 1
        var x = (UInt64(index) ^ SplitMix64.mix(seed ^ 0x7A11_D000_0000_0001)) & mask
        x ^= x >> 31
        x = (x &* 0x7FB5_D329_728E_A185) & mask
        x ^= x >> 27
        x = (x &* 0x81DA_DEF4_BC2D_D44D) & mask
        x ^= x >> 33
        return Int64(x)
    }

    /// 26^8: the number of 8-letter boundary ids.
    static let boundaryIDSpace: UInt64 = 208_827_064_576

    /// The boundary id of global boundary `index` under `seed`, in Xenium's style (8 lowercase letters
    /// and "-1", e.g. `cpikcgfm-1`): index ↦ (a · index + b) mod 26^8 with a coprime to 26, a bijection,
    /// so ids of distinct indices (< 26^8) differ.
    static func boundaryID(seed: UInt64, index: Int) -> String {
        let a: UInt64 = 137_438_953_471 // odd, not a multiple of 13
        let b = SplitMix64.mix(seed ^ 0xB0D1_D000_0000_0002) % boundaryIDSpace
        let p = a.multipliedFullWidth(by: UInt64(index))
        var v = (boundaryIDSpace.dividingFullWidth((p.high % boundaryIDSpace, p.low)).remainder + b) % boundaryIDSpace
        var letters = [UInt8](repeating: 0, count: 8)
        for k in stride(from: 7, through: 0, by: -1) {
            letters[k] = UInt8(ascii: "a") + UInt8(v % 26)
            v /= 26
        }
        return String(decoding: letters, as: UTF8.self) + "-1"
    }
    // MARK: overlapping tiles

    /// The grid an overlap-mode region is cut into: `columns × rows` = `tiles` cores of equal size
    /// (`rows` the largest divisor of `tiles` not above its square root), numbered row by row from
    /// (x, y) = (0, 0). The outermost cores reach to ±∞, so every transcript lies in some core.
    public struct OverlapGrid: Sendable, Equatable {
        public var columns: Int
        public var rows: Int
        public var width: Double
        public var height: Double
        public var margin: Double

        public init(tiles: Int, width: Double, height: Double, margin: Double) {
            var r = max(1, Int(Double(tiles).squareRoot()))
            while tiles % r != 0 { r -= 1 }
            self.rows = r
            self.columns = tiles / r
            self.width = width
            self.height = height
            self.margin = margin
        }

        /// The nominal core of tile k, [x0, x1) × [y0, y1), µm.
        public func core(_ k: Int) -> (x0: Double, y0: Double, x1: Double, y1: Double) {
            let i = k % columns, j = k / columns
            let w = width / Double(columns), h = height / Double(rows)
            return (Double(i) * w, Double(j) * h, Double(i + 1) * w, Double(j + 1) * h)
        }

        /// The tiles whose core, grown by the margin on every side (bounds included), holds (x, y).
        public func tiles(x: Float, y: Float) -> [Int] {
            func range(_ v: Double, _ size: Double, _ count: Int) -> [Int] {
                let step = size / Double(count)
                let lo = max(0, Int(((v - margin) / step).rounded(.down)) - 1)
                let hi = min(count - 1, Int(((v + margin) / step).rounded(.down)) + 1)
                guard lo <= hi else { return v < 0 ? [0] : [count - 1] }
                return (lo...hi).filter { a in
                    let start = a == 0 ? -Double.infinity : Double(a) * step - margin
                    let end = a == count - 1 ? Double.infinity : Double(a + 1) * step + margin
                    return v >= start && v <= end
                }
            }
            let xs = range(Double(x), width, columns), ys = range(Double(y), height, rows)
            return ys.flatMap { j in xs.map { j * columns + $0 } }
        }
    }

    /// One slide region and its overlapping tiles: a transcript or nucleus centroid near a core's
    /// border is in every tile whose grown core holds it, with the same id, position, gene (and
    /// embedding); each tile's kNN, belongs and label edges are built within the tile, as segger does.
    struct OverlapRegion {
        let config: SynthConfig
        let layout: Layout
        let grid: OverlapGrid
        /// Rows of the region's transcripts and boundaries in tile k, ascending.
        let txRows: [[Int32]]
        let bdRows: [[Int32]]

        init(config c: SynthConfig) {
            precondition(c.problem == nil && c.overlapMargin != nil, "SynthConfig: \(c.problem ?? "no overlap margin")")
            config = c
            var probe = OverlapGrid(tiles: c.tiles, width: 1, height: 1, margin: 0)
            var rng = SplitMix64(.synthRegion, seed: c.seed)
            layout = Synth.layout(config: c, n: c.tiles * c.txPerTile,
                                  aspect: Double(probe.columns) / Double(probe.rows), rng: &rng)
            probe = OverlapGrid(tiles: c.tiles, width: layout.width, height: layout.height, margin: c.overlapMargin!)
            grid = probe
            var tx = [[Int32]](repeating: [], count: c.tiles), bd = [[Int32]](repeating: [], count: c.tiles)
            for r in 0..<layout.numTx {
                for k in grid.tiles(x: layout.txPos[2 * r], y: layout.txPos[2 * r + 1]) { tx[k].append(Int32(r)) }
            }
            for b in 0..<layout.numBd {
                for k in grid.tiles(x: layout.bdPos[2 * b], y: layout.bdPos[2 * b + 1]) { bd[k].append(Int32(b)) }
            }
            txRows = tx
            bdRows = bd
        }

        /// Tile k: the region's rows in it (region order), a nucleus's transcripts nuclear here only
        /// when the nucleus is in the tile, ids from the region's indices.
        func tile(_ k: Int) -> Generated {
            let c = config, L = layout
            let rows = txRows[k].map(Int.init), bds = bdRows[k].map(Int.init)
            var local = [Int32](repeating: -1, count: L.numBd)
            for (i, b) in bds.enumerated() { local[b] = Int32(i) }
            var sub = Layout(width: L.width, height: L.height, txPos: [], tokens: [], cellOf: [], nuclear: [],
                             bdPos: [], bdX: [])
            sub.txPos.reserveCapacity(2 * rows.count)
            for r in rows {
                sub.txPos += [L.txPos[2 * r], L.txPos[2 * r + 1]]
                sub.tokens.append(L.tokens[r])
                let cell = L.cellOf[r] >= 0 ? local[Int(L.cellOf[r])] : -1
                sub.cellOf.append(cell)
                sub.nuclear.append(L.nuclear[r] && cell >= 0)
            }
            for b in bds {
                sub.bdPos += [L.bdPos[2 * b], L.bdPos[2 * b + 1]]
                sub.bdX += L.bdX[(4 * b)..<(4 * b + 4)]
            }
            var rng = SplitMix64(.synthRegionTile(index: k), seed: c.seed)
            var g = Synth.graph(sub, config: c, source: "synth(seed \(c.seed), overlap tile \(k))", rng: &rng) { _ in
                // One noise stream per region transcript: the same features in every tile that holds it.
                c.embeddingDim.map { dim in
                    rows.flatMap { r -> [Float] in
                        var t = SplitMix64(.synthRegionTranscript(index: r), seed: c.seed)
                        return Synth.embedding(tokens: [L.tokens[r]], dim: dim, noise: c.embeddingNoise, rng: &t)
                    }
                }
            }
            g.tile.txIDs = rows.map { Synth.transcriptID(seed: c.seed, index: $0) }
            g.tile.bdIDs = bds.map { Synth.boundaryID(seed: c.seed, index: $0) }
            return g
        }
    }

    /// k nearest neighbours within `radius` of each point (the point itself first), by grid hashing
    /// with cells of side `radius`: O(N · points per 3×3 cells). Ties break by index.
    /// pos: [N, 2] row-major. Returns (src, dst) with src = the query point, dst = its neighbours.
    static func knn(pos: [Float], k: Int, radius: Float) -> ([Int32], [Int32]) {
        let n = pos.count / 2
        guard n > 0 else { return ([], []) }
        var minX = Float.infinity, minY = Float.infinity, maxX = -Float.infinity, maxY = -Float.infinity
        for i in 0..<n {
            minX = min(minX, pos[2 * i]); maxX = max(maxX, pos[2 * i])
            minY = min(minY, pos[2 * i + 1]); maxY = max(maxY, pos[2 * i + 1])
        }
        let cell = max(radius, 1e-3)
        let gx = Int((maxX - minX) / cell) + 1, gy = Int((maxY - minY) / cell) + 1
        func cellIndex(_ i: Int) -> (Int, Int) {
            (min(gx - 1, Int((pos[2 * i] - minX) / cell)), min(gy - 1, Int((pos[2 * i + 1] - minY) / cell)))
        }
        // Counting sort of points into grid cells.
        var start = [Int32](repeating: 0, count: gx * gy + 1)
        var cellOfPoint = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            let (cx, cy) = cellIndex(i)
            cellOfPoint[i] = Int32(cy * gx + cx)
            start[cy * gx + cx + 1] += 1
        }
        for g in 0..<(gx * gy) { start[g + 1] += start[g] }
        var fill = Array(start[0..<(gx * gy)])
        var sorted = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            let g = Int(cellOfPoint[i])
            sorted[Int(fill[g])] = Int32(i)
            fill[g] += 1
        }
        var src: [Int32] = [], dst: [Int32] = []
        src.reserveCapacity(n * k); dst.reserveCapacity(n * k)
        let r2 = radius * radius
        var bestD = [Float](repeating: 0, count: max(k - 1, 1))
        var bestJ = [Int32](repeating: 0, count: max(k - 1, 1))
        for i in 0..<n {
            src.append(Int32(i)); dst.append(Int32(i))
            guard k > 1 else { continue }
            var found = 0
            let (cx, cy) = cellIndex(i)
            let xi = pos[2 * i], yi = pos[2 * i + 1]
            for ny in max(0, cy - 1)...min(gy - 1, cy + 1) {
                for nx in max(0, cx - 1)...min(gx - 1, cx + 1) {
                    let g = ny * gx + nx
                    for s in Int(start[g])..<Int(start[g + 1]) {
                        let j = Int(sorted[s])
                        if j == i { continue }
                        let dx = pos[2 * j] - xi, dy = pos[2 * j + 1] - yi
                        let d = dx * dx + dy * dy
                        if d > r2 { continue }
                        // insertion into the sorted best list (distance, then index)
                        if found == k - 1 {
                            let (ld, lj) = (bestD[found - 1], bestJ[found - 1])
                            if d > ld || (d == ld && Int32(j) > lj) { continue }
                            found -= 1
                        }
                        var p = found
                        while p > 0 && (bestD[p - 1] > d || (bestD[p - 1] == d && bestJ[p - 1] > Int32(j))) {
                            bestD[p] = bestD[p - 1]; bestJ[p] = bestJ[p - 1]; p -= 1
                        }
                        bestD[p] = d; bestJ[p] = Int32(j)
                        found += 1
                    }
                }
            }
            for q in 0..<found { src.append(Int32(i)); dst.append(bestJ[q]) }
        }
        return (src, dst)
    }
}
