// Everything a training run is configured by. The CLI fills it from flags; checkpoints and
// hparams.yaml record it.
import Foundation
import SeggerDistributed
import SeggerModel

/// How the step's loss is reduced across ranks.
public enum LossReduction: String, Codable, Sendable, CaseIterable {
    /// Mean over every label pair of the global batch: N ranks train exactly what one rank would
    /// train on the same tiles (each rank's gradient weighted by its share of the pairs).
    case globalMean = "global_mean"
    /// PyTorch DDP's semantics: each rank's own mean, gradients averaged over ranks.
    case rankMean = "rank_mean"
}

/// Lightning's `--precision` values and the gradient exchange each implies (compute is fp32 throughout).
public enum Precision: String, Sendable, CaseIterable {
    case mixed16 = "16-mixed", plain16 = "16", true16 = "16-true"
    case bf16Mixed = "bf16-mixed", bf16 = "bf16", bf16True = "bf16-true"
    case full32 = "32", true32 = "32-true"

    /// The gradient exchange this precision implies.
    public var impliedCompression: GradientCompression {
        switch self {
        case .mixed16, .plain16, .true16: return .fp16
        case .bf16Mixed, .bf16, .bf16True: return .bf16
        case .full32, .true32: return .none
        }
    }
}

/// Where a run starts from.
public enum ResumeMode: Equatable, Sendable {
    /// Start fresh (the root's checkpoints directory must hold no checkpoint).
    case none
    /// `--resume last`: continue from `<root>/checkpoints/last.safetensors` (it must exist).
    case last
    /// `--resume auto`: continue from `last` when it exists, else start fresh (for requeued jobs).
    case auto
    /// Continue from this checkpoint file.
    case path(String)

    /// `last`, `auto`, or a path; nil for an empty argument.
    public init?(argument text: String) {
        switch text {
        case "": return nil
        case "last": self = .last
        case "auto": self = .auto
        default: self = .path(text)
        }
    }
}

/// A value of hparams.yaml: strings are always quoted there, whatever they look like.
public enum HyperparameterValue: Equatable, Sendable {
    case string(String), int(Int), unsigned(UInt64), float(Double), bool(Bool), null, floats([Double])

    /// The value as checkpoint metadata and logs show it (unquoted).
    public var text: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return "\(i)"
        case .unsigned(let u): return "\(u)"
        case .float(let x): return HyperparameterValue.yamlFloat(x)
        case .bool(let b): return "\(b)"
        case .null: return "null"
        case .floats(let xs): return "[" + xs.map(HyperparameterValue.yamlFloat).joined(separator: ", ") + "]"
        }
    }

    /// The value as a YAML scalar: a double-quoted string (JSON escapes, which YAML reads alike) or a
    /// plain number / bool / null / flow list.
    public var yaml: String {
        guard case .string(let s) = self else { return text }
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7f || (0x80...0x9f).contains(u.value) || u.value == 0x2028 || u.value == 0x2029 || u.value == 0xFEFF {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// A float YAML 1.1 readers (PyYAML) take as a float: a '.' in the mantissa (`1.0e-05`, not `1e-05`),
    /// and `.inf` / `.nan`.
    static func yamlFloat(_ x: Double) -> String {
        if x.isNaN { return ".nan" }
        if x.isInfinite { return x > 0 ? ".inf" : "-.inf" }
        var t = "\(x)"
        if let e = t.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            var mantissa = String(t[..<e]), exponent = String(t[t.index(after: e)...])
            if !mantissa.contains(".") { mantissa += ".0" }
            if !exponent.hasPrefix("-") && !exponent.hasPrefix("+") { exponent = "+" + exponent }
            t = mantissa + "e" + exponent
        } else if !t.contains(".") {
            t += ".0"
        }
        return t
    }
}

