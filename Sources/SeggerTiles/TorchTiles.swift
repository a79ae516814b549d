// segger's own tiles: `torch.save` of a PyG HeteroData (`<split>_tiles/processed/tiles_*.pt`), read
// natively (zip + restricted pickle) and mapped onto the segger-tile tensor names (docs/tile-format.md),
// so that they go through the same validation as safetensors tiles.
import Foundation
import SafeTensors

/// What one segger `.pt` tile holds, as tensors of the segger-tile contract.
public struct TorchTileContents {
    /// `tx.x`, `bd.x`, `tx__neighbors__tx.edge_index`, `tx__belongs__bd.edge_index`, and when present
    /// `tx__belongs__bd.edge_label_index`, `tx__belongs__bd.edge_label`, `tx.pos`, `bd.pos`, `tx.id`
    /// (segger's int64 transcript ids) and `bd.id` (its boundary ids as zero-padded UTF-8 rows).
    public var tensors: [String: Tensor]
    /// segger's boundary ids (`bd.id`, a numpy object array of strings), when the file has them.
    public var boundaryIDs: [String]?
    /// What was adapted on the way (e.g. segger's all-NaN per-vertex `bd.x` read as zeros).
    public var notes: [String]
}

/// Reading and converting segger's `.pt` tiles.
public enum TorchTiles {
    /// PyG's node-count attributes (`torch_geometric.data.storage.N_KEYS`), checked in mapping order.
    static let nodeCountKeys: Set<String> = ["x", "feat", "pos", "batch", "node_type", "n_id", "tf"]

    /// Reads a segger `.pt` tile into segger-tile tensors (not yet validated as a tile).
    public static func readTensors(path: String) throws -> TorchTileContents {
        try readTensors(archive: try TorchArchive.read(path: path))
    }

    static func readTensors(archive: TorchArchive) throws -> TorchTileContents {
        let path = archive.path
        guard let pkl = try archive.record("data.pkl") else { throw InputError(path: path, "no data.pkl") }
        return try TorchPickle.withValue(pkl, archive: archive, path: path) { root in
            try contents(of: root, path: path)
        }
    }

    /// Sizes of a segger `.pt` tile from its pickle alone (tensor views checked against their
    /// storages, storage data neither copied nor CRC-checked), as the model will see the tile:
    /// N_tx, N_bd (PyG's node count, not segger's per-vertex bd.x rows), E_nn, E_b, L.
    public static func sizes(path: String) throws -> (numTx: Int, numBd: Int, numNeighbors: Int, numBelongs: Int, numLabels: Int) {
        try sizes(archive: try TorchArchive.read(path: path))
    }

    static func sizes(archive: TorchArchive) throws -> (numTx: Int, numBd: Int, numNeighbors: Int, numBelongs: Int, numLabels: Int) {
        let path = archive.path
        guard let pkl = try archive.record("data.pkl") else { throw InputError(path: path, "no data.pkl") }
        return try TorchPickle.withValue(pkl, archive: archive, path: path, shapesOnly: true) { root in
            let (nodes, edges) = try stores(of: root, path: path)
            func shape(_ m: PickleDict?, _ key: String, _ name: String) throws -> [Int]? {
                guard let v = m?[key] else { return nil }
                guard let s = v.tensorShape else { throw InputError(path: path, "'\(name)' is a \(v.kind), expected a tensor") }
                return s
            }
            func edgeCount(_ s: [Int]?, _ name: String, allowFlat: Bool) throws -> Int {
                guard let s else { return 0 }
                if s.count == 2 && s[0] == 2 { return s[1] }
                if allowFlat && s == [2] { return 1 }
                throw InputError(path: path, tensor: name, "shape \(s); expected [2, E]")
            }
            guard let tx = try shape(nodes["tx"], "x", "tx.x"), !tx.isEmpty else { throw InputError(path: path, "no 'tx.x'") }
            let nn = edges["tx__neighbors__tx"], b = edges["tx__belongs__bd"]
            guard let nnShape = try shape(nn, "edge_index", TileTensor.neighborsEdgeIndex) else {
                throw InputError(path: path, tensor: TileTensor.neighborsEdgeIndex, "missing required tensor")
            }
            return (tx[0], try numNodes(nodes["bd"], path: path) ?? 0,
                    try edgeCount(nnShape, TileTensor.neighborsEdgeIndex, allowFlat: false),
                    try edgeCount(try shape(b, "edge_index", TileTensor.belongsEdgeIndex), TileTensor.belongsEdgeIndex, allowFlat: false),
                    try edgeCount(try shape(b, "edge_label_index", TileTensor.labelIndex), TileTensor.labelIndex, allowFlat: true))
        }
    }

