// The fused GATv2 edge kernels over edges grouped by destination (docs/model-and-training.md):
//   e_k[h]  = Σ_c att[h,c] · leaky_relu(xl[j,h,c] + xr[i,h,c], 0.2)        edge k: j → i
//   α_k[h]  = exp(e_k[h] − max e[h]) / (Σ exp(e[h] − max e[h]) + 1e-16)    over the edges into i
//   out_i   = concat_h Σ_k α_k[h] · xl[j,h,:]  + bias
// Only α [E, H] is stored; the backward recomputes the per-channel terms from xl and xr, so no
// [E, H, C] tensor ever exists. Per destination: the scores of its edges (all heads of a source row
// at once), the softmax, then the channel loops block by block with the block's sums in registers over
// the destination's edges. Channels run 16 lanes at a time; when the heads come in fours of 16-channel
// blocks (the usual shapes) the channel sums of four heads are reduced together (`segger_lane_sums4`)
// and the exponential takes four heads at once (`segger_exp4`); other shapes run 8 lanes, then scalars.
// `segger-train bench-kernels` times them alone (ns per edge; in the caches with --rows 300).
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import CMaskBits
import CVectorMath

/// Slope of GATv2's leaky relu.
public let gatv2NegativeSlope: Float = 0.2

typealias F8 = SIMD8<Float>
typealias F16 = SIMD16<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> F8 {
    UnsafeRawPointer(p).loadUnaligned(as: F8.self)
}

@inline(__always) func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self)
}

@inline(__always) func loadF4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
}

@inline(__always) func storeF4(_ v: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD4<Float>.self)
}

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> F16 {
    UnsafeRawPointer(p).loadUnaligned(as: F16.self)
}

@inline(__always) func store16(_ v: F16, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F16.self)
}

/// LLVM's prefetch intrinsic (rw: 0 read / 1 write, locality 0...3, cache 1 = data).
@_silgen_name("llvm.prefetch.p0")
func llvmPrefetch(_ p: UnsafeRawPointer, _ rw: Int32, _ locality: Int32, _ cache: Int32)

/// Prefetches the cache lines of x[0..<n] (for reading, or for writing when `write`).
@inline(__always) func prefetchRow(_ x: UnsafePointer<Float>, _ n: Int, write: Bool = false) {
    var c = 0
    while c < n {
        if write { llvmPrefetch(UnsafeRawPointer(x + c), 1, 3, 1) } else { llvmPrefetch(UnsafeRawPointer(x + c), 0, 3, 1) }
        c &+= 16
    }
}

/// How many destinations ahead the edge kernels prefetch the rows of destination i + distance
/// (see `prefetchRows` of `gatv2Forward`): the source rows they will read, and for writing the output
/// rows they will overwrite (out; dxr and dResidual), so that those stores do not wait for the lines to arrive.
/// The xr rows are not prefetched: the hardware streams them (docs/performance.md).
public let gatv2PrefetchDistance = 16

/// Calls `prefetch(j)` for each source j of destination i that lies more than 32 rows from i. The
/// breadth-first order puts most sources next to their destination, where the prefetch of row i + distance
/// covers them; the rest (~12 % of the kNN edges, mostly across the belongs-sources-first split of the
/// order) would each miss to memory (docs/performance.md has the measurement).
@inline(__always) func prefetchFarSources(_ i: Int, _ dstStart: UnsafePointer<Int32>, _ srcByDst: UnsafePointer<Int32>,
                                          _ prefetch: (Int) -> Void) {
    for k in Int(dstStart[i])..<Int(dstStart[i + 1]) {
        let j = Int(srcByDst[k])
        if j &- i > 32 || i &- j > 32 { prefetch(j) }
    }
}

/// The leaky relu's slope per lane: 1 where s > 0, else 0.2 (so leaky_relu(s) = s · slopes(s)).
@inline(__always) func leakySlopes(_ s: F8) -> F8 {
    F8(repeating: 1).replacing(with: gatv2NegativeSlope, where: s .<= 0)
}

@inline(__always) func leakySlopes16(_ s: F16) -> F16 {
    F16(repeating: 1).replacing(with: gatv2NegativeSlope, where: s .<= 0)
}

/// The head and channel counts of an edge kernel, fixed at compile time for the usual configurations: the
/// kernel bodies are generic over it, so each shape gets its own specialized copy with the channel loops
/// unrolled (three shapes inlined into one dispatcher were too large for the compiler, which then called
/// the unspecialized body for the 16-channel layer, with run-time loops and overflow checks, markedly
/// slower: docs/performance.md).
protocol EdgeKernelShape {
    /// nil: the counts passed at run time.
    static var heads: Int? { get }
    static var channels: Int? { get }
}
enum FourHeads64: EdgeKernelShape { static var heads: Int? { 4 }; static var channels: Int? { 64 } }
enum FourHeads16: EdgeKernelShape { static var heads: Int? { 4 }; static var channels: Int? { 16 } }
enum AnyShape: EdgeKernelShape { static var heads: Int? { nil }; static var channels: Int? { nil } }

