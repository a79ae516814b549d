// The multi-rank checks. Each check computes a verdict per rank (or on root from gathered data); the
// verdicts meet in an allgather and rank 0 prints one line per check.
import Foundation
import SeggerDistributed
import SeggerRandom

/// Collects verdicts; every rank sees the same failure count.
final class Report {
    let comm: Communicator
    var failures = 0
    init(_ comm: Communicator) { self.comm = comm }

    /// One check: `detail` empty means this rank saw no problem.
    func record(_ name: String, _ detail: String) {
        let all = comm.allgather(detail)
        let bad = all.enumerated().filter { !$0.element.isEmpty }
        if !bad.isEmpty { failures += 1 }
        if comm.isRoot {
            if bad.isEmpty {
                print("PASS \(name)")
            } else {
                print("FAIL \(name): " + bad.map { "rank \($0.offset): \($0.element)" }.joined(separator: "; "))
            }
            fflush(stdout)
        }
    }

    func info(_ text: String) {
        if comm.isRoot { print("INFO \(text)"); fflush(stdout) }
    }
}

func runChecks() -> Int32 {
    let comm: Communicator
    do { comm = try Communicator.world() } catch {
        print("FAIL init: \(error)")
        return 1
    }
    let report = Report(comm)
    report.info("ranks=\(comm.size)")
    checkBasics(comm, report)
    checkExchanges(comm, report)
    for count in [1, 7, 1000, 100_003] {
        checkHalfSumOp(comm, report, format: .fp16, count: count)
        checkHalfSumOp(comm, report, format: .bf16, count: count)
    }
    for compression in GradientCompression.allCases {
        checkBuckets(comm, report, compression: compression)
    }
    for compression in GradientCompression.allCases {
        checkBuckets(comm, report, compression: compression, large: true)
    }
    checkBuckets(comm, report, compression: .fp16, progress: .poll)
    checkBuckets(comm, report, compression: .none, progress: .poll)
    checkProgressThread(comm, report)
    comm.barrier()
    if comm.isRoot { print(report.failures == 0 ? "ALL PASS" : "FAILURES \(report.failures)") }
    return report.failures == 0 ? 0 : 1
}

// MARK: - Collectives

func checkBasics(_ comm: Communicator, _ report: Report) {
    let r = comm.rank, p = comm.size

    // broadcast(Float) from root 0 and from the last rank
    for root in Set([0, p - 1]).sorted() {
        var v = [Float](repeating: Float(-r - 1), count: 1001)
        if r == root { for i in 0..<v.count { v[i] = Float(i) * 0.5 + Float(root) } }
        v.withUnsafeMutableBufferPointer { comm.broadcast($0, root: root) }
        let ok = (0..<v.count).allSatisfy { v[$0] == Float($0) * 0.5 + Float(root) }
        report.record("broadcast-floats-root\(root)", ok ? "" : "wrong values \(v.prefix(4))")
    }

    // broadcast(bytes): the count travels too
    let rootBytes = Array("segger bytes from root, with ü".utf8) + [0, 255, 7]
    let got = comm.broadcast(bytes: r == 0 ? rootBytes : [1, 2], root: 0)
    report.record("broadcast-bytes", got == rootBytes ? "" : "got \(got.count) bytes")
    let gotEmpty = comm.broadcast(bytes: r == 0 ? [] : [9, 9, 9], root: 0)
    report.record("broadcast-bytes-empty", gotEmpty.isEmpty ? "" : "got \(gotEmpty)")

    // allreduce sum / max / min on Doubles (exact integers and powers of two)
    let values: [Double] = [Double(r + 1), Double(r) * 0.25, -Double(r * r), 1e300 * Double(r % 2)]
    let sum = comm.allreduceSum(values)
    let n = Double(p)
    let expectedSum: [Double] = [n * (n + 1) / 2, n * (n - 1) / 2 * 0.25, -(n - 1) * n * (2 * n - 1) / 6,
                                 1e300 * Double(p / 2)]
    report.record("allreduce-sum", sum == expectedSum ? "" : "\(sum) != \(expectedSum)")
    let mx = comm.allreduceMax(values)
    let expectedMax: [Double] = [n, (n - 1) * 0.25, 0, p > 1 ? 1e300 : 0]
    report.record("allreduce-max", mx == expectedMax ? "" : "\(mx) != \(expectedMax)")
    let mn = comm.allreduceMin(values)
    let expectedMin: [Double] = [1, 0, -(n - 1) * (n - 1), 0]
    report.record("allreduce-min", mn == expectedMin ? "" : "\(mn) != \(expectedMin)")

    // gather variable-length arrays (rank r sends r*3 floats, rank 0 sends none)
    let mine = (0..<(r * 3)).map { Float(r * 100 + $0) }
    for root in Set([0, p - 1]).sorted() {
        let all = comm.gather(mine, root: root)
        var detail = ""
        if r == root {
            if all.count != p { detail = "got \(all.count) arrays" }
            for q in 0..<min(p, all.count) where all[q] != (0..<(q * 3)).map({ Float(q * 100 + $0) }) {
                detail += "rank \(q)'s array wrong: \(all[q]) "
            }
        } else if !all.isEmpty {
            detail = "non-root got \(all.count) arrays"
        }
        report.record("gather-root\(root)", detail)
    }

    // allgather strings of different lengths (one empty)
    let text = r == 1 ? "" : "rank \(r) " + String(repeating: "é", count: r)
    let texts = comm.allgather(text)
    let expected = (0..<p).map { $0 == 1 ? "" : "rank \($0) " + String(repeating: "é", count: $0) }
    report.record("allgather", texts == expected ? "" : "\(texts)")

    comm.barrier()
    report.record("barrier", "")
}

