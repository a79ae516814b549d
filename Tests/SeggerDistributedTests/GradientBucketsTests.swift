import XCTest
@testable import SeggerDistributed
import SeggerRandom

/// Single-rank tests of the bucket layout, the launch order and the 1-rank arithmetic (the
/// communicator is a singleton MPI init: one rank, no mpirun).
final class GradientBucketsTests: XCTestCase {
    /// Contiguous ranges for parameters of the given sizes, in buffer order.
    func ranges(_ sizes: [Int]) -> [Range<Int>] {
        var offset = 0
        return sizes.map { n in defer { offset += n }; return offset..<(offset + n) }
    }

    func oneRank() throws -> Communicator {
        let comm = try Communicator.world()
        if comm.size != 1 { throw XCTSkip("single-rank test run under mpirun with \(comm.size) ranks") }
        return comm
    }

    func testLayoutIsReverseOrderAndCapped() {
        // sizes 10 20 30 40, cap 50: [60,100) holds p3; p2 + p1 = 50 fit together; p0 alone.
        XCTAssertEqual(GradientBuckets.layout(count: 100, parameterRanges: ranges([10, 20, 30, 40]), capElements: 50),
                       [60..<100, 10..<60, 0..<10])
        // everything fits: one bucket
        XCTAssertEqual(GradientBuckets.layout(count: 100, parameterRanges: ranges([10, 20, 30, 40]), capElements: 100),
                       [0..<100])
        // cap of one element: one bucket per element, from the end
        XCTAssertEqual(GradientBuckets.layout(count: 3, parameterRanges: ranges([1, 2]), capElements: 1),
                       [2..<3, 1..<2, 0..<1])
    }

    func testOnlyAParameterLargerThanTheCapIsCut() {
        // p1 (120) > cap 50: cut from its end into 50, 50 and a remainder of 20 that p0 joins.
        XCTAssertEqual(GradientBuckets.layout(count: 130, parameterRanges: ranges([5, 120, 5]), capElements: 50),
                       [125..<130, 75..<125, 25..<75, 0..<25])
    }

    func testRandomLayoutsCoverTheBufferExactlyOnce() {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<300 {
            let sizes = (0..<(1 + rng.below(30))).map { _ in rng.below(4) == 0 ? rng.below(3) : rng.below(500) }
            let params = ranges(sizes)
            let count = params.last!.upperBound
            let cap = 1 + rng.below(700)
            let buckets = GradientBuckets.layout(count: count, parameterRanges: params, capElements: cap)
            if count == 0 { XCTAssertEqual(buckets, []); continue }
            XCTAssertEqual(buckets.first?.upperBound, count)
            XCTAssertEqual(buckets.last?.lowerBound, 0)
            for (a, b) in zip(buckets, buckets.dropFirst()) { XCTAssertEqual(b.upperBound, a.lowerBound) }
            let small = max(1, cap / 16)
            XCTAssertTrue(buckets.allSatisfy { !$0.isEmpty && $0.count < cap + small }, "cap \(cap): \(buckets)")
            XCTAssertTrue(buckets.dropLast().allSatisfy { $0.count >= small }, "a small bucket other than the last, cap \(cap): \(buckets)")
            for p in params where !p.isEmpty && p.count <= cap {
                XCTAssertTrue(buckets.contains { $0.lowerBound <= p.lowerBound && p.upperBound <= $0.upperBound },
                              "parameter \(p) split with cap \(cap): \(buckets)")
            }
            // Greedy: the parameter just below a bucket boundary did not fit into the bucket above it.
            for (a, b) in zip(buckets, buckets.dropFirst()) {
                guard let below = params.last(where: { !$0.isEmpty && $0.upperBound <= a.lowerBound }),
                      b.upperBound == a.lowerBound, below.count <= cap, a.count < cap else { continue }
                if params.contains(where: { $0.lowerBound < a.lowerBound && $0.upperBound > a.lowerBound }) { continue }
                XCTAssertGreaterThan(a.count + (a.lowerBound - below.lowerBound), cap)
            }
        }
    }