/// Words of a relu mask row for rows of `width` floats: bit c % 16 of word c / 16 is set where out[c] > 0
/// after the relu — what the backward needs of the relu, in 1/32 of the bytes of the output row.
public func reluMaskWords(width: Int) -> Int { (width + 15) / 16 }

/// g with the lanes whose bit is clear set to 0 (the relu backward from a mask word).
@inline(__always) func maskedByBits(_ g: F16, _ bits: UInt16) -> F16 {
    // A literal, not a global: a global constant is initialized lazily, through a call on every use.
    let laneBits = SIMD16<UInt32>(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
    let on = (SIMD16<UInt32>(repeating: UInt32(bits)) & laneBits) .== laneBits
    return F16.zero.replacing(with: g, where: on)
}

/// Σ_c att[c] · leaky_relu(x[c] + y[c]) over n channels.
@inline(__always) func attentionScore(_ att: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                      _ n: Int) -> Float {
    let slope = gatv2NegativeSlope
    var acc = F8.zero
    var c = 0
    while c &+ 8 <= n {
        let s = load8(x + c) + load8(y + c)
        acc += load8(att + c) * (s * leakySlopes(s))
        c &+= 8
    }
    var e = acc.sum()
    while c < n {
        let s = x[c] + y[c]
        e += att[c] * (s > 0 ? s : slope * s)
        c += 1
    }
    return e
}

/// The attention scores of four heads at once (heads of C channels side by side, C a multiple of 16):
/// per head the 16-lane sums of att·leaky_relu(x + y) over its channel blocks in order, then the four
/// 16-lane vectors reduced together (`segger_lane_sums4`) — one lane sum per head costs 15 dependent adds.
@_transparent func attentionScores4(_ att: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                        _ C: Int) -> SIMD4<Float> {
    var a0 = F16.zero, a1 = F16.zero, a2 = F16.zero, a3 = F16.zero
    var c = 0
    while c &+ 16 <= C {
        a0 = a0 + leakyTerm16(att + c, x + c, y + c)
        a1 = a1 + leakyTerm16(att + (C &+ c), x + (C &+ c), y + (C &+ c))
        a2 = a2 + leakyTerm16(att + (2 &* C &+ c), x + (2 &* C &+ c), y + (2 &* C &+ c))
        a3 = a3 + leakyTerm16(att + (3 &* C &+ c), x + (3 &* C &+ c), y + (3 &* C &+ c))
        c &+= 16
    }
    return segger_lane_sums4(a0, a1, a2, a3)
}

/// ⟨g, x⟩ of four heads at once (C channels each, C a multiple of 16): 16-lane sums over the channel
/// blocks in order, then reduced together (`segger_lane_sums4`).
@_transparent func dots4(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ C: Int) -> SIMD4<Float> {
    var a0 = F16.zero, a1 = F16.zero, a2 = F16.zero, a3 = F16.zero
    var c = 0
    while c &+ 16 <= C {
        a0 = a0 + load16(g + c) * load16(x + c)
        a1 = a1 + load16(g + (C &+ c)) * load16(x + (C &+ c))
        a2 = a2 + load16(g + (2 &* C &+ c)) * load16(x + (2 &* C &+ c))
        a3 = a3 + load16(g + (3 &* C &+ c)) * load16(x + (3 &* C &+ c))
        c &+= 16
    }
    return segger_lane_sums4(a0, a1, a2, a3)
}

/// att[c] · leaky_relu(x[c] + y[c]) for 16 channels.
@inline(__always) func leakyTerm16(_ att: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>) -> F16 {
    let s = load16(x) + load16(y)
    return load16(att) * (s * leakySlopes16(s))
}

/// The sum of the 16 lanes by halves: (lanes 0..<8 + 8..<16), then 4, 2, 1. Only for loops whose length
/// is a run-time value: inlined into a fully unrolled channel loop, LLVM narrows the whole loop to 2-lane
/// operations, which made the attention score several times slower.
@inline(__always) func laneSumByHalves(_ v: F16) -> Float {
    let h8 = v.lowHalf + v.highHalf
    let h4 = h8.lowHalf + h8.highHalf
    let h2 = h4.lowHalf + h4.highHalf
    return h2[0] + h2[1]
}

/// y[c] += a · x[c] over n channels, the product rounded before the add (as the scalar `y[c] += a * x[c]`).
@inline(__always) func addScaled(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, _ n: Int) {
    var c = 0
    let a16 = F16(repeating: a)
    while c &+ 16 <= n {
        store16(load16(y + c) + a16 * load16(x + c), y + c)
        c &+= 16
    }
    while c < n { y[c] += a * x[c]; c &+= 1 }
}

/// Σ_c g[c] · x[c] over n channels (8 lanes, then the lane sum, then the scalar tail).
@inline(__always) func dot(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F8.zero
    var c = 0
    while c &+ 8 <= n {
        acc += load8(g + c) * load8(x + c)
        c &+= 8
    }
    var d = acc.sum()
    while c < n { d += g[c] * x[c]; c += 1 }
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
/// - Epilogue (optional): `residual` [numDst, H·C] (row stride ldres) is added to out, then `relu`
///   applies max(·, 0) (NaN → 0, as `reluForward`). Same numbers as separate passes, one write of out.
///   With `relu`, `reluMask` [numDst, reluMaskWords(H·C)] (optional) receives where out > 0, for the backward.
///
/// Each destination is one pass over its edges with all heads together (a source row is read as one
/// contiguous H·C run); per element the arithmetic and its order are those of the per-head definition.
public func gatv2Forward(numDst: Int, dstStart: UnsafePointer<Int32>, srcByDst: UnsafePointer<Int32>,
                         xl: UnsafePointer<Float>, ldl: Int, xr: UnsafePointer<Float>, ldr: Int,
                         att: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                         heads H: Int, channels C: Int,
                         alpha: UnsafeMutablePointer<Float>,
                         out: UnsafeMutablePointer<Float>, ldo: Int, scale: Float = 1,
                         residual: UnsafePointer<Float>? = nil, ldres: Int = 0, relu: Bool = false,
                         reluMask: UnsafeMutablePointer<UInt16>? = nil, prefetchRows: Int = 0) {
    // Constant head and channel counts of the usual configurations let the compiler unroll the channel loops.
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * max(H, 1)) { buf in
        if H == 4 && C == 64 { gatv2ForwardBody(FourHeads64.self, scratch: buf.baseAddress!, numDst: numDst, dstStart: dstStart, srcByDst: srcByDst, xl: xl, ldl: ldl, xr: xr, ldr: ldr, att: att, bias: bias, heads: 4, channels: 64, alpha: alpha, out: out, ldo: ldo, scale: scale, residual: residual, ldres: ldres, relu: relu, reluMask: reluMask, prefetchRows: prefetchRows) }
        else if H == 4 && C == 16 { gatv2ForwardBody(FourHeads16.self, scratch: buf.baseAddress!, numDst: numDst, dstStart: dstStart, srcByDst: srcByDst, xl: xl, ldl: ldl, xr: xr, ldr: ldr, att: att, bias: bias, heads: 4, channels: 16, alpha: alpha, out: out, ldo: ldo, scale: scale, residual: residual, ldres: ldres, relu: relu, reluMask: reluMask, prefetchRows: prefetchRows) }
        else { gatv2ForwardBody(AnyShape.self, scratch: buf.baseAddress!, numDst: numDst, dstStart: dstStart, srcByDst: srcByDst, xl: xl, ldl: ldl, xr: xr, ldr: ldr, att: att, bias: bias, heads: H, channels: C, alpha: alpha, out: out, ldo: ldo, scale: scale, residual: residual, ldres: ldres, relu: relu, reluMask: reluMask, prefetchRows: prefetchRows) }
    }
}

@inline(never) func gatv2ForwardBody<Shape: EdgeKernelShape>(_ shape: Shape.Type, scratch: UnsafeMutablePointer<Float>, numDst: Int, dstStart: UnsafePointer<Int32>, srcByDst: UnsafePointer<Int32>,
                         xl: UnsafePointer<Float>, ldl: Int, xr: UnsafePointer<Float>, ldr: Int,
                         att: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                         heads runtimeHeads: Int, channels runtimeChannels: Int,
                         alpha: UnsafeMutablePointer<Float>,
                         out: UnsafeMutablePointer<Float>, ldo: Int, scale: Float,
                         residual: UnsafePointer<Float>?, ldres: Int, relu: Bool,
                         reluMask: UnsafeMutablePointer<UInt16>?, prefetchRows: Int) {
    let H = Shape.heads ?? runtimeHeads, C = Shape.channels ?? runtimeChannels
    let W = H * C
    let maskWords = reluMaskWords(width: W)
    // m [H]: running max of the scores; denom [H]: softmax denominators (on the stack).
        let m = scratch, denom = m + H
        for i in 0..<numDst {
            let ip = i &+ gatv2PrefetchDistance
            if ip < numDst { prefetchRow(xr + ip * ldr, W) }
            if ip < prefetchRows { prefetchRow(xl + ip * ldl, W) }
            if ip < numDst { prefetchRow(out + ip * ldo, W, write: true) }
            if ip < numDst { prefetchFarSources(ip, dstStart, srcByDst) { j in prefetchRow(xl + j * ldl, W) } }
            let k0 = Int(dstStart[i]), k1 = Int(dstStart[i + 1])
            let o = out + i * ldo
            if k1 == k0 { o.update(repeating: 0, count: W) } else {
                let xri = xr + i * ldr
                // Scores and their maximum per head (as `max`: a score replaces the maximum when ≥).
                for h in 0..<H { m[h] = -Float.infinity }
                let grouped = C % 16 == 0 && H % 4 == 0
                for k in k0..<k1 {
                    let xlj = xl + Int(srcByDst[k]) * ldl
                    if grouped {
                        var h = 0
                        while h < H {
                            let e4 = attentionScores4(att + h * C, xlj + h * C, xri + h * C, C)
                            storeF4(e4, alpha + (k &* H &+ h))
                            let m4 = loadF4(m + h)
                            storeF4(m4.replacing(with: e4, where: e4 .>= m4), m + h)
                            h &+= 4
                        }
                    } else {
                        for h in 0..<H {
                            let e = attentionScore(att + h * C, xlj + h * C, xri + h * C, C)
                            alpha[k * H + h] = e
                            m[h] = max(m[h], e)
                        }
                    }
                }
                // Softmax over the destination's edges (`segger_exp4`: four heads per call, no library call).
                for h in 0..<H { denom[h] = 0 }
                if grouped {
                    for k in k0..<k1 {
                        var h = 0
                        while h < H {
                            let a = alpha + (k &* H &+ h)
                            let p = segger_exp4(loadF4(a) - loadF4(m + h))
                            storeF4(p, a)
                            storeF4(loadF4(denom + h) + p, denom + h)
                            h &+= 4
                        }
                    }
                } else {
                    for k in k0..<k1 {
                        for h in 0..<H {
                            let p = segger_exp1(alpha[k * H + h] - m[h])
                            alpha[k * H + h] = p
                            denom[h] += p
                        }
                    }
                }
                for h in 0..<H { denom[h] = denom[h] + 1e-16 }
                for k in k0..<k1 {
                    for h in 0..<H { alpha[k &* H &+ h] = alpha[k &* H &+ h] / denom[h] }
                }
                // Aggregation of the source projections, block by block of a head's channels: each block's
                // sum stays in a register over the destination's edges (edge order, from 0, as before).
                for h in 0..<H {
                    var c = 0
                    while c &+ 64 <= C {
                        let off = h &* C &+ c
                        var a0 = F16.zero, a1 = F16.zero, a2 = F16.zero, a3 = F16.zero
                        for k in k0..<k1 {
                            let al = F16(repeating: alpha[k &* H &+ h])
                            let x = xl + (Int(srcByDst[k]) &* ldl &+ off)
                            a0 = a0 + al * load16(x)
                            a1 = a1 + al * load16(x + 16)
                            a2 = a2 + al * load16(x + 32)
                            a3 = a3 + al * load16(x + 48)
                        }
                        store16(a0, o + off)
                        store16(a1, o + (off &+ 16))
                        store16(a2, o + (off &+ 32))
                        store16(a3, o + (off &+ 48))
                        c &+= 64
                    }
                    while c &+ 16 <= C {
                        let off = h &* C &+ c
                        var acc = F16.zero
                        for k in k0..<k1 {
                            acc = acc + F16(repeating: alpha[k &* H &+ h]) * load16(xl + (Int(srcByDst[k]) &* ldl &+ off))
                        }
                        store16(acc, o + off)
                        c &+= 16
                    }
                    while c &+ 8 <= C {
                        let off = h &* C &+ c
                        var acc = F8.zero
                        for k in k0..<k1 {
                            acc = acc + F8(repeating: alpha[k &* H &+ h]) * load8(xl + (Int(srcByDst[k]) &* ldl &+ off))
                        }
                        store8(acc, o + off)
                        c &+= 8
                    }
                    while c < C {
                        let off = h &* C &+ c
                        var acc: Float = 0
                        for k in k0..<k1 { acc = acc + alpha[k &* H &+ h] * xl[Int(srcByDst[k]) &* ldl &+ off] }
                        o[off] = acc
                        c &+= 1
                    }
                }
            }
            // Epilogue: (out + bias)·scale, + residual, relu.
            let res = residual.map { $0 + i * ldres }
            let mask = relu ? reluMask.map { $0 + i * maskWords } : nil
            let s16 = F16(repeating: scale)
            var c = 0
            while c &+ 16 <= W {
                var v = load16(o + c) + load16(bias + c)
                if scale != 1 { v = s16 * v }
                if let res { v = v + load16(res + c) }
                if relu { v = v.replacing(with: 0, where: .!(v .> 0)) }
                store16(v, o + c)
                if let mask { mask[c >> 4] = segger_positive_bits16(o + c) }
                c &+= 16
            }
            if let mask, c < W { mask[c >> 4] = 0 }
            while c < W {
                var v = o[c] + bias[c]
                if scale != 1 { v = scale * v }
                if let res { v = v + res[c] }
                if relu { v = v > 0 ? v : 0 }
                if let mask, v > 0 { mask[c >> 4] |= 1 << UInt16(c & 15) }
                o[c] = v
                c += 1
            }
        }
}

/// One edge's contribution to 16 channels of the backward (edge j → i, the head's de and scale·α):
/// da += de·leaky_relu(s) and dr += de·att·(slope − 1) in registers, dxl_j written (from 0 when `first`)
/// with scale·α·g + de·att·slope, where s = xl_j + xr_i.
@inline(__always) func edgeChannelBlock(_ xl: UnsafePointer<Float>, _ xr: UnsafePointer<Float>, _ att: UnsafePointer<Float>,
                                        _ g: UnsafePointer<Float>, _ dxl: UnsafeMutablePointer<Float>, first: Bool,
                                        de: F16, sal: F16, da: inout F16, dr: inout F16) {
    let s = load16(xl) + load16(xr)
    let sl = leakySlopes16(s)
    da = da + de * (s * sl)
    let dea = de * load16(att)
    let prev = first ? F16.zero : load16(dxl)
    store16(prev + sal * load16(g) + dea * sl, dxl)
    dr = dr + dea * (sl - 1)
}

/// Backward of `gatv2Forward` given dOut [numDst, H·C] (row stride lddo), the gradient of `out`.
/// Accumulates (+=) into dxl [N_src, H·C] (row stride lddl) and dxr [numDst, H·C] (row stride lddr) —
/// or overwrites dxr when `overwriteDxr` (no zeroing needed) — and adds its sums over all destinations
/// to datt [H, C] and dbias [H·C] (and dbXr, dbResidual below). The caller zeroes what is accumulated.
/// - `reluMask` [numDst, reluMaskWords(H·C)] (optional): the mask the forward wrote with its relu; dOut is
///   then the gradient after the relu and is masked first (the numbers of `reluBackward` from the relu
///   output, which is then not read again).
/// - `dResidual` [numDst, H·C] (row stride ldres, optional): receives the (masked) dOut, the gradient of
///   a residual added in the forward epilogue (scale does not apply to it). It may be dOut itself (the
///   same rows, ldres = lddo): the masked gradient then replaces dOut, whose rows the kernel has just read.
/// - `firstUse` [E] (optional): nonzero at the first grouped edge of each source. That edge then writes
///   `0 + its contribution` to dxl[j] instead of accumulating, so the caller need not zero the rows of
///   dxl that are sources (only the others); the numbers are the same as zeroing first.
/// - `dbXr` [H·C] (optional, needs `overwriteDxr`): accumulates Σ_i dxr[i] in row order, the bias gradient
///   of the linear that produced xr; `dbResidual` [H·C] (optional): Σ_i of the rows written to dResidual.
///   Same order and numbers as summing those rows (into zeroed buffers) after the kernel, without reading them again.
public func gatv2Backward(numDst: Int, dstStart: UnsafePointer<Int32>, srcByDst: UnsafePointer<Int32>,
                          xl: UnsafePointer<Float>, ldl: Int, xr: UnsafePointer<Float>, ldr: Int,
                          att: UnsafePointer<Float>, heads H: Int, channels C: Int,
                          alpha: UnsafePointer<Float>,
                          dOut: UnsafePointer<Float>, lddo: Int,
                          dxl: UnsafeMutablePointer<Float>, lddl: Int,
                          dxr: UnsafeMutablePointer<Float>, lddr: Int,
                          datt: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
                          scale: Float = 1, overwriteDxr: Bool = false,
                          reluMask: UnsafePointer<UInt16>? = nil,
                          dResidual: UnsafeMutablePointer<Float>? = nil, ldres: Int = 0,
                          firstUse: UnsafePointer<Int32>? = nil,
                          dbXr: UnsafeMutablePointer<Float>? = nil, dbResidual: UnsafeMutablePointer<Float>? = nil,
                          prefetchRows: Int = 0) {
    // Constant head and channel counts of the usual configurations let the compiler unroll the channel loops.
    // Scratch: att and the datt, dbias, dbXr, dbResidual sums [H·C] each, the masked gradient row
    // [H·C], Σ_k α_k·dα_k [H], dα and scale·α per edge [max in-degree, 2H].
    var maxDegree = 0
    for i in 0..<numDst { maxDegree = max(maxDegree, Int(dstStart[i + 1] - dstStart[i])) }
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 6 * H * C + H * (1 + 2 * maxDegree) + 1) { buf in
        if H == 4 && C == 64 { gatv2BackwardBody(FourHeads64.self, scratch: buf.baseAddress!, numDst: numDst, dstStart: dstStart, srcByDst: srcByDst, xl: xl, ldl: ldl, xr: xr, ldr: ldr, att: att, heads: 4, channels: 64, alpha: alpha, dOut: dOut, lddo: lddo, dxl: dxl, lddl: lddl, dxr: dxr, lddr: lddr, datt: datt, dbias: dbias, scale: scale, overwriteDxr: overwriteDxr, reluMask: reluMask, dResidual: dResidual, ldres: ldres, firstUse: firstUse, dbXr: dbXr, dbResidual: dbResidual, prefetchRows: prefetchRows) }
        else if H == 4 && C == 16 { gatv2BackwardBody(FourHeads16.self, scratch: buf.baseAddress!, numDst: numDst, dstStart: dstStart, srcByDst: srcByDst, xl: xl, ldl: ldl, xr: xr, ldr: ldr, att: att, heads: 4, channels: 16, alpha: alpha, dOut: dOut, lddo: lddo, dxl: dxl, lddl: lddl, dxr: dxr, lddr: lddr, datt: datt, dbias: dbias, scale: scale, overwriteDxr: overwriteDxr, reluMask: reluMask, dResidual: dResidual, ldres: ldres, firstUse: firstUse, dbXr: dbXr, dbResidual: dbResidual, prefetchRows: prefetchRows) }
        else { gatv2BackwardBody(AnyShape.self, scratch: buf.baseAddress!, numDst: numDst, dstStart: dstStart, srcByDst: srcByDst, xl: xl, ldl: ldl, xr: xr, ldr: ldr, att: att, heads: H, channels: C, alpha: alpha, dOut: dOut, lddo: lddo, dxl: dxl, lddl: lddl, dxr: dxr, lddr: lddr, datt: datt, dbias: dbias, scale: scale, overwriteDxr: overwriteDxr, reluMask: reluMask, dResidual: dResidual, ldres: ldres, firstUse: firstUse, dbXr: dbXr, dbResidual: dbResidual, prefetchRows: prefetchRows) }
    }
}

