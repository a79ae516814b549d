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
import CMaskBits

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
/// rows they will overwrite (out; dxr and dResidual), so that those stores do not wait for the lines to arrive
/// (measured: −0.3 to −0.5 ms per step; the xr prefetch is neutral, the hardware streams those rows).
public let gatv2PrefetchDistance = 16

/// Calls `prefetch(j)` for each source j of destination i that lies more than 32 rows from i. The
/// breadth-first order puts most sources next to their destination, where the prefetch of row i + distance
/// covers them; the rest (~12 % of the kNN edges, mostly across the belongs-sources-first split of the
/// order) would each miss to memory: prefetching them is −0.6 ms per step (alternating-step A/B).
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
/// the unspecialized body for the 16-channel layer, with run-time loops and overflow checks: its two
/// kernels took 2.7 ms per step, specialized 1.9).
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

/// y[c] += a · x[c] over n channels (elementwise: the vector width does not change any number).
/// With `first`, y is not read: y[c] = 0 + a · x[c], the same numbers as zeroing y first.
@inline(__always) func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                            first: Bool = false) {
    var c = 0
    let a16 = F16(repeating: a)
    while c &+ 16 <= n {
        store16((first ? F16.zero : load16(y + c)) + a16 * load16(x + c), y + c)
        c &+= 16
    }
    let a8 = F8(repeating: a)
    while c &+ 8 <= n {
        store8((first ? F8.zero : load8(y + c)) + a8 * load8(x + c), y + c)
        c &+= 8
    }
    while c < n { y[c] = (first ? 0 : y[c]) + a * x[c]; c &+= 1 }
}

