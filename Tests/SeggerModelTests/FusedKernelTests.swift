// The fused GATv2 kernels (all heads per destination, fused epilogue/prologue, first-use writes,
// bias-gradient sums) must give exactly the numbers of the reference kernels in ReferenceGATv2.swift
// followed by the separate passes they replaced (residual add, relu, relu backward, zero fills, row sums).
import XCTest
import SeggerKernels
import SeggerTiles
@testable import SeggerModel

final class FusedKernelTests: XCTestCase {
    /// Exact equality, bit for bit (so -0 ≠ +0 and a reordered sum fails).
    func assertBitwise(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let bad = zip(a, b).enumerated().filter { $0.1.0.bitPattern != $0.1.1.bitPattern }
        XCTAssertTrue(bad.isEmpty, "\(what): \(bad.count) of \(a.count) values differ, first at \(bad.first.map { "\($0.0): \($0.1.0) vs \($0.1.1)" } ?? "")",
                      file: file, line: line)
    }

    /// A random relation: 40 sources, 30 destinations (some without edges), 150 edges, some sources unused.
    func randomRelation(_ r: inout TestRandom) -> SeggerTiles.Relation {
        var src: [Int32] = [], dst: [Int32] = []
        for _ in 0..<150 {
            src.append(Int32(r.int(34)))           // sources 34..<40 never used
            dst.append(Int32(r.int(27)))           // destinations 27..<30 without edges
        }
        return SeggerTiles.Relation(numSrc: 40, numDst: 30, src: src, dst: dst)
    }

    func testFusedKernelsMatchReferenceBitwise() {
        // (H, C): the two specialized bodies and the generic one (with 8-lane and scalar tails; with two
        // groups of four 16-channel heads; with 16-channel blocks but heads not in fours).
        for (H, C) in [(4, 64), (4, 16), (2, 11), (8, 16), (2, 32)] {
            for (scale, residual, relu) in [(Float(1), true, true), (0.5, false, true), (1, false, false)] {
                check(heads: H, channels: C, scale: scale, residual: residual, relu: relu)
            }
        }
    }