@inline(never) func gatv2BackwardBody<Shape: EdgeKernelShape>(_ shape: Shape.Type, scratch: UnsafeMutablePointer<Float>, numDst: Int, dstStart: UnsafePointer<Int32>, srcByDst: UnsafePointer<Int32>,
                          xl: UnsafePointer<Float>, ldl: Int, xr: UnsafePointer<Float>, ldr: Int,
                          att: UnsafePointer<Float>, heads runtimeHeads: Int, channels runtimeChannels: Int,
                          alpha: UnsafePointer<Float>,
                          dOut: UnsafePointer<Float>, lddo: Int,
                          dxl: UnsafeMutablePointer<Float>, lddl: Int,
                          dxr: UnsafeMutablePointer<Float>, lddr: Int,
                          datt: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
                          scale: Float, overwriteDxr: Bool,
                          reluMask: UnsafePointer<UInt16>?,
                          dResidual: UnsafeMutablePointer<Float>?, ldres: Int,
                          firstUse: UnsafePointer<Int32>?,
                          dbXr: UnsafeMutablePointer<Float>?, dbResidual: UnsafeMutablePointer<Float>?, prefetchRows: Int) {
    let H = Shape.heads ?? runtimeHeads, C = Shape.channels ?? runtimeChannels
    let slope = gatv2NegativeSlope
    let W = H * C
    let maskWords = reluMaskWords(width: W)
    // The small vectors every edge or destination updates live side by side on the stack (sums from
    // zero, added to the caller's at the end): one hot block, so that a load of att[c] never follows a
    // store to datt[c] in another buffer at the same page offset (4K aliasing, see `allocateAtPageOffset`
    // in SeggerModel). Then gm [H·C]: the masked gradient row; sumAD [H]: Σ_k α_k·dα_k; per edge of the
    // destination [degree, 2H]: dα_k = ⟨g, xl_j⟩ (then de_k in its place) and scale·α_k (`salpha`).
        let attL = scratch, dattL = attL + W, dbiasL = dattL + W, dbXrL = dbiasL + W, dbResL = dbXrL + W
        let gm = dbResL + W, sumAD = gm + W, dAlpha = sumAD + H, salpha = dAlpha + H
        attL.update(from: att, count: W)
        dattL.update(repeating: 0, count: 4 * W)
        defer {
            addInPlace(datt, dattL, W)
            addInPlace(dbias, dbiasL, W)
            if let dbXr { addInPlace(dbXr, dbXrL, W) }
            if let dbResidual { addInPlace(dbResidual, dbResL, W) }
        }
        for i in 0..<numDst {
            let ip = i &+ gatv2PrefetchDistance
            if ip < numDst { prefetchRow(xr + ip * ldr, W) }
            if ip < prefetchRows { prefetchRow(xl + ip * ldl, W); prefetchRow(dxl + ip * lddl, W, write: true) }
            if ip < numDst {
                prefetchFarSources(ip, dstStart, srcByDst) { j in prefetchRow(xl + j * ldl, W); prefetchRow(dxl + j * lddl, W, write: true) }
            }
            if ip < numDst { prefetchRow(dxr + ip * lddr, W, write: true) }
            if ip < numDst, let dResidual { prefetchRow(dResidual + ip * ldres, W, write: true) }
            let k0 = Int(dstStart[i]), k1 = Int(dstStart[i + 1])
            var g = dOut + i * lddo
            if let reluMask {
                let mask = reluMask + i * maskWords
                var c = 0
                while c &+ 16 <= W {
                    store16(maskedByBits(load16(g + c), mask[c >> 4]), gm + c)
                    c &+= 16
                }
                while c < W { gm[c] = mask[c >> 4] & (1 << UInt16(c & 15)) != 0 ? g[c] : 0; c += 1 }
                g = UnsafePointer(gm)
            }
            if let dResidual, UnsafePointer(dResidual + i * ldres) != g { (dResidual + i * ldres).update(from: g, count: W) }
            if dbResidual != nil { addInPlace(dbResL, g, W) }
            addScaled(dbiasL, scale, g, W)
            let dxri = dxr + i * lddr
            if k0 == k1 {
                if overwriteDxr { dxri.update(repeating: 0, count: W) }
                if dbXr != nil { addInPlace(dbXrL, dxri, W) }
                continue
            }
            let xri = xr + i * ldr
            // Softmax backward (the max is a constant): de_k = α_k·(dα_k − Σ_m α_m·dα_m), dα_k = ⟨g, xl_j⟩,
            // as autograd computes it. All dα first, so the channel loop below has no reduction in it.
            for k in k0..<k1 {
                let xlj = xl + Int(srcByDst[k]) * ldl
                let d = dAlpha + (k &- k0) &* (2 &* H)
                if C % 16 == 0 && H % 4 == 0 {    // as the forward's scores
                    var h = 0
                    while h < H {
                        storeF4(dots4(g + h * C, xlj + h * C, C), d + h)
                        h &+= 4
                    }
                } else {
                    for h in 0..<H { d[h] = dot(g + h * C, xlj + h * C, C) }
                }
            }
            for h in 0..<H { sumAD[h] = 0 }
            for k in k0..<k1 {
                for h in 0..<H { sumAD[h] += alpha[k * H + h] * dAlpha[(k &- k0) &* (2 &* H) &+ h] }
            }
            // Per edge and head: de_k = scale·α_k·(dα_k − Σ_m α_m·dα_m) (in place of dα) and scale·α_k.
            for k in k0..<k1 {
                for h in 0..<H {
                    let kh = (k &- k0) &* (2 &* H) &+ h
                    let al = alpha[k &* H &+ h]
                    dAlpha[kh] = scale * al * (dAlpha[kh] - sumAD[h])
                    salpha[kh] = scale * al
                }
            }
            // Block by block of a head's channels over the destination's edges: xr_i, att, g and the sums of
            // dxr_i and datt stay in registers (each still summed edge by edge in edge order, as before).
            // dxr_i = Σ_k de_k·att·slope_k; as Σ_k de_k = 0 (up to the 1e-16 of the softmax denominator,
            // relative), it is accumulated as Σ_k de_k·att·(slope_k − 1): only edges on the negative side
            // of the leaky relu contribute, and the cancelling part is gone.
            for h in 0..<H {
                var c = 0
                // 64 channels at a time (four 16-lane sums of each kind in registers), then 16.
                while c &+ 64 <= C {
                    let off = h &* C &+ c
                    var da0 = load16(dattL + off), da1 = load16(dattL + (off &+ 16))
                    var da2 = load16(dattL + (off &+ 32)), da3 = load16(dattL + (off &+ 48))
                    var dr0 = F16.zero, dr1 = F16.zero, dr2 = F16.zero, dr3 = F16.zero
                    if !overwriteDxr {
                        dr0 = load16(dxri + off); dr1 = load16(dxri + (off &+ 16))
                        dr2 = load16(dxri + (off &+ 32)); dr3 = load16(dxri + (off &+ 48))
                    }
                    for k in k0..<k1 {
                        let j = Int(srcByDst[k])
                        let kh = (k &- k0) &* (2 &* H) &+ h
                        let de16 = F16(repeating: dAlpha[kh]), sal16 = F16(repeating: salpha[kh])
                        let x = xl + (j &* ldl &+ off), d = dxl + (j &* lddl &+ off)
                        let first = firstUse.map { $0[k] != 0 } ?? false
                        edgeChannelBlock(x, xri + off, attL + off, g + off, d, first: first, de: de16, sal: sal16, da: &da0, dr: &dr0)
                        edgeChannelBlock(x + 16, xri + (off &+ 16), attL + (off &+ 16), g + (off &+ 16), d + 16, first: first, de: de16, sal: sal16, da: &da1, dr: &dr1)
                        edgeChannelBlock(x + 32, xri + (off &+ 32), attL + (off &+ 32), g + (off &+ 32), d + 32, first: first, de: de16, sal: sal16, da: &da2, dr: &dr2)
                        edgeChannelBlock(x + 48, xri + (off &+ 48), attL + (off &+ 48), g + (off &+ 48), d + 48, first: first, de: de16, sal: sal16, da: &da3, dr: &dr3)
                    }
                    store16(da0, dattL + off); store16(da1, dattL + (off &+ 16))
                    store16(da2, dattL + (off &+ 32)); store16(da3, dattL + (off &+ 48))
                    store16(dr0, dxri + off); store16(dr1, dxri + (off &+ 16))
                    store16(dr2, dxri + (off &+ 32)); store16(dr3, dxri + (off &+ 48))
                    c &+= 64
                }
                while c &+ 16 <= C {
                    let off = h &* C &+ c
                    var da = load16(dattL + off)
                    var dr = overwriteDxr ? F16.zero : load16(dxri + off)
                    for k in k0..<k1 {
                        let j = Int(srcByDst[k])
                        let kh = (k &- k0) &* (2 &* H) &+ h
                        let first = firstUse.map { $0[k] != 0 } ?? false
                        edgeChannelBlock(xl + (j &* ldl &+ off), xri + off, attL + off, g + off, dxl + (j &* lddl &+ off),
                                         first: first, de: F16(repeating: dAlpha[kh]), sal: F16(repeating: salpha[kh]), da: &da, dr: &dr)
                    }
                    store16(da, dattL + off)
                    store16(dr, dxri + off)
                    c &+= 16
                }
                while c &+ 8 <= C {
                    let off = h &* C &+ c
                    let xr8 = load8(xri + off), a8 = load8(attL + off), g8 = load8(g + off)
                    var da = load8(dattL + off)
                    var dr = overwriteDxr ? F8.zero : load8(dxri + off)
                    for k in k0..<k1 {
                        let j = Int(srcByDst[k])
                        let kh = (k &- k0) &* (2 &* H) &+ h
                        let de8 = F8(repeating: dAlpha[kh]), sal8 = F8(repeating: salpha[kh])
                        let s = load8(xl + (j &* ldl &+ off)) + xr8
                        let sl = leakySlopes(s)
                        da = da + de8 * (s * sl)
                        let dea = de8 * a8
                        let dxlj = dxl + (j &* lddl &+ off)
                        let prev = (firstUse.map { $0[k] != 0 } ?? false) ? F8.zero : load8(dxlj)
                        store8(prev + sal8 * g8 + dea * sl, dxlj)
                        dr = dr + dea * (sl - 1)
                    }
                    store8(da, dattL + off)
                    store8(dr, dxri + off)
                    c &+= 8
                }
                while c < C {
                    let off = h &* C &+ c
                    var da = dattL[off]
                    var dr = overwriteDxr ? 0 : dxri[off]
                    for k in k0..<k1 {
                        let j = Int(srcByDst[k])
                        let kh = (k &- k0) &* (2 &* H) &+ h
                        let de = dAlpha[kh], sal = salpha[kh]
                        let s = xl[j &* ldl &+ off] + xri[off]
                        let pos = s > 0
                        da += de * (pos ? s : slope * s)
                        let dea = de * attL[off]
                        let first = firstUse.map { $0[k] != 0 } ?? false
                        dxl[j &* lddl &+ off] = (first ? 0 : dxl[j &* lddl &+ off]) + (sal * g[off] + dea * (pos ? 1 : slope))
                        dr = dr + (pos ? 0 : dea * (slope - 1))
                    }
                    dattL[off] = da
                    dxri[off] = dr
                    c &+= 1
                }
            }
            if dbXr != nil { addInPlace(dbXrL, dxri, W) }
        }
}
