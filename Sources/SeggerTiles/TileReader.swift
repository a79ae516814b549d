// From named tensors (the `segger-tile` contract, docs/tile-format.md) to a validated Tile. Every reader
// (safetensors, segger's .pt) produces the same name → tensor map and comes through here.
import Foundation
import SafeTensors

/// Tensor names of the `segger-tile` contract (they mirror PyG's HeteroData keys); docs/tile-format.md.
public enum TileTensor {
    public static let txX = "tx.x"
    public static let bdX = "bd.x"
    public static let neighborsEdgeIndex = "tx__neighbors__tx.edge_index"
    public static let belongsEdgeIndex = "tx__belongs__bd.edge_index"
    public static let labelIndex = "tx__belongs__bd.edge_label_index"
    public static let label = "tx__belongs__bd.edge_label"
    /// Optional positions, F32 [N, 2] or [N, 3] (µm); not used by training.
    public static let txPos = "tx.pos"
    public static let bdPos = "bd.pos"
    /// segger-tile v2, optional: transcript ids, I64 [N_tx].
    public static let txID = "tx.id"
    /// segger-tile v2, optional: boundary ids as UTF-8, U8 [N_bd, W], each row zero-padded to W bytes.
    public static let bdID = "bd.id"
}

/// Options that change how tiles are read.
public struct TileReadOptions: Sendable {
    /// Token ids must lie below this (the model's embedding size); nil skips the check.
    public var numTxTokens: Int?
    /// Decode, check (finite positions; unique, well-formed ids) and keep `tx.pos`, `bd.pos`, `tx.id`
    /// and `bd.id`. When false their dtypes and shapes are still checked but their values are neither
    /// read nor kept: the trainer re-reads tiles it validated at start-up every step and uses none of them.
    public var positionsAndIDs: Bool

    public init(numTxTokens: Int? = nil, positionsAndIDs: Bool = true) {
        self.numTxTokens = numTxTokens
        self.positionsAndIDs = positionsAndIDs
    }
}

