// Every kernel's backward against finite differences, and the forward passes against plain references.
import XCTest
import SeggerKernels
import SeggerTiles
@testable import SeggerModel

final class KernelTests: XCTestCase {
    func assertCheck(_ c: GradientCheck, minChecked: Int, file: StaticString = #filePath, line: UInt = #line) {
        print("finite differences: \(c.checked) checked, \(c.skippedKinks) skipped at kinks, worst error/tolerance \(String(format: "%.3f", c.worstExcess))")
        XCTAssertLessThan(c.worstExcess, 1, c.worstName, file: file, line: line)
        XCTAssertGreaterThanOrEqual(c.checked, minChecked, "too few coordinates checked", file: file, line: line)
        XCTAssertLessThanOrEqual(c.skippedKinks, max(2, c.checked / 20), "too many kinks skipped", file: file, line: line)
    }

    func testLinearForwardAndBackward() {
        // X [5, 3] in a buffer of row stride 4; Y [5, 4] written at column 2 of a [5, 7] buffer (BLAS).
        checkLinear(n: 5, inDim: 3, outDim: 4, ldx: 4, ldy: 7, col: 2, seed: 1, minChecked: 12 + 4 + 15)
    }

    func testNarrowLinearForwardAndBackward() {
        // An 8-wide input takes the NarrowLinear kernels: 70 rows (a 64-row block and a partial one),
        // 40 outputs (two 16-lane chunks and a tail of 8), strided X and Y.
        XCTAssertEqual(narrowLinearInput, 8)
        checkLinear(n: 70, inDim: 8, outDim: 40, ldx: 11, ldy: 45, col: 3, seed: 3, minChecked: 320 + 40 + 560)
    }

