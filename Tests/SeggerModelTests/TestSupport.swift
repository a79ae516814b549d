// Shared helpers: a small deterministic generator, synthetic tiles, and a finite-difference checker.
import XCTest
import SeggerRandom
import SeggerTiles
@testable import SeggerModel

/// Deterministic test data.
struct TestRandom {
    var rng: SplitMix64
    init(_ seed: UInt64) { rng = SplitMix64(seed: seed) }
    mutating func uniform(_ lo: Double = -1, _ hi: Double = 1) -> Float { Float(lo + (hi - lo) * rng.unit()) }
    mutating func floats(_ n: Int, _ lo: Double = -1, _ hi: Double = 1) -> [Float] { (0..<n).map { _ in uniform(lo, hi) } }
    mutating func int(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
}

/// A small random tile: kNN-like neighbors with self-loops and uneven in-degrees (some transcripts
/// with no incoming edge besides... none: every transcript has its self-loop), belongs edges with one
/// boundary left without any edge, positives and sampled negatives as labels.
func syntheticTile(numTx: Int = 14, numBd: Int = 4, tokens: Int? = 20, featureDim: Int? = nil, bdDim: Int = 4,
                   seed: UInt64 = 7) -> Tile {
    var r = TestRandom(seed)
    var nnSrc: [Int32] = [], nnDst: [Int32] = []
    for i in 0..<numTx {
        nnSrc.append(Int32(i)); nnDst.append(Int32(i))      // self-loop
        for _ in 0..<r.int(4) { nnSrc.append(Int32(r.int(numTx))); nnDst.append(Int32(i)) }
    }
    var bSrc: [Int32] = [], bDst: [Int32] = []
    var labelTx: [Int32] = [], labelBd: [Int32] = [], labels: [Float] = []
    for t in 0..<numTx where r.int(3) != 0 {
        let b = r.int(numBd - 1)                               // boundary numBd-1 never gets an edge
        bSrc.append(Int32(t)); bDst.append(Int32(b))
        labelTx.append(Int32(t)); labelBd.append(Int32(b)); labels.append(1)
    }
    for k in 0..<bSrc.count where k % 2 == 0 {
        labelTx.append(bSrc[k]); labelBd.append(Int32((Int(bDst[k]) + 1) % numBd)); labels.append(0)
    }
    let tx: TranscriptInput
    if let featureDim { tx = .features(r.floats(numTx * featureDim), dim: featureDim) }
    else { tx = .tokens((0..<numTx).map { _ in Int32(r.int(tokens!)) }) }
    return Tile(sources: ["synthetic"], numTx: numTx, numBd: numBd, tx: tx,
                bdX: r.floats(numBd * bdDim, 0, 2), bdDim: bdDim,
                neighbors: Relation(numSrc: numTx, numDst: numTx, src: nnSrc, dst: nnDst),
                belongs: Relation(numSrc: numTx, numDst: numBd, src: bSrc, dst: bDst),
                labelTx: labelTx, labelBd: labelBd, labels: labels)
}

/// Outcome of a finite-difference check over some coordinates.
struct GradientCheck {
    var checked = 0, skippedKinks = 0
    var worstExcess = 0.0      // max of |fd − an| / (atol + rtol·|an|); must stay < 1
    var worstName = ""
}

/// Compares analytic derivatives with central differences of `f` (computed in Double from Float
/// kernels), per coordinate of `x`, at steps h, h/2 and h/4.
///
/// Noise and tolerance: `f` is a sum of O(1) Float terms, so its rounding error is ~1e-6 and the
/// central difference's noise is ~1e-6/(2·step) ≤ 2e-4 at step ≥ h/4 = 2.5e-3; the O(step²)
/// truncation error is ~1e-4 relative. The tolerance `atol + rtol·|an|` (defaults 3e-4, 1e-2) sits
/// above both, while a wrong formula (missing term, wrong sign, slope or factor) errs by a sizeable
/// fraction of the gradient itself, i.e. ≫ 1e-2 relative on coordinates whose gradient is ≫ atol —
/// and away from kinks the three quotients agree with each other within the tolerance, so a wrong
/// analytic value cannot match one of them by luck.
/// A relu / leaky-relu kink within a step of x contaminates the larger steps only (by up to
/// slope-jump·step/4): the coordinate passes when any of the three quotients matches; when none
/// matches and they disagree with each other by more than the tolerance, the coordinate sits at a
/// kink and is skipped and counted (the caller bounds the count); when they agree, it fails — unless
/// `analyticAt` is given (then tested from half the tolerance on) (it recomputes the analytic derivative of coordinate i at the current x):
/// a kink closer than h/4 contaminates all three quotients alike (they average the slopes on both
/// sides), so the coordinate counts as a kink when the analytic derivative jumps between x − h/4 and
/// x + h/4 by more than the tolerance and the h/4 quotient lies between those two values.
func checkGradient(_ name: String, x: UnsafeMutablePointer<Float>, analytic: [Float], indices: [Int],
                   h: Float = 1e-2, atol: Double = 3e-4, rtol: Double = 1e-2,
                   into result: inout GradientCheck, analyticAt: ((Int) -> Double)? = nil, f: () -> Double) {
    for i in indices {
        let x0 = x[i]
        func quotient(_ step: Float) -> Double {
            x[i] = x0 + step; let fp = f()
            x[i] = x0 - step; let fm = f()
            x[i] = x0
            return (fp - fm) / (Double(x0 + step) - Double(x0 - step))
        }
        let q = [quotient(h), quotient(h / 2), quotient(h / 4)]
        let an = Double(analytic[i])
        let tol = atol + rtol * abs(an)
        let excess = q.map { abs($0 - an) / tol }.min()!
        if excess >= 1 && q.max()! - q.min()! > tol {
            result.skippedKinks += 1
            continue
        }
        if excess >= 0.5, let analyticAt {
            x[i] = x0 - h / 4; let left = analyticAt(i)
            x[i] = x0 + h / 4; let right = analyticAt(i)
            x[i] = x0
            if abs(right - left) > tol && q[2] >= min(left, right) - tol && q[2] <= max(left, right) + tol {
                result.skippedKinks += 1
                continue
            }
        }
        result.checked += 1
        if excess > result.worstExcess { result.worstExcess = excess; result.worstName = "\(name)[\(i)] fd \(q) analytic \(an)" }
    }
}

/// Σ r_i·v_i in Double: a scalar whose gradient with respect to v is r.
func weightedSum(_ v: UnsafePointer<Float>, _ r: [Float]) -> Double {
    var s = 0.0
    for i in r.indices { s += Double(r[i]) * Double(v[i]) }
    return s
}

/// Heap storage for values that a finite-difference check perturbs while the function reads them
/// (arrays would be an exclusivity conflict).
final class FloatBuffer {
    let p: UnsafeMutablePointer<Float>
    let count: Int
    init(_ a: [Float]) {
        count = a.count
        p = .allocate(capacity: max(a.count, 1))
        p.initialize(from: a, count: a.count)
    }
    deinit { p.deallocate() }
    var array: [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
    subscript(i: Int) -> Float { p[i] }
}
