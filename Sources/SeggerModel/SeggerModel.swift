// The segger model (docs/model-and-training.md): parameters in one flat buffer with named views under
// PyG names, an explicit forward/backward per layer over an activation arena that is sized per batch and
// reused.
import Foundation
import SeggerKernels
import SeggerRandom
import SeggerTiles

/// Relation names as `to_hetero` spells them.
public enum RelationName {
    public static let belongs = "tx__belongs__bd"
    public static let neighbors = "tx__neighbors__tx"
}

/// Where one GATv2 layer (both relations plus its residual linears) lives in the flat buffer.
///
/// Weights that read the same input are adjacent so that each group runs as one GEMM:
/// - tx block `[neighbors.lin_l; neighbors.lin_r; lin_X.tx]` [txCols, in], then their biases (lin_l and
///   lin_r run as one GEMM into rows [xl | xr]; the residual `lin_X.tx` as a second one into its own rows,
///   so that the edge kernels read and write rows of 2·width, as without residual);
/// - belongs source projection `belongs.lin_l` [H·C, in] and its bias (kept apart: it only needs the
///   transcripts that are sources of a belongs edge);
/// - bd block `[belongs.lin_r; lin_X.bd]` [bdCols, in], then their biases;
/// - `neighbors.att`, `neighbors.bias`, `belongs.att`, `belongs.bias`.
public struct LayerLayout: Sendable {
    /// `conv_first`, `conv_mid_layers.i`, `conv_last`.
    public let conv: String
    /// `lin_first`, `lin_mid_layers.i`, `lin_last`.
    public let lin: String
    public let inDim: Int
    /// Channels per head and the output width H·C.
    public let channels: Int
    public let width: Int
    /// Columns of the tx block (2·width, +width with residual) and of the bd block (width, +width).
    public let txCols: Int
    public let bdCols: Int
    public let isLast: Bool
    /// First flat offset of the layer.
    public var start = 0
    public var txW = 0, txB = 0, blW = 0, blB = 0, bdW = 0, bdB = 0
    public var nnAtt = 0, nnBias = 0, bAtt = 0, bBias = 0
}