    func checkLinear(n: Int, inDim: Int, outDim: Int, ldx: Int, ldy: Int, col: Int, seed: UInt64, minChecked: Int,
                     file: StaticString = #filePath, line: UInt = #line) {
        var r = TestRandom(seed)
        let x = FloatBuffer(r.floats(n * ldx)), w = FloatBuffer(r.floats(outDim * inDim)), b = FloatBuffer(r.floats(outDim))
        let rOut = r.floats(n * outDim)
        let y = FloatBuffer([Float](repeating: 9, count: n * ldy))
        func run() -> Double {
            linearForward(y: y.p + col, ldy: ldy, x: x.p, ldx: ldx, w: w.p, b: b.p, n: n, inDim: inDim, outDim: outDim)
            var s = 0.0
            for i in 0..<n { for o in 0..<outDim { s += Double(rOut[i * outDim + o]) * Double(y[i * ldy + col + o]) } }
            return s
        }
        _ = run()
        // Forward against the definition; columns outside the block untouched.
        for i in 0..<n {
            for o in 0..<outDim {
                var e = Double(b[o])
                for k in 0..<inDim { e += Double(x[i * ldx + k]) * Double(w[o * inDim + k]) }
                XCTAssertEqual(Double(y[i * ldy + col + o]), e, accuracy: 1e-5, file: file, line: line)
            }
            XCTAssertEqual(y[i * ldy], 9, file: file, line: line); XCTAssertEqual(y[i * ldy + ldy - 1], 9, file: file, line: line)
        }
        // dY = rOut placed in a strided buffer.
        let dy = FloatBuffer([Float](repeating: 0, count: n * ldy))
        for i in 0..<n { for o in 0..<outDim { dy.p[i * ldy + col + o] = rOut[i * outDim + o] } }
        var dw = [Float](repeating: 5, count: outDim * inDim), db = [Float](repeating: 5, count: outDim)
        var dx = [Float](repeating: 0, count: n * ldx)
        linearBackwardParams(dw: &dw, db: &db, dy: dy.p + col, ldy: ldy, x: x.p, ldx: ldx, n: n, inDim: inDim, outDim: outDim)
        linearBackwardInput(dx: &dx, lddx: ldx, dy: dy.p + col, ldy: ldy, w: w.p, n: n, inDim: inDim, outDim: outDim)
        var c = GradientCheck()
        checkGradient("dW", x: w.p, analytic: dw, indices: Array(0..<w.count), into: &c, f: run)
        checkGradient("db", x: b.p, analytic: db, indices: Array(0..<b.count), into: &c, f: run)
        let xIdx = (0..<n).flatMap { i in (0..<inDim).map { i * ldx + $0 } }
        checkGradient("dX", x: x.p, analytic: dx, indices: xIdx, into: &c, f: run)
        assertCheck(c, minChecked: minChecked, file: file, line: line)
        // Against the definition, in double.
        for o in 0..<outDim {
            var sb = 0.0
            for i in 0..<n { sb += Double(dy[i * ldy + col + o]) }
            XCTAssertEqual(Double(db[o]), sb, accuracy: 1e-5 * max(1, abs(sb)), file: file, line: line)
            for k in 0..<inDim {
                var sw = 0.0
                for i in 0..<n { sw += Double(dy[i * ldy + col + o]) * Double(x[i * ldx + k]) }
                XCTAssertEqual(Double(dw[o * inDim + k]), sw, accuracy: 1e-5 * max(1, abs(sw)), file: file, line: line)
            }
        }
        for i in 0..<n {
            for k in 0..<inDim {
                var sx = 0.0
                for o in 0..<outDim { sx += Double(dy[i * ldy + col + o]) * Double(w[o * inDim + k]) }
                XCTAssertEqual(Double(dx[i * ldx + k]), sx, accuracy: 1e-5 * max(1, abs(sx)), file: file, line: line)
            }
        }
        // Accumulation adds to what is there (the bias sums add row by row onto the first result: not exactly 2×).
        var dx2 = dx
        linearBackwardInput(dx: &dx2, lddx: ldx, dy: dy.p + col, ldy: ldy, w: w.p, n: n, inDim: inDim, outDim: outDim, accumulate: true)
        for i in xIdx { XCTAssertEqual(dx2[i], 2 * dx[i], accuracy: 1e-6 * max(1, abs(dx[i])), file: file, line: line) }
        var dw2 = dw, db2 = db
        linearBackwardParams(dw: &dw2, db: &db2, dy: dy.p + col, ldy: ldy, x: x.p, ldx: ldx, n: n, inDim: inDim, outDim: outDim, accumulate: true)
        for i in dw.indices { XCTAssertEqual(dw2[i], 2 * dw[i], accuracy: 1e-5 * max(1, abs(dw[i])), file: file, line: line) }
        for i in db.indices { XCTAssertEqual(db2[i], 2 * db[i], accuracy: 1e-5 * max(1, abs(db[i])), file: file, line: line) }
        if inDim == narrowLinearInput {
            // The model's one-pass call (all three gradients, db over the first columns only): the same numbers.
            var dw3 = [Float](repeating: 0, count: outDim * inDim), db3 = [Float](repeating: 0, count: outDim)
            var dx3 = [Float](repeating: 7, count: n * ldx)
            narrowLinearBackward(dw: &dw3, db: &db3, dbColumns: outDim - 5, dx: &dx3, lddx: ldx, accumulateDx: false,
                                 dy: dy.p + col, ldy: ldy, x: x.p, ldx: ldx, w: w.p, n: n, outDim: outDim)
            XCTAssertEqual(dw3, dw, file: file, line: line)
            XCTAssertEqual(Array(db3[..<(outDim - 5)]), Array(db[..<(outDim - 5)]), file: file, line: line)
            XCTAssertEqual(Array(db3[(outDim - 5)...]), [Float](repeating: 0, count: 5), file: file, line: line)
            for i in xIdx { XCTAssertEqual(dx3[i], dx[i], file: file, line: line) }
            XCTAssertEqual(dx3[inDim], 7, "columns beyond the input width untouched", file: file, line: line)
        }
    }

