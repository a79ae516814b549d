// Checkpoints: one safetensors file with the weights under `model.<PyG name>`, the optimizer state and
// the training position, written atomically by rank 0. Enough for --resume to continue exactly.
import Foundation
import SafeTensors
import SeggerDistributed
import SeggerModel
import SeggerTiles

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
    /// File name (inside `<root>/checkpoints`) of the best epoch checkpoint so far. Read back only as a
    /// name to compare, never as a path to act on (older checkpoints stored a full path).
    public var bestCheckpoint: String?
    /// The run's lineage: created at a fresh start, carried over by a resume within the same root. A run
    /// removes only epoch checkpoints whose metadata carries its own id.
    public var runID: String?

    public init(epoch: Int = 0, batchInEpoch: Int = 0, globalStep: Int = 0, batchesSeen: Int = 0, seed: UInt64,
                worldSize: Int, batchSizeTrain: Int, skippedSteps: Int = 0, bestAUROC: Double? = nil,
                bestCheckpoint: String? = nil, runID: String? = nil) {
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
        self.runID = runID
    }

    /// Largest epoch or step count accepted from a checkpoint (counters stay far from overflow).
    static let counterLimit = 1 << 40

    /// Checks a position read from `source` against this run: every field in range and the fields
    /// consistent with each other, `batchInEpoch` below this run's `batchesPerEpoch`, and the optimizer's
    /// step count equal to the steps taken. Errors name the field.
    public func validate(source: String, batchesPerEpoch: Int, optimizerStep: Int) throws {
        func bad(_ field: String, _ value: String, _ why: String) -> CollectiveError {
            CollectiveError("\(source): training position field '\(field)' is \(value): \(why) (was the checkpoint edited or damaged?)")
        }
        for (field, v) in [("epoch", epoch), ("globalStep", globalStep), ("batchesSeen", batchesSeen),
                           ("skippedSteps", skippedSteps), ("batchInEpoch", batchInEpoch)] where !(0...TrainingPosition.counterLimit).contains(v) {
            throw bad(field, "\(v)", "must lie in 0…\(TrainingPosition.counterLimit)")
        }
        guard (1...(1 << 24)).contains(worldSize) else { throw bad("worldSize", "\(worldSize)", "must lie in 1…\(1 << 24)") }
        guard (1...Int(Int32.max)).contains(batchSizeTrain) else {
            throw bad("batchSizeTrain", "\(batchSizeTrain)", "must lie in 1…\(Int32.max)")
        }
        guard batchesSeen == globalStep + skippedSteps else {
            throw bad("batchesSeen", "\(batchesSeen)", "must equal globalStep + skippedSteps = \(globalStep) + \(skippedSteps)")
        }
        guard batchInEpoch < max(1, batchesPerEpoch) else {
            throw bad("batchInEpoch", "\(batchInEpoch)", "this run has \(batchesPerEpoch) global batch(es) per epoch, so it must be below that")
        }
        if let a = bestAUROC, !(a.isFinite && (0...1).contains(a)) {
            throw bad("bestAUROC", "\(a)", "an AUROC lies in [0, 1]")
        }
        if let id = runID, !CheckpointDirectory.isValidRunID(id) {
            throw bad("runID", "'\(id.prefix(80))'", "expected 16 to 64 lowercase hex digits")
        }
        guard optimizerStep == globalStep else {
            throw CollectiveError("\(source): optimizer.step is \(optimizerStep) but the training position has taken \(globalStep) step(s): they must be equal (was the checkpoint edited or damaged?)")
        }
    }
}

/// A checkpoint read back from disk.
public struct Checkpoint {
    public var path: String
    public var model: ModelConfig
    public var optimizer: OptimizerConfig?
    public var position: TrainingPosition?
    /// The file as read (weights under `model.`, optimizer state under `optimizer.`).
    public var file: ModelFile
    public var tensors: [String: Tensor] { file.tensors }

    /// Metadata keys.
    static let formatKey = "format", modelKey = ModelFile.configKey, optimizerKey = "optimizer_config",
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

    /// Reads a checkpoint written by `write` through the one model-file reader (`ModelFile`): its
    /// stated model config is required (decoded, every size in range), its training position decoded
    /// when present. Errors are `InputError`s naming the file and the field.
    public static func read(path: String) throws -> Checkpoint {
        let file = try ModelFile.read(path: path)
        guard let model = try file.statedConfig() else {
            throw InputError(path: path, "not a segger-train checkpoint (no '\(modelKey)' metadata)")
        }
        var optimizer: OptimizerConfig?
        if let json = file.metadata[optimizerKey] {
            optimizer = try? JSONDecoder().decode(OptimizerConfig.self, from: Data(json.utf8))
        }
        return Checkpoint(path: path, model: model, optimizer: optimizer, position: try position(file.metadata, path: path),
                          file: file)
    }

