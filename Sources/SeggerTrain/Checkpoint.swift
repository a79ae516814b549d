// Checkpoints: one safetensors file with the weights under `model.<PyG name>`, the optimizer state and
// the training position, written atomically by rank 0. Enough for --resume to continue exactly.
import Foundation
import SafeTensors
import SeggerModel

/// Where training stands: what a resumed run needs besides weights and optimizer moments.
public struct TrainingPosition: Codable, Equatable, Sendable {
    /// Epoch to run next (0-based) and the index of the next global batch within it.
    public var epoch: Int
    public var batchInEpoch: Int
    /// Optimizer steps taken so far (skipped overflow steps not included).
    public var globalStep: Int
    /// Global batches processed so far (taken or skipped).
    public var batchesSeen: Int
    public var seed: UInt64
    public var worldSize: Int
    public var batchSizeTrain: Int
    public var skippedSteps: Int
    public var bestAUROC: Double?
    public var bestCheckpoint: String?

    public init(epoch: Int = 0, batchInEpoch: Int = 0, globalStep: Int = 0, batchesSeen: Int = 0, seed: UInt64,
                worldSize: Int, batchSizeTrain: Int, skippedSteps: Int = 0, bestAUROC: Double? = nil,
                bestCheckpoint: String? = nil) {
        self.epoch = epoch
        self.batchInEpoch = batchInEpoch
        self.globalStep = globalStep
        self.batchesSeen = batchesSeen
        self.seed = seed
        self.worldSize = worldSize
        self.batchSizeTrain = batchSizeTrain
        self.skippedSteps = skippedSteps
        self.bestAUROC = bestAUROC
        self.bestCheckpoint = bestCheckpoint
    }
}

/// A checkpoint read back from disk.
public struct Checkpoint {
    public var path: String
    public var model: ModelConfig
    public var optimizer: OptimizerConfig?
    public var position: TrainingPosition?
    /// Every tensor of the file (weights under `model.`, optimizer state under `optimizer.`).
    public var tensors: [String: Tensor]

    /// Metadata keys.
    static let formatKey = "format", modelKey = "model_config", optimizerKey = "optimizer_config",
        positionKey = "training_position"

    /// Writes weights, optimizer state and position atomically to `path`.
    public static func write(to path: String, model: SeggerModel, optimizer: Optimizer,
                             optimizerConfig: OptimizerConfig, position: TrainingPosition,
                             hyperparameters: [(String, String)]) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var meta: [String: String] = [
            formatKey: "segger-train-checkpoint",
            "version": "1",
            modelKey: model.config.json,
            optimizerKey: optimizerConfig.json,
            positionKey: String(decoding: try enc.encode(position), as: UTF8.self),
            "epoch": "\(position.epoch)", "global_step": "\(position.globalStep)",
        ]
        for (k, v) in hyperparameters { meta["hparams.\(k)"] = v }
        let tensors = model.weightTensors(prefix: "model.") + optimizer.stateTensors()
        try SafeTensorsFile.write(tensors, metadata: meta, to: path)
    }

    /// Reads a checkpoint written by `write`, or any safetensors file of PyG-named weights (with or
    /// without `model.`), in which case `model` comes from `fallbackConfig`.
    public static func read(path: String, fallbackConfig: ModelConfig? = nil) throws -> Checkpoint {
        let file = try SafeTensorsFile.read(path: path)
        var model: ModelConfig
        if let json = file.metadata[modelKey] {
            do { model = try ModelConfig.fromJSON(json) } catch {
                throw OutputError("\(path): metadata '\(modelKey)' is not a valid model config")
            }
        } else if let fallbackConfig {
            model = fallbackConfig
        } else {
            throw OutputError("\(path): not a segger-train checkpoint (no '\(modelKey)' metadata)")
        }
        var optimizer: OptimizerConfig?
        if let json = file.metadata[optimizerKey] {
            optimizer = try? JSONDecoder().decode(OptimizerConfig.self, from: Data(json.utf8))
        }
        var position: TrainingPosition?
        if let json = file.metadata[positionKey] {
            do { position = try JSONDecoder().decode(TrainingPosition.self, from: Data(json.utf8)) } catch {
                throw OutputError("\(path): metadata '\(positionKey)' is not valid")
            }
        }
        return Checkpoint(path: path, model: model, optimizer: optimizer, position: position, tensors: file.tensors)
    }

    /// Weight tensors only, keyed by PyG name (the `model.` prefix removed).
    public var weights: [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, v) in tensors where !k.hasPrefix("optimizer.") {
            out[k.hasPrefix("model.") ? String(k.dropFirst(6)) : k] = v
        }
        return out
    }
}

/// FNV-1a 64-bit hash, for digests that ranks compare (equal digests: equal bytes).
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    }

    var hex: String { String(format: "%016llx", value) }
}

/// FNV-1a 64-bit digest of a Float buffer's bytes: equal digests mean bit-identical weights.
public func weightsDigest(_ w: UnsafeMutableBufferPointer<Float>) -> String {
    var h = FNV1a()
    h.add(UnsafeRawBufferPointer(w))
    return h.hex
}
