import Foundation
import XCTest
import SeggerRandom
@testable import SafeTensors
@testable import SeggerTiles
import TestSupport

/// Corrupts good tile files in seeded random ways (byte flips, truncations, header text edits, data
/// values) and checks that every case ends in a clean `InputError` naming the file, or in a load that
/// satisfies every invariant — never a crash, a hang or a huge allocation.
final class MutationTests: XCTestCase {
    struct Outcome { var errors = 0, loads = 0 }

    static let interestingInts: [Int64] = [-1, 0, 1, 2, 3, 119, 120, 121, 499, 500, Int64(Int32.max), Int64(Int32.max) + 1, Int64.max, Int64.min, 1 << 40]
    static let interestingFloats: [Float] = [.nan, .infinity, -.infinity, 0.5, 2, -1, 0, 1, .greatestFiniteMagnitude]
    static let headerAlphabet = Array("[]{}\":,0123456789-.eE txbdIF64U8".utf8)

    /// One mutation of `bytes`, chosen by `rng`; `header` describes the unmutated file.
    func mutate(_ original: [UInt8], header: SafeTensorsHeader, rng: inout SplitMix64) -> [UInt8] {
        var bytes = original
        var headerLength = 0
        for i in 0..<8 { headerLength |= Int(bytes[i]) << (8 * i) }
        let headerEnd = 8 + headerLength
        func setLength(_ n: Int) { for i in 0..<8 { bytes[i] = UInt8((UInt64(n) >> (8 * UInt64(i))) & 0xff) } }
        switch rng.below(9) {
        case 0: // flip 1–4 random bits anywhere
            for _ in 0...rng.below(4) { bytes[rng.below(bytes.count)] ^= UInt8(1 << rng.below(8)) }
        case 1: // random bytes in the header
            for _ in 0...rng.below(3) { bytes[8 + rng.below(headerLength)] = UInt8(truncatingIfNeeded: rng.next()) }
        case 2: // truncate anywhere
            bytes = Array(bytes.prefix(rng.below(bytes.count)))
        case 3: // header length field
            let choices = [0, 1, headerLength - 1, headerLength + 1, bytes.count, Int(Int32.max), 1 << 62]
            setLength(choices[rng.below(choices.count)])
        case 4: // replace one header character with a JSON-ish one, length kept
            bytes[8 + rng.below(headerLength)] = Self.headerAlphabet[rng.below(Self.headerAlphabet.count)]
        case 5: // insert or delete header characters, length field updated
            var h = Array(bytes[8..<headerEnd])
            if rng.below(2) == 0 {
                h.insert(Self.headerAlphabet[rng.below(Self.headerAlphabet.count)], at: rng.below(h.count + 1))
            } else {
                h.remove(at: rng.below(h.count))
            }
            bytes = Array(bytes[0..<8]) + h + Array(bytes[headerEnd...])
            setLength(h.count)
        case 6: // rewrite a number of the header (a shape or an offset) to an interesting value
            var h = Array(bytes[8..<headerEnd])
            var numbers: [Range<Int>] = [] // runs of digits
            var i = 0
            while i < h.count {
                if h[i] >= 0x30 && h[i] <= 0x39 {
                    let start = i
                    while i < h.count && h[i] >= 0x30 && h[i] <= 0x39 { i += 1 }
                    numbers.append(start..<i)
                } else { i += 1 }
            }
            if !numbers.isEmpty {
                let values = ["0", "1", "-1", "2", "99999999999", "1e3", "3.5", "18446744073709551616", "1099511627776"]
                h.replaceSubrange(numbers[rng.below(numbers.count)], with: Array(values[rng.below(values.count)].utf8))
            }
            bytes = Array(bytes[0..<8]) + h + Array(bytes[headerEnd...])
            setLength(h.count)
        case 7, 8: // an interesting value in one tensor's data, header intact
            let e = header.entries[rng.below(header.entries.count)]
            guard e.count > 0 else { break }
            let at = headerEnd + e.begin + rng.below(e.count) * e.dtype.size
            switch e.dtype {
            case .I64:
                let v = Self.interestingInts[rng.below(Self.interestingInts.count)]
                for k in 0..<8 { bytes[at + k] = UInt8((UInt64(bitPattern: v) >> (8 * UInt64(k))) & 0xff) }
            case .F32:
                let v = Self.interestingFloats[rng.below(Self.interestingFloats.count)].bitPattern
                for k in 0..<4 { bytes[at + k] = UInt8((v >> (8 * UInt32(k))) & 0xff) }
            default:
                bytes[at] ^= 0xff
            }
        default:
            break
        }
        return bytes
    }