    /// Reads and validates a segger `.pt` tile (Tile.read dispatches here for `*.pt`).
    public static func read(path: String, options: TileReadOptions = TileReadOptions()) throws -> Tile {
        let c = try readTensors(path: path)
        return try Tile(tensors: c.tensors, path: path, options: options)
    }

    /// Converts segger `.pt` tiles to segger-tile safetensors files (same names, `.safetensors`), each
    /// validated on the way, positions and ids kept (version 2 when the tile has ids); returns how many
    /// were written. `from` is either a directory of
    /// tiles (or its `processed/` folder) written to `to`, or a segger dataset root holding
    /// `{train,val,test}_tiles/processed` (or `{train,val,test}/`), written to `to/{train,val,test}`.
    @discardableResult
    public static func convert(from: String, to: String) throws -> Int {
        func ptFiles(_ dir: String) -> [String]? {
            for d in [(dir as NSString).appendingPathComponent("processed"), dir] {
                if let names = try? FileManager.default.contentsOfDirectory(atPath: d) {
                    let pts = names.filter { $0.hasSuffix(".pt") && !$0.hasPrefix(".") }.sorted()
                    if !pts.isEmpty { return pts.map { (d as NSString).appendingPathComponent($0) } }
                }
            }
            return nil
        }
        var jobs: [(files: [String], out: String)] = []
        if let files = ptFiles(from) {
            jobs.append((files, to))
        } else {
            for split in ["train", "val", "test"] {
                for d in ["\(split)_tiles", split] {
                    if let files = ptFiles((from as NSString).appendingPathComponent(d)) {
                        jobs.append((files, (to as NSString).appendingPathComponent(split)))
                        break
                    }
                }
            }
        }
        guard !jobs.isEmpty else {
            throw InputError(path: from, "--from holds no segger .pt tiles (nor does processed/, {train,val,test}_tiles/processed or {train,val,test}/)")
        }
        // The output must not meet the input: tiles written next to (or above, or below) their source are
        // read twice by a later run, or read back as input by this one.
        let fromDir = resolvedPath(from)
        for job in jobs {
            let src = resolvedPath((job.files[0] as NSString).deletingLastPathComponent)
            let dst = resolvedPath(job.out)
            for (what, dir) in [("--from", fromDir), ("the source tiles' directory", src)] {
                if dst == dir || isInside(dst, dir) || isInside(dir, dst) {
                    let relation = dst == dir ? "is" : isInside(dst, dir) ? "lies inside" : "contains"
                    throw OutputError("\(job.out): --to \(to) \(relation) \(what) (\(dir)): write the safetensors tiles to a directory apart from the .pt tiles (e.g. \((from as NSString).standardizingPath)-safetensors)")
                }
            }
            let existing = job.files.map { outputName($0, in: job.out) }.filter { FileManager.default.fileExists(atPath: $0) }
            if !existing.isEmpty {
                let shown = existing.prefix(3).map { ($0 as NSString).lastPathComponent }.joined(separator: ", ")
                throw OutputError("\(job.out): --to already holds \(existing.count) of the files convert would write (\(shown)\(existing.count > 3 ? ", …" : "")); not overwriting them: remove them or pick another --to")
            }
        }
        var written = 0
        for job in jobs {
            do {
                try FileManager.default.createDirectory(atPath: job.out, withIntermediateDirectories: true)
            } catch {
                throw OutputError("\(job.out): --to: cannot create the directory (\(error.localizedDescription))")
            }
            for file in job.files {
                let c: TorchTileContents
                c = try readTensors(path: file)
                let tile = try Tile(tensors: c.tensors, path: file)
                let out = outputName(file, in: job.out)
                do {
                    try tile.write(to: out)
                } catch let e as SafeTensorsError {
                    throw OutputError("\(e)")
                }
                written += 1
            }
        }
        return written
    }