    func testLargeOutputsAreInitializedByStreaming() {
        // Outputs of ≥ streamingInitBytes get their bias rows / zeros by non-temporal stores: same results.
        // [1100, 300] floats written at column 5 of rows of 310 (1.3 MB, rows not 16-byte aligned).
        let n = 1100, inDim = 24, outDim = 300, ldy = 310, col = 5
        XCTAssertGreaterThanOrEqual(n * outDim * 4, streamingInitBytes)
        var r = TestRandom(9)
        let x = FloatBuffer(r.floats(n * inDim)), w = FloatBuffer(r.floats(outDim * inDim)), b = FloatBuffer(r.floats(outDim))
        let y = FloatBuffer([Float](repeating: 9, count: n * ldy))
        linearForward(y: y.p + col, ldy: ldy, x: x.p, ldx: inDim, w: w.p, b: b.p, n: n, inDim: inDim, outDim: outDim)
        for i in stride(from: 0, to: n, by: 7) {
            for o in 0..<outDim {
                var e = Double(b[o])
                for k in 0..<inDim { e += Double(x[i * inDim + k]) * Double(w[o * inDim + k]) }
                XCTAssertEqual(Double(y[i * ldy + col + o]), e, accuracy: 1e-5 * max(1, abs(e)))
            }
        }
        for i in 0..<n { for c in [0, 1, 2, 3, 4, 305, 306, 307, 308, 309] { XCTAssertEqual(y[i * ldy + c], 9) } }
        // Zero weights: every row exactly the bias.
        let zeros = FloatBuffer([Float](repeating: 0, count: outDim * inDim))
        linearForward(y: y.p + col, ldy: ldy, x: x.p, ldx: inDim, w: zeros.p, b: b.p, n: n, inDim: inDim, outDim: outDim)
        for i in 0..<n { for o in 0..<outDim where y[i * ldy + col + o] != b[o] { XCTFail("row \(i) col \(o) is not the bias"); return } }
        // Input gradient into garbage: overwritten (zeros, then the GEMM), not accumulated.
        let dy = FloatBuffer(r.floats(n * ldy))
        let dx = FloatBuffer([Float](repeating: .nan, count: n * ldy))
        linearBackwardInput(dx: dx.p + col, lddx: ldy, dy: dy.p, ldy: ldy, w: w.p.advanced(by: 0), n: n, inDim: outDim, outDim: inDim)
        for i in stride(from: 0, to: n, by: 7) {
            for k in 0..<outDim {
                var e = 0.0
                for o in 0..<inDim { e += Double(dy[i * ldy + o]) * Double(w[o * outDim + k]) }
                XCTAssertEqual(Double(dx[i * ldy + col + k]), e, accuracy: 1e-5 * max(1, abs(e)))
            }
        }
        for i in 0..<n { XCTAssertTrue(dx[i * ldy].isNaN); XCTAssertTrue(dx[i * ldy + 309].isNaN) }
    }

    func testEmbeddingAndRelu() {
        var r = TestRandom(2)
        let rows = 6, dim = 3, n = 8
        let table = FloatBuffer(r.floats(rows * dim))
        let index: [Int32] = [0, 3, 3, 5, 1, 3, 0, 2]    // repeats; row 4 unused
        let rOut = r.floats(n * dim)
        var out = [Float](repeating: 0, count: n * dim)
        func run() -> Double {
            embeddingForward(out: &out, table: table.p, index: index, n: n, dim: dim)
            reluForward(y: &out, x: out, count: n * dim)
            return weightedSum(out, rOut)
        }
        _ = run()
        for k in 0..<n { for c in 0..<dim { XCTAssertEqual(out[k * dim + c], max(table[Int(index[k]) * dim + c], 0)) } }
        var g = rOut
        reluBackward(dx: &g, dy: g, y: out, count: n * dim)
        var dTable = [Float](repeating: 0, count: rows * dim)
        embeddingBackward(dTable: &dTable, dOut: g, index: index, n: n, dim: dim)
        for c in 0..<dim { XCTAssertEqual(dTable[4 * dim + c], 0) }
        var check = GradientCheck()
        checkGradient("dTable", x: table.p, analytic: dTable, indices: Array(0..<table.count), into: &check, f: run)
        assertCheck(check, minChecked: 14)
    }

    /// A relation with uneven in-degrees (3, 0, 1, 4, 2), a destination without edges, repeated sources.
    func relation() -> (numSrc: Int, src: [Int32], dst: [Int32]) {
        (7, [0, 2, 6, 3, 3, 5, 1, 1, 4, 0, 6, 2], [3, 0, 0, 2, 3, 3, 0, 4, 3, 4, 3, 4].map { Int32($0) })
    }

    /// Channel counts 3 (scalar tail only) and 11 (one 8-lane chunk + a tail of 3).
    func testGATv2ForwardMatchesDefinition() {
        for C in [3, 11] { checkForward(channels: C) }
    }

