// Dense layers on OpenBLAS (row-major cblas_sgemm; 8-wide inputs on NarrowLinear.swift), embedding gather / scatter-add, relu.
// Plain functions on raw buffers; shapes in comments; nothing allocates.
import COpenBLAS
import CStreaming

/// Y[n, 0..<out] (row stride ldy) = X[n, in] (row stride ldx) · W[out, in]ᵀ + b[out]   (PyG Linear).
/// `b` may be nil (no bias). Columns of Y beyond `out` are untouched, so several linears reading the
/// same X can write side by side into one wider Y — or run as one GEMM when their W rows are adjacent.
public func linearForward(y: UnsafeMutablePointer<Float>, ldy: Int,
                          x: UnsafePointer<Float>, ldx: Int,
                          w: UnsafePointer<Float>, b: UnsafePointer<Float>?,
                          n: Int, inDim: Int, outDim: Int) {
    if n == 0 || outDim == 0 { return }
    if inDim == narrowLinearInput {
        narrowLinearForward(y: y, ldy: ldy, x: x, ldx: ldx, w: w, b: b, n: n, outDim: outDim)
        return
    }
    var beta: Float = 0
    if let b {
        initializeRows(y, ld: ldy, row: b, cols: outDim, rows: n)
        beta = 1
    }
    if inDim == 0 {
        if b == nil { for r in 0..<n { (y + r * ldy).update(repeating: 0, count: outDim) } }
        return
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outDim), Int32(inDim),
                1, x, Int32(ldx), w, Int32(inDim), beta, y, Int32(ldy))
}

/// Outputs at least this large (bytes) are initialized with non-temporal stores: they do not fit in the
/// caches anyway, and the stores then skip reading every line from memory before overwriting it
/// (the measurement: docs/performance.md).
public let streamingInitBytes = 1 << 20

/// Rows 0..<rows of y (row stride ld) = `row` (cols floats), or zeros when `row` is nil: streamed past the
/// caches when the block is large (`streamingInitBytes`), plain stores otherwise.
func initializeRows(_ y: UnsafeMutablePointer<Float>, ld: Int, row: UnsafePointer<Float>?, cols: Int, rows: Int) {
    if rows * cols * MemoryLayout<Float>.size >= streamingInitBytes {
        segger_fill_rows_streaming(y, ld, row, cols, rows)
    } else if let row {
        for r in 0..<rows { (y + r * ld).update(from: row, count: cols) }
    } else {
        for r in 0..<rows { (y + r * ld).update(repeating: 0, count: cols) }
    }
}

/// Weight and bias gradients of `linearForward`:
/// dW[out, in] (+)= dY[n, out]ᵀ · X[n, in];  db[out] (+)= Σ_rows dY.   `accumulate` false overwrites.
public func linearBackwardParams(dw: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>?,
                                 dy: UnsafePointer<Float>, ldy: Int,
                                 x: UnsafePointer<Float>, ldx: Int,
                                 n: Int, inDim: Int, outDim: Int, accumulate: Bool = false) {
    if outDim == 0 { return }
    if !accumulate {
        dw.update(repeating: 0, count: outDim * inDim)
        db?.update(repeating: 0, count: outDim)
    }
    if n == 0 { return }
    if inDim == narrowLinearInput {
        narrowLinearBackward(dw: dw, db: db, dbColumns: outDim, dx: nil, lddx: 0, accumulateDx: false,
                             dy: dy, ldy: ldy, x: x, ldx: ldx, w: nil, n: n, outDim: outDim)
        return
    } else if inDim > 0 {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outDim), Int32(inDim), Int32(n),
                    1, dy, Int32(ldy), x, Int32(ldx), 1, dw, Int32(inDim))
    }
    if let db { addRows(into: db, dy, ld: ldy, rows: n, cols: outDim) }
}

/// y[0..<n] += x[0..<n], 16 lanes at a time (elementwise: the same numbers as the scalar loop).
@inline(__always) public func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    var c = 0
    while c &+ 16 <= n {
        store16(load16(y + c) + load16(x + c), y + c)
        c &+= 16
    }
    while c &+ 8 <= n {
        store8(load8(y + c) + load8(x + c), y + c)
        c &+= 8
    }
    while c < n { y[c] += x[c]; c &+= 1 }
}

/// sums[c] += Σ_r x[r, c] for c in 0..<cols, rows in order (x has row stride ld): per column the
/// same additions in the same order as the scalar double loop, the columns 16 lanes at a time.
public func addRows(into sums: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int) {
    for r in 0..<rows { addInPlace(sums, x + r * ld, cols) }
}

/// Input gradient of `linearForward`: dX[n, in] (row stride lddx) (+)= dY[n, out] · W[out, in].
public func linearBackwardInput(dx: UnsafeMutablePointer<Float>, lddx: Int,
                                dy: UnsafePointer<Float>, ldy: Int,
                                w: UnsafePointer<Float>,
                                n: Int, inDim: Int, outDim: Int, accumulate: Bool = false) {
    if n == 0 || inDim == 0 { return }
    if outDim == 0 {
        if !accumulate { for r in 0..<n { (dx + r * lddx).update(repeating: 0, count: inDim) } }
        return
    }
    if inDim == narrowLinearInput {
        narrowLinearBackward(dw: nil, db: nil, dbColumns: 0, dx: dx, lddx: lddx, accumulateDx: accumulate,
                             dy: dy, ldy: ldy, x: nil, ldx: 0, w: w, n: n, outDim: outDim)
        return
    }
    // Zeros written here rather than by the GEMM's beta = 0 pass, so that large outputs skip the cache.
    if !accumulate { initializeRows(dx, ld: lddx, row: nil, cols: inDim, rows: n) }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(inDim), Int32(outDim),
                1, dy, Int32(ldy), w, Int32(inDim), 1, dx, Int32(lddx))
}

/// out[n, d] = table[index[n], :]   (embedding lookup; table [rows, d]).
public func embeddingForward(out: UnsafeMutablePointer<Float>, table: UnsafePointer<Float>,
                             index: UnsafePointer<Int32>, n: Int, dim: Int) {
    for r in 0..<n {
        (out + r * dim).update(from: table + Int(index[r]) * dim, count: dim)
    }
}

/// dTable[index[n], :] += dOut[n, d]   (scatter-add; the caller zeroes dTable).
public func embeddingBackward(dTable: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                              index: UnsafePointer<Int32>, n: Int, dim: Int) {
    for r in 0..<n {
        addInPlace(dTable + Int(index[r]) * dim, dOut + r * dim, dim)
    }
}

/// y[n] = x[n] > 0 ? x[n] : 0  (x and y may be the same buffer).
public func reluForward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int) {
    var i = 0
    while i + 8 <= n {
        let v = load8(x + i)
        store8(v.replacing(with: 0, where: .!(v .> 0)), y + i)
        i += 8
    }
    while i < n { y[i] = x[i] > 0 ? x[i] : 0; i += 1 }
}

/// dx[n] = y[n] > 0 ? dy[n] : 0, from relu's output y (as torch: grad · (result > 0)); dx may be dy.
public func reluBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, y: UnsafePointer<Float>,
                         count n: Int) {
    var i = 0
    while i + 8 <= n {
        store8(load8(dy + i).replacing(with: 0, where: .!(load8(y + i) .> 0)), dx + i)
        i += 8
    }
    while i < n { dx[i] = y[i] > 0 ? dy[i] : 0; i += 1 }
}
