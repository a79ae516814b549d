// Dense layers whose input is 8 columns wide (the first GATv2 layer reading the example config's
// 8-wide embedding). OpenBLAS runs these shapes at about a third of its usual speed (docs/performance.md),
// because each of its packed panels holds only 8 columns of work; these loops keep the narrow side in
// registers instead and stream the wide side once. Same results as the BLAS path up to the order of the additions.
// Plain functions on raw buffers; the wide dimension runs 16 lanes at a time, with a scalar tail.

/// The input width these kernels take (`linearForward` and its backward use them for it).
public let narrowLinearInput = 8

/// Eight 16-lane accumulators: one per input column k, lanes over 16 consecutive output columns.
struct Acc8 {
    var a0 = F16.zero, a1 = F16.zero, a2 = F16.zero, a3 = F16.zero
    var a4 = F16.zero, a5 = F16.zero, a6 = F16.zero, a7 = F16.zero

    /// a_k += d · v_k, with v_k = `v(k)` (fused multiply-adds).
    @inline(__always) mutating func add(_ d: F16, _ v: (Int) -> F16) {
        a0 = a0.addingProduct(d, v(0)); a1 = a1.addingProduct(d, v(1))
        a2 = a2.addingProduct(d, v(2)); a3 = a3.addingProduct(d, v(3))
        a4 = a4.addingProduct(d, v(4)); a5 = a5.addingProduct(d, v(5))
        a6 = a6.addingProduct(d, v(6)); a7 = a7.addingProduct(d, v(7))
    }

    @inline(__always) static func load(_ p: UnsafePointer<Float>, stride: Int) -> Acc8 {
        Acc8(a0: load16(p), a1: load16(p + stride), a2: load16(p + 2 * stride), a3: load16(p + 3 * stride),
             a4: load16(p + 4 * stride), a5: load16(p + 5 * stride), a6: load16(p + 6 * stride), a7: load16(p + 7 * stride))
    }

    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>, stride: Int) {
        store16(a0, p); store16(a1, p + stride); store16(a2, p + 2 * stride); store16(a3, p + 3 * stride)
        store16(a4, p + 4 * stride); store16(a5, p + 5 * stride); store16(a6, p + 6 * stride); store16(a7, p + 7 * stride)
    }

    /// The lane sums of the eight accumulators, by halves (16 → 8 → 4 → 2 → 1 lanes).
    @inline(__always) func laneSums() -> SIMD8<Float> {
        SIMD8(laneSumByHalves(a0), laneSumByHalves(a1), laneSumByHalves(a2), laneSumByHalves(a3),
              laneSumByHalves(a4), laneSumByHalves(a5), laneSumByHalves(a6), laneSumByHalves(a7))
    }
}

/// Wᵀ [8, outDim] of W [outDim, 8]: row k is W's column k.
@inline(__always) func transposeNarrow(_ w: UnsafePointer<Float>, into wt: UnsafeMutablePointer<Float>, outDim: Int) {
    for o in 0..<outDim { for k in 0..<8 { wt[k * outDim + o] = w[o * 8 + k] } }
}

/// Y[n, 0..<out] (row stride ldy) = X[n, 8] (row stride ldx) · W[out, 8]ᵀ + b[out].
/// Per element: b[o] (or 0), then + x[r, k]·w[o, k] for k in order, each a fused multiply-add.
func narrowLinearForward(y: UnsafeMutablePointer<Float>, ldy: Int, x: UnsafePointer<Float>, ldx: Int,
                         w: UnsafePointer<Float>, b: UnsafePointer<Float>?, n: Int, outDim: Int) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 8 * outDim) { wtBuf in
        let wt = wtBuf.baseAddress!
        transposeNarrow(w, into: wt, outDim: outDim)
        let wide = outDim & ~15
        for r in 0..<n {
            let xr = x + r * ldx, yr = y + r * ldy
            // The rows are overwritten whole: fetch them for writing ahead, so the stores need not wait.
            if r &+ 8 < n { prefetchRow(yr + 8 * ldy, outDim, write: true) }
            let x0 = F16(repeating: xr[0]), x1 = F16(repeating: xr[1]), x2 = F16(repeating: xr[2]), x3 = F16(repeating: xr[3])
            let x4 = F16(repeating: xr[4]), x5 = F16(repeating: xr[5]), x6 = F16(repeating: xr[6]), x7 = F16(repeating: xr[7])
            var o = 0
            while o < wide {
                var acc = b.map { load16($0 + o) } ?? F16.zero
                let p = wt + o
                acc = acc.addingProduct(x0, load16(p)); acc = acc.addingProduct(x1, load16(p + outDim))
                acc = acc.addingProduct(x2, load16(p + 2 * outDim)); acc = acc.addingProduct(x3, load16(p + 3 * outDim))
                acc = acc.addingProduct(x4, load16(p + 4 * outDim)); acc = acc.addingProduct(x5, load16(p + 5 * outDim))
                acc = acc.addingProduct(x6, load16(p + 6 * outDim)); acc = acc.addingProduct(x7, load16(p + 7 * outDim))
                store16(acc, yr + o)
                o &+= 16
            }
            while o < outDim {
                var acc = b?[o] ?? 0
                for k in 0..<8 { acc = acc.addingProduct(xr[k], wt[k * outDim + o]) }
                yr[o] = acc
                o &+= 1
            }
        }
    }
}