    /// The training position in a checkpoint's metadata (nil when it has none).
    static func position(_ metadata: [String: String], path: String) throws -> TrainingPosition? {
        guard let json = metadata[positionKey] else { return nil }
        do { return try JSONDecoder().decode(TrainingPosition.self, from: Data(json.utf8)) } catch {
            throw InputError(path: path, "metadata '\(positionKey)' is not valid: \(diagnosePosition(json) ?? ModelFile.describe(error))")
        }
    }

    /// Which field of a training position's JSON is unusable ("field 'epoch' is 1e+300: …"), when the
    /// decoder's own error does not say (a number out of Int's range is reported as invalid JSON).
    static func diagnosePosition(_ json: String) -> String? {
        guard let any = try? JSONSerialization.jsonObject(with: Data(json.utf8)), let dict = any as? [String: Any] else {
            return nil
        }
        let integers = ["epoch", "batchInEpoch", "globalStep", "batchesSeen", "worldSize", "batchSizeTrain", "skippedSteps", "seed"]
        for key in integers {
            guard let v = dict[key] else { return "field '\(key)' is missing" }
            guard let n = v as? NSNumber, !(v is Bool) else { return "field '\(key)' is \(v), not an integer" }
            let d = n.doubleValue
            let fits = key == "seed" ? (d >= 0 && d <= 0x1p64) : (d >= -9.2e18 && d <= 9.2e18)
            guard d == d.rounded(), fits else { return "field '\(key)' is \(n), not an integer in range" }
        }
        return nil
    }

    /// The run id in a checkpoint file's metadata (its header alone is read); nil when the file has none
    /// or cannot be read.
    public static func runID(ofFile path: String) -> String? {
        guard let header = try? SafeTensorsFile.readHeader(path: path) else { return nil }
        return (try? position(header.metadata, path: path))?.runID
    }
}

// MARK: - Untrusted tensors

/// Checks of optimizer state read from a checkpoint, made before it is loaded: what a loader would take
/// silently (NaN, inf, a negative second moment, state of another precision) is an error that names the
/// file and the tensor. (Weights are checked by `ModelFile.loadWeights(into:)`.)
public enum TensorChecks {
    /// The optimizer state of a checkpoint: `optimizer.exp_avg` / `exp_avg_sq` F32 [count], finite, the
    /// second moment non-negative, `optimizer.step` a non-negative integer. Returns the step.
    @discardableResult
    public static func requireValidOptimizerState(_ tensors: [String: Tensor], count: Int, source: String) throws -> Int {
        for name in ["optimizer.exp_avg", "optimizer.exp_avg_sq"] {
            guard let t = tensors[name] else {
                throw InputError(path: source, "optimizer state missing: no tensor '\(name)' (a checkpoint written by segger-train train has optimizer.exp_avg, optimizer.exp_avg_sq and optimizer.step)")
            }
            guard t.dtype == .F32 else {
                throw InputError(path: source, "tensor '\(name)' has dtype \(t.dtype.rawValue); segger-train keeps the optimizer state in F32 and does not convert it")
            }
            guard t.shape == [count] else {
                throw InputError(path: source, "tensor '\(name)' has shape \(t.shape); the model has \(count) parameters, so it must be [\(count)]")
            }
            let v = t.floats()
            if let problem = ModelFile.nonFinite(v) { throw InputError(path: source, "tensor '\(name)' \(problem)") }
            if name == "optimizer.exp_avg_sq", let i = v.firstIndex(where: { $0 < 0 }) {
                throw InputError(path: source, "tensor '\(name)' holds a negative value (\(v[i]) at index \(i)); a second moment is never negative")
            }
        }
        guard let s = tensors["optimizer.step"] else {
            throw InputError(path: source, "optimizer state missing: no tensor 'optimizer.step'")
        }
        guard let steps = s.int64s(), steps.count == 1, let step = steps.first else {
            throw InputError(path: source, "tensor 'optimizer.step' has dtype \(s.dtype.rawValue) and shape \(s.shape); expected one integer")
        }
        guard (0...Int64(TrainingPosition.counterLimit)).contains(step) else {
            throw InputError(path: source, "tensor 'optimizer.step' is \(step); it must lie in 0…\(TrainingPosition.counterLimit)")
        }
        return Int(step)
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
