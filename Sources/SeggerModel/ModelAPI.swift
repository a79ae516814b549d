// The public face of the model, agreed between Model (forward/backward), Train (the loop) and
// Distributed (gradient buckets).
import Foundation
import SafeTensors
import SeggerTiles

/// How `to_hetero` combines the outputs of several relations into one node type.
public enum Aggregation: String, Codable, Sendable, CaseIterable {
    case sum, mean
}

/// Model hyper-parameters (docs/model-and-training.md). Codable so that checkpoints and hparams.yaml carry it.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var numTxTokens: Int = 500
    public var initEmb: Int = 8
    public var hiddenChannels: Int = 64
    public var outChannels: Int = 16
    public var heads: Int = 4
    public var midLayers: Int = 1
    /// Transcript feature width in embedding mode; nil in token mode.
    public var txFeatureDim: Int? = nil
    /// Boundary feature width F_bd.
    public var bdFeatureDim: Int = 4
    /// Documented architecture: residual linears per node type (default true).
    public var residual: Bool = true
    /// Documented architecture: L2-normalize the output embeddings (default true).
    public var l2Normalize: Bool = true
    public var aggr: Aggregation = .sum

    public init() {}
}

/// One named parameter tensor inside the flat parameter buffer.
public struct ParameterInfo: Equatable, Sendable {
    /// PyG state_dict name, e.g. `conv_first.tx__belongs__bd.lin_l.weight`.
    public let name: String
    public let shape: [Int]
    /// Offset of the first element in the flat buffer.
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }

    public init(name: String, shape: [Int], offset: Int) {
        self.name = name
        self.shape = shape
        self.offset = offset
    }
}