public extension Tile {
    /// Reads one tile file (by extension: `.safetensors`, or segger's `.pt` when that reader is present).
    static func read(path: String, options: TileReadOptions = TileReadOptions()) throws -> Tile {
        if path.hasSuffix(".pt") { return try TorchTiles.read(path: path, options: options) }
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile.read(path: path)
        } catch let e as SafeTensorsError {
            throw InputError(e)
        }
        try checkContract(file.metadata, path: path)
        return try Tile(tensors: file.tensors, path: path, options: options)
    }

    /// Checks a safetensors file's `__metadata__` against the segger-tile contract, versions 1 and 2
    /// (absent keys are fine).
    static func checkContract(_ metadata: [String: String], path: String) throws {
        if let format = metadata["format"], format != "segger-tile" {
            throw InputError(path: path, "metadata format is '\(format)', not 'segger-tile'")
        }
        if let version = metadata["version"], version != "1" && version != "2" {
            throw InputError(path: path, "segger-tile version '\(version)' is not supported (this reader knows versions 1 and 2)")
        }
    }

    /// Validates named tensors against the segger-tile contract (v1, plus v2's optional ids) and builds the tile.
    init(tensors: [String: Tensor], path: String, options: TileReadOptions = TileReadOptions()) throws {
        func fail(_ tensor: String?, _ message: String) -> InputError { InputError(path: path, tensor: tensor, message) }
        func require(_ name: String) throws -> Tensor {
            guard let t = tensors[name] else { throw fail(name, "missing required tensor") }
            return t
        }
        var replaced = 0
        func finiteFloats(_ t: Tensor, _ name: String) throws -> [Float] {
            guard t.dtype.isFloatingPoint else { throw fail(name, "dtype \(t.dtype.rawValue), expected F32") }
            var v = t.floats()
            for i in v.indices where !v[i].isFinite {
                replaced += 1
                v[i] = v[i].isNaN ? 0 : (v[i] > 0 ? Float.greatestFiniteMagnitude : -Float.greatestFiniteMagnitude)
            }
            return v
        }

        // Transcripts.
        let txT = try require(TileTensor.txX)
        let numTx: Int
        let tx: TranscriptInput
        switch (txT.dtype, txT.shape.count) {
        case (.I64, 1), (.I32, 1):
            numTx = txT.shape[0]
            let ids = txT.int64s()!
            var tokens = [Int32](repeating: 0, count: ids.count)
            for (i, id) in ids.enumerated() {
                guard id >= 0 else { throw fail(TileTensor.txX, "negative token id \(id) at row \(i)") }
                if let limit = options.numTxTokens, id >= Int64(limit) {
                    throw fail(TileTensor.txX, "token id \(id) at row \(i) is not below --num_tx_tokens \(limit)")
                }
                guard id < Int64(Int32.max) else { throw fail(TileTensor.txX, "token id \(id) at row \(i) is too large") }
                tokens[i] = Int32(id)
            }
            tx = .tokens(tokens)
        case (.F32, 2), (.F64, 2), (.F16, 2), (.BF16, 2):
            numTx = txT.shape[0]
            guard txT.shape[1] > 0 else { throw fail(TileTensor.txX, "embedding-mode features have width 0") }
            tx = .features(try finiteFloats(txT, TileTensor.txX), dim: txT.shape[1])
        default:
            throw fail(TileTensor.txX, "dtype \(txT.dtype.rawValue) with shape \(txT.shape); expected I64 [N_tx] (token mode) or F32 [N_tx, C] (embedding mode)")
        }
        guard numTx > 0 else { throw fail(TileTensor.txX, "empty tile: no transcripts") }
        guard numTx < Int(Int32.max) else { throw fail(TileTensor.txX, "\(numTx) transcripts: too many for one tile") }

        // Boundaries.
        let bdT = try require(TileTensor.bdX)
        guard bdT.shape.count == 2 else { throw fail(TileTensor.bdX, "shape \(bdT.shape); expected [N_bd, F_bd]") }
        let numBd = bdT.shape[0]
        let bdDim = bdT.shape[1]
        guard bdDim > 0 else { throw fail(TileTensor.bdX, "shape \(bdT.shape): boundary features have width 0") }
        guard numBd < Int(Int32.max) else { throw fail(TileTensor.bdX, "\(numBd) boundaries: too many for one tile") }
        let bdX = try finiteFloats(bdT, TileTensor.bdX)
        let keep = options.positionsAndIDs
        let (txPos, txPosDim) = try Tile.positions(tensors, TileTensor.txPos, rows: numTx, keep: keep, fail: fail)
        let (bdPos, bdPosDim) = try Tile.positions(tensors, TileTensor.bdPos, rows: numBd, keep: keep, fail: fail)
        let txIDs = try Tile.transcriptIDs(tensors, rows: numTx, keep: keep, fail: fail)
        let bdIDs = try Tile.boundaryIDs(tensors, rows: numBd, keep: keep, fail: fail)

        // Edges.
        func edges(_ name: String, numSrc: Int, numDst: Int, allowFlat: Bool) throws -> ([Int32], [Int32]) {
            let t = try require(name)
            guard let v = t.int64s(), t.dtype == .I64 || t.dtype == .I32 else {
                throw fail(name, "dtype \(t.dtype.rawValue); expected I64")
            }
            let e: Int
            if t.shape.count == 2 && t.shape[0] == 2 {
                e = t.shape[1]
            } else if allowFlat && t.shape == [2] {
                e = 1 // segger keeps a single surviving label pair as a 1-D tensor: treat it as [2, 1]
            } else {
                throw fail(name, "shape \(t.shape); expected [2, E]")
            }
            var src = [Int32](repeating: 0, count: e), dst = [Int32](repeating: 0, count: e)
            for k in 0..<e {
                let s = v[k], d = v[e + k]
                guard s >= 0, d >= 0 else { throw fail(name, "negative index at edge \(k) (\(s) → \(d))") }
                guard s < Int64(numSrc) else { throw fail(name, "source index \(s) at edge \(k) is out of range (\(numSrc) source nodes)") }
                guard d < Int64(numDst) else { throw fail(name, "destination index \(d) at edge \(k) is out of range (\(numDst) destination nodes)") }
                src[k] = Int32(s)
                dst[k] = Int32(d)
            }
            return (src, dst)
        }
        let (nnSrc, nnDst) = try edges(TileTensor.neighborsEdgeIndex, numSrc: numTx, numDst: numTx, allowFlat: false)
        let (bSrc, bDst) = try edges(TileTensor.belongsEdgeIndex, numSrc: numTx, numDst: numBd, allowFlat: false)

        // Labels (absent when the tile has none).
        var labelTx: [Int32] = [], labelBd: [Int32] = [], labels: [Float] = []
        if tensors[TileTensor.labelIndex] != nil {
            (labelTx, labelBd) = try edges(TileTensor.labelIndex, numSrc: numTx, numDst: numBd, allowFlat: true)
            let lt = try require(TileTensor.label)
            guard lt.shape.count == 1 || (lt.shape.count == 0 && lt.count == 1) else {
                throw fail(TileTensor.label, "shape \(lt.shape); expected [L]")
            }
            guard lt.count == labelTx.count else {
                throw fail(TileTensor.label, "has \(lt.count) labels but \(TileTensor.labelIndex) has \(labelTx.count) pairs")
            }
            labels = lt.floats()
            for (i, y) in labels.enumerated() where y != 0 && y != 1 {
                throw fail(TileTensor.label, "label \(y) at position \(i) is not 0 or 1")
            }
        } else if let lt = tensors[TileTensor.label], lt.count > 0 {
            throw fail(TileTensor.labelIndex, "missing, but \(TileTensor.label) has \(lt.count) labels")
        }

        self.init(sources: [path], numTx: numTx, numBd: numBd, tx: tx, bdX: bdX, bdDim: bdDim,
                  neighbors: Relation(numSrc: numTx, numDst: numTx, src: nnSrc, dst: nnDst),
                  belongs: Relation(numSrc: numTx, numDst: numBd, src: bSrc, dst: bDst),
                  labelTx: labelTx, labelBd: labelBd, labels: labels, nonFiniteReplaced: replaced)
        self.txPos = txPos
        self.txPosDim = txPosDim
        self.bdPos = bdPos
        self.bdPosDim = bdPosDim
        self.txIDs = txIDs
        self.bdIDs = bdIDs
    }

    /// `tx.pos` / `bd.pos`: F32 (any float dtype) [rows, 2] or [rows, 3], every value finite.
    /// Returns the row-major values and the width, or ([], 0) when absent (or not kept).
    private static func positions(_ tensors: [String: Tensor], _ name: String, rows: Int, keep: Bool,
                                  fail: (String?, String) -> InputError) throws -> ([Float], Int) {
        guard let p = tensors[name] else { return ([], 0) }
        guard p.dtype.isFloatingPoint, p.shape.count == 2, p.shape[0] == rows, p.shape[1] == 2 || p.shape[1] == 3 else {
            throw fail(name, "dtype \(p.dtype.rawValue) with shape \(p.shape); expected F32 [\(rows), 2] or [\(rows), 3]")
        }
        guard keep else { return ([], 0) }
        let dim = p.shape[1]
        let v = p.floats()
        if let i = v.firstIndex(where: { !$0.isFinite }) {
            throw fail(name, "position \(v[i]) at row \(i / dim), column \(i % dim) is not finite")
        }
        return (v, dim)
    }

    /// `tx.id`: I64 (or I32) [N_tx], unique within the tile. nil when absent (or not kept).
    private static func transcriptIDs(_ tensors: [String: Tensor], rows: Int, keep: Bool,
                                      fail: (String?, String) -> InputError) throws -> [Int64]? {
        let name = TileTensor.txID
        guard let t = tensors[name] else { return nil }
        guard t.dtype == .I64 || t.dtype == .I32, t.shape == [rows] else {
            throw fail(name, "dtype \(t.dtype.rawValue) with shape \(t.shape); expected I64 [\(rows)] (one id per transcript)")
        }
        guard keep else { return nil }
        let ids = t.int64s()!
        // Sorting a copy finds a repeat in O(N log N) without a hash table.
        var sorted = ids
        sorted.sort()
        for k in sorted.indices.dropFirst() where sorted[k] == sorted[k - 1] {
            let id = sorted[k]
            let rowsOf = ids.indices.filter { ids[$0] == id }.prefix(2).map(String.init).joined(separator: " and ")
            throw fail(name, "transcript id \(id) appears more than once (rows \(rowsOf)); ids must be unique within a tile")
        }
        return ids
    }

    /// `bd.id`: U8 [N_bd, W], row i the UTF-8 bytes of boundary i's id, zero-padded to W; each id
    /// non-empty, valid UTF-8, without a NUL inside, unique within the tile. nil when absent (or not kept).
    private static func boundaryIDs(_ tensors: [String: Tensor], rows: Int, keep: Bool,
                                    fail: (String?, String) -> InputError) throws -> [String]? {
        let name = TileTensor.bdID
        guard let t = tensors[name] else { return nil }
        guard t.dtype == .U8, t.shape.count == 2, t.shape[0] == rows, t.shape[1] > 0 || rows == 0 else {
            throw fail(name, "dtype \(t.dtype.rawValue) with shape \(t.shape); expected U8 [\(rows), W] with W ≥ 1 (UTF-8 bytes of each boundary id, zero-padded to W)")
        }
        guard keep else { return nil }
        let w = t.shape[1]
        var ids: [String] = []
        ids.reserveCapacity(rows)
        var rowOf: [String: Int] = [:]
        rowOf.reserveCapacity(rows)
        try t.data.withUnsafeBufferPointer { all in
            for r in 0..<rows {
                let row = UnsafeBufferPointer(rebasing: all[(r * w)..<(r * w + w)])
                let n = row.firstIndex(of: 0) ?? w
                guard n > 0 else { throw fail(name, "row \(r) is empty: boundary ids must be non-empty") }
                if row[n...].contains(where: { $0 != 0 }) {
                    throw fail(name, "row \(r) has a NUL byte inside the id (only trailing zero padding is allowed)")
                }
                guard let id = String(validating: UnsafeBufferPointer(rebasing: row[..<n]), as: UTF8.self) else {
                    throw fail(name, "row \(r) is not valid UTF-8")
                }
                if let first = rowOf.updateValue(r, forKey: id) {
                    throw fail(name, "boundary id \(id.debugDescription) appears more than once (rows \(first) and \(r)); ids must be unique within a tile")
                }
                ids.append(id)
            }
        }
        return ids
    }

    /// The tile as named tensors of the segger-tile contract (for writing and converting): the v1
    /// tensors, then whichever of `tx.pos`, `bd.pos`, `tx.id`, `bd.id` the tile carries.
    func tensors() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        switch tx {
        case .tokens(let ids): out.append((TileTensor.txX, Tensor(ids.map { Int64($0) })))
        case .features(let v, let dim): out.append((TileTensor.txX, Tensor(v, shape: [numTx, dim])))
        }
        out.append((TileTensor.bdX, Tensor(bdX, shape: [numBd, bdDim])))
        func pairs(_ s: [Int32], _ d: [Int32]) -> Tensor {
            Tensor(s.map { Int64($0) } + d.map { Int64($0) }, shape: [2, s.count])
        }
        out.append((TileTensor.neighborsEdgeIndex, pairs(neighbors.src, neighbors.dst)))
        out.append((TileTensor.belongsEdgeIndex, pairs(belongs.src, belongs.dst)))
        out.append((TileTensor.labelIndex, pairs(labelTx, labelBd)))
        out.append((TileTensor.label, Tensor(labels)))
        if txPosDim > 0 { out.append((TileTensor.txPos, Tensor(txPos, shape: [numTx, txPosDim]))) }
        if bdPosDim > 0 { out.append((TileTensor.bdPos, Tensor(bdPos, shape: [numBd, bdPosDim]))) }
        if let txIDs { out.append((TileTensor.txID, Tensor(txIDs))) }
        if let bdIDs { out.append((TileTensor.bdID, Tile.encodeBoundaryIDs(bdIDs))) }
        return out
    }

    /// Boundary ids as `bd.id`: U8 [N, W], W the longest id's UTF-8 length (at least 1), rows zero-padded.
    static func encodeBoundaryIDs(_ ids: [String]) -> Tensor {
        let w = max(1, ids.map(\.utf8.count).max() ?? 0)
        var bytes = [UInt8](repeating: 0, count: ids.count * w)
        for (r, id) in ids.enumerated() {
            for (k, b) in id.utf8.enumerated() { bytes[r * w + k] = b }
        }
        return Tensor(dtype: .U8, shape: [ids.count, w], data: bytes)
    }

    /// The contract version the tile is written in: "2" when it carries ids, else "1".
    var formatVersion: String { txIDs != nil || bdIDs != nil ? "2" : "1" }

    /// Writes the tile as a segger-tile safetensors file (atomically): version 2 when it carries ids, else 1.
    func write(to path: String) throws {
        try SafeTensorsFile.write(tensors(), metadata: ["format": "segger-tile", "version": formatVersion], to: path)
    }
}

