// The public face of Distributed, agreed with Train and Segment (the only modules that talk to the communicator).
// Communicator.swift (MPI_COMM_WORLD), ReductionOps.swift (fp16/bf16 sums), GradientBuckets.swift and
// ShardPlan.swift hold the bodies.
import Foundation

/// Gradient exchange format.
public enum GradientCompression: String, Codable, Sendable, CaseIterable {
    /// fp16 over MPI as a 2-byte type with a user-defined sum that adds in fp32.
    case fp16
    /// bf16 likewise.
    case bf16
    /// Uncompressed: fp32 gradients carried as fp64 with MPI_SUM, an exact sum whatever the rank count.
    case none

    /// Bytes per exchanged element.
    public var bytesPerElement: Int { self == .none ? 8 : 2 }
}

// MARK: - Errors across ranks
//
// How an error ends a run of N ranks depends on who raised it, so the type says which (docs/architecture.md,
// "Errors"): `CollectiveError` when every rank raises it alike, `RankError` when one rank raises it alone,
// `MPIError` when MPI itself fails. The command line's `runOnEveryRank` acts on the type.

/// An error that every rank raises alike, after a decision all ranks share (a broadcast verdict, the same
/// check on the same data, problems gathered from every rank): the ranks end together and rank 0 alone
/// reports it (exit 1), instead of one rank taking the job down with MPI_Abort. Its message says what is
/// wrong in the user's terms (the flag, the file, the field).
public struct CollectiveError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Communicator {
    /// Every rank reports its own problem (nil: none); if any rank has one, every rank throws the same
    /// ``CollectiveError`` listing the distinct problems (at most `limit`), so all ranks stop together
    /// instead of one throwing while the others wait in a collective. Collective.
    public func agree(_ problem: String?, limit: Int = 10) throws {
        let all = allgather(problem ?? "")
        var distinct: [String] = []
        for e in all where !e.isEmpty && !distinct.contains(e) { distinct.append(e) }
        guard !distinct.isEmpty else { return }
        let shown = distinct.prefix(limit).joined(separator: "\n  ")
        let more = distinct.count > limit ? "\n  … and \(distinct.count - limit) more" : ""
        throw CollectiveError(distinct.count == 1 ? distinct[0] : "\(distinct.count) errors:\n  \(shown)\(more)")
    }
}

/// An error raised on one rank only (a tile that read at start-up fails later, a checkpoint write on
/// rank 0): the other ranks may already wait in a collective, so the job is taken down with MPI_Abort
/// (with one rank: exit 1). The message names the rank.
public struct RankError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// MPI itself failed (initialization, thread level): the message names the call.
public struct MPIError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Per-step communication figures.
public struct ExchangeStats: Sendable {
    /// Bytes handed to MPI for all buckets of the last step (0 with one rank: nothing is sent).
    public var bytesPerStep: Int = 0
    /// Seconds spent blocked in MPI_Wait (not overlapped with backward), accumulated.
    public var waitSeconds: Double = 0
    /// Seconds spent converting / scaling, accumulated.
    public var packSeconds: Double = 0
    /// Number of buckets.
    public var buckets: Int = 0
    public init() {}
}
