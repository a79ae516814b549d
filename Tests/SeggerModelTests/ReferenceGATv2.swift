// The GATv2 kernels as they were before the speed work (per head, separate passes, zero-filled
// outputs), kept as the bitwise reference: the fused kernels must give the same numbers. (The softmax
// backward changed since, in both: dα_k = ⟨g, xl_j⟩ first, then α_k·(dα_k − Σ α·dα), as autograd. And the
// order of the channel sums of the scores and of dα when the heads come in fours of 16-channel blocks,
// `laneGrouped`, and the exponential, `segger_exp1`: see the kernels.)
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import CVectorMath

private typealias RF8 = SIMD8<Float>

@inline(__always) private func ref_load8(_ p: UnsafePointer<Float>) -> RF8 {
    UnsafeRawPointer(p).loadUnaligned(as: RF8.self)
}

@inline(__always) private func ref_store8(_ v: RF8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: RF8.self)
}

@inline(__always) private func ref_leakySlopes(_ s: RF8) -> RF8 {
    RF8(repeating: 1).replacing(with: Float(0.2), where: s .<= 0)
}

@inline(__always) private func ref_attentionScore(_ att: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                      _ n: Int) -> Float {
    let slope = Float(0.2)
    var acc = RF8.zero
    var c = 0
    while c + 8 <= n {
        let s = ref_load8(x + c) + ref_load8(y + c)
        acc += ref_load8(att + c) * (s * ref_leakySlopes(s))
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

/// Whether the kernels sum the channels of four heads at a time in 16-lane blocks (`segger_lane_sums4`).
private func laneGrouped(heads H: Int, channels C: Int) -> Bool { C % 16 == 0 && H % 4 == 0 }

/// Σ_c term(c) over C channels (a multiple of 16) in the kernels' grouped order: per lane l, the terms
/// c ≡ l (mod 16) summed from 0 in channel order; then t_l = (v_l + v_{l+8}) + (v_{l+4} + v_{l+12}) for
/// l < 4, and (t_0 + t_1) + (t_2 + t_3).
private func ref_laneGroupedSum(_ C: Int, _ term: (Int) -> Float) -> Float {
    var v = [Float](repeating: 0, count: 16)
    for c in stride(from: 0, to: C, by: 16) { for l in 0..<16 { v[l] = v[l] + term(c + l) } }
    var t = [Float](repeating: 0, count: 4)
    for l in 0..<4 {
        let a: Float = v[l] + v[l + 8], b: Float = v[l + 4] + v[l + 12]
        t[l] = a + b
    }
    let lo: Float = t[0] + t[1], hi: Float = t[2] + t[3]
    return lo + hi
}

@inline(__always) private func ref_axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var c = 0
    let a8 = RF8(repeating: a)
    while c + 8 <= n {
        ref_store8(ref_load8(y + c) + a8 * ref_load8(x + c), y + c)
        c += 8
    }
    while c < n { y[c] += a * x[c]; c += 1 }
}

@inline(__always) private func ref_dot(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = RF8.zero
    var c = 0
    while c + 8 <= n {
        acc += ref_load8(g + c) * ref_load8(x + c)
        c += 8
    }
    var d = acc.sum()
    while c < n { d += g[c] * x[c]; c += 1 }
    return d
}

func referenceGATv2Forward(numDst: Int, dstStart: UnsafePointer<Int32>, srcByDst: UnsafePointer<Int32>,
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
                let xlj = xl + Int(srcByDst[k]) * ldl + h * C
                let e = laneGrouped(heads: H, channels: C)
                    ? ref_laneGroupedSum(C) { c in
                        let s: Float = xlj[c] + xri[c]
                        let slope: Float = s > 0 ? 1 : 0.2
                        return a[c] * (s * slope)
                    }
                    : ref_attentionScore(a, xlj, xri, C)
                alpha[k * H + h] = e
                m = max(m, e)
            }
            // Softmax over the destination's edges.
            var sum: Float = 0
            for k in k0..<k1 {
                let p = segger_exp1(alpha[k * H + h] - m)
                alpha[k * H + h] = p
                sum += p
            }
            let denom = sum + 1e-16
            // Aggregation of the source projections.
            let oh = o + h * C
            for k in k0..<k1 {
                let al = alpha[k * H + h] / denom
                alpha[k * H + h] = al
                ref_axpy(al, xl + Int(srcByDst[k]) * ldl + h * C, oh, C)
            }
        }
        if scale == 1 {
            for hc in 0..<(H * C) { o[hc] += bias[hc] }
        } else {
            for hc in 0..<(H * C) { o[hc] = scale * (o[hc] + bias[hc]) }
        }
    }
}

func referenceGATv2Backward(numDst: Int, dstStart: UnsafePointer<Int32>, srcByDst: UnsafePointer<Int32>,
                          xl: UnsafePointer<Float>, ldl: Int, xr: UnsafePointer<Float>, ldr: Int,
                          att: UnsafePointer<Float>, heads H: Int, channels C: Int,
                          alpha: UnsafePointer<Float>,
                          dOut: UnsafePointer<Float>, lddo: Int,
                          dxl: UnsafeMutablePointer<Float>, lddl: Int,
                          dxr: UnsafeMutablePointer<Float>, lddr: Int,
                          datt: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
                          scale: Float = 1) {
    let slope = Float(0.2)
    // dAlpha [E]: dα_k = ⟨g_h, xl[j,h,:]⟩ of the current head, per grouped edge.
    var dAlpha = [Float](repeating: 0, count: Int(dstStart[numDst]) + 1)
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
            // Softmax backward (the max is a constant): de_k = α_k·(dα_k − Σ_m α_m·dα_m).
            var sumAD: Float = 0
            for k in k0..<k1 {
                let xlj = xl + Int(srcByDst[k]) * ldl + h * C
                dAlpha[k] = laneGrouped(heads: H, channels: C) ? ref_laneGroupedSum(C) { c in gh[c] * xlj[c] } : ref_dot(gh, xlj, C)
            }
            for k in k0..<k1 { sumAD += alpha[k * H + h] * dAlpha[k] }
            for k in k0..<k1 {
                let j = Int(srcByDst[k])
                let xlj = xl + j * ldl + h * C
                let dxlj = dxl + j * lddl + h * C
                let al = alpha[k * H + h]
                // dxr_i = Σ_k de_k·att·slope_k; as Σ_k de_k = 0 (up to the 1e-16 of the softmax
                // denominator, relative), it is accumulated as Σ_k de_k·att·(slope_k − 1): only edges
                // on the negative side of the leaky relu contribute, and the cancelling part is gone.
                let de = scale * al * (dAlpha[k] - sumAD)
                let sal = scale * al
                let de8 = RF8(repeating: de), sal8 = RF8(repeating: sal)
                var c = 0
                while c + 8 <= C {
                    let s = ref_load8(xlj + c) + ref_load8(xri + c)
                    let sl = ref_leakySlopes(s)
                    ref_store8(ref_load8(da + c) + de8 * (s * sl), da + c)
                    let dea = de8 * ref_load8(a + c)
                    ref_store8(ref_load8(dxlj + c) + sal8 * ref_load8(gh + c) + dea * sl, dxlj + c)
                    ref_store8(ref_load8(dxri + c) + dea * (sl - 1), dxri + c)
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