/// sums[c] += Σ_r x[r, c] for c in 0..<cols, rows in order (x has row stride ld).
func columnSums(_ sums: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int) {
    addRows(into: sums, x, ld: ld, rows: rows, cols: cols)
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
    private let weightsRaw: UnsafeMutableRawPointer, gradientsRaw: UnsafeMutableRawPointer
    /// Flat gradient buffer, same layout as `weights`.
    public let gradients: UnsafeMutableBufferPointer<Float>
    /// The GATv2 layers in forward order, with their flat offsets.
    public let layers: [LayerLayout]
    /// Flat offsets of the input layer: `tx_embedding.tx`, `lin0.tx`, `lin0.bd`.
    public let embeddingOffset: Int
    public let lin0TxOffset: Int
    public let lin0BdOffset: Int
    /// Width of the output embeddings, H·Co.
    public var outputWidth: Int { layers.last!.width }

    // Division of each node type's conv output for aggr mean: one relation into tx, one into bd.
    private let scaleTx: Float
    private let scaleBd: Float

    // Activation arena (grows to the largest batch, then reused).
    // Internal rather than private where the tests read activations (Tests/SeggerModelTests/ModelInspection.swift).
    private(set) var nTx = 0, nBd = 0
    private var nLabels = 0
    private(set) var hasForward = false
    private let tokens = IndexScratch()
    // Transcripts are renumbered at each forward: the sources of belongs edges first, so that the
    // belongs relation's source projection reads and writes rows 0..<nBs of the tx buffers in place,
    // then the others; each part in breadth-first order for locality (`breadthFirstOrder`). Every
    // per-transcript buffer is in the new order; `txOrder` [nTx] maps new → file order, `txRank`
    // file → new. Everything public (outputs, activations, attention, logits) is reported in file order.
    private let txOrder = IndexScratch(), orderMark = IndexScratch(), orderQueue = IndexScratch()
    let txRank = IndexScratch()
    private let txFeatures = Scratch()
    private let bdFeatures = Scratch()
    private let labelTx = IndexScratch(), labelBd = IndexScratch()
    private let labelY = Scratch()
    let nn = RelationBuffers(), bl = RelationBuffers()
    let inputTx = Scratch()    // [nTx, I] embedding (or lin0.tx) before relu
    let inputBd = Scratch()    // [nBd, I] lin0.bd before relu
    let hTx: [Scratch]         // [L+1]: input of layer l; h[L] = output before L2 norm
    private let hBd: [Scratch]
    let yTx: [Scratch]         // [nTx, 2·width] per layer: [xl | xr] of the neighbors relation
    let rTx: [Scratch]         // [nTx, width] per layer: the residual linear lin_X.tx (with residual)
    let yBd: [Scratch]         // [nBd, bdCols] per layer
    let xlB: [Scratch]         // [nBs, width] per layer: belongs source projection of the
                                       // nBs transcripts that are sources of a belongs edge (rows 0..<nBs)
    private var nBs = 0
    private let reluMaskTx: [GrowableBuffer<UInt16>]   // [L]: where layer l's output > 0 after its relu
    private let reluMaskBd: [GrowableBuffer<UInt16>]   // (reluMaskWords per row; unused for the last layer)
    let alphaNN: [Scratch]     // [E_nn, H] grouped order
    let alphaB: [Scratch]      // [E_b, H]
    private let zTx = Scratch(), zBd = Scratch()     // L2-normalized outputs
    private let logitBuf = Scratch()
    // Backward scratch.
    private let dA = Scratch(), dB = Scratch()         // tx gradients, ping-pong [nTx, maxWidth]
    private let dBdA = Scratch(), dBdB = Scratch()     // bd gradients, ping-pong
    private let dYtx = Scratch(), dYbd = Scratch(), dXlB = Scratch()

    /// Builds the model with PyG's initialization, deterministic for `seed`.
    public init(config: ModelConfig, seed: UInt64) {
        precondition(config.numTxTokens > 0 && config.initEmb > 0 && config.hiddenChannels > 0 &&
                     config.outChannels > 0 && config.heads > 0 && config.midLayers >= 0 && config.bdFeatureDim > 0,
                     "model dimensions must be positive")
        self.config = config
        let H = config.heads, I = config.initEmb
        var params: [ParameterInfo] = []
        var inits: [ParameterInit] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int], _ initial: ParameterInit) -> Int {
            let o = offset
            params.append(ParameterInfo(name: name, shape: shape, offset: o))
            inits.append(initial)
            offset += shape.reduce(1, *)
            return o
        }
        func glorot(_ fanIn: Int, _ fanOut: Int) -> ParameterInit { .uniform((6 / Double(fanIn + fanOut)).squareRoot()) }
        func fanIn(_ n: Int) -> ParameterInit { .uniform(1 / Double(n).squareRoot()) }

        embeddingOffset = add("tx_embedding.tx.weight", [config.numTxTokens, I], .normal)
        _ = add("tx_embedding.bd.weight", [config.numTxTokens, I], .normal)
        let txIn = config.txFeatureDim ?? 1
        lin0TxOffset = add("lin0.tx.weight", [I, txIn], fanIn(txIn))
        lin0BdOffset = add("lin0.bd.weight", [I, config.bdFeatureDim], fanIn(config.bdFeatureDim))

        var layouts: [LayerLayout] = []
        let count = config.midLayers + 2
        for l in 0..<count {
            let isLast = l == count - 1
            let (conv, lin): (String, String) = l == 0 ? ("conv_first", "lin_first")
                : isLast ? ("conv_last", "lin_last") : ("conv_mid_layers.\(l - 1)", "lin_mid_layers.\(l - 1)")
            let inDim = l == 0 ? I : H * config.hiddenChannels
            let C = isLast ? config.outChannels : config.hiddenChannels
            let W = H * C
            let res = config.residual
            var L = LayerLayout(conv: conv, lin: lin, inDim: inDim, channels: C, width: W,
                                txCols: res ? 3 * W : 2 * W, bdCols: res ? 2 * W : W, isLast: isLast)
            let nnP = "\(conv).\(RelationName.neighbors)", bP = "\(conv).\(RelationName.belongs)"
            L.start = offset
            L.txW = add("\(nnP).lin_l.weight", [W, inDim], glorot(inDim, W))
            _ = add("\(nnP).lin_r.weight", [W, inDim], glorot(inDim, W))
            if res { _ = add("\(lin).tx.weight", [W, inDim], glorot(inDim, W)) }
            L.txB = add("\(nnP).lin_l.bias", [W], fanIn(inDim))
            _ = add("\(nnP).lin_r.bias", [W], fanIn(inDim))
            if res { _ = add("\(lin).tx.bias", [W], fanIn(inDim)) }
            L.blW = add("\(bP).lin_l.weight", [W, inDim], glorot(inDim, W))
            L.blB = add("\(bP).lin_l.bias", [W], fanIn(inDim))
            L.bdW = add("\(bP).lin_r.weight", [W, inDim], glorot(inDim, W))
            if res { _ = add("\(lin).bd.weight", [W, inDim], glorot(inDim, W)) }
            L.bdB = add("\(bP).lin_r.bias", [W], fanIn(inDim))
            if res { _ = add("\(lin).bd.bias", [W], fanIn(inDim)) }
            L.nnAtt = add("\(nnP).att", [1, H, C], glorot(H, C))
            L.nnBias = add("\(nnP).bias", [W], .zero)
            L.bAtt = add("\(bP).att", [1, H, C], glorot(H, C))
            L.bBias = add("\(bP).bias", [W], .zero)
            layouts.append(L)
        }
        layers = layouts
        parameters = params
        parameterCount = offset
        // Half a page apart: code that stores a gradient and then loads the weight at the same flat offset
        // (as the backward edge kernel did with datt[c] and att[c]) must not meet 4K aliasing.
        (weightsRaw, weights) = allocateAtPageOffset(Float.self, count: offset, line: 0)
        (gradientsRaw, gradients) = allocateAtPageOffset(Float.self, count: offset, line: 32)
        gradients.initialize(repeating: 0)
        var rng = SplitMix64(.modelInit, seed: seed)
        for (p, initial) in zip(params, inits) {
            for i in p.range {
                switch initial {
                case .zero: weights[i] = 0
                case .normal: weights[i] = Float(rng.normal())
                case .uniform(let b): weights[i] = Float((2 * rng.unit() - 1) * b)
                }
            }
        }
        let agg: (Int) -> Float = { n in config.aggr == .mean ? 1 / Float(n) : 1 }
        scaleTx = agg(1)   // tx receives only (tx, neighbors, tx)
        scaleBd = agg(1)   // bd receives only (tx, belongs, bd)
        hTx = (0...count).map { _ in Scratch() }
        hBd = (0...count).map { _ in Scratch() }
        yTx = (0..<count).map { _ in Scratch() }
        rTx = (0..<count).map { _ in Scratch() }
        yBd = (0..<count).map { _ in Scratch() }
        xlB = (0..<count).map { _ in Scratch() }
        reluMaskTx = (0..<count).map { _ in GrowableBuffer<UInt16>() }
        reluMaskBd = (0..<count).map { _ in GrowableBuffer<UInt16>() }
        alphaNN = (0..<count).map { _ in Scratch() }
        alphaB = (0..<count).map { _ in Scratch() }
    }

    deinit {
        weightsRaw.deallocate()
        gradientsRaw.deallocate()
    }

    // MARK: forward

    /// Runs the forward pass on a batch and the BCE-with-logits of its label pairs.
    /// - Returns: the sum over the batch's label pairs of `softplus(s) − y·s` (0 when it has none).
    @discardableResult
    public func forward(_ batch: Tile) -> Double {
        precondition(batch.bdDim == config.bdFeatureDim,
                     "boundary features have width \(batch.bdDim), the model expects \(config.bdFeatureDim)")
        precondition(batch.txFeatureDim == config.txFeatureDim,
                     "transcript input (\(batch.txFeatureDim.map { "features of width \($0)" } ?? "tokens")) does not match the model (\(config.txFeatureDim.map { "features of width \($0)" } ?? "tokens"))")
        let H = config.heads, I = config.initEmb
        nTx = batch.numTx; nBd = batch.numBd; nLabels = batch.numLabels
        let order = txOrder.reserve(nTx), rank = txRank.reserve(nTx)
        batch.neighbors.dstStart.withUnsafeBufferPointer { ds in
            batch.neighbors.srcByDst.withUnsafeBufferPointer { sb in
                breadthFirstOrder(n: nTx, dstStart: ds.baseAddress!, srcByDst: sb.baseAddress ?? UnsafePointer(order),
                                  order: order, rank: rank, mark: orderMark.reserve(nTx), queue: orderQueue.reserve(nTx))
            }
        }
        let isSource = orderQueue.reserve(nTx)
        isSource.update(repeating: 0, count: nTx)
        for j in batch.belongs.src { isSource[Int(j)] = 1 }
        nBs = moveFlaggedFirst(n: nTx, flag: isSource, order: order, rank: rank, moved: orderMark.reserve(nTx))
        nn.load(batch.neighbors, srcRank: rank, dstOrder: order)
        bl.load(batch.belongs, srcRank: rank)
        nn.markFirstUse(nn.srcByDst.p, n: nn.numSrc)
        bl.markFirstUse(bl.srcByDst.p, n: nBs)
        let lTx = labelTx.load(batch.labelTx)
        for q in 0..<nLabels { lTx[q] = rank[Int(lTx[q])] }
        let lBd = labelBd.load(batch.labelBd)
        let y = labelY.reserve(nLabels)
        batch.labels.withUnsafeBufferPointer { if let b = $0.baseAddress { y.update(from: b, count: nLabels) } }
        let w = UnsafePointer(weights.baseAddress!)

        // Input layer: h_tx = relu(E_tx[token]) or relu(x_tx·W0_txᵀ); h_bd = relu(x_bd·W0_bdᵀ).
        let inTx = inputTx.reserve(nTx * I), inBd = inputBd.reserve(nBd * I)
        switch batch.tx {
        case .tokens(let ids):
            let t = tokens.reserve(nTx)
            for r in 0..<nTx { t[r] = ids[Int(order[r])] }
            for r in 0..<nTx { precondition(t[r] >= 0 && Int(t[r]) < config.numTxTokens, "token id \(t[r]) out of range") }
            embeddingForward(out: inTx, table: w + embeddingOffset, index: t, n: nTx, dim: I)
        case .features(let v, let dim):
            let x = txFeatures.reserve(nTx * dim)
            v.withUnsafeBufferPointer { b in
                for r in 0..<nTx { (x + r * dim).update(from: b.baseAddress! + Int(order[r]) * dim, count: dim) }
            }
            linearForward(y: inTx, ldy: I, x: x, ldx: dim, w: w + lin0TxOffset, b: nil, n: nTx, inDim: dim, outDim: I)
        }
        let xBd = bdFeatures.reserve(nBd * batch.bdDim)
        batch.bdX.withUnsafeBufferPointer { if let b = $0.baseAddress { xBd.update(from: b, count: nBd * batch.bdDim) } }
        linearForward(y: inBd, ldy: I, x: xBd, ldx: batch.bdDim, w: w + lin0BdOffset, b: nil,
                      n: nBd, inDim: batch.bdDim, outDim: I)
        reluForward(y: hTx[0].reserve(nTx * I), x: inTx, count: nTx * I)
        reluForward(y: hBd[0].reserve(nBd * I), x: inBd, count: nBd * I)

        // GATv2 layers.
        for (l, L) in layers.enumerated() {
            let W = L.width
            let xTx = hTx[l].p, xBdL = hBd[l].p
            let yt = yTx[l].reserve(nTx * 2 * W), yb = yBd[l].reserve(nBd * L.bdCols)
            let xlb = xlB[l].reserve(nBs * W)
            linearForward(y: yt, ldy: 2 * W, x: xTx, ldx: L.inDim, w: w + L.txW, b: w + L.txB,
                          n: nTx, inDim: L.inDim, outDim: 2 * W)
            let rt: UnsafeMutablePointer<Float>? = config.residual ? rTx[l].reserve(nTx * W) : nil
            if let rt {
                linearForward(y: rt, ldy: W, x: xTx, ldx: L.inDim, w: w + L.txW + 2 * W * L.inDim, b: w + L.txB + 2 * W,
                              n: nTx, inDim: L.inDim, outDim: W)
            }
            linearForward(y: xlb, ldy: W, x: xTx, ldx: L.inDim, w: w + L.blW, b: w + L.blB,
                          n: nBs, inDim: L.inDim, outDim: W)
            linearForward(y: yb, ldy: L.bdCols, x: xBdL, ldx: L.inDim, w: w + L.bdW, b: w + L.bdB,
                          n: nBd, inDim: L.inDim, outDim: L.bdCols)
            let oTx = hTx[l + 1].reserve(nTx * W), oBd = hBd[l + 1].reserve(nBd * W)
            // Conv outputs with the epilogue fused: + residual linear, relu between layers.
            let res = config.residual
            gatv2Forward(numDst: nTx, dstStart: nn.dstStart.p, srcByDst: nn.srcByDst.p,
                         xl: yt, ldl: 2 * W, xr: yt + W, ldr: 2 * W,
                         att: w + L.nnAtt, bias: w + L.nnBias, heads: H, channels: L.channels,
                         alpha: alphaNN[l].reserve(nn.count * H), out: oTx, ldo: W, scale: scaleTx,
                         residual: rt.map { UnsafePointer($0) }, ldres: W, relu: !L.isLast,
                         reluMask: L.isLast ? nil : reluMaskTx[l].reserve(nTx * reluMaskWords(width: W)),
                         prefetchRows: nTx)
            gatv2Forward(numDst: nBd, dstStart: bl.dstStart.p, srcByDst: bl.srcByDst.p,
                         xl: xlb, ldl: W, xr: yb, ldr: L.bdCols,
                         att: w + L.bAtt, bias: w + L.bBias, heads: H, channels: L.channels,
                         alpha: alphaB[l].reserve(bl.count * H), out: oBd, ldo: W, scale: scaleBd,
                         residual: res ? UnsafePointer(yb + W) : nil, ldres: L.bdCols, relu: !L.isLast,
                         reluMask: L.isLast ? nil : reluMaskBd[l].reserve(nBd * reluMaskWords(width: W)))
        }

        // Output embeddings and the loss on label pairs.
        let D = outputWidth
        if config.l2Normalize {
            l2NormalizeForward(z: zTx.reserve(nTx * D), x: hTx[layers.count].p, rows: nTx, dim: D)
            l2NormalizeForward(z: zBd.reserve(nBd * D), x: hBd[layers.count].p, rows: nBd, dim: D)
        }
        hasForward = true
        return bceForward(logits: logitBuf.reserve(nLabels), ztx: finalTx, zbd: finalBd, dim: D,
                          labelTx: lTx, labelBd: lBd, labels: y, count: nLabels)
    }

    /// The final embeddings (L2-normalized or not) of the last forward pass: [nTx, D] and [nBd, D].
    private var finalTx: UnsafeMutablePointer<Float> { config.l2Normalize ? zTx.p : hTx[layers.count].p }
    private var finalBd: UnsafeMutablePointer<Float> { config.l2Normalize ? zBd.p : hBd[layers.count].p }

    /// One logit per label pair of the last forward pass.
    public var logits: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: logitBuf.p, count: hasForward ? nLabels : 0)
    }

    /// Final embeddings of the last forward pass: (`tx` [N_tx, H·Co], `bd` [N_bd, H·Co]) row-major.
    public func outputs() -> (tx: [Float], bd: [Float]) {
        guard hasForward else { return ([], []) }
        let D = outputWidth
        return (txRows(finalTx, ld: D, from: 0, count: D),
                Array(UnsafeBufferPointer(start: finalBd, count: nBd * D)))
    }

    /// Columns from..<from+count of the per-transcript rows p (row stride ld, internal order), in file order.
    func txRows(_ p: UnsafePointer<Float>, ld: Int, from: Int, count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: nTx * count)
        for r in 0..<nTx {
            let src = p + Int(txRank.p[r]) * ld + from
            for c in 0..<count { out[r * count + c] = src[c] }
        }
        return out
    }

    /// The final embeddings of the last forward pass without a copy (for inference, which reads a few
    /// rows per transcript): `body(tx, txRow, bd)` with `tx` [N_tx, H·Co] in the model's internal row
    /// order, `txRow[i]` the row of `tx` that holds file-order transcript i, and `bd` [N_bd, H·Co] in file
    /// order. The pointers are valid inside `body` only, until the next forward.
    public func withEmbeddings<R>(_ body: (_ tx: UnsafePointer<Float>, _ txRow: UnsafePointer<Int32>,
                                           _ bd: UnsafePointer<Float>) throws -> R) rethrows -> R {
        precondition(hasForward, "embeddings without a forward pass")
        return try body(finalTx, txRank.p, finalBd)
    }

    // MARK: backward

    /// Backward of `lossScale · Σ_l bce_l` of the last forward pass: overwrites `gradients`.
    /// `onGradientsReady(offset)` is called as parameters finish (within a layer: the bd weights, the
    /// belongs weights, the tx weights), with decreasing offsets: every parameter at flat offset ≥
    /// `offset` then holds its final gradient. The last call has offset 0.
    public func backward(lossScale: Float, onGradientsReady: ((Int) -> Void)? = nil) {
        precondition(hasForward, "backward without a forward pass")
        let H = config.heads, I = config.initEmb, D = outputWidth
        let w = UnsafePointer(weights.baseAddress!)
        let g = gradients.baseAddress!
        g.update(repeating: 0, count: parameterCount)
        let maxWidth = layers.reduce(I) { max($0, $1.width, $1.inDim) }
        var gTx = dA.reserve(nTx * maxWidth), gTxNext = dB.reserve(nTx * maxWidth)
        var gBd = dBdA.reserve(nBd * maxWidth), gBdNext = dBdB.reserve(nBd * maxWidth)

        // Loss → output embeddings (→ through the L2 normalization).
        gTx.update(repeating: 0, count: nTx * D)
        gBd.update(repeating: 0, count: nBd * D)
        bceBackward(dztx: gTx, dzbd: gBd, ztx: finalTx, zbd: finalBd, dim: D, logits: logitBuf.p,
                    labelTx: labelTx.p, labelBd: labelBd.p, labels: labelY.p, count: nLabels, scale: lossScale)
        if config.l2Normalize {
            l2NormalizeBackward(dx: gTx, dz: gTx, x: hTx[layers.count].p, z: zTx.p, rows: nTx, dim: D)
            l2NormalizeBackward(dx: gBd, dz: gBd, x: hBd[layers.count].p, z: zBd.p, rows: nBd, dim: D)
        }

        // GATv2 layers, last to first. gTx/gBd: gradient of the layer's output.
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let L = layers[l], W = L.width
            // dyt = [dxl | dxr]: only dxl accumulates (scattered over sources) and needs zeroing; the kernel
            // writes dxr. The residual's gradient is the (relu-masked) output gradient: the kernel writes it
            // over gTx in place (rows it has just read: no line is fetched only to be overwritten).
            // dyb = [dxr | d residual]: written.
            let dyt = dYtx.reserve(nTx * 2 * W), dyb = dYbd.reserve(nBd * L.bdCols)
            let dxlb = dXlB.reserve(nBs * W)
            // dxl rows are written by the first edge of each source; only sources without edges are zeroed.
            for u in 0..<nn.numUnused { (dyt + Int(nn.unusedSources.p[u]) * 2 * W).update(repeating: 0, count: W) }
            for u in 0..<bl.numUnused { (dxlb + Int(bl.unusedSources.p[u]) * W).update(repeating: 0, count: W) }
            let res = config.residual
            // Between layers the conv output went through relu: its gradient is masked inside the kernel, by
            // the mask the forward kernel wrote.
            let reluTx: UnsafePointer<UInt16>? = L.isLast ? nil : UnsafePointer(reluMaskTx[l].p)
            let reluBd: UnsafePointer<UInt16>? = L.isLast ? nil : UnsafePointer(reluMaskBd[l].p)
            let yt = yTx[l].p, yb = yBd[l].p
            gatv2Backward(numDst: nTx, dstStart: nn.dstStart.p, srcByDst: nn.srcByDst.p,
                          xl: yt, ldl: 2 * W, xr: yt + W, ldr: 2 * W,
                          att: w + L.nnAtt, heads: H, channels: L.channels, alpha: alphaNN[l].p,
                          dOut: gTx, lddo: W, dxl: dyt, lddl: 2 * W, dxr: dyt + W, lddr: 2 * W,
                          datt: g + L.nnAtt, dbias: g + L.nnBias, scale: scaleTx, overwriteDxr: true,
                          reluMask: reluTx, dResidual: res ? gTx : nil, ldres: W,
                          firstUse: nn.firstUse.p, dbXr: g + L.txB + W, dbResidual: res ? g + L.txB + 2 * W : nil,
                          prefetchRows: nTx)
            gatv2Backward(numDst: nBd, dstStart: bl.dstStart.p, srcByDst: bl.srcByDst.p,
                          xl: xlB[l].p, ldl: W, xr: yb, ldr: L.bdCols,
                          att: w + L.bAtt, heads: H, channels: L.channels, alpha: alphaB[l].p,
                          dOut: gBd, lddo: W, dxl: dxlb, lddl: W, dxr: dyb, lddr: L.bdCols,
                          datt: g + L.bAtt, dbias: g + L.bBias, scale: scaleBd, overwriteDxr: true,
                          reluMask: reluBd, dResidual: res ? dyb + W : nil, ldres: L.bdCols,
                          firstUse: bl.firstUse.p, dbXr: g + L.bdB, dbResidual: res ? g + L.bdB + W : nil)
            let xTx = hTx[l].p, xBd = hBd[l].p
            // Bias gradients: the kernels summed the dxr and residual columns as they wrote them (into the
            // zeroed gradient buffer); the scattered dxl columns are summed here, in the same row order.
            // The residual linear lin_X.tx: the rows of the tx block after lin_l and lin_r, gradient gTx.
            let resW = L.txW + 2 * W * L.inDim
            if L.inDim == narrowLinearInput {
                // An 8-wide input (the first layer): weight, bias and input gradients in one pass over each dY.
                narrowLinearBackward(dw: g + L.txW, db: g + L.txB, dbColumns: W, dx: gTxNext, lddx: L.inDim,
                                     accumulateDx: false, dy: dyt, ldy: 2 * W, x: xTx, ldx: L.inDim,
                                     w: w + L.txW, n: nTx, outDim: 2 * W)
                if res {
                    narrowLinearBackward(dw: g + resW, db: nil, dbColumns: 0, dx: gTxNext, lddx: L.inDim,
                                         accumulateDx: true, dy: gTx, ldy: W, x: xTx, ldx: L.inDim,
                                         w: w + resW, n: nTx, outDim: W)
                }
                // The belongs sources (rows 0..<nBs) add their input gradient in place.
                narrowLinearBackward(dw: g + L.blW, db: g + L.blB, dbColumns: W, dx: gTxNext, lddx: L.inDim,
                                     accumulateDx: true, dy: dxlb, ldy: W, x: xTx, ldx: L.inDim,
                                     w: w + L.blW, n: nBs, outDim: W)
                narrowLinearBackward(dw: g + L.bdW, db: nil, dbColumns: 0, dx: gBdNext, lddx: L.inDim,
                                     accumulateDx: false, dy: dyb, ldy: L.bdCols, x: xBd, ldx: L.inDim,
                                     w: w + L.bdW, n: nBd, outDim: L.bdCols)
                onGradientsReady?(L.start)
            } else {
                // Weight gradients from the layer's last parameters to its first, each range announced as
                // soon as it is final, so that its gradient bucket leaves before the large tx GEMM runs.
                linearBackwardParams(dw: g + L.bdW, db: nil, dy: dyb, ldy: L.bdCols, x: xBd, ldx: L.inDim,
                                     n: nBd, inDim: L.inDim, outDim: L.bdCols)
                onGradientsReady?(L.bdW)
                linearBackwardParams(dw: g + L.blW, db: g + L.blB, dy: dxlb, ldy: W, x: xTx, ldx: L.inDim,
                                     n: nBs, inDim: L.inDim, outDim: W)
                onGradientsReady?(L.blW)
                linearBackwardParams(dw: g + L.txW, db: nil, dy: dyt, ldy: 2 * W, x: xTx, ldx: L.inDim,
                                     n: nTx, inDim: L.inDim, outDim: 2 * W)
                if res {
                    linearBackwardParams(dw: g + resW, db: nil, dy: gTx, ldy: W, x: xTx, ldx: L.inDim,
                                         n: nTx, inDim: L.inDim, outDim: W)
                }
                columnSums(g + L.txB, dyt, ld: 2 * W, rows: nTx, cols: W)
                onGradientsReady?(L.start)
                linearBackwardInput(dx: gTxNext, lddx: L.inDim, dy: dyt, ldy: 2 * W, w: w + L.txW,
                                    n: nTx, inDim: L.inDim, outDim: 2 * W)
                if res {
                    linearBackwardInput(dx: gTxNext, lddx: L.inDim, dy: gTx, ldy: W, w: w + resW,
                                        n: nTx, inDim: L.inDim, outDim: W, accumulate: true)
                }
                // The belongs sources (rows 0..<nBs) add their input gradient in place.
                linearBackwardInput(dx: gTxNext, lddx: L.inDim, dy: dxlb, ldy: W, w: w + L.blW,
                                    n: nBs, inDim: L.inDim, outDim: W, accumulate: true)
                linearBackwardInput(dx: gBdNext, lddx: L.inDim, dy: dyb, ldy: L.bdCols, w: w + L.bdW,
                                    n: nBd, inDim: L.inDim, outDim: L.bdCols)
            }
            swap(&gTx, &gTxNext)
            swap(&gBd, &gBdNext)
        }

        // Input layer: relu, then lin0 (bd, and tx in embedding mode), then the embedding.
        reluBackward(dx: gTx, dy: gTx, y: hTx[0].p, count: nTx * I)
        reluBackward(dx: gBd, dy: gBd, y: hBd[0].p, count: nBd * I)
        linearBackwardParams(dw: g + lin0BdOffset, db: nil, dy: gBd, ldy: I, x: bdFeatures.p, ldx: config.bdFeatureDim,
                             n: nBd, inDim: config.bdFeatureDim, outDim: I)
        if let dim = config.txFeatureDim {
            linearBackwardParams(dw: g + lin0TxOffset, db: nil, dy: gTx, ldy: I, x: txFeatures.p, ldx: dim,
                                 n: nTx, inDim: dim, outDim: I)
            onGradientsReady?(lin0TxOffset)
        } else {
            onGradientsReady?(lin0TxOffset)
            embeddingBackward(dTable: g + embeddingOffset, dOut: gTx, index: tokens.p, n: nTx, dim: I)
        }
        onGradientsReady?(0)
    }
}

/// How a parameter starts (PyG's initializers).
enum ParameterInit {
    case zero
    case normal
    /// U(−b, b).
    case uniform(Double)
}