    func checkForward(channels C: Int) {
        let (numSrc, src, dst) = relation()
        let rel = SeggerTiles.Relation(numSrc: numSrc, numDst: 5, src: src, dst: dst)
        let H = 2, W = H * C, ldl = W + 2, ldr = W + 1
        var r = TestRandom(3)
        let xl = r.floats(numSrc * ldl, -2, 2), xr = r.floats(5 * ldr, -2, 2), att = r.floats(W), bias = r.floats(W)
        var alpha = [Float](repeating: 0, count: src.count * H)
        var out = [Float](repeating: 0, count: 5 * W)
        gatv2Forward(numDst: 5, dstStart: rel.dstStart, srcByDst: rel.srcByDst, xl: xl, ldl: ldl, xr: xr, ldr: ldr,
                     att: att, bias: bias, heads: H, channels: C, alpha: &alpha, out: &out, ldo: W)
        // Reference in Double, straight from docs/model-and-training.md, over edges in file order.
        for i in 0..<5 {
            for h in 0..<H {
                let edges = (0..<src.count).filter { Int(dst[$0]) == i }
                let e = edges.map { k -> Double in
                    (0..<C).reduce(0.0) { acc, c in
                        let s = Double(xl[Int(src[k]) * ldl + h * C + c]) + Double(xr[i * ldr + h * C + c])
                        return acc + Double(att[h * C + c]) * (s > 0 ? s : 0.2 * s)
                    }
                }
                let m = e.max() ?? 0
                let denom = e.reduce(0.0) { $0 + Foundation.exp($1 - m) } + 1e-16
                let a = e.map { Foundation.exp($0 - m) / denom }
                for (pos, k) in edges.enumerated() {
                    let grouped = rel.edgeByDst.firstIndex(of: Int32(k))!
                    XCTAssertEqual(Double(alpha[grouped * H + h]), a[pos], accuracy: 1e-6)
                }
                for c in 0..<C {
                    var v = Double(bias[h * C + c])
                    for (pos, k) in edges.enumerated() { v += a[pos] * Double(xl[Int(src[k]) * ldl + h * C + c]) }
                    XCTAssertEqual(Double(out[i * W + h * C + c]), v, accuracy: 1e-5)
                }
            }
        }
        // The destination without edges outputs exactly the bias.
        XCTAssertEqual(Array(out[1 * W ..< 2 * W]), bias)
    }

    func testGATv2Backward() {
        for (scale, C) in [(1, 3), (0.5, 3), (1, 11)] as [(Float, Int)] {
            let (numSrc, src, dst) = relation()
            let rel = SeggerTiles.Relation(numSrc: numSrc, numDst: 5, src: src, dst: dst)
            let H = 2, W = H * C, ldl = W + 2, ldr = W + 1
            var r = TestRandom(4)
            let xl = FloatBuffer(r.floats(numSrc * ldl, -2, 2)), xr = FloatBuffer(r.floats(5 * ldr, -2, 2))
            let att = FloatBuffer(r.floats(W)), bias = FloatBuffer(r.floats(W))
            let rOut = r.floats(5 * W)
            var alpha = [Float](repeating: 0, count: src.count * H)
            var out = [Float](repeating: 0, count: 5 * W)
            func run() -> Double {
                gatv2Forward(numDst: 5, dstStart: rel.dstStart, srcByDst: rel.srcByDst, xl: xl.p, ldl: ldl, xr: xr.p, ldr: ldr,
                             att: att.p, bias: bias.p, heads: H, channels: C, alpha: &alpha, out: &out, ldo: W, scale: scale)
                return weightedSum(out, rOut)
            }
            _ = run()
            var dxl = [Float](repeating: 0, count: numSrc * ldl), dxr = [Float](repeating: 0, count: 5 * ldr)
            var datt = [Float](repeating: 0, count: W), dbias = [Float](repeating: 0, count: W)
            gatv2Backward(numDst: 5, dstStart: rel.dstStart, srcByDst: rel.srcByDst, xl: xl.p, ldl: ldl, xr: xr.p, ldr: ldr,
                          att: att.p, heads: H, channels: C, alpha: alpha, dOut: rOut, lddo: W,
                          dxl: &dxl, lddl: ldl, dxr: &dxr, lddr: ldr, datt: &datt, dbias: &dbias, scale: scale)
            // Padding columns of the strided buffers and the destination without edges get no gradient.
            for j in 0..<numSrc { for c in W..<ldl { XCTAssertEqual(dxl[j * ldl + c], 0) } }
            for c in 0..<W { XCTAssertEqual(dxr[1 * ldr + c], 0) }
            var check = GradientCheck()
            let lIdx = (0..<numSrc).flatMap { j in (0..<W).map { j * ldl + $0 } }
            let rIdx = (0..<5).flatMap { i in (0..<W).map { i * ldr + $0 } }
            checkGradient("dxl", x: xl.p, analytic: dxl, indices: lIdx, into: &check, f: run)
            checkGradient("dxr", x: xr.p, analytic: dxr, indices: rIdx, into: &check, f: run)
            checkGradient("datt", x: att.p, analytic: datt, indices: Array(0..<W), into: &check, f: run)
            checkGradient("dbias", x: bias.p, analytic: dbias, indices: Array(0..<W), into: &check, f: run)
            assertCheck(check, minChecked: 70 * C / 3)
        }
    }