    /// `<dir>/<name of file without .pt>.safetensors`.
    static func outputName(_ file: String, in dir: String) -> String {
        let base = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
        return (dir as NSString).appendingPathComponent(base + ".safetensors")
    }

    /// An absolute path with `.`/`..` and symbolic links resolved as far as it exists (the rest appended).
    static func resolvedPath(_ p: String) -> String {
        let absolute = p.hasPrefix("/") ? p : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(p)
        var head = (absolute as NSString).standardizingPath
        var tail: [String] = []
        while head != "/" && !head.isEmpty {
            if let r = realpath(head, nil) {
                defer { free(r) }
                return tail.reversed().reduce(String(cString: r)) { ($0 as NSString).appendingPathComponent($1) }
            }
            tail.append((head as NSString).lastPathComponent)
            head = (head as NSString).deletingLastPathComponent
        }
        return tail.reversed().reduce("/") { ($0 as NSString).appendingPathComponent($1) }
    }

    /// Whether `a` lies strictly inside directory `b` (both resolved).
    static func isInside(_ a: String, _ b: String) -> Bool {
        a.hasPrefix(b.hasSuffix("/") ? b : b + "/")
    }

    // MARK: HeteroData → tensors

    /// The node stores (type → attribute mapping) and edge stores (`src__rel__dst` → mapping).
    static func stores(of root: PickleValue, path: String) throws -> (nodes: [String: PickleDict], edges: [String: PickleDict]) {
        func fail(_ m: String) -> InputError { InputError(path: path, m) }
        guard case .object(let data) = root else {
            throw fail("the pickle holds a \(root.kind), not a PyG HeteroData")
        }
        guard data.className == "torch_geometric.data.hetero_data.HeteroData" else {
            throw fail("the pickle holds a \(data.className), not a PyG HeteroData")
        }
        // Node stores: name → attribute mapping.
        func mapping(_ v: PickleValue, _ what: String) throws -> PickleDict {
            guard case .object(let store) = v, let m = store["_mapping"]?.dict else {
                throw fail("\(what) is a \(v.kind) without an attribute mapping")
            }
            return m
        }
        var nodes: [String: PickleDict] = [:]
        for (k, v) in data["_node_store_dict"]?.dict?.entries ?? [] {
            guard let name = k.string else { throw fail("node type key is a \(k.kind)") }
            nodes[name] = try mapping(v, "node store '\(name)'")
        }
        var edges: [String: PickleDict] = [:]
        for (k, v) in data["_edge_store_dict"]?.dict?.entries ?? [] {
            guard let parts = k.items, parts.count == 3, let a = parts[0].string, let r = parts[1].string, let b = parts[2].string else {
                throw fail("edge type key is a \(k.kind), expected (src, relation, dst)")
            }
            edges["\(a)__\(r)__\(b)"] = try mapping(v, "edge store (\(a), \(r), \(b))")
        }
        return (nodes, edges)
    }

    /// PyG's NodeStorage.num_nodes: `num_nodes`, else the first node-count attribute in order.
    static func numNodes(_ m: PickleDict?, path: String) throws -> Int? {
        guard let m else { return nil }
        if let v = m["num_nodes"], case .none = v {} else if let v = m["num_nodes"] {
            guard let n = v.int, n >= 0, n < Int64(Int32.max) else {
                throw InputError(path: path, "num_nodes is \(v.int.map(String.init) ?? v.kind), not a node count")
            }
            return Int(n)
        }
        for (k, v) in m.entries {
            guard let key = k.string, nodeCountKeys.contains(key) else { continue }
            if let shape = v.tensorShape, !shape.isEmpty { return shape[0] }
        }
        for (k, v) in m.entries {
            guard let key = k.string, nodeCountKeys.contains(key) else { continue }
            if case .ndarray(let a) = v, !a.shape.isEmpty { return a.shape[0] }
        }
        return nil
    }