    func run(_ sources: [String], cases: Int, seed: UInt64, tmp: String) throws -> Outcome {
        var rng = SplitMix64(seed: seed)
        var outcome = Outcome()
        for (s, source) in sources.enumerated() {
            let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: source)))
            let header = try SafeTensorsFile.readHeader(path: source)
            for c in 0..<cases {
                let bytes = mutate(original, header: header, rng: &rng)
                let path = "\(tmp)/m\(s)_\(c).safetensors"
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                var tile: Tile?
                do {
                    tile = try Tile.read(path: path, options: TileReadOptions(numTxTokens: 500))
                    outcome.loads += 1
                } catch let e as InputError {
                    XCTAssertEqual(e.path, path)
                    XCTAssertTrue(e.description.contains(path))
                    XCTAssertFalse(e.message.isEmpty)
                    outcome.errors += 1
                } catch {
                    XCTFail("case \(s)/\(c): not a InputError: \(error)")
                }
                // The catalog must agree: clean error or the same sizes; never fail a file that loads.
                do {
                    let sizes = try TileCatalog.sizes(path: path)
                    if let tile { XCTAssertEqual(sizes, TileSizes(tile, path: path), "case \(s)/\(c)") }
                } catch let e as InputError {
                    XCTAssertNil(tile, "catalog refused a file that loads: \(e)")
                    XCTAssertEqual(e.path, path)
                } catch {
                    XCTFail("catalog case \(s)/\(c): not a InputError: \(error)")
                }
                if let tile { checkInvariants(tile) }
                try? FileManager.default.removeItem(atPath: path)
            }
        }
        return outcome
    }

    func testMutatedGeneratedTiles() throws {
        let tmp = Support.tempDir("tiles", removedAfter: self)
        try Synth.writeDirectory(config: SynthConfig(tiles: 3, txPerTile: 150, seed: 13), to: tmp + "/good")
        let o = try run(try TileDirectory.list(tmp + "/good"), cases: 300, seed: 1, tmp: tmp)
        print("mutation (generated): \(o.errors) errors, \(o.loads) loads")
        XCTAssertEqual(o.errors + o.loads, 900)
        XCTAssertGreaterThan(o.errors, 450, "most mutations must be caught")
        XCTAssertGreaterThan(o.loads, 10, "some mutations (feature values, harmless bits) still load")
    }

    func testMutatedRealTiles() throws {
        let paths = try realTilePaths()
        let tmp = Support.tempDir("tiles", removedAfter: self)
        let o = try run(paths, cases: 60, seed: 2, tmp: tmp)
        print("mutation (real): \(o.errors) errors, \(o.loads) loads")
        XCTAssertEqual(o.errors + o.loads, 60 * paths.count)
        XCTAssertGreaterThan(o.errors, 20 * paths.count)
    }

    func testMutatedGoldenTile() throws {
        let tmp = Support.tempDir("tiles", removedAfter: self)
        let o = try run([goldenFixtureTiles("token") + "/tile_00000.safetensors"], cases: 200, seed: 3, tmp: tmp)
        XCTAssertEqual(o.errors + o.loads, 200)
        XCTAssertGreaterThan(o.errors, 60)
    }
}