    func check(heads H: Int, channels C: Int, scale: Float, residual: Bool, relu: Bool) {
        var r = TestRandom(UInt64(100 + H * C))
        let rel = randomRelation(&r)
        let nS = rel.numSrc, nD = rel.numDst, E = rel.count, W = H * C
        let ldl = 2 * W + 3, ldr = 3 * W + 1                 // strided, interleaved as in the model
        let xl = FloatBuffer(r.floats(nS * ldl, -2, 2)), xr = FloatBuffer(r.floats(nD * ldr, -2, 2))
        let att = FloatBuffer(r.floats(W)), bias = FloatBuffer(r.floats(W))
        let res = FloatBuffer(r.floats(nD * W)), gOut = FloatBuffer(r.floats(nD * W))
        let what = "H=\(H) C=\(C) scale=\(scale) residual=\(residual) relu=\(relu)"

        // Forward: reference kernel, then the residual add and relu passes.
        var alphaRef = [Float](repeating: 0, count: E * H), outRef = [Float](repeating: 0, count: nD * W)
        referenceGATv2Forward(numDst: nD, dstStart: rel.dstStart, srcByDst: rel.srcByDst, xl: xl.p, ldl: ldl, xr: xr.p, ldr: ldr,
                              att: att.p, bias: bias.p, heads: H, channels: C, alpha: &alphaRef, out: &outRef, ldo: W, scale: scale)
        if residual { for i in 0..<(nD * W) { outRef[i] += res.p[i] } }
        if relu { reluForward(y: &outRef, x: outRef, count: nD * W) }
        var alpha = [Float](repeating: .nan, count: E * H), out = [Float](repeating: .nan, count: nD * W)
        let words = reluMaskWords(width: W)
        var mask = [UInt16](repeating: 0xabcd, count: nD * words)
        gatv2Forward(numDst: nD, dstStart: rel.dstStart, srcByDst: rel.srcByDst, xl: xl.p, ldl: ldl, xr: xr.p, ldr: ldr,
                     att: att.p, bias: bias.p, heads: H, channels: C, alpha: &alpha, out: &out, ldo: W, scale: scale,
                     residual: residual ? UnsafePointer(res.p) : nil, ldres: W, relu: relu, reluMask: &mask)
        assertBitwise(alpha, alphaRef, "alpha " + what)
        assertBitwise(out, outRef, "out " + what)
        if relu {
            for i in 0..<nD {
                for c in 0..<W where (mask[i * words + c / 16] >> UInt16(c % 16)) & 1 != (outRef[i * W + c] > 0 ? 1 : 0) {
                    XCTFail("relu mask bit [\(i), \(c)] is not out > 0 (\(what))"); return
                }
            }
        } else {
            XCTAssertEqual(mask, [UInt16](repeating: 0xabcd, count: nD * words), "mask written without relu (\(what))")
        }

        // Backward reference: relu backward, zeroed buffers, the kernel, then row sums of dxr and the residual gradient.
        var g = (0..<(nD * W)).map { gOut.p[$0] }
        if relu { reluBackward(dx: &g, dy: g, y: out, count: nD * W) }
        var dxlRef = [Float](repeating: 0, count: nS * ldl), dxrRef = [Float](repeating: 0, count: nD * ldr)
        var dattRef = [Float](repeating: 0, count: W), dbiasRef = [Float](repeating: 0, count: W)
        referenceGATv2Backward(numDst: nD, dstStart: rel.dstStart, srcByDst: rel.srcByDst, xl: xl.p, ldl: ldl, xr: xr.p, ldr: ldr,
                               att: att.p, heads: H, channels: C, alpha: alphaRef, dOut: g, lddo: W,
                               dxl: &dxlRef, lddl: ldl, dxr: &dxrRef, lddr: ldr, datt: &dattRef, dbias: &dbiasRef, scale: scale)
        var dbXrRef = [Float](repeating: 0, count: W), dbResRef = [Float](repeating: 0, count: W)
        for i in 0..<nD { for c in 0..<W { dbXrRef[c] += dxrRef[i * ldr + c]; dbResRef[c] += g[i * W + c] } }

        // Fused: first-use flags, garbage where the kernel must overwrite, zeros only where it accumulates.
        var seen = [Bool](repeating: false, count: nS), firstUse = [Int32](repeating: 0, count: E)
        for k in 0..<E { let j = Int(rel.srcByDst[k]); firstUse[k] = seen[j] ? 0 : 1; seen[j] = true }
        var dxl = [Float](repeating: 0, count: nS * ldl)
        for j in 0..<nS where seen[j] { for c in 0..<W { dxl[j * ldl + c] = 1e30 } }
        var dxr = [Float](repeating: 0, count: nD * ldr)
        for i in 0..<nD { for c in 0..<W { dxr[i * ldr + c] = -1e30 } }
        var datt = [Float](repeating: 0, count: W), dbias = [Float](repeating: 0, count: W)
        var dRes = [Float](repeating: .nan, count: nD * W)
        var dbXr = [Float](repeating: 0, count: W), dbRes = [Float](repeating: 0, count: W)
        gatv2Backward(numDst: nD, dstStart: rel.dstStart, srcByDst: rel.srcByDst, xl: xl.p, ldl: ldl, xr: xr.p, ldr: ldr,
                      att: att.p, heads: H, channels: C, alpha: alpha, dOut: gOut.p, lddo: W,
                      dxl: &dxl, lddl: ldl, dxr: &dxr, lddr: ldr, datt: &datt, dbias: &dbias, scale: scale,
                      overwriteDxr: true, reluMask: relu ? mask : nil, dResidual: &dRes, ldres: W,
                      firstUse: firstUse, dbXr: &dbXr, dbResidual: &dbRes)
        assertBitwise(dxl, dxlRef, "dxl " + what)
        assertBitwise(dxr, dxrRef, "dxr " + what)
        assertBitwise(datt, dattRef, "datt " + what)
        assertBitwise(dbias, dbiasRef, "dbias " + what)
        assertBitwise(dRes, g, "dResidual " + what)
        assertBitwise(dbXr, dbXrRef, "dbXr " + what)
        assertBitwise(dbRes, dbResRef, "dbResidual " + what)

        // The residual gradient written over dOut itself (as the model does): the same numbers everywhere.
        var dOutInPlace = (0..<(nD * W)).map { gOut.p[$0] }
        var dxl2 = dxl, dxr2 = dxr
        for j in 0..<nS where seen[j] { for c in 0..<W { dxl2[j * ldl + c] = 1e30 } }
        var datt2 = [Float](repeating: 0, count: W), dbias2 = [Float](repeating: 0, count: W)
        var dbXr2 = [Float](repeating: 0, count: W), dbRes2 = [Float](repeating: 0, count: W)
        dOutInPlace.withUnsafeMutableBufferPointer { d in
            gatv2Backward(numDst: nD, dstStart: rel.dstStart, srcByDst: rel.srcByDst, xl: xl.p, ldl: ldl, xr: xr.p, ldr: ldr,
                          att: att.p, heads: H, channels: C, alpha: alpha, dOut: d.baseAddress!, lddo: W,
                          dxl: &dxl2, lddl: ldl, dxr: &dxr2, lddr: ldr, datt: &datt2, dbias: &dbias2, scale: scale,
                          overwriteDxr: true, reluMask: relu ? mask : nil, dResidual: d.baseAddress!, ldres: W,
                          firstUse: firstUse, dbXr: &dbXr2, dbResidual: &dbRes2)
        }
        assertBitwise(dOutInPlace, g, "dResidual in place over dOut " + what)
        assertBitwise(dxl2, dxlRef, "dxl (dResidual in place) " + what)
        assertBitwise(dxr2, dxrRef, "dxr (dResidual in place) " + what)
        assertBitwise(datt2, dattRef, "datt (dResidual in place) " + what)
        assertBitwise(dbRes2, dbResRef, "dbResidual (dResidual in place) " + what)
    }
}
