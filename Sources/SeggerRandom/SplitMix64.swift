// The program's one pseudo-random generator, and the streams it draws (a module of its own, below every
// user: SeggerTiles, SeggerModel, SeggerDistributed, SeggerTrain and mpi-selftest all import it).
import Foundation

/// SplitMix64: the one pseudo-random generator of segger-train.
///
/// The generator of Steele, Lea and Flood ("Fast splittable pseudorandom number generators", OOPSLA
/// 2014) with the constants of Vigna's reference `splitmix64.c` (https://prng.di.unimi.it/splitmix64.c):
/// a 64-bit counter advanced by the odd constant γ = 0x9E3779B97F4A7C15 and passed through a bijective
/// finalizer (``mix(_:)``). Every state is visited once per 2⁶⁴ draws; the output passes BigCrush.
/// Its stream is fixed by this file on every platform: the program never uses
/// `SystemRandomNumberGenerator` or the standard library's `random(in:)` / `shuffle(using:)`, whose
/// algorithms may change between Swift releases (the type deliberately does not conform to
/// `RandomNumberGenerator`, so that they cannot be called with it).
///
/// ## Seeding
///
/// ``init(seed:)`` starts the counter at `seed` itself. ``init(_:seed:)`` starts the stream a purpose
/// draws: `mix(seed) ^ mix(key)`, with a key per ``RandomStream`` (a purpose and, where there are many,
/// an index such as an epoch or a tile). The model's initialization is the exception: it starts at the
/// seed itself (``RandomStream/modelInit``), so that a seed gives the weights it always gave; hence
/// seeds s and s + k·γ (mod 2⁶⁴) give the same initial weights shifted by k draws, a relation no
/// other stream has.
///
/// ## Streams, and why they are independent
///
/// The program draws these streams (``RandomStream``):
/// - **init** — the model's weights (`SeggerModel`, `--seed`);
/// - **shuffle** — the order of the training tiles in each epoch (`ShardPlan.permutation`, `--seed`, epoch);
/// - **synth** — generated tiles (`segger-train synth`, its `--seed`): the cell-type gene programs and
///   the global gene mix (from `program_seed`), each tile's layout and graph, each tile's size under a
///   size spread, and in overlap mode the region, each tile's negatives and each transcript's features.
///
/// A stream is a run of consecutive counter values; two streams can repeat each other's numbers only
/// if their runs overlap on the 2⁶⁴-long cycle. Starting points from ``mix(_:)`` of distinct
/// (seed, key) pairs are spread like random 64-bit numbers (distinct keys per purpose and index, by
/// construction), so k streams of at most L draws each overlap with probability below k²·L / 2⁶⁴ —
/// under 10⁻⁵ for ten thousand streams of a million draws each. Different purposes have different
/// keys, so they draw different streams under the same seed (synth's `--seed 1` and train's `--seed 1`
/// are unrelated), and no stream depends on how many numbers another drew: a tile's contents do not
/// depend on the tiles before it, an epoch's order not on the model's size.
///
/// Tests and benchmarks (`bench-kernels`, `mpi-selftest`) draw their data from ``init(seed:)``.
public struct SplitMix64 {
    /// The counter: the next draw returns `mix(state)` and advances it by γ.
    public private(set) var state: UInt64
    /// The second normal of the last Box–Muller pair, returned by the next ``normal()``.
    private var spare: Double? = nil

    /// γ: the odd increment of the counter (2⁶⁴ / φ, rounded to odd).
    public static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// A generator whose counter starts at `seed` (Vigna's `splitmix64.c` with `x = seed`).
    public init(seed: UInt64) { state = seed }

    /// The generator of `stream` under `seed`: the counter starts at `mix(seed) ^ mix(stream.key)`
    /// (at `seed` for ``RandomStream/modelInit``).
    public init(_ stream: RandomStream, seed: UInt64) {
        if case .modelInit = stream {
            state = seed
        } else {
            state = Self.mix(seed) ^ Self.mix(stream.key)
        }
    }

