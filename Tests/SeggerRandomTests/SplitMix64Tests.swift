// The program's one generator against published SplitMix64 values, its derived draws (unit, below,
// normal, shuffle) against their distributions, and its streams against each other.
import XCTest
import SeggerRandom

final class SplitMix64Tests: XCTestCase {
    /// Rosetta Code, "Pseudo-random numbers/Splitmix64" (https://rosettacode.org/wiki/Pseudo-random_numbers/Splitmix64):
    /// the first five integers for seed 1234567, from the pseudocode of Vigna's splitmix64.c.
    func testPublishedSequenceForSeed1234567() {
        var rng = SplitMix64(seed: 1234567)
        XCTAssertEqual((0..<5).map { _ in rng.next() },
                       [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821])
    }

    /// The same page: for seed 987654321, floor(5 · next_float) over 100 000 draws counts
    /// 0: 20027, 1: 19892, 2: 20073, 3: 19978, 4: 20030 (next_float = next_int / 2⁶⁴; ``unit()``
    /// keeps the top 53 bits, which changes floor(5u) only within 2⁻⁵¹ of a boundary).
    func testPublishedDistributionForSeed987654321() {
        var rng = SplitMix64(seed: 987654321)
        var counts = [Int](repeating: 0, count: 5)
        for _ in 0..<100_000 { counts[Int(rng.unit() * 5)] += 1 }
        XCTAssertEqual(counts, [20027, 19892, 20073, 19978, 20030])
    }

    func testMixIsTheFirstDrawAndModelInitStartsAtTheSeed() {
        for seed: UInt64 in [0, 1, 42, 1234567, .max] {
            var a = SplitMix64(seed: seed), b = SplitMix64(.modelInit, seed: seed)
            XCTAssertEqual(SplitMix64.mix(seed), a.next())
            XCTAssertEqual(b.state, seed, "the model's init stream starts at the seed itself")
        }
        var rng = SplitMix64(seed: 1234567)
        _ = rng.next()
        XCTAssertEqual(rng.state, 1234567 &+ SplitMix64.gamma, "one draw advances the counter by γ")
    }

    /// Every purpose, several indices and seeds: distinct keys, distinct starts, and no value shared
    /// between the first 2000 draws of any two streams (with 64-bit outputs a shared value means
    /// overlapping streams, e.g. starts that differ by a few γ, not chance: about 10⁻¹⁰). The derived
    /// streams are tried under seed γ too, which would shift a stream keyed by the raw seed by one draw.
    func testStreamsForDifferentPurposesIndicesAndSeedsDoNotOverlap() {
        var derived: [RandomStream] = [.synthPrograms, .synthGeneMix, .synthRegion]
        for i in [0, 1, 2, 3, 100, 4095] {
            derived += [.epochShuffle(epoch: i), .synthTile(index: i), .synthTileSize(index: i),
                        .synthRegionTile(index: i), .synthRegionTranscript(index: i)]
        }
        XCTAssertEqual(Set(([.modelInit] + derived).map(\.key)).count, derived.count + 1, "one key per stream")
        var seen = Set<UInt64>(), total = 0
        var starts = Set<UInt64>()
        func draw(_ s: RandomStream, _ seed: UInt64) {
            var rng = SplitMix64(s, seed: seed)
            starts.insert(rng.state)
            for _ in 0..<2000 { seen.insert(rng.next()); total += 1 }
        }
        for seed: UInt64 in [0, 1, 2, 5, 3, 1234567] { draw(.modelInit, seed) }
        for seed: UInt64 in [0, 1, 2, 5, SplitMix64.gamma] { for s in derived { draw(s, seed) } }
        XCTAssertEqual(starts.count, 6 + 5 * derived.count, "every (stream, seed) starts elsewhere")
        XCTAssertEqual(seen.count, total, "two streams share a value: they overlap")
    }

    /// Seeds s and s + γ of a raw counter (and so of the init stream) are one stream a draw apart
    /// (SplitMix64 is a counter), which is why every other purpose starts at mix(seed) ^ mix(key).
    func testDerivedStreamsOfSeedsGammaApartAreNotShiftsOfEachOther() {
        var a = SplitMix64(.modelInit, seed: 10), b = SplitMix64(.modelInit, seed: 10 &+ SplitMix64.gamma)
        _ = a.next()
        XCTAssertEqual(a.next(), b.next(), "the raw counter: seed + γ is the same stream one draw later")
        var c = SplitMix64(.synthTile(index: 0), seed: 10)
        var d = SplitMix64(.synthTile(index: 0), seed: 10 &+ SplitMix64.gamma)
        let first = Set((0..<1000).map { _ in c.next() })
        XCTAssertTrue((0..<1000).allSatisfy { _ in !first.contains(d.next()) })
    }

    func testUnitBelowNormalAndShuffleHaveTheirDistributions() {
        var rng = SplitMix64(.synthTile(index: 7), seed: 3)
        let n = 200_000
        var sum = 0.0, sumSq = 0.0, lo = 1.0, hi = 0.0
        for _ in 0..<n {
            let u = rng.unit()
            lo = min(lo, u); hi = max(hi, u); sum += u; sumSq += u * u
        }
        XCTAssertTrue(lo >= 0 && hi < 1)
        XCTAssertEqual(sum / Double(n), 0.5, accuracy: 0.005)
        XCTAssertEqual(sumSq / Double(n) - (sum / Double(n)) * (sum / Double(n)), 1.0 / 12, accuracy: 0.002)
        XCTAssertTrue((0..<1000).allSatisfy { _ in (-3.0 ..< -2.0).contains(rng.uniform(-3, -2)) })

        var hits = [Int](repeating: 0, count: 7)
        for _ in 0..<70_000 { hits[rng.below(7)] += 1 }
        XCTAssertTrue(hits.allSatisfy { (9_600...10_400).contains($0) }, "\(hits)")
        XCTAssertEqual(rng.below(1), 0)

        var m1 = 0.0, m2 = 0.0, m4 = 0.0
        for _ in 0..<n {
            let z = rng.normal()
            XCTAssertTrue(z.isFinite)
            m1 += z; m2 += z * z; m4 += z * z * z * z
        }
        XCTAssertEqual(m1 / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(m2 / Double(n), 1, accuracy: 0.015)
        XCTAssertEqual(m4 / Double(n), 3, accuracy: 0.1, "fourth moment of N(0, 1)")

        var a = Array(0..<50)
        rng.shuffle(&a)
        XCTAssertEqual(a.sorted(), Array(0..<50))
        XCTAssertNotEqual(a, Array(0..<50))
        var empty: [Int] = [], one = [9]
        rng.shuffle(&empty); rng.shuffle(&one)
        XCTAssertEqual(one, [9])
    }

    func testSameSeedSameStreamAndCopiesAreIndependentValues() {
        var a = SplitMix64(.epochShuffle(epoch: 2), seed: 7), b = SplitMix64(.epochShuffle(epoch: 2), seed: 7)
        XCTAssertEqual((0..<100).map { _ in a.next() }, (0..<100).map { _ in b.next() })
        var c = a
        XCTAssertEqual(c.normal(), a.normal(), "a copy continues the same stream (value semantics)")
        XCTAssertEqual(c.normal(), a.normal(), "including the Box–Muller spare")
    }
}