// MARK: - Variable-length exchanges

/// alltoallv (one round and many), allgatherv and point-to-point send/receive of plain values.
func checkExchanges(_ comm: Communicator, _ report: Report) {
    let r = comm.rank, p = comm.size
    // Rank r sends rank q (r + 2q) % 5 values (some empty), each naming sender, receiver and position.
    func value(_ from: Int, _ to: Int, _ i: Int) -> Int64 { Int64(from) * 1_000_000 + Int64(to) * 1000 + Int64(i) }
    func count(_ from: Int, _ to: Int, scale: Int) -> Int { ((from + 2 * to) % 5) * scale }
    for (name, roundBytes, scale) in [("alltoallv", 1 << 30, 1), ("alltoallv-rounds", 24 * p, 7), ("alltoallv-large", 1 << 30, 60_000)] {
        comm.exchangeRoundBytes = roundBytes
        let parts = (0..<p).map { q in (0..<count(r, q, scale: scale)).map { value(r, q, $0) } }
        let got = comm.alltoallv(parts)
        var detail = ""
        if got.count != p { detail = "got \(got.count) parts" }
        for q in 0..<min(p, got.count) where got[q] != (0..<count(q, r, scale: scale)).map({ value(q, r, $0) }) {
            detail += "from rank \(q): \(got[q].count) values, wrong "
        }
        report.record(name, detail)
    }
    comm.exchangeRoundBytes = 1 << 30
    // A struct travels as its bytes.
    struct Pair: Equatable { var id: Int64; var score: Float; var flag: UInt8 }
    let pairs = (0..<p).map { q in [Pair(id: Int64(r * 10 + q), score: Float(r) + 0.5, flag: UInt8(q))] }
    let gotPairs = comm.alltoallv(pairs)
    let wantPairs = (0..<p).map { q in [Pair(id: Int64(q * 10 + r), score: Float(q) + 0.5, flag: UInt8(r))] }
    report.record("alltoallv-struct", gotPairs == wantPairs ? "" : "\(gotPairs)")

    let mine = (0..<(r % 3)).map { Int64(r * 100 + $0) }
    let all = comm.allgatherv(mine)
    report.record("allgatherv", all == (0..<p).map { q in (0..<(q % 3)).map { Int64(q * 100 + $0) } } ? "" : "\(all)")

    // Every rank sends rank 0 an array (rank 1 an empty one, the last a large one); rank 0 receives in order.
    func payload(_ q: Int) -> [Double] { q == 1 ? [] : (0..<(q == p - 1 ? 300_000 : q + 3)).map { Double(q) + Double($0) * 0.25 } }
    var detail = ""
    if r == 0 {
        for q in 1..<max(p, 1) {
            let got: [Double] = comm.receive(from: q, tag: 9)
            if got != payload(q) { detail += "from rank \(q): \(got.count) values " }
        }
    } else {
        comm.send(payload(r), to: 0, tag: 9)
    }
    report.record("send-receive", detail)
}

// MARK: - The fp16 / bf16 sum ops