    /// A bias between two weights that each fill a bucket would travel alone: it joins the next bucket
    /// instead (the last bucket stays as it is).
    func testSmallBucketsJoinTheNextOne() {
        // cap 64, small < 4: sizes 64 | 2 | 64 | 3 → [64] [2 + 64] [3].
        XCTAssertEqual(GradientBuckets.layout(count: 133, parameterRanges: ranges([3, 64, 2, 64]), capElements: 64),
                       [69..<133, 3..<69, 0..<3])
        // The first bucket (3) and a bias (1) between two full weights each join the next bucket.
        XCTAssertEqual(GradientBuckets.layout(count: 132, parameterRanges: ranges([64, 1, 64, 1, 2]), capElements: 64),
                       [65..<132, 0..<65])
    }

    func testGapsBetweenParametersTravelWithTheParameterBefore() {
        // params [2,5) and [8,10) in a buffer of 12: p0 owns [0,8), p1 owns [8,12).
        XCTAssertEqual(GradientBuckets.layout(count: 12, parameterRanges: [2..<5, 8..<10], capElements: 4),
                       [8..<12, 4..<8, 0..<4])
    }

    func testLaunchOrderUnderASimulatedBackward() throws {
        let comm = try oneRank()
        let sizes = [30, 7, 64, 5, 5, 100, 12, 40]
        let params = ranges(sizes)
        let total = params.last!.upperBound
        let g = UnsafeMutableBufferPointer<Float>.allocate(capacity: total)
        defer { g.deallocate() }
        let buckets = GradientBuckets(communicator: comm, gradients: g, parameterRanges: params, capBytes: 4 * 64,
                                      compression: .fp16)
        let layout = buckets.bucketRanges
        XCTAssertGreaterThan(layout.count, 3)
        for step in 0..<2 {
            // 0.1 is not an fp16 value: a launched bucket shows as rounded, an unlaunched one as exact.
            for i in 0..<total { g[i] = 0.1 }
            buckets.begin(preScale: 1)
            XCTAssertEqual(buckets.launchedBuckets, 0)
            for p in params.reversed() {
                buckets.gradientsReady(from: p.lowerBound)
                let expected = layout.prefix { $0.lowerBound >= p.lowerBound }.count
                XCTAssertEqual(buckets.launchedBuckets, expected, "step \(step), ready from \(p.lowerBound)")
                for (b, r) in layout.enumerated() {
                    let launched = b < expected
                    XCTAssertEqual(g[r.lowerBound] == 0.1, !launched, "bucket \(b) launched: \(launched)")
                }
            }
            XCTAssertEqual(buckets.launchLog, Array(0..<layout.count))
            XCTAssertTrue(buckets.finish())
        }
        // Readiness in one jump from the end, then 0: still strictly in bucket order.
        buckets.begin(preScale: 1)
        buckets.gradientsReady(from: params[5].lowerBound)
        buckets.gradientsReady(from: params[6].lowerBound)  // a larger offset later changes nothing
        buckets.gradientsReady(from: 0)
        XCTAssertEqual(buckets.launchLog, Array(0..<layout.count))
        XCTAssertTrue(buckets.finish())
        // finish() launches whatever was never reported ready.
        buckets.begin(preScale: 1)
        XCTAssertTrue(buckets.finish())
        XCTAssertEqual(buckets.launchLog, Array(0..<layout.count))
        XCTAssertEqual(buckets.stats.buckets, layout.count)
        XCTAssertEqual(buckets.stats.bytesPerStep, 0, "one rank sends nothing")
    }

