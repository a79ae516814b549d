import Foundation
import XCTest
@testable import SeggerTiles
import SafeTensors
import TestSupport

/// Seeded mutations of the fixtures: every mutant either reads (and then validates or not as a tile)
/// or is rejected with an error naming the file; none may crash the process.
final class TorchMutationTests: XCTestCase {
    struct SplitMix64 {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    }

    static let files = ["tile_basic.pt", "tile_label_1d.pt", "tile_no_belongs.pt", "tile_nan_bd.pt", "tile_embedding.pt", "model.ckpt"]

    /// Runs every reader on the archive; returns whether the tile reader accepted it.
    @discardableResult
    func exercise(_ archive: TorchArchive, _ label: String) -> Bool {
        var accepted = false
        do {
            let c = try TorchTiles.readTensors(archive: archive)
            _ = try? Tile(tensors: c.tensors, path: archive.path)
            accepted = true
        } catch {
            XCTAssertTrue("\(error)".contains(archive.path), "\(label): error does not name the file: \(error)")
        }
        do { _ = try TorchTiles.sizes(archive: archive) } catch {
            XCTAssertTrue("\(error)".contains(archive.path), "\(label): error does not name the file: \(error)")
        }
        do { _ = try TorchCheckpoint.readStateDict(archive: archive) } catch {
            XCTAssertTrue("\(error)".contains(archive.path), "\(label): error does not name the file: \(error)")
        }
        return accepted
    }

    func testMutatedPicklesNeverCrash() throws {
        var rng = SplitMix64(state: 0x5E66E7)
        var rejected = 0, total = 0
        for file in Self.files {
            let good = try TorchArchive.read(path: torchFixture(file))
            let entries = good.names.map { ($0, Array(good.bytes[good.entries[$0]!.range])) }
            let pklIndex = entries.firstIndex { $0.0.hasSuffix("data.pkl") }!
            for m in 0..<50 {
                var pkl = entries[pklIndex].1
                switch m % 4 {
                case 0: // overwrite 1–3 bytes
                    for _ in 0...rng.below(3) { pkl[rng.below(pkl.count)] = UInt8(truncatingIfNeeded: rng.next()) }
                case 1: // truncate
                    pkl = Array(pkl[..<rng.below(pkl.count)])
                case 2: // duplicate a slice in place
                    let a = rng.below(pkl.count), n = rng.below(min(64, pkl.count - a)) + 1
                    pkl.insert(contentsOf: pkl[a..<(a + n)], at: rng.below(pkl.count))
                default: // a small integer argument set to a large value
                    if let i = (0..<pkl.count).shuffledPrefix(&rng).first(where: { pkl[$0] == 0x4b && $0 + 1 < pkl.count }) {
                        pkl[i] = 0x4a // BININT1 → BININT: reinterpret the next 4 bytes
                    } else {
                        pkl[rng.below(pkl.count)] = 0xff
                    }
                }
                var mutated = entries
                mutated[pklIndex].1 = pkl
                let path = "mutant-\(file)-\(m)"
                let archive = try TorchArchive(bytes: storedZip(mutated), path: path)
                if !exercise(archive, path) { rejected += 1 }
                total += 1
            }
        }
        XCTAssertGreaterThan(rejected, total / 4, "mutations should mostly be caught")
    }

    func testMutatedArchivesNeverCrash() throws {
        var rng = SplitMix64(state: 0xC0FFEE)
        for file in Self.files {
            let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: torchFixture(file))))
            // The zip structure sits at the start (local headers) and the end (central directory).
            for m in 0..<40 {
                var bytes = good
                let region = m % 2 == 0 ? rng.below(min(200, bytes.count)) : bytes.count - 1 - rng.below(min(1500, bytes.count))
                bytes[region] = UInt8(truncatingIfNeeded: rng.next())
                let path = "zip-mutant-\(file)-\(m)"
                do {
                    let archive = try TorchArchive(bytes: bytes, path: path)
                    exercise(archive, path)
                } catch {
                    XCTAssertTrue("\(error)".contains(path), "\(path): \(error)")
                }
            }
        }
    }
}

extension Range where Bound == Int {
    /// Up to 64 random positions of the range.
    func shuffledPrefix(_ rng: inout TorchMutationTests.SplitMix64) -> [Int] {
        (0..<64).map { _ in lowerBound + rng.below(count) }
    }
}