    /// SplitMix64's finalizer applied to `x + γ`: a bijection of UInt64 (the first draw of
    /// `SplitMix64(seed: x)`); also a keyed hash for ids and stream starts.
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ gamma
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let z = Self.mix(state)
        state &+= Self.gamma
        return z
    }

    /// Uniform in [0, 1): the top 53 bits of a draw.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [a, b).
    public mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * unit() }

    /// Uniform integer in 0..<n by multiply-high (Lemire's method without rejection: a bias below
    /// n / 2⁶⁴, the same value on every platform).
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0, "below(n) needs n > 0")
        return Int(next().multipliedFullWidth(by: UInt64(n)).high)
    }

    /// N(0, 1) by Box–Muller: a pair per two uniforms, its second value kept for the next call.
    public mutating func normal() -> Double {
        if let s = spare { spare = nil; return s }
        var u = unit()
        while u <= 0 { u = unit() }
        let v = unit()
        let r = (-2 * log(u)).squareRoot()
        spare = r * sin(2 * Double.pi * v)
        return r * cos(2 * Double.pi * v)
    }

    /// Fisher–Yates shuffle: for i from the last index down to 1, swap element i with element `below(i + 1)`.
    public mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, below(i + 1)) }
    }
}

/// The purposes segger-train draws random numbers for, each its own ``SplitMix64`` stream under a seed
/// (see ``SplitMix64`` for why they are independent). Indexed purposes (an epoch, a tile, a transcript)
/// have one stream per index.
public enum RandomStream: Sendable, Equatable {
    /// The model's initial weights (`SeggerModel`, under `--seed`): the counter starts at the seed itself.
    case modelInit
    /// The order of the training tiles in `epoch` (`ShardPlan.permutation`, under `--seed`).
    case epochShuffle(epoch: Int)
    /// Synth: the genes each cell type over-expresses (under `program_seed`).
    case synthPrograms
    /// Synth: the permutation behind the global Zipf gene mix (under `program_seed`).
    case synthGeneMix
    /// Synth, default mode: tile `index`'s layout, graph and features (under the synth seed).
    case synthTile(index: Int)
    /// Synth with a size spread: tile `index`'s transcript count (its own stream, so a tile's size
    /// does not depend on another tile's).
    case synthTileSize(index: Int)
    /// Synth, overlap mode: the layout of the whole slide region.
    case synthRegion
    /// Synth, overlap mode: tile `index`'s negatives.
    case synthRegionTile(index: Int)
    /// Synth, overlap mode: the embedding noise of region transcript `index` (the same in every tile
    /// that holds it).
    case synthRegionTranscript(index: Int)

    /// The stream's key: a purpose constant, plus the index for indexed purposes. Purpose constants are
    /// arbitrary, far-apart 64-bit values, so (purpose, index) pairs give distinct keys.
    public var key: UInt64 {
        switch self {
        case .modelInit: return 0
        // The shuffle's key predates this type; kept so that epoch orders stay the same.
        case .epochShuffle(let e): return UInt64(bitPattern: Int64(e)) &+ 0x632B_E59B_D9B4_E019
        case .synthPrograms: return 0x5EC6_E000_0000_0001
        case .synthGeneMix: return 0x6A0B_A100_0000_0002
        case .synthTile(let i): return 0x7111_E5ED_0000_0000 &+ UInt64(truncatingIfNeeded: i)
        case .synthTileSize(let i): return 0x5121_E5B2_EAD0_0000 &+ UInt64(truncatingIfNeeded: i)
        case .synthRegion: return 0x0E61_0000_5EED_0001
        case .synthRegionTile(let i): return 0x0E61_7111_0000_0000 &+ UInt64(truncatingIfNeeded: i)
        case .synthRegionTranscript(let i): return 0xE3BE_DD00_0000_0000 &+ UInt64(truncatingIfNeeded: i)
        }
    }
}
