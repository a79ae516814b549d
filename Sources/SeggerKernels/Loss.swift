// L2 row normalization (F.normalize) and BCE-with-logits on label pairs (SPEC §4), forward/backward.
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// F.normalize's floor on the norm.
public let l2NormEpsilon: Float = 1e-12

/// z[n, d] = x[n, d] / max(‖x_row‖₂, 1e-12)   (z may be x).
public func l2NormalizeForward(z: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows n: Int, dim d: Int) {
    for r in 0..<n {
        let xr = x + r * d, zr = z + r * d
        var ss: Float = 0
        for c in 0..<d { ss += xr[c] * xr[c] }
        let inv = 1 / max(ss.squareRoot(), l2NormEpsilon)
        for c in 0..<d { zr[c] = xr[c] * inv }
    }
}

/// Backward of `l2NormalizeForward`: dx = (dz − z·⟨z, dz⟩) / ‖x‖ where ‖x‖ > 1e-12, else dz / 1e-12.
/// x [n, d] the input, z [n, d] the output, dz [n, d]; dx [n, d] is written (may be dz).
public func l2NormalizeBackward(dx: UnsafeMutablePointer<Float>, dz: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, z: UnsafePointer<Float>, rows n: Int, dim d: Int) {
    for r in 0..<n {
        let xr = x + r * d, zr = z + r * d, dzr = dz + r * d, dxr = dx + r * d
        var ss: Float = 0
        for c in 0..<d { ss += xr[c] * xr[c] }
        let norm = ss.squareRoot()
        if norm > l2NormEpsilon {
            var dot: Float = 0
            for c in 0..<d { dot += zr[c] * dzr[c] }
            let inv = 1 / norm
            for c in 0..<d { dxr[c] = (dzr[c] - zr[c] * dot) * inv }
        } else {
            for c in 0..<d { dxr[c] = dzr[c] / l2NormEpsilon }
        }
    }
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
        let a = ztx + Int(labelTx[l]) * d, b = zbd + Int(labelBd[l]) * d
        var s: Float = 0
        for c in 0..<d { s += a[c] * b[c] }
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
        for c in 0..<d {
            dztx[i + c] += g * zbd[j + c]
            dzbd[j + c] += g * ztx[i + c]
        }
    }
}