/// fp16 rounding of a Float (Swift's own conversion, round to nearest even): the reference.
@inline(__always) func fp16Bits(_ x: Float) -> UInt16 { Float16(x).bitPattern }
@inline(__always) func fp16Value(_ h: UInt16) -> Float { Float(Float16(bitPattern: h)) }
/// bf16 rounding of a Float (round to nearest even; NaN stays NaN).
@inline(__always) func bf16Bits(_ x: Float) -> UInt16 {
    if x.isNaN { return 0x7FC0 }
    let b = x.bitPattern
    return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
}
@inline(__always) func bf16Value(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

/// The op's definition: fp16(fp32(a) + fp32(b)) (bf16 likewise); NaNs made canonical for comparing.
func referenceAdd(_ a: UInt16, _ b: UInt16, _ format: GradientCompression) -> UInt16 {
    let h = format == .fp16 ? fp16Bits(fp16Value(a) + fp16Value(b)) : bf16Bits(bf16Value(a) + bf16Value(b))
    return canonical(h, format)
}

func canonical(_ h: UInt16, _ format: GradientCompression) -> UInt16 {
    let isNaN = format == .fp16 ? fp16Value(h).isNaN : bf16Value(h).isNaN
    return isNaN ? 0x7FFF : h
}

/// Every result the op can give over the leaves by some commutative association (any reduction tree).
func allTreeSums(_ leaves: [UInt16], _ format: GradientCompression) -> Set<UInt16> {
    let p = leaves.count
    var sets = [Set<UInt16>](repeating: [], count: 1 << p)
    for mask in 1..<(1 << p) {
        if mask.nonzeroBitCount == 1 {
            sets[mask] = [canonical(leaves[mask.trailingZeroBitCount], format)]
            continue
        }
        let low = mask & -mask
        var sub = (mask - 1) & mask
        while sub > 0 {
            if sub & low != 0 {  // each unordered split once
                for x in sets[sub] { for y in sets[mask ^ sub] { sets[mask].insert(referenceAdd(x, y, format)) } }
            }
            sub = (sub - 1) & mask
        }
    }
    return sets[(1 << p) - 1]
}

/// Random 2-byte patterns that stress the op: extremes (±65504, ±max/min subnormal, min normal),
/// values whose sums overflow, subnormals, cancellation, ordinary gradients, a few infinities.
func stressHalves(count: Int, rank: Int, format: GradientCompression, seed: UInt64) -> [UInt16] {
    var rng = SplitMix64(seed: seed &+ UInt64(rank) &* 0x1000_0001)
    let specials16: [UInt16] = [0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x8400, 0x0000, 0x8000,
                                0x7800, 0xF800, 0x7BFE, 0x3C00, 0xBC00, 0x7C00, 0xFC00]
    let specials16b: [UInt16] = [0x7F7F, 0xFF7F, 0x0001, 0x8001, 0x007F, 0x807F, 0x0080, 0x8080, 0x0000, 0x8000,
                                 0x7F00, 0xFF00, 0x3F80, 0xBF80, 0x7F80, 0xFF80]
    var out = [UInt16](repeating: 0, count: count)
    for i in 0..<count {
        let sign: UInt16 = rng.next() & 1 == 0 ? 0 : 0x8000
        let u = UInt16(truncatingIfNeeded: rng.next())
        switch (i + rank) % 8 {
        case 0, 1, 2:  // any finite pattern
            if format == .fp16 { out[i] = (u & 0x7FFF) % 0x7C00 | sign } else { out[i] = (u & 0x7FFF) % 0x7F80 | sign }
        case 3:
            let s = format == .fp16 ? specials16 : specials16b
            out[i] = s[rng.below(s.count)]
        case 4:  // near the top of the range: sums overflow to inf
            out[i] = (format == .fp16 ? 0x7BFF - (u % 64) : 0x7F7F - (u % 64)) | sign
        case 5:  // subnormals
            out[i] = (format == .fp16 ? u % 0x0400 : u % 0x0080) | sign
        case 6:  // cancellation: the same magnitude with random signs on every rank
            out[i] = (format == .fp16 ? 0x5140 : 0x4228) | sign
        default:  // gradient-like
            let x = Float(Double(Int64(bitPattern: rng.next() >> 11)) / Double(1 << 53) - 0.5) * 1e-2
            out[i] = format == .fp16 ? fp16Bits(x) : bf16Bits(x)
        }
    }
    return out
}

/// MPI_Allreduce with the fp16 (bf16) op on random data: every rank gets the same bits, and each element
/// is exactly what folding fp16(fp32(a) + fp32(b)) over the ranks' values gives for some reduction tree
/// (with 2 ranks there is only one; the rank-order left fold is reported as a share).
func checkHalfSumOp(_ comm: Communicator, _ report: Report, format: GradientCompression, count: Int) {
    let seed: UInt64 = format == .fp16 ? 1234 : 5678
    let input = stressHalves(count: count, rank: comm.rank, format: format, seed: seed &+ UInt64(count))
    var reduced = input
    reduced.withUnsafeMutableBufferPointer { comm.allreduceSum(inPlace: $0, format: format) }
    let inputs = comm.gather(input.map { Float($0) })
    let outputs = comm.gather(reduced.map { Float($0) })
    var detail = ""
    var leftFold = 0
    var pairwise = 0  // ((0+1)+(2+3)): the recursive-doubling tree, at 4 ranks
    if comm.isRoot {
        let p = comm.size
        for q in 1..<p where outputs[q] != outputs[0] {
            detail = "rank \(q)'s result differs from rank 0's"
        }
        var mismatches = 0
        for i in 0..<count {
            let leaves = (0..<p).map { UInt16(inputs[$0][i]) }
            let got = canonical(UInt16(outputs[0][i]), format)
            var fold = canonical(leaves[0], format)
            for q in 1..<p { fold = referenceAdd(fold, leaves[q], format) }
            if p == 4 {
                let pair = referenceAdd(referenceAdd(leaves[0], leaves[1], format),
                                        referenceAdd(leaves[2], leaves[3], format), format)
                if got == pair { pairwise += 1 }
            }
            if got == fold { leftFold += 1; continue }
            if p <= 4 && allTreeSums(leaves, format).contains(got) { continue }
            if mismatches < 3 {
                detail += " [\(i)] leaves \(leaves.map { String($0, radix: 16) }) got \(String(got, radix: 16))"
                    + " fold \(String(fold, radix: 16))"
            }
            mismatches += 1
        }
        if mismatches > 0 { detail = "\(mismatches) of \(count) elements not an exact fold:" + detail }
        if p == 2 && leftFold != count && detail.isEmpty { detail = "2 ranks must equal the fold exactly" }
    }
    report.record("\(format)-sum-op-exact-n\(count)", detail)
    report.info("\(format) n=\(count): \(leftFold)/\(count) elements equal the rank-order left fold"
        + (comm.size == 4 ? ", \(pairwise)/\(count) the pairwise tree ((0+1)+(2+3))" : ""))
}

// MARK: - GradientBuckets

/// A model-like parameter layout (same on every rank): 30 small and medium tensors and one larger than
/// the cap, so that one is cut.
func parameterLayout(scale: Int = 1) -> [Range<Int>] {
    var rng = SplitMix64(seed: 99)
    var ranges: [Range<Int>] = []
    var offset = 0
    for k in 0..<31 {
        let n = scale * (k == 11 ? 20_000 : 1 + rng.below(k % 3 == 0 ? 3000 : 300))
        ranges.append(offset..<(offset + n))
        offset += n
    }
    return ranges
}

/// Gradient-like values: normal × 10^U(-5, 1), a few exact zeros.
func randomGradients(count: Int, rank: Int, step: Int) -> [Float] {
    var rng = SplitMix64(seed: 0xC0FFEE &+ UInt64(rank) &* 7919 &+ UInt64(step) &* 104_729)
    return (0..<count).map { i in
        if i % 97 == 0 { return 0 }
        let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(rng.next() >> 11) / Double(1 << 53)
        let z = (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
        let magnitude = pow(10.0, Double(rng.next() >> 11) / Double(1 << 53) * 6 - 5)
        return Float(z * magnitude)
    }
}

/// Rounding bound of the compressed all-reduce at P ranks, unit roundoff u (2⁻¹¹ fp16, 2⁻⁸ bf16,
/// 2⁻²⁴ fp32) and absolute subnormal error η (half the smallest subnormal: 2⁻²⁵, 2⁻¹³⁴, 2⁻¹⁵⁰):
/// each input is rounded once (≤ u|s·x| + η), each value then passes through at most P − 1 rounded
/// additions, so
///     |result − Σ s·x_r| ≤ ((1+u)^P − 1) · Σ |s·x_r| + (2P − 1)(1+u)^(P−1) · η.
/// (The fp32 product s·x rounded before the fp16/bf16 rounding does not matter: double rounding is
/// innocuous when 24 ≥ 2p + 2, and the fp32 sum of two fp16/bf16 values is rounded once more likewise.)
func roundingBound(sumAbs: Double, ranks p: Int, compression: GradientCompression) -> Double {
    let (u, eta): (Double, Double) = switch compression {
    case .fp16: (0x1p-11, 0x1p-25)
    case .bf16: (0x1p-8, 0x1p-134)
    case .none: (0x1p-24, 0x1p-150)
    }
    return (pow(1 + u, Double(p)) - 1) * sumAbs + Double(2 * p - 1) * pow(1 + u, Double(p - 1)) * eta
}

/// `large`: a layout 5× larger (~186k floats) with a 512 KB cap, steps 0 and 4 only (messages big
/// enough for Open MPI's other all-reduce algorithms).
/// `progress`: how in-flight buckets are driven (the default, `.thread`, keeps the plain check names;
/// `.poll` runs as "buckets-poll-…").
func checkBuckets(_ comm: Communicator, _ report: Report, compression: GradientCompression, large: Bool = false,
                  progress: ExchangeProgress = .thread) {
    let params = parameterLayout(scale: large ? 5 : 1)
    let total = params.last!.upperBound
    let gradients = UnsafeMutableBufferPointer<Float>.allocate(capacity: total)
    defer { gradients.deallocate() }
    let buckets = GradientBuckets(communicator: comm, gradients: gradients, parameterRanges: params,
                                  capBytes: large ? 1 << 19 : 16_384, compression: compression, progress: progress)
    let p = comm.size
    let scale = Float(1) / Float(p)
    let tag = (large ? "buckets-large" : "buckets") + (progress == .poll ? "-poll" : "")
    if compression == .fp16 { report.info("\(tag): \(buckets.bucketRanges.count) over \(total) floats") }

    // Steps: 0 readiness after every parameter, 1 only at the end, 2 every third parameter,
    // 3 one rank has a value that overflows fp16, 4 one rank has a NaN, 5 normal again.
    for step in large ? [0, 4] : Array(0..<6) {
        var original = randomGradients(count: total, rank: comm.rank, step: step)
        if step == 3 && comm.rank == p - 1 { original[params[5].lowerBound] = 1e6 }
        if step == 4 && comm.rank == 0 { original[params[20].lowerBound + 1] = .nan }
        for i in 0..<total { gradients[i] = .nan }  // not yet computed: a bucket leaving early shows up
        buckets.begin(preScale: scale)
        for (k, range) in params.enumerated().reversed() {
            for i in range { gradients[i] = original[i] }
            if step == 1 { continue }
            if step == 2 && k % 3 != 0 { continue }
            buckets.gradientsReady(from: range.lowerBound)
        }
        let finite = buckets.finish()
        let expectFinite = !(step == 4 || (step == 3 && compression == .fp16))
        let verdicts = comm.allgather(finite ? "finite" : "skip")
        let name = "\(tag)-\(compression)-step\(step)"
        if Set(verdicts).count != 1 {
            report.record(name, "ranks disagree on inf/NaN: \(verdicts)")
            continue
        }
        if finite != expectFinite {
            report.record(name, "finish() returned \(finite), expected \(expectFinite)")
            continue
        }
        if !finite {
            report.record(name, "")
            continue
        }
        let results = comm.gather(Array(gradients))
        let inputs = comm.gather(original)
        var detail = ""
        if comm.isRoot {
            for q in 1..<p where results[q].map(\.bitPattern) != results[0].map(\.bitPattern) {
                detail += "rank \(q)'s gradients differ from rank 0's bitwise. "
            }
            var worst = 0.0, exactMisses = 0
            for i in 0..<total {
                var sum = 0.0, sumAbs = 0.0
                for q in 0..<p {
                    let sx = Double(scale) * Double(inputs[q][i])
                    sum += sx
                    sumAbs += abs(sx)
                }
                let got = results[0][i]
                let bound = roundingBound(sumAbs: sumAbs, ranks: p, compression: compression)
                let err = abs(Double(got) - sum)
                if !(err <= bound) {
                    if detail.count < 400 { detail += "[\(i)] got \(got) want \(sum) err \(err) > bound \(bound). " }
                }
                if bound > 0 { worst = max(worst, err / bound) }
                if p == 2 {  // exact: the op applied once to the two rounded inputs
                    let want: Float
                    switch compression {
                    case .fp16:
                        want = fp16Value(fp16Bits(fp16Value(fp16Bits(scale * inputs[0][i]))
                                                  + fp16Value(fp16Bits(scale * inputs[1][i]))))
                    case .bf16:
                        want = bf16Value(bf16Bits(bf16Value(bf16Bits(scale * inputs[0][i]))
                                                  + bf16Value(bf16Bits(scale * inputs[1][i]))))
                    case .none:
                        want = scale * inputs[0][i] + scale * inputs[1][i]
                    }
                    if want.bitPattern != got.bitPattern { exactMisses += 1 }
                }
            }
            if exactMisses > 0 { detail += "\(exactMisses) elements differ from the exact 2-rank reference. " }
            if step == 0 { report.info("\(tag)-\(compression): worst error / bound = \(worst)") }
        }
        report.record(name, detail)
    }
    let s = buckets.stats
    report.info("\(tag)-\(compression) stats: \(s.buckets) buckets, \(s.bytesPerStep) bytes/step, "
        + "wait \(String(format: "%.4f", s.waitSeconds)) s, pack \(String(format: "%.4f", s.packSeconds)) s")
}

/// With the progress thread, buckets launched before a stretch of compute that makes no MPI call finish
/// during it (the thread moves them); the timeline shows each bucket back before finish() was entered.
/// Checked only where MPI granted MPI_THREAD_MULTIPLE (else the buckets poll, and say so).
func checkProgressThread(_ comm: Communicator, _ report: Report) {
    let params = parameterLayout(scale: 5)
    let total = params.last!.upperBound
    let gradients = UnsafeMutableBufferPointer<Float>.allocate(capacity: total)
    defer { gradients.deallocate() }
    let buckets = GradientBuckets(communicator: comm, gradients: gradients, parameterRanges: params,
                                  capBytes: 1 << 17, compression: .fp16, progress: .thread, pollInterval: 0.0002)
    report.info("progress: \(buckets.progress.rawValue) (MPI_THREAD_MULTIPLE \(comm.threadMultiple ? "granted" : "not granted"))")
    guard comm.size > 1, comm.threadMultiple else { return }
    var detail = buckets.progress == .thread ? "" : "progress is \(buckets.progress.rawValue), expected thread"
    let values = randomGradients(count: total, rank: comm.rank, step: 9)
    var late = 0
    for _ in 0..<3 {
        comm.barrier()
        for i in 0..<total { gradients[i] = values[i] }
        buckets.begin(preScale: 1)
        buckets.gradientsReady(from: 0)              // everything leaves now
        let end = monotonicSeconds() + 1.0         // compute without MPI calls
        var spins = 0.0
        while monotonicSeconds() < end { spins += 1 }
        _ = buckets.finish()
        let t = buckets.timeline
        late += t.done.filter { $0 > t.finishStart }.count
        if spins == 0 { detail += "no spin" }
    }
    if late > 0 { detail += "\(late) bucket(s) of \(3 * buckets.bucketRanges.count) completed only in finish(), not during the 1 s of compute" }
    report.record("progress-thread-moves-buckets", detail)
}

// MARK: - A failing rank takes the job down

func runAbort() -> Never {
    guard let comm = try? Communicator.world() else { exit(3) }
    if comm.rank == comm.size - 1 {
        usleep(200_000)
        comm.abort("deliberate abort from the self-test", code: 7)
    }
    comm.barrier()  // the other ranks wait here until the abort ends them
    print("rank \(comm.rank) passed the barrier: the abort did not take the job down")
    exit(0)
}

/// The last rank leaves with exit(1) (as an uncaught error would) while the others wait in a barrier.
func runExit() -> Never {
    guard let comm = try? Communicator.world() else { exit(3) }
    if comm.rank == comm.size - 1 {
        fputs("rank \(comm.rank) exits with status 1 without MPI_Abort\n", stderr)
        exit(1)
    }
    comm.barrier()
    print("rank \(comm.rank) passed the barrier")
    exit(0)
}

/// Every rank ends with status 3 through exitTogether (a collective decision): no MPI_Abort banner.
func runExitTogether() -> Never {
    guard let comm = try? Communicator.world() else { exit(3) }
    comm.barrier()
    if comm.isRoot { fputs("error: a collective decision to stop\n", stderr) }
    comm.exitTogether(3)
}