    func testL2Normalize() {
        let n = 4, d = 5
        var r = TestRandom(5)
        var x0 = r.floats(n * d)
        for c in 0..<d { x0[2 * d + c] = 0 }              // a zero row stays zero
        let x = FloatBuffer(x0)
        let rOut = r.floats(n * d)
        var z = [Float](repeating: 0, count: n * d)
        func run() -> Double {
            l2NormalizeForward(z: &z, x: x.p, rows: n, dim: d)
            return weightedSum(z, rOut)
        }
        _ = run()
        for i in 0..<n where i != 2 {
            let norm = (0..<d).reduce(0.0) { $0 + Double(z[i * d + $1] * z[i * d + $1]) }
            XCTAssertEqual(norm, 1, accuracy: 1e-6)
        }
        XCTAssertEqual(Array(z[2 * d ..< 3 * d]), [Float](repeating: 0, count: d))
        var dx = [Float](repeating: 0, count: n * d)
        l2NormalizeBackward(dx: &dx, dz: rOut, x: x.p, z: z, rows: n, dim: d)
        // At the zero row F.normalize's gradient is dz / 1e-12.
        XCTAssertEqual(dx[2 * d], rOut[2 * d] / 1e-12, accuracy: abs(rOut[2 * d] / 1e-12) * 1e-6)
        var check = GradientCheck()
        let idx = (0..<n).filter { $0 != 2 }.flatMap { i in (0..<d).map { i * d + $0 } }
        checkGradient("dx", x: x.p, analytic: dx, indices: idx, h: 1e-3, into: &check, f: run)
        assertCheck(check, minChecked: 15)
    }

    func testBCEWithLogits() {
        let d = 3
        var r = TestRandom(6)
        let ztx = FloatBuffer(r.floats(4 * d, -1.5, 1.5)), zbd = FloatBuffer(r.floats(3 * d, -1.5, 1.5))
        let lt: [Int32] = [0, 1, 1, 3, 2, 0], lb: [Int32] = [0, 0, 2, 1, 1, 2]
        let y: [Float] = [1, 1, 0, 1, 0, 0]
        var logits = [Float](repeating: 0, count: 6)
        let scale: Float = 0.37
        func run() -> Double {
            Double(scale) * bceForward(logits: &logits, ztx: ztx.p, zbd: zbd.p, dim: d, labelTx: lt, labelBd: lb, labels: y, count: 6)
        }
        let loss = run() / Double(scale)
        var expected = 0.0
        for l in 0..<6 {
            let s = (0..<d).reduce(0.0) { $0 + Double(ztx[Int(lt[l]) * d + $1]) * Double(zbd[Int(lb[l]) * d + $1]) }
            XCTAssertEqual(Double(logits[l]), s, accuracy: 1e-6)
            expected += Foundation.log(1 + Foundation.exp(s)) - Double(y[l]) * s
        }
        XCTAssertEqual(loss, expected, accuracy: 1e-5)
        var dztx = [Float](repeating: 0, count: 4 * d), dzbd = [Float](repeating: 0, count: 3 * d)
        bceBackward(dztx: &dztx, dzbd: &dzbd, ztx: ztx.p, zbd: zbd.p, dim: d, logits: logits, labelTx: lt, labelBd: lb,
                    labels: y, count: 6, scale: scale)
        var check = GradientCheck()
        checkGradient("dztx", x: ztx.p, analytic: dztx, indices: Array(0..<ztx.count), into: &check, f: run)
        checkGradient("dzbd", x: zbd.p, analytic: dzbd, indices: Array(0..<zbd.count), into: &check, f: run)
        assertCheck(check, minChecked: 20)
        // Stable at large logits: softplus(±100) without overflow, sigmoid saturating.
        XCTAssertEqual(softplus(100), 100)
        XCTAssertEqual(softplus(-100), 0, accuracy: 1e-30)
        XCTAssertEqual(sigmoid(-100), 0, accuracy: 1e-30)
        XCTAssertEqual(sigmoid(100), 1)
    }
}
