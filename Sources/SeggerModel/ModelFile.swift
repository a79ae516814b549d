// The one reader of model files: a segger-train checkpoint or weights file (.safetensors, the config in
// metadata `model_config` or none), or segger's Lightning `.ckpt` / a torch `state_dict` (.pt, .pth), whose
// config is read off the tensor shapes. Training (--init_weights, --resume), eval, digest and predict all
// load through it, so a file passes or fails the same checks whichever command reads it: the stated config
// decoded and every size in range, the model within memory, every weight finite, every tensor present
// with its shape. Errors are `InputError`s naming the file (and the flag, where the caller gives it).
import Foundation
import SafeTensors
import SeggerTiles

/// Where a model file's config came from.
public enum ModelConfigSource: String, Sendable {
    /// The file states it (metadata `model_config`, written by segger-train).
    case metadata
    /// Inferred from the weights' shapes (segger's checkpoints, bare weights).
    case shapes
}

/// A model file read from disk: its tensors and metadata, not yet checked against a model.
public struct ModelFile {
    public let path: String
    /// Every tensor under its stored name (a checkpoint's weights under `model.`, its optimizer state
    /// under `optimizer.`).
    public var tensors: [String: Tensor]
    /// The safetensors metadata (empty for torch files).
    public var metadata: [String: String]
    /// True for a torch file (read by the restricted pickle reader).
    public let isTorch: Bool

    /// Metadata key of the model config.
    public static let configKey = "model_config"

    /// Reads `path`: a torch file for `.ckpt`, `.pt` and `.pth`, safetensors otherwise. Reading errors are
    /// `InputError`s naming the file.
    public static func read(path: String) throws -> ModelFile {
        if path.hasSuffix(".ckpt") || path.hasSuffix(".pt") || path.hasSuffix(".pth") {
            return ModelFile(path: path, tensors: try TorchCheckpoint.readStateDict(path: path), metadata: [:], isTorch: true)
        }
        do {
            let file = try SafeTensorsFile.read(path: path)
            return ModelFile(path: path, tensors: file.tensors, metadata: file.metadata, isTorch: false)
        } catch let e as SafeTensorsError {
            throw InputError(e)
        }
    }

    /// The weights by PyG name: the `model.`-prefixed tensors with the prefix removed when there are any
    /// (a Lightning module's state_dict, a segger-train checkpoint), else every tensor; optimizer state
    /// (`optimizer.`) never.
    public var weights: [String: Tensor] {
        let candidates = tensors.filter { !$0.key.hasPrefix("optimizer.") }
        let prefixed = candidates.filter { $0.key.hasPrefix("model.") }
        if prefixed.isEmpty { return candidates }
        var out: [String: Tensor] = [:]
        for (k, v) in prefixed { out[String(k.dropFirst(6))] = v }
        return out
    }