    /// bf16 rounding (nearest even), written independently of CFloat16.
    func bf16(_ x: Float) -> Float {
        let b = x.bitPattern
        return Float(bitPattern: ((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16) << 16)
    }

    func testOneRankRoundsLikeTheCompressedExchange() throws {
        let comm = try oneRank()
        var rng = SplitMix64(seed: 77)
        let total = 1000
        // magnitudes from fp16 subnormals (1e-7) to near the top of the fp16 range after scaling
        let values: [Float] = (0..<total).map { i in
            let mag = pow(10, Float(rng.below(1000)) / 1000 * 11 - 7)
            return (i % 2 == 0 ? 1 : -1) * mag * (1 + Float(rng.below(1000)) / 1000)
        }.map { min(max($0, -60000), 60000) }
        let g = UnsafeMutableBufferPointer<Float>.allocate(capacity: total)
        defer { g.deallocate() }
        let scale: Float = 0.37
        for compression in GradientCompression.allCases {
            let buckets = GradientBuckets(communicator: comm, gradients: g, parameterRanges: ranges([100, 333, 567]),
                                          capBytes: 1024, compression: compression)
            for i in 0..<total { g[i] = values[i] }
            buckets.begin(preScale: scale)
            buckets.gradientsReady(from: 0)
            XCTAssertTrue(buckets.finish(), "\(compression)")
            var mismatches = 0
            for i in 0..<total {
                let scaled = scale * values[i]
                let want: Float = switch compression {
                case .fp16: Float(Float16(scaled))
                case .bf16: bf16(scaled)
                case .none: scaled
                }
                if want.bitPattern != g[i].bitPattern { mismatches += 1 }
            }
            XCTAssertEqual(mismatches, 0, "\(compression): \(mismatches) values not rounded like the exchange")
        }
    }

    func testNonFiniteValuesSkipTheStep() throws {
        let comm = try oneRank()
        let g = UnsafeMutableBufferPointer<Float>.allocate(capacity: 64)
        defer { g.deallocate() }
        for compression in GradientCompression.allCases {
            let buckets = GradientBuckets(communicator: comm, gradients: g, parameterRanges: ranges([32, 32]),
                                          capBytes: 64, compression: compression)
            func step(_ poke: (Int, Float)?, scale: Float = 1) -> Bool {
                for i in 0..<64 { g[i] = 0.5 }
                if let (i, v) = poke { g[i] = v }
                buckets.begin(preScale: scale)
                buckets.gradientsReady(from: 32)
                buckets.gradientsReady(from: 0)
                return buckets.finish()
            }
            XCTAssertTrue(step(nil), "\(compression)")
            XCTAssertFalse(step((3, .nan)), "\(compression) NaN")
            XCTAssertFalse(step((40, .infinity)), "\(compression) inf")
            XCTAssertTrue(step(nil), "\(compression): a skipped step leaves no trace")
            // 70000 overflows fp16 (max 65504) but not bf16 or fp32; scaled by 0.5 it fits fp16.
            XCTAssertEqual(step((63, 70000)), compression != .fp16, "\(compression) overflow")
            XCTAssertTrue(step((63, 70000), scale: 0.5), "\(compression) pre-scaled")
        }
    }

    func testSingletonCollectives() throws {
        let comm = try oneRank()
        XCTAssertTrue(comm.isRoot)
        var v: [Float] = [1, 2, 3]
        v.withUnsafeMutableBufferPointer { comm.broadcast($0) }
        XCTAssertEqual(v, [1, 2, 3])
        XCTAssertEqual(comm.broadcast(bytes: [4, 5]), [4, 5])
        XCTAssertEqual(comm.allreduceSum([1.5, -2]), [1.5, -2])
        XCTAssertEqual(comm.allreduceMax([1.5, -2]), [1.5, -2])
        XCTAssertEqual(comm.gather([7, 8]), [[7, 8]])
        XCTAssertEqual(comm.gather([]), [[]])
        XCTAssertEqual(comm.allgather("x"), ["x"])
        var h: [UInt16] = [Float16(1.5).bitPattern]
        h.withUnsafeMutableBufferPointer { comm.allreduceSum(inPlace: $0, format: .fp16) }
        XCTAssertEqual(h, [Float16(1.5).bitPattern])
        comm.barrier()
        XCTAssertTrue(try Communicator.world() === comm, "one communicator per process")
    }
}
