// Time the fused GATv2 edge kernels alone (forward, then backward with the model's options) on a
// synthetic destination-grouped graph shaped like the kNN relation after the breadth-first order: most
// sources within a few rows of their destination, a fraction anywhere. Small graphs stay in the caches
// (the kernels' arithmetic); large ones add the memory traffic of a real tile.
import Foundation
import SeggerDistributed
import SeggerKernels
import SeggerModel
import SeggerRandom

/// What `segger-train bench-kernels` prints (one JSON object).
public struct EdgeKernelReport: Codable {
    public var rows = 0
    public var edges = 0
    public var heads = 0
    public var channels = 0
    public var farFraction = 0.0
    public var reps = 0
    public var forwardMsMedian = 0.0
    public var backwardMsMedian = 0.0
    public var forwardNsPerEdge = 0.0
    public var backwardNsPerEdge = 0.0
    /// Bytes the two kernels must move at least (xl, xr read twice; out, dOut, dxl, dxr once), per second
    /// of their median time.
    public var effectiveGBs = 0.0
    public init() {}
}

public enum EdgeKernelBenchmark {
    /// Runs `reps` forward + backward passes (the first three untimed) over `rows` destinations with
    /// `degree` edges each; a `far` fraction of the sources is drawn anywhere, the others within ±12 rows.
    public static func run(rows: Int, degree: Int, far: Double, heads H: Int, channels C: Int, reps: Int,
                           seed: UInt64) -> EdgeKernelReport {
        precondition(rows > 0 && degree > 0 && H > 0 && C > 0 && reps > 3, "bench-kernels needs positive sizes and more than 3 reps")
        let W = H * C, ld = 2 * W        // xl | xr side by side in one row, as the model's projections
        var rng = SplitMix64(seed: seed)
        var dstStart = [Int32](repeating: 0, count: rows + 1), src: [Int32] = []
        for i in 0..<rows {
            for _ in 0..<degree {
                let j = rng.unit() < far ? Int(rng.next() % UInt64(rows)) : i + Int(rng.next() % 25) - 12
                src.append(Int32(min(rows - 1, max(0, j))))
            }
            dstStart[i + 1] = Int32(src.count)
        }
        let E = src.count
        var firstUse = [Int32](repeating: 0, count: E), used = [Bool](repeating: false, count: rows)
        for k in 0..<E where !used[Int(src[k])] { used[Int(src[k])] = true; firstUse[k] = 1 }
        let unused = (0..<rows).filter { !used[$0] }
        func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            for i in 0..<n { p[i] = Float(2 * rng.unit() - 1) }
            return p
        }
        let y = buffer(rows * ld), dy = buffer(rows * ld), dOut = buffer(rows * W), out = buffer(rows * W)
        let att = buffer(W), bias = buffer(W), alpha = buffer(E * H)
        let datt = buffer(W), dbias = buffer(W), dbXr = buffer(W)
        let mask = UnsafeMutablePointer<UInt16>.allocate(capacity: rows * reluMaskWords(width: W))
        defer { for p in [y, dy, dOut, out, att, bias, alpha, datt, dbias, dbXr] { p.deallocate() }; mask.deallocate() }
        var forward: [Double] = [], backward: [Double] = []
        for r in 0..<reps {
            let t0 = monotonicSeconds()
            gatv2Forward(numDst: rows, dstStart: dstStart, srcByDst: src, xl: y, ldl: ld, xr: y + W, ldr: ld,
                         att: att, bias: bias, heads: H, channels: C, alpha: alpha, out: out, ldo: W,
                         relu: true, reluMask: mask, prefetchRows: rows)
            let t1 = monotonicSeconds()
            for u in unused { (dy + u * ld).update(repeating: 0, count: W) }
            gatv2Backward(numDst: rows, dstStart: dstStart, srcByDst: src, xl: y, ldl: ld, xr: y + W, ldr: ld,
                          att: att, heads: H, channels: C, alpha: alpha, dOut: dOut, lddo: W,
                          dxl: dy, lddl: ld, dxr: dy + W, lddr: ld, datt: datt, dbias: dbias, overwriteDxr: true,
                          reluMask: mask, firstUse: firstUse, dbXr: dbXr, prefetchRows: rows)
            let t2 = monotonicSeconds()
            if r >= 3 { forward.append(t1 - t0); backward.append(t2 - t1) }
        }
        forward.sort(); backward.sort()
        var report = EdgeKernelReport()
        report.rows = rows; report.edges = E; report.heads = H; report.channels = C
        report.farFraction = far; report.reps = reps
        report.forwardMsMedian = forward[forward.count / 2] * 1e3
        report.backwardMsMedian = backward[backward.count / 2] * 1e3
        report.forwardNsPerEdge = report.forwardMsMedian * 1e6 / Double(E)
        report.backwardNsPerEdge = report.backwardMsMedian * 1e6 / Double(E)
        let bytes = Double(rows * W * 4) * (2 + 2 + 1 + 1 + 2)
        report.effectiveGBs = bytes / ((report.forwardMsMedian + report.backwardMsMedian) * 1e-3) / 1e9
        return report
    }
}
