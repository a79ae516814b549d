// Tile sizes from the safetensors headers alone (8 bytes + JSON per file, no tensor data), so that
// tiles can be balanced over MPI ranks without every rank reading every tile.
import Foundation
import SafeTensors

/// The sizes of one tile file as its header states them, and the balancing cost derived from them.
public struct TileSizes: Sendable, Equatable {
    public var path: String
    /// N_tx, N_bd.
    public var numTx: Int
    public var numBd: Int
    /// E_nn (tx→tx kNN edges), E_b (tx→bd belongs edges), L (label pairs).
    public var numNeighbors: Int
    public var numBelongs: Int
    public var numLabels: Int

    public init(path: String, numTx: Int, numBd: Int, numNeighbors: Int, numBelongs: Int, numLabels: Int) {
        self.path = path
        self.numTx = numTx
        self.numBd = numBd
        self.numNeighbors = numNeighbors
        self.numBelongs = numBelongs
        self.numLabels = numLabels
    }

    /// The sizes of a loaded tile (equal to the header's for a tile that reads cleanly).
    public init(_ tile: Tile, path: String) {
        self.init(path: path, numTx: tile.numTx, numBd: tile.numBd, numNeighbors: tile.neighbors.count,
                  numBelongs: tile.belongs.count, numLabels: tile.numLabels)
    }

    /// Same formula as ``Tile/cost``.
    public var cost: Double {
        Tile.cost(numTx: numTx, numNeighbors: numNeighbors, numBelongs: numBelongs, numLabels: numLabels)
    }
}

/// Header-only sizes of tile files. Checks shapes and dtypes of the required tensors (a file that
/// passes may still fail ``Tile/read(path:options:)`` on its data: out-of-range indices, bad labels).
public enum TileCatalog {
    /// The sizes of one tile file; errors name the file and, where one is at fault, the tensor.
    public static func sizes(path: String) throws -> TileSizes {
        if path.hasSuffix(".pt") {
            let s = try TorchTiles.sizes(path: path)
            return TileSizes(path: path, numTx: s.numTx, numBd: s.numBd, numNeighbors: s.numNeighbors,
                             numBelongs: s.numBelongs, numLabels: s.numLabels)
        }
        let header: SafeTensorsHeader
        do {
            header = try SafeTensorsFile.readHeader(path: path)
        } catch let e as SafeTensorsError {
            throw InputError(e)
        }
        try Tile.checkContract(header.metadata, path: path)
        func require(_ name: String) throws -> TensorInfo {
            guard let t = header[name] else { throw InputError(path: path, tensor: name, "missing required tensor") }
            return t
        }
        func edgeCount(_ name: String, allowFlat: Bool) throws -> Int {
            let t = try require(name)
            guard t.dtype == .I64 || t.dtype == .I32 else { throw InputError(path: path, tensor: name, "dtype \(t.dtype.rawValue); expected I64") }
            if t.shape.count == 2 && t.shape[0] == 2 { return t.shape[1] }
            if allowFlat && t.shape == [2] { return 1 }
            throw InputError(path: path, tensor: name, "shape \(t.shape); expected [2, E]")
        }
        let tx = try require(TileTensor.txX)
        guard tx.shape.count == 1 || tx.shape.count == 2 else {
            throw InputError(path: path, tensor: TileTensor.txX, "shape \(tx.shape); expected [N_tx] or [N_tx, C]")
        }
        guard tx.shape[0] > 0 else { throw InputError(path: path, tensor: TileTensor.txX, "empty tile: no transcripts") }
        let bd = try require(TileTensor.bdX)
        guard bd.shape.count == 2 else { throw InputError(path: path, tensor: TileTensor.bdX, "shape \(bd.shape); expected [N_bd, F_bd]") }
        let labels = header[TileTensor.labelIndex] == nil ? 0 : try edgeCount(TileTensor.labelIndex, allowFlat: true)
        return TileSizes(path: path, numTx: tx.shape[0], numBd: bd.shape[0],
                         numNeighbors: try edgeCount(TileTensor.neighborsEdgeIndex, allowFlat: false),
                         numBelongs: try edgeCount(TileTensor.belongsEdgeIndex, allowFlat: false),
                         numLabels: labels)
    }

    /// The sizes of many tile files, in order.
    public static func sizes(paths: [String]) throws -> [TileSizes] {
        try paths.map { try sizes(path: $0) }
    }

    /// The sizes of every tile of a directory (``TileDirectory/list(_:)`` order).
    public static func sizes(directory: String) throws -> [TileSizes] {
        try sizes(paths: TileDirectory.list(directory))
    }
}

/// Which tile files passed validation and why the others did not (for `--skip_bad_tiles`).
public struct TileSkipReport: Sendable {
    /// Files that read and validated, in the order given.
    public var kept: [String]
    /// One error per file that did not, in the order given.
    public var skipped: [InputError]

    public init(kept: [String] = [], skipped: [InputError] = []) {
        self.kept = kept
        self.skipped = skipped
    }
}

public extension Tile {
    /// Reads and validates every file (data included) and reports which to keep; never throws.
    /// The trainer splits the paths over ranks, gathers the reports and excludes the same files everywhere.
    static func validate(paths: [String], options: TileReadOptions = TileReadOptions()) -> TileSkipReport {
        var report = TileSkipReport()
        for p in paths {
            do {
                _ = try Tile.read(path: p, options: options)
                report.kept.append(p)
            } catch let e as InputError {
                report.skipped.append(e)
            } catch {
                report.skipped.append(InputError(path: p, "\(error)"))
            }
        }
        return report
    }
}
