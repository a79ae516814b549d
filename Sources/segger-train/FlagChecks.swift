// Every flag has a range; a value outside it is an error naming the flag, the value and the range,
// before anything is read, allocated or written.
import ArgumentParser
import Foundation
import SeggerDistributed
import SeggerModel
import SeggerTrain

enum Flags {
    /// `--name` is an integer in `range`.
    static func int(_ name: String, _ value: Int, _ range: ClosedRange<Int>, _ note: String = "") throws {
        guard range.contains(value) else {
            let hi = range.upperBound == Int.max ? "" : "\(range.upperBound)"
            throw ValidationError("--\(name) must lie in \(range.lowerBound)…\(hi), not \(value)\(note.isEmpty ? "" : " (\(note))")")
        }
    }

    /// `--name` is a finite number in `range` (above its lower bound only, when `openBelow`).
    static func real(_ name: String, _ value: Double, _ range: ClosedRange<Double>, openBelow: Bool = false) throws {
        let above = openBelow ? value > range.lowerBound : value >= range.lowerBound
        guard value.isFinite, above, value <= range.upperBound else {
            let lo = openBelow ? "> \(short(range.lowerBound))" : "≥ \(short(range.lowerBound))"
            let hi = range.upperBound >= Double(Float.greatestFiniteMagnitude) ? "" : " and ≤ \(short(range.upperBound))"
            throw ValidationError("--\(name) must be a finite number \(lo)\(hi), not \(value)")
        }
    }

    /// `--name` names a file or directory: not empty, no NUL byte.
    static func path(_ name: String, _ value: String) throws {
        guard !value.isEmpty else { throw ValidationError("--\(name) is empty: give a path") }
        guard !value.utf8.contains(0) else { throw ValidationError("--\(name) contains a NUL byte") }
    }

    private static func short(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)"
    }
}

// Valid values listed by --help and checked while parsing.
extension Aggregation: ExpressibleByArgument {}
extension OptimizerConfig.Kind: ExpressibleByArgument {}
extension GradientCompression: ExpressibleByArgument {}
extension LossReduction: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
extension ResumeMode: ExpressibleByArgument {}
extension ExchangeProgress: ExpressibleByArgument {}
