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

/// An MPI failure, with the call and the rank.
/// An error that every rank raises alike, after a decision all ranks share (a broadcast verdict, the same
/// check on the same data): the ranks can end together and rank 0 alone reports it, instead of one rank
/// taking the job down with MPI_Abort. The trainer's and the segmenter's errors of that kind conform.
public protocol RaisedOnEveryRank: Error {
    var message: String { get }
}

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
