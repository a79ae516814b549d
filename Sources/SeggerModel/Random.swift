// The generator behind the model's initialization (PyG's initializers, drawn deterministically per seed).
import Foundation

/// SplitMix64: a small, fast, well-mixed 64-bit generator (deterministic initialization).
public struct SplitMix64 {
    private var state: UInt64
    private var spare: Double? = nil
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    /// N(0, 1) by Box–Muller.
    public mutating func normal() -> Double {
        if let s = spare { spare = nil; return s }
        var u = unit()
        while u <= 0 { u = unit() }
        let v = unit()
        let r = (-2 * log(u)).squareRoot()
        spare = r * sin(2 * Double.pi * v)
        return r * cos(2 * Double.pi * v)
    }
}
