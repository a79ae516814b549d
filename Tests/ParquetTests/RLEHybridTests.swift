// The RLE / bit-packing hybrid against hand-worked bytes, and against a decoder written from the spec.
import XCTest
@testable import Parquet

final class RLEHybridTests: XCTestCase {
    private func encode(_ v: [UInt32], width: Int) -> [UInt8] {
        var out: [UInt8] = []
        encodeRLEHybrid(v, bitWidth: width, into: &out)
        return out
    }

    func testSpecExampleBitPacksZeroToSevenAtWidthThree() {
        // Encodings.md: 0...7 at bit width 3 pack to 10001000 11000110 11111010.
        XCTAssertEqual(encode(Array(0...7), width: 3), [0x03, 0x88, 0xC6, 0xFA])
    }

    func testRunsOfEightOrMoreAreRLE() {
        XCTAssertEqual(encode([UInt32](repeating: 1, count: 10), width: 1), [0x14, 0x01])
        XCTAssertEqual(encode([UInt32](repeating: 0, count: 8), width: 1), [0x10, 0x00])
        XCTAssertEqual(encode([UInt32](repeating: 1, count: 1000), width: 1), [0xD0, 0x0F, 0x01])  // varint(2000)
        // The repeated value takes ceil(width / 8) little-endian bytes.
        XCTAssertEqual(encode([UInt32](repeating: 300, count: 9), width: 9), [0x12, 0x2C, 0x01])
        XCTAssertEqual(encode([UInt32](repeating: 0xFFFF_FFFF, count: 8), width: 32), [0x10, 0xFF, 0xFF, 0xFF, 0xFF])
    }

    func testShortTailIsOneZeroPaddedGroup() {
        XCTAssertEqual(encode([1, 0, 1], width: 1), [0x03, 0x05])
        XCTAssertEqual(encode([1], width: 1), [0x03, 0x01])
        XCTAssertEqual(encode([], width: 1), [])
    }

    func testBitPackedGroupThenRun() {
        // 8 alternating levels (LSB first: 1,0,1,0,... = 0x55), then a run of 20 ones.
        XCTAssertEqual(encode([1, 0, 1, 0, 1, 0, 1, 0] + [UInt32](repeating: 1, count: 20), width: 1),
                       [0x03, 0x55, 0x28, 0x01])
        // A run that starts inside a group is packed with it; what is left (4) is too short for RLE, so a
        // second group holds it, zero-padded: header 2 groups (0x05), 0b11111110, 0b00001111.
        XCTAssertEqual(encode([0] + [UInt32](repeating: 1, count: 11), width: 1), [0x05, 0xFE, 0x0F])
        // ...and when at least 8 remain at the group boundary they become a run.
        XCTAssertEqual(encode([0] + [UInt32](repeating: 1, count: 15), width: 1), [0x03, 0xFE, 0x10, 0x01])
    }

    func testRandomLevelsRoundTripThroughASpecDecoder() {
        var rng = SplitMix(seed: 7)
        for trial in 0..<300 {
            let n = Int(rng.next() % 400)
            let width = [1, 1, 1, 2, 3, 5, 8, 13, 17, 32][trial % 10]
            let maxValue = width == 32 ? UInt64(UInt32.max) : (UInt64(1) << UInt64(width)) - 1
            // Runs of random lengths so both RLE and bit-packed runs occur.
            var v: [UInt32] = []
            while v.count < n {
                let x = UInt32(rng.next() % (maxValue + 1))
                v += [UInt32](repeating: x, count: min(n - v.count, Int(rng.next() % 12) + 1))
            }
            let bytes = encode(v, width: width)
            XCTAssertEqual(decodeRLEHybrid(bytes, width: width, count: n), v, "trial \(trial) width \(width)")
        }
    }

    /// Decodes `count` values; written from Encodings.md, independently of the encoder.
    private func decodeRLEHybrid(_ b: [UInt8], width: Int, count: Int) -> [UInt32]? {
        var out: [UInt32] = []
        var p = 0
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while p < b.count {
                let x = b[p]; p += 1
                v |= UInt64(x & 0x7F) << shift
                if x & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while out.count < count {
            guard let h = varint() else { return nil }
            if h & 1 == 0 {
                let len = Int(h >> 1)
                var x: UInt64 = 0
                for k in 0..<((width + 7) / 8) { guard p < b.count else { return nil }; x |= UInt64(b[p]) << (8 * UInt64(k)); p += 1 }
                out += [UInt32](repeating: UInt32(x), count: len)
            } else {
                let values = Int(h >> 1) * 8
                for i in 0..<values {
                    var x: UInt64 = 0
                    for bit in 0..<width {
                        let pos = i * width + bit
                        guard p + pos / 8 < b.count else { return nil }
                        if b[p + pos / 8] >> UInt8(pos % 8) & 1 == 1 { x |= 1 << UInt64(bit) }
                    }
                    out.append(UInt32(x))
                }
                p += values * width / 8
            }
        }
        guard p == b.count, out.count - count < 8 else { return nil }
        return Array(out.prefix(count))
    }
}

/// A small deterministic generator for test data.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