    /// The config the file states in its metadata, decoded and every size in range; nil when it states none.
    public func statedConfig() throws -> ModelConfig? {
        guard let json = metadata[ModelFile.configKey] else { return nil }
        let c: ModelConfig
        do { c = try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8)) } catch {
            throw InputError(path: path, "metadata '\(ModelFile.configKey)' is not a valid model config: \(ModelFile.describe(error))")
        }
        if let problem = c.sizeProblem {
            throw InputError(path: path, "metadata '\(ModelFile.configKey)': \(problem)")
        }
        return c
    }

    /// The stated config, or else the one the weights' shapes imply; every size in range.
    public func config() throws -> (config: ModelConfig, source: ModelConfigSource) {
        if let c = try statedConfig() { return (c, .metadata) }
        let c = try inferredConfig()
        if let problem = c.sizeProblem {
            throw InputError(path: path, "the model config its tensor shapes imply is out of range: \(problem)")
        }
        return (c, .shapes)
    }

    /// The config from the weights' shapes (PyG names): vocabulary and input width from the embedding,
    /// heads and channels from the attention vectors, middle layers by count, the architecture from the
    /// residual linears (present: segger's documented architecture, which also L2-normalizes; absent:
    /// segger main, which does not). `aggr` is "sum": with one relation into each node type, sum and mean
    /// agree.
    public func inferredConfig() throws -> ModelConfig {
        let t = weights
        func shape(_ name: String, rank: Int) throws -> [Int] {
            guard let s = t[name]?.shape else {
                throw InputError(path: path, "cannot infer the model config: no tensor '\(name)'\(isTorch ? "" : " and no '\(ModelFile.configKey)' metadata") (is this a segger model checkpoint?)")
            }
            guard s.count == rank else { throw InputError(path: path, "tensor '\(name)' has shape \(s), expected \(rank) dimensions") }
            return s
        }
        var c = ModelConfig()
        let emb = try shape("tx_embedding.tx.weight", rank: 2)
        c.numTxTokens = emb[0]
        c.initEmb = emb[1]
        let lin0tx = try shape("lin0.tx.weight", rank: 2)
        c.txFeatureDim = lin0tx[1] > 1 ? lin0tx[1] : nil  // width 1: PyG's lazy Linear in token mode
        c.bdFeatureDim = try shape("lin0.bd.weight", rank: 2)[1]
        let first = try shape("conv_first.tx__neighbors__tx.att", rank: 3)
        c.heads = first[1]
        c.hiddenChannels = first[2]
        c.outChannels = try shape("conv_last.tx__neighbors__tx.att", rank: 3)[2]
        var mids = Set<Int>()
        for k in t.keys where k.hasPrefix("conv_mid_layers.") {
            if let i = Int(k.dropFirst("conv_mid_layers.".count).prefix { $0 != "." }) { mids.insert(i) }
        }
        guard mids == Set(0..<mids.count) else {
            throw InputError(path: path, "middle layers \(mids.sorted()) are not numbered 0..<\(mids.count)")
        }
        c.midLayers = mids.count
        c.residual = t["lin_first.tx.weight"] != nil
        c.l2Normalize = c.residual
        c.aggr = .sum
        return c
    }

    /// Copies this file's weights into `model`, after checking them all: finite (unless `requireFinite`
    /// is false: `digest` reports the bytes as they are), every parameter present with its shape. Nothing
    /// changes in `model` when a check fails.
    public func loadWeights(into model: SeggerModel, requireFinite: Bool = true) throws {
        if requireFinite { try requireFiniteWeights(for: model.parameters) }
        try model.loadWeights(weights, source: path)
    }

    /// Every tensor of `parameters` that the file holds as floats is finite (an absent or mistyped one is
    /// left for `loadWeights` to name).
    public func requireFiniteWeights(for parameters: [ParameterInfo]) throws {
        let w = weights
        for p in parameters {
            guard let t = w[p.name], t.dtype.isFloatingPoint else { continue }
            if let problem = ModelFile.nonFinite(t.floats()) {
                throw InputError(path: path, "tensor '\(p.name)' \(problem): refusing to start from non-finite weights")
            }
        }
    }

    /// Reads `path` and builds its model: the config (stated or inferred) in range, the model with tiles
    /// up to `largestTile` within this process's memory (checked before anything is allocated), the
    /// weights loaded as `loadWeights(into:)` does. Errors name `--flag` and the file.
    public static func load(path: String, flag: String, largestTile: TileExtent = TileExtent(),
                            requireFinite: Bool = true) throws -> LoadedModel {
        do {
            let file = try read(path: path)
            let (config, source) = try file.config()
            let estimate = MemoryEstimate(config: config, tile: largestTile)
            if let problem = estimate.problem(what: "the model it holds (\(config.sizeSummary))") {
                throw InputError(path: path, problem)
            }
            let model = SeggerModel(config: config, seed: 0)
            try file.loadWeights(into: model, requireFinite: requireFinite)
            return LoadedModel(model: model, config: config, configSource: source)
        } catch let e as InputError {
            throw e.given(by: flag)
        }
    }

    /// "holds N non-finite value(s) of M (first: nan at index i)", or nil when all are finite.
    public static func nonFinite(_ v: [Float]) -> String? {
        guard let first = v.firstIndex(where: { !$0.isFinite }) else { return nil }
        let n = v.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
        return "holds \(n) non-finite value(s) of \(v.count) (first: \(v[first]) at index \(first))"
    }

    /// A decoding error as "field 'x': what" rather than Foundation's debug text.
    public static func describe(_ error: Error) -> String {
        func path(_ c: [CodingKey]) -> String { c.map(\.stringValue).joined(separator: ".") }
        switch error as? DecodingError {
        case .typeMismatch(_, let c)?: return "field '\(path(c.codingPath))' has the wrong type (\(c.debugDescription))"
        case .valueNotFound(_, let c)?: return "field '\(path(c.codingPath))' is null"
        case .keyNotFound(let k, let c)?: return "field '\(path(c.codingPath + [k]))' is missing"
        case .dataCorrupted(let c)?: return c.codingPath.isEmpty ? "not valid JSON" : "field '\(path(c.codingPath))': \(c.debugDescription)"
        default: return "\(error)"
        }
    }
}

/// A model built from a model file, with its config and where the config came from.
public struct LoadedModel {
    public var model: SeggerModel
    public var config: ModelConfig
    public var configSource: ModelConfigSource
}

extension TileExtent {
    /// The largest sizes over tile files, from their headers alone (no tensor data read).
    public static func largest(of paths: [String]) throws -> TileExtent {
        var e = TileExtent()
        for p in paths {
            let s = try TileCatalog.sizes(path: p)
            // (The tx feature width is not in TileSizes; the formula's D already covers a config's width.)
            e = e.union(TileExtent(nodes: s.numTx + s.numBd, edges: s.numNeighbors + s.numBelongs, labels: s.numLabels))
        }
        return e
    }
}

extension ModelConfig {
    /// Why `tile` cannot go through a model of this config (token vs embedding mode, feature widths,
    /// token ids beyond the vocabulary), for an `InputError` about the tile's file; nil when it can.
    public func incompatibility(with tile: Tile) -> String? {
        func mode(_ d: Int?) -> String { d.map { "embedding mode (tx.x features of width \($0))" } ?? "token mode" }
        if tile.txFeatureDim != txFeatureDim {
            return "in \(mode(tile.txFeatureDim)), but the model was trained in \(mode(txFeatureDim))"
        }
        if tile.bdDim != bdFeatureDim {
            return "boundary features (bd.x) of width \(tile.bdDim), but the model expects \(bdFeatureDim)"
        }
        if case .tokens(let ids) = tile.tx, let i = ids.firstIndex(where: { Int($0) >= numTxTokens }) {
            return "token id \(ids[i]) at row \(i) of tx.x is not below the model's num_tx_tokens \(numTxTokens)"
        }
        return nil
    }
}
