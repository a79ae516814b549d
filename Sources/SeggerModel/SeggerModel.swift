// The segger model (SPEC §3): parameters in one flat buffer with named views under PyG names, an
// explicit forward/backward per layer over an activation arena that is sized per batch and reused.
import Foundation
import SafeTensors
import SeggerKernels
import SeggerTiles

/// A problem with weights: a missing or mis-shaped tensor, naming the file and the tensor.
public struct WeightsError: Error, CustomStringConvertible {
    public let source: String
    public let message: String
    public init(source: String, _ message: String) {
        self.source = source
        self.message = message
    }
    public var description: String { "\(source): \(message)" }
}

/// The heterogeneous GATv2 segger model.
///
/// Flat-buffer order is forward order (embeddings, `lin0`, `conv_first` + `lin_first`, each mid layer,
/// `conv_last` + `lin_last`), so the backward pass finishes parameters from the end of the buffer
/// towards its start — the order in which gradient buckets leave for the all-reduce.
public final class SeggerModel {
    public let config: ModelConfig
    /// Every parameter, in flat-buffer order.
    public let parameters: [ParameterInfo]
    /// Total number of Float parameters.
    public let parameterCount: Int
    /// Flat parameter buffer (fixed address for the model's life).
    public let weights: UnsafeMutableBufferPointer<Float>
    /// Flat gradient buffer, same layout as `weights`.
    public let gradients: UnsafeMutableBufferPointer<Float>

    /// Builds the model with PyG's initialization, deterministic for `seed`.
    public init(config: ModelConfig, seed: UInt64) {
        fatalError("TODO(model)")
    }

    deinit {
        weights.deallocate()
        gradients.deallocate()
    }

    /// The parameter with this PyG name.
    public func parameter(_ name: String) -> ParameterInfo? {
        parameters.first { $0.name == name }
    }

    /// Loads weights by PyG name (with or without Lightning's `model.` prefix). Every parameter must be
    /// present with its shape; extra tensors are ignored. Errors name `source` and the tensor.
    public func loadWeights(_ tensors: [String: Tensor], source: String) throws {
        fatalError("TODO(model)")
    }

    /// The weights as named tensors (PyG names, with `prefix` prepended), in flat-buffer order.
    public func weightTensors(prefix: String = "") -> [(String, Tensor)] {
        parameters.map { p in
            (prefix + p.name, Tensor(Array(weights[p.range]), shape: p.shape))
        }
    }

    /// The gradients as named tensors, in flat-buffer order.
    public func gradientTensors(prefix: String = "") -> [(String, Tensor)] {
        parameters.map { p in
            (prefix + p.name, Tensor(Array(gradients[p.range]), shape: p.shape))
        }
    }

    /// Runs the forward pass on a batch and the BCE-with-logits of its label pairs.
    /// - Returns: the sum over the batch's label pairs of `softplus(s) − y·s` (0 when it has none).
    @discardableResult
    public func forward(_ batch: Tile) -> Double {
        fatalError("TODO(model)")
    }

    /// One logit per label pair of the last forward pass.
    public var logits: UnsafeBufferPointer<Float> {
        fatalError("TODO(model)")
    }

    /// Final embeddings of the last forward pass: (`tx` [N_tx, H·Co], `bd` [N_bd, H·Co]) row-major.
    public func outputs() -> (tx: [Float], bd: [Float]) {
        fatalError("TODO(model)")
    }

    /// Backward of `lossScale · Σ_l bce_l` of the last forward pass: overwrites `gradients`.
    /// `onGradientsReady(offset)` is called as layers finish with decreasing offsets: every parameter
    /// at flat offset ≥ `offset` then holds its final gradient. The last call has offset 0.
    public func backward(lossScale: Float, onGradientsReady: ((Int) -> Void)? = nil) {
        fatalError("TODO(model)")
    }

    /// An activation of the last forward pass by its `to_hetero` module name (as in the golden files
    /// without the `act.` prefix), e.g. `tx_embedding.tx`, `lin0.bd`, `conv_first.tx__neighbors__tx.lin_l`,
    /// `conv_first.tx__neighbors__tx.aggr_module`, `conv_first.tx__neighbors__tx`, `lin_first.tx`.
    /// For tests and `dump-step`; nil when the name is unknown.
    public func activation(_ name: String) -> [Float]? {
        fatalError("TODO(model)")
    }

    /// Attention after the softmax, [E, H] in the relation's file edge order (`alpha.<conv>.<relation>`).
    public func attention(layer: String, relation: String) -> [Float]? {
        fatalError("TODO(model)")
    }
}