/// The gradients of `linearForward` for an 8-wide input, in one pass over dY [n, out] (row stride ldy):
/// - dW[out, 8] += dYᵀ · X (X [n, 8], row stride ldx), when `dw` (and `x`) are given: per element Σ_r dy[r, o]·x[r, k]
///   over the rows in order (one fused multiply-add each), then added to dW;
/// - db[0..<dbColumns] += Σ_r dY[r, 0..<dbColumns], rows in order (the same additions as `addRows`);
/// - dX[n, 8] (row stride lddx) (+)= dY · W (W [out, 8]), when `dx` (and `w`) are given: per element Σ_o dy[r, o]·w[o, k]
///   in 16 lanes (o mod 16), the lanes summed by halves, then the tail in order; `accumulateDx` adds to dX.
/// The rows go in blocks small enough to stay in cache while all three read them, so dY — the widest
/// array of the layer — is read from memory once. (Prefetching the next block in software was slower:
/// the burst of prefetches stalls on the line-fill buffers; the hardware streams these rows well.)
public func narrowLinearBackward(dw: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?, dbColumns: Int,
                                 dx: UnsafeMutablePointer<Float>?, lddx: Int, accumulateDx: Bool,
                                 dy: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>?, ldx: Int,
                                 w: UnsafePointer<Float>?, n: Int, outDim: Int) {
    if n == 0 || outDim == 0 { return }
    precondition((dw == nil || x != nil) && (dx == nil || w != nil), "dW needs X, dX needs W")
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 16 * outDim) { buf in
        let wt = buf.baseAddress!                 // Wᵀ [8, outDim]
        let s = wt + 8 * outDim                   // the dW sums transposed: s[k, o]
        if let w, dx != nil { transposeNarrow(w, into: wt, outDim: outDim) }
        if dw != nil { s.initialize(repeating: 0, count: 8 * outDim) }
        let block = 64
        let wide = outDim & ~15
        var r0 = 0
        while r0 < n {
            let r1 = min(r0 + block, n)
            if let dx {
                for r in r0..<r1 {
                    let dyr = dy + r * ldy, dxr = dx + r * lddx
                    var acc = Acc8()
                    var o = 0
                    while o < wide {
                        let q = wt + o
                        acc.add(load16(dyr + o)) { load16(q + $0 * outDim) }
                        o &+= 16
                    }
                    var sums = acc.laneSums()
                    while o < outDim {
                        for k in 0..<8 { sums[k] = sums[k].addingProduct(dyr[o], wt[k * outDim + o]) }
                        o &+= 1
                    }
                    if accumulateDx { sums += load8(dxr) }
                    store8(sums, dxr)
                }
            }
            if dw != nil, let x {
                var o = 0
                while o < wide {
                    var acc = Acc8.load(s + o, stride: outDim)
                    for r in r0..<r1 {
                        let xr = x + r * ldx
                        acc.add(load16(dy + r * ldy + o)) { F16(repeating: xr[$0]) }
                    }
                    acc.store(s + o, stride: outDim)
                    o &+= 16
                }
                while o < outDim {
                    for k in 0..<8 {
                        var a = s[k * outDim + o]
                        for r in r0..<r1 { a = a.addingProduct(dy[r * ldy + o], x[r * ldx + k]) }
                        s[k * outDim + o] = a
                    }
                    o &+= 1
                }
            }
            if let db { addRows(into: db, dy + r0 * ldy, ld: ldy, rows: r1 - r0, cols: dbColumns) }
            r0 = r1
        }
        if let dw { for o in 0..<outDim { for k in 0..<8 { dw[o * 8 + k] += s[k * outDim + o] } } }
    }
}