/// Settings of one training run.
public struct TrainOptions: Sendable {
    public var trainDir: String = ""
    public var valDir: String? = nil
    public var rootDir: String = "./runs"
    public var batchSizeTrain: Int = 4
    public var batchSizeVal: Int = 4
    public var epochs: Int = 100
    public var model = ModelConfig()
    public var optimizer = OptimizerConfig()
    public var seed: UInt64 = 0
    public var compression: GradientCompression = .fp16
    public var lossReduction: LossReduction = .globalMean
    public var bucketCapMB: Double = 0.25
    /// How in-flight gradient buckets are driven during backward, and the helper thread's interval (s).
    public var exchangeProgress: ExchangeProgress = .thread
    public var exchangePollInterval: Double = ExchangeProgress.defaultInterval
    public var dropLast: Bool = false
    public var skipBadTiles: Bool = false
    public var resume: ResumeMode = .none
    public var initWeights: String? = nil
    /// Epoch checkpoints to keep besides `last` and the best by validation AUROC; -1 keeps all (Lightning).
    public var saveTopK: Int = 3
    /// Write a training-loss row to metrics.csv every this many steps (Lightning's default is 50).
    public var logEveryNSteps: Int = 50
    /// Seconds between plain progress lines when stdout is not a terminal.
    public var progressSeconds: Double = 30
    /// Stop after this many optimizer steps in total (for smoke tests and benchmarks); nil = no limit.
    public var maxSteps: Int? = nil
    /// Consecutive steps with non-finite reduced gradients before the run stops.
    public var maxConsecutiveOverflow: Int = 20
    /// Compare a digest of the weights across ranks at every epoch end.
    public var checkReplicas: Bool = true

    public init() {}

    /// The run's settings as typed key/value pairs (for hparams.yaml and checkpoint metadata).
    public var hyperparameters: [(String, HyperparameterValue)] {
        // Float settings are shown as the decimal that round-trips the Float (0.0001, not 9.99999974e-05).
        func float(_ x: Float) -> HyperparameterValue { .float(Double("\(x)") ?? Double(x)) }
        var out: [(String, HyperparameterValue)] = [
            ("train_dir", .string(trainDir)), ("val_dir", valDir.map { .string($0) } ?? .null),
            ("default_root_dir", .string(rootDir)),
            ("batch_size_train", .int(batchSizeTrain)), ("batch_size_val", .int(batchSizeVal)),
            ("epochs", .int(epochs)),
            ("num_tx_tokens", .int(model.numTxTokens)), ("init_emb", .int(model.initEmb)),
            ("hidden_channels", .int(model.hiddenChannels)), ("out_channels", .int(model.outChannels)),
            ("heads", .int(model.heads)), ("mid_layers", .int(model.midLayers)), ("aggr", .string(model.aggr.rawValue)),
            ("residual", .bool(model.residual)), ("l2_normalize", .bool(model.l2Normalize)),
            ("tx_feature_dim", model.txFeatureDim.map { .int($0) } ?? .null),
            ("bd_feature_dim", .int(model.bdFeatureDim)),
            ("optimizer", .string(optimizer.kind.rawValue)), ("lr", float(optimizer.lr)),
            ("weight_decay", float(optimizer.weightDecay)),
            ("betas", .floats([optimizer.beta1, optimizer.beta2].map { Double("\($0)") ?? Double($0) })),
            ("eps", float(optimizer.eps)), ("grad_clip", optimizer.maxNorm.map(float) ?? .null),
            ("seed", .unsigned(seed)), ("grad_compression", .string(compression.rawValue)),
            ("loss_reduction", .string(lossReduction.rawValue)), ("bucket_cap_mb", .float(bucketCapMB)),
            ("drop_last", .bool(dropLast)), ("skip_bad_tiles", .bool(skipBadTiles)),
            ("save_top_k", .int(saveTopK)), ("max_steps", .int(maxSteps ?? -1)),
        ]
        if let w = initWeights { out.append(("init_weights", .string(w))) }
        return out
    }
}

extension ModelConfig {
    /// JSON text of the config (checkpoint metadata).
    public var json: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try! enc.encode(self), as: UTF8.self)
    }

    /// The fields that differ from `other`, as "name: mine vs theirs" lines.
    public func differences(from other: ModelConfig) -> [String] {
        var out: [String] = []
        func cmp<T: Equatable>(_ name: String, _ a: T, _ b: T) { if a != b { out.append("\(name): \(a) vs \(b)") } }
        cmp("num_tx_tokens", numTxTokens, other.numTxTokens)
        cmp("init_emb", initEmb, other.initEmb)
        cmp("hidden_channels", hiddenChannels, other.hiddenChannels)
        cmp("out_channels", outChannels, other.outChannels)
        cmp("heads", heads, other.heads)
        cmp("mid_layers", midLayers, other.midLayers)
        cmp("tx_feature_dim", txFeatureDim.map(String.init) ?? "token mode", other.txFeatureDim.map(String.init) ?? "token mode")
        cmp("bd_feature_dim", bdFeatureDim, other.bdFeatureDim)
        cmp("residual", residual, other.residual)
        cmp("l2_normalize", l2Normalize, other.l2Normalize)
        cmp("aggr", aggr.rawValue, other.aggr.rawValue)
        return out
    }
}

extension OptimizerConfig {
    public var json: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try! enc.encode(self), as: UTF8.self)
    }
}
