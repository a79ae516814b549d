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

/// Where a run starts from.
public enum ResumeMode: Equatable, Sendable {
    /// Start fresh.
    case none
    /// `--resume last`: continue from `<root>/checkpoints/last.safetensors` (it must exist).
    case last
    /// `--resume auto`: continue from `last` when it exists, else start fresh (for requeued jobs).
    case auto
    /// Continue from this checkpoint file.
    case path(String)

    public init(_ text: String?) {
        switch text {
        case nil, "", "none": self = .none
        case "last": self = .last
        case "auto": self = .auto
        case let p?: self = .path(p)
        }
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
    /// Checkpoints to keep besides `last` and the best by validation AUROC.
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

    /// The run's settings as flat key/value pairs (for hparams.yaml and checkpoint metadata).
    public var hyperparameters: [(String, String)] {
        var out: [(String, String)] = [
            ("train_dir", trainDir), ("val_dir", valDir ?? ""), ("default_root_dir", rootDir),
            ("batch_size_train", "\(batchSizeTrain)"), ("batch_size_val", "\(batchSizeVal)"),
            ("epochs", "\(epochs)"),
            ("num_tx_tokens", "\(model.numTxTokens)"), ("init_emb", "\(model.initEmb)"),
            ("hidden_channels", "\(model.hiddenChannels)"), ("out_channels", "\(model.outChannels)"),
            ("heads", "\(model.heads)"), ("mid_layers", "\(model.midLayers)"), ("aggr", model.aggr.rawValue),
            ("residual", "\(model.residual)"), ("l2_normalize", "\(model.l2Normalize)"),
            ("tx_feature_dim", model.txFeatureDim.map(String.init) ?? "null"),
            ("bd_feature_dim", "\(model.bdFeatureDim)"),
            ("optimizer", optimizer.kind.rawValue), ("lr", "\(optimizer.lr)"),
            ("weight_decay", "\(optimizer.weightDecay)"), ("betas", "[\(optimizer.beta1), \(optimizer.beta2)]"),
            ("eps", "\(optimizer.eps)"), ("grad_clip", optimizer.maxNorm.map { "\($0)" } ?? "null"),
            ("seed", "\(seed)"), ("grad_compression", compression.rawValue),
            ("loss_reduction", lossReduction.rawValue), ("bucket_cap_mb", "\(bucketCapMB)"),
            ("drop_last", "\(dropLast)"), ("skip_bad_tiles", "\(skipBadTiles)"),
        ]
        if let w = initWeights { out.append(("init_weights", w)) }
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

    public static func fromJSON(_ text: String) throws -> ModelConfig {
        try JSONDecoder().decode(ModelConfig.self, from: Data(text.utf8))
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