    static func contents(of root: PickleValue, path: String) throws -> TorchTileContents {
        func fail(_ m: String) -> InputError { InputError(path: path, m) }
        let (nodes, edges) = try stores(of: root, path: path)
        func tensor(_ m: PickleDict?, _ key: String, _ name: String) throws -> Tensor? {
            guard let v = m?[key] else { return nil }
            guard case .tensor(let t) = v else { throw fail("'\(name)' is a \(v.kind), expected a tensor") }
            return t
        }
        var out: [String: Tensor] = [:]
        var notes: [String] = []
        guard let tx = nodes["tx"] else { throw fail("no 'tx' node type (node types: \(nodes.keys.sorted()))") }
        guard let txX = try tensor(tx, "x", "tx.x") else { throw fail("no 'tx.x'") }
        out[TileTensor.txX] = txX
        if let p = try tensor(tx, "pos", "tx.pos") { out[TileTensor.txPos] = asF32(p) }
        // segger's transcript ids: `tx.id`, int64 (Xenium's transcript_id).
        if let id = try tensor(tx, "id", TileTensor.txID) { out[TileTensor.txID] = id }

        // Boundaries. segger main (since May 2025) stores one all-NaN bd.x row per polygon vertex
        // while bd.pos / bd.id have one row per boundary; PyG counts bd nodes from the first
        // node-count attribute (pos here), and the model sees nan_to_num(bd.x) = zeros.
        let bd = nodes["bd"]
        let numBd = try numNodes(bd, path: path)
        let bdX = try tensor(bd, "x", "bd.x")
        if let bdX, bdX.shape.count == 2, numBd == nil || bdX.shape[0] == numBd! {
            out[TileTensor.bdX] = bdX
        } else if let bdX, bdX.shape.count == 2, let n = numBd {
            guard bdX.shape[0] > n, bdX.dtype.isFloatingPoint, bdX.floats().allSatisfy({ $0.isNaN }) else {
                throw fail("bd.x has \(bdX.shape[0]) rows but bd has \(n) nodes (PyG's node count: num_nodes, else the first of x/pos in the store) and is not segger's all-NaN per-vertex layout (more rows than boundaries, every value NaN): cannot tell which row is which boundary")
            }
            out[TileTensor.bdX] = Tensor([Float](repeating: 0, count: n * bdX.shape[1]), shape: [n, bdX.shape[1]])
            notes.append("bd.x: \(bdX.shape[0]) all-NaN rows (one per polygon vertex) for \(n) boundaries, read as zeros [\(n), \(bdX.shape[1])] as the model sees them after nan_to_num")
        } else if let bdX {
            out[TileTensor.bdX] = bdX // wrong rank: validation names it
        } else if numBd ?? 0 == 0 {
            out[TileTensor.bdX] = Tensor([Float](), shape: [0, 4])
            notes.append("no bd.x and no boundaries: bd.x read as [0, 4]")
        } else {
            throw fail("bd has \(numBd!) nodes but no 'bd.x'")
        }
        if let p = try tensor(bd, "pos", "bd.pos") { out[TileTensor.bdPos] = asF32(p) }
        var ids: [String]? = nil
        if let v = bd?["id"] {
            if case .ndarray(let a) = v, let strings = a.strings {
                ids = strings
                out[TileTensor.bdID] = Tile.encodeBoundaryIDs(strings)
            } else {
                notes.append("bd.id is a \(v.kind) that is not a 1-D array of strings or integers: boundary ids not read")
            }
        }

        let nn = edges["tx__neighbors__tx"]
        if let e = try tensor(nn, "edge_index", TileTensor.neighborsEdgeIndex) { out[TileTensor.neighborsEdgeIndex] = e }
        let belongs = edges["tx__belongs__bd"]
        if let e = try tensor(belongs, "edge_index", TileTensor.belongsEdgeIndex) {
            out[TileTensor.belongsEdgeIndex] = e
        } else {
            out[TileTensor.belongsEdgeIndex] = Tensor([Int64](), shape: [2, 0])
            notes.append("no (tx, belongs, bd) edges: read as an empty edge_index [2, 0]")
        }
        if let e = try tensor(belongs, "edge_label_index", TileTensor.labelIndex) { out[TileTensor.labelIndex] = e }
        if let e = try tensor(belongs, "edge_label", TileTensor.label) { out[TileTensor.label] = e }
        return TorchTileContents(tensors: out, boundaryIDs: ids, notes: notes)
    }

    static func asF32(_ t: Tensor) -> Tensor {
        t.dtype == .F32 ? t : Tensor(t.floats(), shape: t.shape)
    }
}