/// A directory of tiles: one tile per `*.safetensors` (or segger `*.pt`) file, sorted by file name;
/// other files ignored. A directory with none but a `processed/` folder (segger's layout) lists that.
public enum TileDirectory {
    /// The tile directory for a split: `dir` itself, or segger's layout under a dataset root
    /// (`<dir>/<split>_tiles/processed`, `<dir>/<split>_tiles`, `<dir>/<split>`) when `dir` holds no tile files.
    public static func resolve(_ dir: String, split: String) -> String {
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: dir)) ?? []
        if names.contains(where: { $0.hasSuffix(".safetensors") || $0.hasSuffix(".pt") }) { return dir }
        for sub in ["\(split)_tiles/processed", "\(split)_tiles", split] {
            let candidate = (dir as NSString).appendingPathComponent(sub)
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: candidate, isDirectory: &isDir), isDir.boolValue { return candidate }
        }
        return dir
    }

    /// The tile files of `dir`, sorted by name. Errors when the directory is missing or holds no tile.
    public static func list(_ dir: String) throws -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
            throw InputError(path: dir, "no such directory")
        }
        guard isDir.boolValue else { throw InputError(path: dir, "not a directory") }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: dir)
        } catch {
            throw InputError(path: dir, "cannot list directory (\(error.localizedDescription))")
        }
        let tiles = names.filter { ($0.hasSuffix(".safetensors") || $0.hasSuffix(".pt")) && !$0.hasPrefix(".") }.sorted()
        if tiles.isEmpty && names.contains("processed") { // segger's <split>_tiles/processed
            return try list((dir as NSString).appendingPathComponent("processed"))
        }
        guard !tiles.isEmpty else { throw InputError(path: dir, "directory holds no tiles (*.safetensors)") }
        return tiles.map { (dir as NSString).appendingPathComponent($0) }
    }
}
