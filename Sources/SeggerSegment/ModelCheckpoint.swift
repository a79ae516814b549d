// The trained model for prediction: its config and weights from a segger-train checkpoint
// (.safetensors with metadata `model_config`) or from segger's Lightning `.ckpt` (config read off the
// tensor shapes). Reads the files directly (SafeTensors, TorchCheckpoint) rather than through the
// trainer's Checkpoint type: prediction never depends on the trainer, and it needs only the weights.
import Foundation
import SafeTensors
import SeggerModel
import SeggerTiles

/// A model ready for prediction and where its config came from.
public struct PredictionModel {
    public var config: ModelConfig
    public var model: SeggerModel
    /// "metadata" (the checkpoint states it) or "shapes" (inferred from the weights).
    public var configSource: String

    /// Reads `path`: `.ckpt`/`.pt`/`.pth` as a torch file, anything else as safetensors. Errors name the file.
    public static func load(path: String) throws -> PredictionModel {
        var tensors: [String: Tensor]
        var config: ModelConfig?
        var isTorch = false
        do {
            if path.hasSuffix(".ckpt") || path.hasSuffix(".pt") || path.hasSuffix(".pth") {
                tensors = try TorchCheckpoint.readModelWeights(path: path)
                isTorch = true
            } else {
                let file = try SafeTensorsFile.read(path: path)
                if let json = file.metadata["model_config"] {
                    do { config = try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8)) } catch {
                        throw SegmentError("--checkpoint \(path): metadata 'model_config' is not a valid model config (\(error))")
                    }
                }
                tensors = [:]
                for (k, v) in file.tensors where !k.hasPrefix("optimizer.") {
                    tensors[k.hasPrefix("model.") ? String(k.dropFirst(6)) : k] = v
                }
            }
        } catch let e as SegmentError {
            throw e
        } catch {
            throw SegmentError("--checkpoint \(path): \(error)")
        }
        let source = config == nil ? "shapes" : "metadata"
        let c: ModelConfig
        if let config { c = config } else { c = try inferConfig(tensors, path: path, torch: isTorch) }
        guard c.numTxTokens > 0, c.initEmb > 0, c.hiddenChannels > 0, c.outChannels > 0, c.heads > 0, c.midLayers >= 0,
              c.bdFeatureDim > 0, c.numTxTokens < 1 << 26, c.initEmb < 1 << 16, c.hiddenChannels < 1 << 16,
              c.outChannels < 1 << 16, c.heads < 1 << 10, c.midLayers < 1 << 10, c.bdFeatureDim < 1 << 16,
              (c.txFeatureDim ?? 1) > 0, (c.txFeatureDim ?? 1) < 1 << 20 else {
            throw SegmentError("--checkpoint \(path): model config out of range: \(c)")
        }
        let model = SeggerModel(config: c, seed: 0)
        do { try model.loadWeights(tensors, source: path) } catch {
            throw SegmentError("--checkpoint \(error)")
        }
        for p in model.parameters {
            if let i = model.weights[p.range].firstIndex(where: { !$0.isFinite }) {
                throw SegmentError("--checkpoint \(path): tensor '\(p.name)' holds a non-finite weight (\(model.weights[i]))")
            }
        }
        return PredictionModel(config: c, model: model, configSource: source)
    }

    /// The config from the weights' shapes (SPEC §3 names): vocabulary and input width from the
    /// embedding, heads and channels from the attention vectors, middle layers by count, the architecture
    /// from the residual linears (present: segger's documented architecture, which also L2-normalizes;
    /// absent: segger main, which does not). `aggr` is "sum": with one relation into each node type, sum
    /// and mean agree.
    static func inferConfig(_ t: [String: Tensor], path: String, torch: Bool) throws -> ModelConfig {
        func shape(_ name: String, rank: Int) throws -> [Int] {
            guard let s = t[name]?.shape else {
                throw SegmentError("--checkpoint \(path): cannot infer the model config: no tensor '\(name)'\(torch ? "" : " and no 'model_config' metadata") (is this a segger model checkpoint?)")
            }
            guard s.count == rank else { throw SegmentError("--checkpoint \(path): tensor '\(name)' has shape \(s), expected \(rank) dimensions") }
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
            throw SegmentError("--checkpoint \(path): middle layers \(mids.sorted()) are not numbered 0..<\(mids.count)")
        }
        c.midLayers = mids.count
        c.residual = t["lin_first.tx.weight"] != nil
        c.l2Normalize = c.residual
        c.aggr = .sum
        return c
    }
}
