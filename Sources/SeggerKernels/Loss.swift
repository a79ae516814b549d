// L2 row normalization (F.normalize) and BCE-with-logits on label pairs (docs/model-and-training.md), forward/backward.
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Σ_c a[c]·b[c] over n: fused multiply-adds in 16 lanes (c mod 16), the lanes summed by halves, then
/// the tail in order. (A scalar loop is one chain of n dependent adds; this is 4 FMAs and 4 adds at n = 64.)
@inline(__always) func rowDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F16.zero
    var c = 0
    while c &+ 16 <= n {
        acc = acc.addingProduct(load16(a + c), load16(b + c))
        c &+= 16
    }
    var s = laneSumByHalves(acc)
    while c < n { s = s.addingProduct(a[c], b[c]); c &+= 1 }
    return s
}

/// F.normalize's floor on the norm.
public let l2NormEpsilon: Float = 1e-12

/// z[n, d] = x[n, d] / max(‖x_row‖₂, 1e-12)   (z may be x).
public func l2NormalizeForward(z: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows n: Int, dim d: Int) {
    for r in 0..<n {
        let xr = x + r * d, zr = z + r * d
        let ss = rowDot(xr, xr, d)
        let inv = 1 / max(ss.squareRoot(), l2NormEpsilon)
        scaleRow(zr, xr, inv, d)
    }
}

/// Backward of `l2NormalizeForward`: dx = (dz − z·⟨z, dz⟩) / ‖x‖ where ‖x‖ > 1e-12, else dz / 1e-12.
/// x [n, d] the input, z [n, d] the output, dz [n, d]; dx [n, d] is written (may be dz).
public func l2NormalizeBackward(dx: UnsafeMutablePointer<Float>, dz: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, z: UnsafePointer<Float>, rows n: Int, dim d: Int) {
    for r in 0..<n {
        let xr = x + r * d, zr = z + r * d, dzr = dz + r * d, dxr = dx + r * d
        let norm = rowDot(xr, xr, d).squareRoot()
        if norm > l2NormEpsilon {
            let dot = rowDot(zr, dzr, d)
            let inv = 1 / norm
            var c = 0
            let dot16 = F16(repeating: dot), inv16 = F16(repeating: inv)
            while c &+ 16 <= d {
                store16((load16(dzr + c) - load16(zr + c) * dot16) * inv16, dxr + c)
                c &+= 16
            }
            while c < d { dxr[c] = (dzr[c] - zr[c] * dot) * inv; c &+= 1 }
        } else {
            for c in 0..<d { dxr[c] = dzr[c] / l2NormEpsilon }
        }
    }
}

/// y[c] = x[c]·a over n (elementwise; y may be x).
@inline(__always) func scaleRow(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ a: Float, _ n: Int) {
    var c = 0
    let a16 = F16(repeating: a)
    while c &+ 16 <= n { store16(load16(x + c) * a16, y + c); c &+= 16 }
    while c < n { y[c] = x[c] * a; c &+= 1 }
}

/// log(1 + e^s), numerically stable.
@inline(__always) public func softplus(_ s: Float) -> Float {
    max(s, 0) + log1pf(expf(-abs(s)))
}

/// 1 / (1 + e^−s), numerically stable.
@inline(__always) public func sigmoid(_ s: Float) -> Float {
    if s >= 0 { return 1 / (1 + expf(-s)) }
    let e = expf(s)
    return e / (1 + e)
}

/// BCE with logits on label pairs: logits[l] = ⟨ztx[labelTx[l]], zbd[labelBd[l]]⟩ (rows of width d),
/// returns Σ_l softplus(s_l) − y_l·s_l accumulated in Double. Never forms the N_tx × N_bd matrix.
public func bceForward(logits: UnsafeMutablePointer<Float>, ztx: UnsafePointer<Float>, zbd: UnsafePointer<Float>,
                       dim d: Int, labelTx: UnsafePointer<Int32>, labelBd: UnsafePointer<Int32>,
                       labels y: UnsafePointer<Float>, count L: Int) -> Double {
    var total: Double = 0
    for l in 0..<L {
        let s = rowDot(ztx + Int(labelTx[l]) * d, zbd + Int(labelBd[l]) * d, d)
        logits[l] = s
        total += Double(softplus(s)) - Double(y[l]) * Double(s)
    }
    return total
}

/// Backward of `scale · bceForward`: with g_l = scale·(σ(s_l) − y_l), accumulates
/// dztx[labelTx[l]] += g_l·zbd[labelBd[l]] and dzbd[labelBd[l]] += g_l·ztx[labelTx[l]] (caller zeroes).
public func bceBackward(dztx: UnsafeMutablePointer<Float>, dzbd: UnsafeMutablePointer<Float>,
                        ztx: UnsafePointer<Float>, zbd: UnsafePointer<Float>, dim d: Int,
                        logits: UnsafePointer<Float>, labelTx: UnsafePointer<Int32>, labelBd: UnsafePointer<Int32>,
                        labels y: UnsafePointer<Float>, count L: Int, scale: Float) {
    for l in 0..<L {
        let i = Int(labelTx[l]) * d, j = Int(labelBd[l]) * d
        let g = scale * (sigmoid(logits[l]) - y[l])
        addScaled(dztx + i, g, zbd + j, d)
        addScaled(dzbd + j, g, ztx + i, d)
    }
}
