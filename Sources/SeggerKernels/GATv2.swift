// The fused GATv2 edge kernels over edges grouped by destination (SPEC §3):
//   e_k[h]  = Σ_c att[h,c] · leaky_relu(xl[j,h,c] + xr[i,h,c], 0.2)        edge k: j → i
//   α_k[h]  = exp(e_k[h] − max e[h]) / (Σ exp(e[h] − max e[h]) + 1e-16)    over the edges into i
//   out_i   = concat_h Σ_k α_k[h] · xl[j,h,:]  + bias
// Only α [E, H] is stored; the backward recomputes the per-channel terms from xl and xr, so no
// [E, H, C] tensor ever exists. Channel loops run 8 lanes at a time (SIMD8) with a scalar tail.
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Slope of GATv2's leaky relu.
public let gatv2NegativeSlope: Float = 0.2

typealias F8 = SIMD8<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> F8 {
    UnsafeRawPointer(p).loadUnaligned(as: F8.self)
}

@inline(__always) func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self)
}

/// The leaky relu's slope per lane: 1 where s > 0, else 0.2 (so leaky_relu(s) = s · slopes(s)).
@inline(__always) func leakySlopes(_ s: F8) -> F8 {
    F8(repeating: 1).replacing(with: gatv2NegativeSlope, where: s .<= 0)
}

/// Σ_c att[c] · leaky_relu(x[c] + y[c]) over n channels.
@inline(__always) func attentionScore(_ att: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                      _ n: Int) -> Float {
    let slope = gatv2NegativeSlope
    var acc = F8.zero
    var c = 0
    while c + 8 <= n {
        let s = load8(x + c) + load8(y + c)
        acc += load8(att + c) * (s * leakySlopes(s))
        c += 8
    }
    var e = acc.sum()
    while c < n {
        let s = x[c] + y[c]
        e += att[c] * (s > 0 ? s : slope * s)
        c += 1
    }
    return e
}

/// y[c] += a · x[c] over n channels.
@inline(__always) func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var c = 0
    let a8 = F8(repeating: a)
    while c + 8 <= n {
        store8(load8(y + c) + a8 * load8(x + c), y + c)
        c += 8
    }
    while c < n { y[c] += a * x[c]; c += 1 }
}

/// Σ_c g[c] · (x[c] − m[c]) over n channels.
@inline(__always) func centeredDot(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ m: UnsafePointer<Float>,
                                   _ n: Int) -> Float {
    var acc = F8.zero
    var c = 0
    while c + 8 <= n {
        acc += load8(g + c) * (load8(x + c) - load8(m + c))
        c += 8
    }
    var d = acc.sum()
    while c < n { d += g[c] * (x[c] - m[c]); c += 1 }
    return d
}

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
    for i in 0..<numDst {
        let k0 = Int(dstStart[i]), k1 = Int(dstStart[i + 1])
        let o = out + i * ldo
        o.update(repeating: 0, count: H * C)
        for h in 0..<H {
            let xri = xr + i * ldr + h * C
            let a = att + h * C
            // Scores and their maximum.
            var m = -Float.infinity
            for k in k0..<k1 {
                let e = attentionScore(a, xl + Int(srcByDst[k]) * ldl + h * C, xri, C)
                alpha[k * H + h] = e
                m = max(m, e)
            }
            // Softmax over the destination's edges.
            var sum: Float = 0
            for k in k0..<k1 {
                let p = expf(alpha[k * H + h] - m)
                alpha[k * H + h] = p
                sum += p
            }
            let denom = sum + 1e-16
            // Aggregation of the source projections.
            let oh = o + h * C
            for k in k0..<k1 {
                let al = alpha[k * H + h] / denom
                alpha[k * H + h] = al
                axpy(al, xl + Int(srcByDst[k]) * ldl + h * C, oh, C)
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
                mean.update(repeating: 0, count: C)
                for k in k0..<k1 {
                    axpy(alpha[k * H + h], xl + Int(srcByDst[k]) * ldl + h * C, mean, C)
                }
                for k in k0..<k1 {
                    let j = Int(srcByDst[k])
                    let xlj = xl + j * ldl + h * C
                    let dxlj = dxl + j * lddl + h * C
                    let al = alpha[k * H + h]
                    // Softmax backward (the max is a constant): de_k = α_k·(dα_k − Σ_m α_m dα_m) with
                    // dα_k = ⟨g, xl_j⟩, computed as ⟨g, xl_j − mean⟩ to keep the cancellation exact-ish.
                    // dxr_i = Σ_k de_k·att·slope_k; as Σ_k de_k = 0 (up to the 1e-16 of the softmax
                    // denominator, relative), it is accumulated as Σ_k de_k·att·(slope_k − 1): only edges
                    // on the negative side of the leaky relu contribute, and the cancelling part is gone.
                    let de = scale * al * centeredDot(gh, xlj, mean, C)
                    let sal = scale * al
                    let de8 = F8(repeating: de), sal8 = F8(repeating: sal)
                    var c = 0
                    while c + 8 <= C {
                        let s = load8(xlj + c) + load8(xri + c)
                        let sl = leakySlopes(s)
                        store8(load8(da + c) + de8 * (s * sl), da + c)
                        let dea = de8 * load8(a + c)
                        store8(load8(dxlj + c) + sal8 * load8(gh + c) + dea * sl, dxlj + c)
                        store8(load8(dxri + c) + dea * (sl - 1), dxri + c)
                        c += 8
                    }
                    while c < C {
                        let s = xlj[c] + xri[c]
                        let pos = s > 0
                        da[c] += de * (pos ? s : slope * s)
                        let dea = de * a[c]
                        dxlj[c] += sal * gh[c] + dea * (pos ? 1 : slope)
                        dxri[c] += pos ? 0 : dea * (slope - 1)
                        c += 1
                    }
                }
            }
        }
    }
}
