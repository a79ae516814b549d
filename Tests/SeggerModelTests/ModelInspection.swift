// Test-only views into the model's activations after a forward pass, by the module names of PyG's
// `to_hetero` (the golden files' `act.*` and `alpha.*`): GoldenTests compares them layer by layer.
import XCTest
import SeggerKernels
@testable import SeggerModel

extension SeggerModel {
    /// An activation of the last forward pass by its `to_hetero` module name (as in the golden files
    /// without the `act.` prefix), e.g. `tx_embedding.tx`, `lin0.bd`, `conv_first.tx__neighbors__tx.lin_l`,
    /// `conv_first.tx__neighbors__tx.aggr_module`, `conv_first.tx__neighbors__tx`, `lin_first.tx`.
    /// Nil when the name is unknown.
    func activation(_ name: String) -> [Float]? {
        guard hasForward else { return nil }
        let I = config.initEmb
        if name == (config.txFeatureDim == nil ? "tx_embedding.tx" : "lin0.tx") { return txRows(inputTx.p, ld: I, from: 0, count: I) }
        if name == "lin0.bd" { return copy(inputBd.p, nBd * I) }
        for (l, L) in layers.enumerated() {
            let W = L.width
            if config.residual {
                if name == "\(L.lin).tx" { return txRows(rTx[l].p, ld: W, from: 0, count: W) }
                if name == "\(L.lin).bd" { return columns(yBd[l].p, rows: nBd, ld: L.bdCols, from: W, count: W) }
            }
            let nnP = "\(L.conv).\(RelationName.neighbors)", bP = "\(L.conv).\(RelationName.belongs)"
            switch name {
            case "\(nnP).lin_l": return txRows(yTx[l].p, ld: 2 * W, from: 0, count: W)
            case "\(nnP).lin_r": return txRows(yTx[l].p, ld: 2 * W, from: W, count: W)
            case "\(bP).lin_l":    // every transcript's projection (training computes only the sources')
                var out = [Float](repeating: 0, count: nTx * W)
                linearForward(y: &out, ldy: W, x: hTx[l].p, ldx: L.inDim, w: weights.baseAddress! + L.blW,
                              b: weights.baseAddress! + L.blB, n: nTx, inDim: L.inDim, outDim: W)
                return txRows(out, ld: W, from: 0, count: W)
            case "\(bP).lin_r": return columns(yBd[l].p, rows: nBd, ld: L.bdCols, from: 0, count: W)
            case "\(nnP).aggr_module":
                return txRows(aggregate(nn, sources: nn.srcByDst.p, alpha: alphaNN[l].p, xl: yTx[l].p, ldl: 2 * W, layer: L, bias: nil), ld: W, from: 0, count: W)
            case "\(bP).aggr_module":
                return aggregate(bl, sources: bl.srcByDst.p, alpha: alphaB[l].p, xl: xlB[l].p, ldl: W, layer: L, bias: nil)
            case nnP:
                return txRows(aggregate(nn, sources: nn.srcByDst.p, alpha: alphaNN[l].p, xl: yTx[l].p, ldl: 2 * W, layer: L, bias: L.nnBias), ld: W, from: 0, count: W)
            case bP:
                return aggregate(bl, sources: bl.srcByDst.p, alpha: alphaB[l].p, xl: xlB[l].p, ldl: W, layer: L, bias: L.bBias)
            default: break
            }
        }
        return nil
    }

    /// Attention after the softmax, [E, H] in the relation's file edge order (`alpha.<conv>.<relation>`).
    func attention(layer: String, relation: String) -> [Float]? {
        guard hasForward, let l = layers.firstIndex(where: { $0.conv == layer }) else { return nil }
        let (r, a): (RelationBuffers, Scratch)
        switch relation {
        case RelationName.neighbors: (r, a) = (nn, alphaNN[l])
        case RelationName.belongs: (r, a) = (bl, alphaB[l])
        default: return nil
        }
        let H = config.heads
        var out = [Float](repeating: 0, count: r.count * H)
        for k in 0..<r.count {
            let e = Int(r.edgeByDst.p[k])
            for h in 0..<H { out[e * H + h] = a.p[k * H + h] }
        }
        return out
    }

    func copy(_ p: UnsafePointer<Float>, _ n: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: p, count: n))
    }

    func columns(_ p: UnsafePointer<Float>, rows: Int, ld: Int, from: Int, count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * count)
        for r in 0..<rows { for c in 0..<count { out[r * count + c] = p[r * ld + from + c] } }
        return out
    }

    /// Σ_k α_k · xl[j] per destination (+ the conv bias when given), the conv's per-relation output.
    func aggregate(_ r: RelationBuffers, sources: UnsafePointer<Int32>, alpha: UnsafePointer<Float>,
                           xl: UnsafePointer<Float>, ldl: Int,
                           layer L: LayerLayout, bias: Int?) -> [Float] {
        let H = config.heads, C = L.channels, W = L.width
        var out = [Float](repeating: 0, count: r.numDst * W)
        for i in 0..<r.numDst {
            for k in Int(r.dstStart.p[i])..<Int(r.dstStart.p[i + 1]) {
                let j = Int(sources[k])
                for h in 0..<H {
                    let a = alpha[k * H + h]
                    for c in 0..<C { out[i * W + h * C + c] += a * xl[j * ldl + h * C + c] }
                }
            }
            if let bias { for c in 0..<W { out[i * W + c] += weights[bias + c] } }
        }
        return out
    }
}
