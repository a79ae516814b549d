#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

// The fused GATv2 edge kernels over edges grouped by destination (SPEC §3):
//   e_k[h]  = Σ_c att[h,c] · leaky_relu(xl[j,h,c] + xr[i,h,c], 0.2)        edge k: j → i
//   α_k[h]  = exp(e_k[h] − max e[h]) / (Σ exp(e[h] − max e[h]) + 1e-16)    over the edges into i
//   out_i   = concat_h Σ_k α_k[h] · xl[j,h,:]  + bias
// Only α [E, H] is stored; the backward recomputes the per-channel terms from xl and xr, so no
// [E, H, C] tensor ever exists.

/// Slope of GATv2's leaky relu.
public let gatv2NegativeSlope: Float = 0.2

/// GATv2 attention and aggregation for one relation.
///
/// - dstStart [numDst+1], srcByDst [E]: the relation's destination-grouped CSR (edges into i are the
///   grouped positions dstStart[i]..<dstStart[i+1], their sources srcByDst[k]).
/// - xl [N_src, H·C] (row stride ldl): source projection; xr [numDst, H·C] (row stride ldr): destination
///   projection; att [H, C]; bias [H·C].
/// - alpha [E, H] (grouped order): written, the attention after the softmax.
/// - out [numDst, H·C] (row stride ldo): written, `scale · (Σ_k α_k·xl[j] + bias)`; `scale` is 1 for
///   `aggr` sum and 1/(relations into the node type) for `aggr` mean, which divides the conv outputs,
///   bias included. A destination without edges gets exactly `scale · bias`.
public func gatv2Forward(numDst: Int, dstStart: UnsafePointer<Int32>, srcByDst: UnsafePointer<Int32>,
                         xl: UnsafePointer<Float>, ldl: Int, xr: UnsafePointer<Float>, ldr: Int,
                         att: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                         heads H: Int, channels C: Int,
                         alpha: UnsafeMutablePointer<Float>,
                         out: UnsafeMutablePointer<Float>, ldo: Int, scale: Float = 1) {
    let slope = gatv2NegativeSlope
    for i in 0..<numDst {
        let k0 = Int(dstStart[i]), k1 = Int(dstStart[i + 1])
        let o = out + i * ldo
        for hc in 0..<(H * C) { o[hc] = 0 }
        for h in 0..<H {
            let xri = xr + i * ldr + h * C
            let a = att + h * C
            // Scores and their maximum.
            var m = -Float.infinity
            for k in k0..<k1 {
                let xlj = xl + Int(srcByDst[k]) * ldl + h * C
                var e: Float = 0
                for c in 0..<C {
                    let s = xlj[c] + xri[c]
                    e += a[c] * (s > 0 ? s : slope * s)
                }
                alpha[k * H + h] = e
                m = max(m, e)
            }
            // Softmax over the destination's edges.
            var sum: Float = 0
            for k in k0..<k1 {
                let p = (alpha[k * H + h] - m).exp_()
                alpha[k * H + h] = p
                sum += p
            }
            let denom = sum + 1e-16
            // Aggregation of the source projections.
            let oh = o + h * C
            for k in k0..<k1 {
                let al = alpha[k * H + h] / denom
                alpha[k * H + h] = al
                let xlj = xl + Int(srcByDst[k]) * ldl + h * C
                for c in 0..<C { oh[c] += al * xlj[c] }
            }
        }
        if scale == 1 {
            for hc in 0..<(H * C) { o[hc] += bias[hc] }
        } else {
            for hc in 0..<(H * C) { o[hc] = scale * (o[hc] + bias[hc]) }
        }
    }
}

/// Backward of `gatv2Forward` given dOut [numDst, H·C] (row stride lddo), the gradient of `out`.
/// Accumulates (+=) into dxl [N_src, H·C] (row stride lddl), dxr [numDst, H·C] (row stride lddr),
/// datt [H, C] and dbias [H·C]; the caller zeroes them first.
public func gatv2Backward(numDst: Int, dstStart: UnsafePointer<Int32>, srcByDst: UnsafePointer<Int32>,
                          xl: UnsafePointer<Float>, ldl: Int, xr: UnsafePointer<Float>, ldr: Int,
                          att: UnsafePointer<Float>, heads H: Int, channels C: Int,
                          alpha: UnsafePointer<Float>,
                          dOut: UnsafePointer<Float>, lddo: Int,
                          dxl: UnsafeMutablePointer<Float>, lddl: Int,
                          dxr: UnsafeMutablePointer<Float>, lddr: Int,
                          datt: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
                          scale: Float = 1) {
    let slope = gatv2NegativeSlope
    // mean_h [C]: Σ_k α_k·xl[j,h,:], the attention-weighted mean of the sources (on the stack).
    withUnsafeTemporaryAllocation(of: Float.self, capacity: max(C, 1)) { meanBuf in
        let mean = meanBuf.baseAddress!
        for i in 0..<numDst {
            let k0 = Int(dstStart[i]), k1 = Int(dstStart[i + 1])
            let g = dOut + i * lddo
            for hc in 0..<(H * C) { dbias[hc] += scale * g[hc] }
            if k0 == k1 { continue }
            for h in 0..<H {
                let gh = g + h * C
                let xri = xr + i * ldr + h * C
                let dxri = dxr + i * lddr + h * C
                let a = att + h * C
                let da = datt + h * C
                for c in 0..<C { mean[c] = 0 }
                for k in k0..<k1 {
                    let xlj = xl + Int(srcByDst[k]) * ldl + h * C
                    let al = alpha[k * H + h]
                    for c in 0..<C { mean[c] += al * xlj[c] }
                }
                for k in k0..<k1 {
                    let j = Int(srcByDst[k])
                    let xlj = xl + j * ldl + h * C
                    let dxlj = dxl + j * lddl + h * C
                    let al = alpha[k * H + h]
                    // Softmax backward (the max is a constant): de_k = α_k·(dα_k − Σ_m α_m dα_m) with
                    // dα_k = ⟨g, xl_j⟩, computed as ⟨g, xl_j − mean⟩ to keep the cancellation exact-ish.
                    var d: Float = 0
                    for c in 0..<C { d += gh[c] * (xlj[c] - mean[c]) }
                    let de = scale * al * d
                    let sal = scale * al
                    for c in 0..<C {
                        let s = xlj[c] + xri[c]
                        let pos = s > 0
                        da[c] += de * (pos ? s : slope * s)
                        let ds = de * a[c] * (pos ? 1 : slope)
                        dxlj[c] += sal * gh[c] + ds
                        dxri[c] += ds
                    }
                }
            }
        }
    }
}

extension Float {
    /// e^x.
    @inline(__always) func exp_() -> Float { expf(self) }
}
