// The tiles of a directory as every rank sees them: paths, costs and label counts, validated once at
// start-up with the reading split over the ranks, so that every rank takes the same decisions
// (which tiles are bad, how to balance a batch, the global label count) without reading every tile.
import Foundation
import SafeTensors
import SeggerDistributed
import SeggerModel
import SeggerTiles

/// A validated list of tiles with what sharding needs to know about each.
public struct TileSet {
    public var directory: String
    public var paths: [String]
    public var costs: [Double]
    public var labelCounts: [Int]
    /// Files that failed validation (path → error), excluded when --skip_bad_tiles.
    public var bad: [(path: String, error: String)]
    /// Feature values replaced (NaN/inf) over all tiles.
    public var nonFiniteReplaced: Int
    /// Transcript feature width (nil = token mode) and boundary feature width, agreed by all tiles.
    public var txFeatureDim: Int?
    public var bdFeatureDim: Int?
    /// The largest sizes over the usable tiles (for the memory estimate).
    public var extent = TileExtent()

    public var count: Int { paths.count }

    /// Lists `dir`, reads and validates the tiles `i` with `i % size == rank`, and shares the outcome
    /// with every rank. `flag` (e.g. `train_dir`) names the directory in errors.
    public static func scan(_ dir: String, flag: String, options: TileReadOptions, skipBad: Bool, comm: Communicator) throws -> TileSet {
        let all = try TileFiles.list(dir, flag: flag)
        struct Entry: Codable {
            var i: Int; var cost: Double; var labels: Int; var replaced: Int; var error: String?; var txDim: Int?; var bdDim: Int
            var extent: TileExtent
        }
        var mine: [Entry] = []
        for i in stride(from: comm.rank, to: all.count, by: comm.size) {
            do {
                let t = try Tile.read(path: all[i], options: options)
                let extent = TileExtent(nodes: t.numTx + t.numBd, edges: t.neighbors.count + t.belongs.count,
                                        labels: t.numLabels, txFeatures: t.numTx * (t.txFeatureDim ?? 0))
                mine.append(Entry(i: i, cost: t.cost, labels: t.numLabels, replaced: t.nonFiniteReplaced, error: nil,
                                  txDim: t.txFeatureDim, bdDim: t.bdDim, extent: extent))
            } catch {
                mine.append(Entry(i: i, cost: 0, labels: 0, replaced: 0, error: "\(error)", txDim: nil, bdDim: 0, extent: TileExtent()))
            }
        }
        let encoded = String(decoding: try JSONEncoder().encode(mine), as: UTF8.self)
        var entries: [Entry] = []
        for text in comm.allgather(encoded) {
            entries += try JSONDecoder().decode([Entry].self, from: Data(text.utf8))
        }
        entries.sort { $0.i < $1.i }
        var set = TileSet(directory: dir, paths: [], costs: [], labelCounts: [], bad: [], nonFiniteReplaced: 0)
        for e in entries {
            if let err = e.error {
                set.bad.append((all[e.i], err))
                continue
            }
            // Mixed tiles cannot share one model: the first tile fixes the widths.
            let mode = e.txDim.map { "embedding mode, tx.x width \($0)" } ?? "token mode"
            if set.bdFeatureDim == nil { set.bdFeatureDim = e.bdDim; set.txFeatureDim = e.txDim }
            if e.bdDim != set.bdFeatureDim || e.txDim != set.txFeatureDim {
                set.bad.append((all[e.i], "\(all[e.i]): \(mode) with bd.x width \(e.bdDim) differs from the directory's first tile"))
                continue
            }
            set.paths.append(all[e.i])
            set.costs.append(e.cost)
            set.labelCounts.append(e.labels)
            set.nonFiniteReplaced += e.replaced
            set.extent = set.extent.union(e.extent)
        }
        func reasons(_ limit: Int) -> String {
            let shown = set.bad.prefix(limit).map { "  " + $0.error }.joined(separator: "\n")
            return set.bad.count > limit ? shown + "\n  … and \(set.bad.count - limit) more" : shown
        }
        if !set.bad.isEmpty && !skipBad {
            throw CollectiveError("\(set.bad.count) bad tile(s) in --\(flag) \(dir) (pass --skip_bad_tiles to skip them):\n\(reasons(10))")
        }
        if set.paths.isEmpty {
            throw CollectiveError("--\(flag) \(dir): no usable tiles: all \(set.bad.count) are bad:\n\(reasons(10))")
        }
        return set
    }

    /// A digest of the listing (names and sizes) for the start-up agreement check across ranks.
    public var listingDigest: String {
        var h = FNV1a()
        for (p, c) in zip(paths, labelCounts) { h.add(((p as NSString).lastPathComponent + ":\(c);").utf8) }
        return h.hex
    }
}

/// The tile files of a directory, for training and evaluation.
public enum TileFiles {
    /// ``TileDirectory/list(_:)`` with the flag named in its errors, refusing a directory that holds one
    /// tile in two formats (`x.pt` beside `x.safetensors`, as `convert --to` the source directory left
    /// them): both would be read and every such tile counted twice.
    public static func list(_ dir: String, flag: String) throws -> [String] {
        let all: [String]
        do { all = try TileDirectory.list(dir) } catch { throw CollectiveError("--\(flag) \(error)") }
        var byStem: [String: [String]] = [:]
        for p in all { byStem[((p as NSString).lastPathComponent as NSString).deletingPathExtension, default: []].append(p) }
        let twins = byStem.values.filter { $0.count > 1 }.sorted { $0[0] < $1[0] }
        if !twins.isEmpty {
            let shown = twins.prefix(5).map { $0.map { ($0 as NSString).lastPathComponent }.joined(separator: " and ") }
                .joined(separator: "; ")
            let more = twins.count > 5 ? "; … \(twins.count - 5) more" : ""
            throw CollectiveError("--\(flag) \(dir) holds \(twins.count) tile(s) in two formats (\(shown)\(more)): each would be read twice. Keep one format in the directory (e.g. move the .pt files elsewhere after `segger-train convert`)")
        }
        return all
    }
}