/// The sum of the 16 lanes by halves: (lanes 0..<8 + 8..<16), then 4, 2, 1. Only for loops whose length
/// is a run-time value: inlined into a fully unrolled channel loop, LLVM narrows the whole loop to 2-lane
/// operations (measured +7 ms per step in the attention score).
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
                // Scores and their maximum per head.
                for h in 0..<H { m[h] = -Float.infinity }
                for k in k0..<k1 {
                    let xlj = xl + Int(srcByDst[k]) * ldl
                    for h in 0..<H {
                        let e = attentionScore(att + h * C, xlj + h * C, xri + h * C, C)
                        alpha[k * H + h] = e
                        m[h] = max(m[h], e)
                    }
                }
                // Softmax over the destination's edges.
                for h in 0..<H { denom[h] = 0 }
                for k in k0..<k1 {
                    for h in 0..<H {
                        let p = expf(alpha[k * H + h] - m[h])
                        alpha[k * H + h] = p
                        denom[h] += p
                    }
                }
                for h in 0..<H { denom[h] = denom[h] + 1e-16 }
                // Aggregation of the source projections.
                for k in k0..<k1 {
                    let xlj = xl + Int(srcByDst[k]) * ldl
                    for h in 0..<H {
                        let al = alpha[k * H + h] / denom[h]
                        alpha[k * H + h] = al
                        axpy(al, xlj + h * C, o + h * C, C, first: k == k0)
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

/// Backward of `gatv2Forward` given dOut [numDst, H·C] (row stride lddo), the gradient of `out`.
/// Accumulates (+=) into dxl [N_src, H·C] (row stride lddl) and dxr [numDst, H·C] (row stride lddr) —
/// or overwrites dxr when `overwriteDxr` (no zeroing needed) — and adds its sums over all destinations
/// to datt [H, C] and dbias [H·C] (and dbXr, dbResidual below). The caller zeroes what is accumulated.
/// - `reluMask` [numDst, reluMaskWords(H·C)] (optional): the mask the forward wrote with its relu; dOut is
///   then the gradient after the relu and is masked first (the numbers of `reluBackward` from the relu
///   output, which is not read again: measured −0.7 ms per step).
/// - `dResidual` [numDst, H·C] (row stride ldres, optional): receives the (masked) dOut, the gradient of
///   a residual added in the forward epilogue (scale does not apply to it).
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
    // [H·C], Σ_k α_k·dα_k [H], dα [max in-degree, H].
    var maxDegree = 0
    for i in 0..<numDst { maxDegree = max(maxDegree, Int(dstStart[i + 1] - dstStart[i])) }
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 6 * H * C + H * (1 + maxDegree) + 1) { buf in
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
    // in SeggerModel). Then gm [H·C]: the masked gradient row; sumAD [H]: Σ_k α_k·dα_k; dAlpha
    // [degree, H]: dα_k = ⟨g, xl_j⟩.
        let attL = scratch, dattL = attL + W, dbiasL = dattL + W, dbXrL = dbiasL + W, dbResL = dbXrL + W
        let gm = dbResL + W, sumAD = gm + W, dAlpha = sumAD + H
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
            if let dResidual { (dResidual + i * ldres).update(from: g, count: W) }
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
                for h in 0..<H { dAlpha[(k &- k0) &* H &+ h] = dot(g + h * C, xlj + h * C, C) }
            }
            for h in 0..<H { sumAD[h] = 0 }
            for k in k0..<k1 {
                for h in 0..<H { sumAD[h] += alpha[k * H + h] * dAlpha[(k &- k0) &* H &+ h] }
            }
            for k in k0..<k1 {
                let j = Int(srcByDst[k])
                let first = firstUse.map { $0[k] != 0 } ?? false
                let firstDxr = overwriteDxr && k == k0
                for h in 0..<H {
                    let gh = g + h * C
                    let xlj = xl + j * ldl + h * C
                    let dxlj = dxl + j * lddl + h * C
                    let xrih = xri + h * C, dxrih = dxri + h * C
                    let a = attL + h * C
                    let da = dattL + h * C
                    let al = alpha[k * H + h]
                    // dxr_i = Σ_k de_k·att·slope_k; as Σ_k de_k = 0 (up to the 1e-16 of the softmax
                    // denominator, relative), it is accumulated as Σ_k de_k·att·(slope_k − 1): only edges
                    // on the negative side of the leaky relu contribute, and the cancelling part is gone.
                    let de = scale * al * (dAlpha[(k &- k0) &* H &+ h] - sumAD[h])
                    let sal = scale * al
                    let de16 = F16(repeating: de), sal16 = F16(repeating: sal)
                    var c = 0
                    while c &+ 16 <= C {
                        let s = load16(xlj + c) + load16(xrih + c)
                        let sl = leakySlopes16(s)
                        store16(load16(da + c) + de16 * (s * sl), da + c)
                        let dea = de16 * load16(a + c)
                        let prev = first ? F16.zero : load16(dxlj + c)
                        store16(prev + sal16 * load16(gh + c) + dea * sl, dxlj + c)
                        store16((firstDxr ? F16.zero : load16(dxrih + c)) + dea * (sl - 1), dxrih + c)
                        c &+= 16
                    }
                    let de8 = F8(repeating: de), sal8 = F8(repeating: sal)
                    while c &+ 8 <= C {
                        let s = load8(xlj + c) + load8(xrih + c)
                        let sl = leakySlopes(s)
                        store8(load8(da + c) + de8 * (s * sl), da + c)
                        let dea = de8 * load8(a + c)
                        let prev = first ? F8.zero : load8(dxlj + c)
                        store8(prev + sal8 * load8(gh + c) + dea * sl, dxlj + c)
                        store8((firstDxr ? F8.zero : load8(dxrih + c)) + dea * (sl - 1), dxrih + c)
                        c &+= 8
                    }
                    while c < C {
                        let s = xlj[c] + xrih[c]
                        let pos = s > 0
                        da[c] += de * (pos ? s : slope * s)
                        let dea = de * a[c]
                        dxlj[c] = (first ? 0 : dxlj[c]) + (sal * gh[c] + dea * (pos ? 1 : slope))
                        dxrih[c] = (firstDxr ? 0 : dxrih[c]) + (pos ? 0 : dea * (slope - 1))
                        c += 1
                    }
                }
            }
            if dbXr != nil { addInPlace(dbXrL, dxri, W) }
        }
}
