// The public face of Distributed, agreed with Train. Bodies marked "TODO(dist)" are filled in by the
// distributed work. Only Train talks to the communicator.
import Foundation

/// Gradient exchange format.
public enum GradientCompression: String, Codable, Sendable, CaseIterable {
    /// fp16 over MPI as a 2-byte type with a user-defined sum that adds in fp32.
    case fp16
    /// bf16 likewise.
    case bf16
    /// fp32 with MPI_SUM.
    case none
}

/// An MPI failure, with the call and the rank.
public struct MPIError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A small Swift face over MPI_COMM_WORLD. Works without `mpirun` (singleton init, one rank).
public final class Communicator {
    public let rank: Int
    public let size: Int
    public var isRoot: Bool { rank == 0 }

    private init(rank: Int, size: Int) {
        self.rank = rank
        self.size = size
    }

    /// Initializes MPI once per process (MPI_Init_thread, guarded by MPI_Initialized) and registers
    /// MPI_Finalize at exit. Later calls return the same communicator.
    public static func world() throws -> Communicator {
        fatalError("TODO(dist)")
    }

    /// Ends every rank of the job with `code` (MPI_Abort) after printing `message` on stderr.
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        fatalError("TODO(dist)")
    }

    public func barrier() {
        fatalError("TODO(dist)")
    }

    /// Broadcasts `buffer` from `root` to every rank, in place.
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int = 0) {
        fatalError("TODO(dist)")
    }

    /// Broadcasts bytes from `root` (their count too): every rank returns root's bytes.
    public func broadcast(bytes: [UInt8], root: Int = 0) -> [UInt8] {
        fatalError("TODO(dist)")
    }

    /// Element-wise sum over ranks of `values` (Double), every rank gets the result.
    public func allreduceSum(_ values: [Double]) -> [Double] {
        fatalError("TODO(dist)")
    }

    /// Element-wise max over ranks.
    public func allreduceMax(_ values: [Double]) -> [Double] {
        fatalError("TODO(dist)")
    }

    /// Gathers variable-length Float arrays on `root` (MPI_Gatherv): root gets one array per rank in
    /// rank order, other ranks get [].
    public func gather(_ values: [Float], root: Int = 0) -> [[Float]] {
        fatalError("TODO(dist)")
    }

    /// Gathers one string per rank on every rank (for digest compares and error reports).
    public func allgather(_ text: String) -> [String] {
        fatalError("TODO(dist)")
    }
}

/// Per-step communication figures.
public struct ExchangeStats: Sendable {
    /// Bytes handed to MPI for all buckets of the last step.
    public var bytesPerStep: Int = 0
    /// Seconds spent blocked in MPI_Wait (not overlapped with backward), accumulated.
    public var waitSeconds: Double = 0
    /// Seconds spent converting / scaling, accumulated.
    public var packSeconds: Double = 0
    /// Number of buckets.
    public var buckets: Int = 0
    public init() {}
}

/// Gradient buckets in the PyTorch DDP style: contiguous slices of the flat gradient buffer in
/// reverse parameter order, each capped in size; a bucket leaves for a non-blocking all-reduce as soon
/// as the backward pass has finished all its parameters, strictly in bucket order.
public final class GradientBuckets {
    public let compression: GradientCompression
    public private(set) var stats = ExchangeStats()

    /// - Parameters:
    ///   - gradients: the flat gradient buffer (stays valid for the buckets' life).
    ///   - parameterRanges: each parameter's flat range, in parameter (buffer) order; buckets never
    ///     split a parameter unless a single parameter is larger than the cap.
    ///   - capBytes: bucket size cap in bytes of fp32 gradient.
    public init(communicator: Communicator, gradients: UnsafeMutableBufferPointer<Float>,
                parameterRanges: [Range<Int>], capBytes: Int, compression: GradientCompression) {
        fatalError("TODO(dist)")
    }

    /// Bucket boundaries (flat ranges), bucket 0 first (it covers the end of the buffer).
    public var bucketRanges: [Range<Int>] { fatalError("TODO(dist)") }

    /// Starts a step: every bucket's gradient will be multiplied by `preScale` before compression.
    public func begin(preScale: Float) {
        fatalError("TODO(dist)")
    }

    /// Called from the backward pass: every gradient at flat offset ≥ `offset` is final. Launches
    /// the buckets that became complete (in bucket order) and drives in-flight ones with MPI_Test
    /// (Open MPI has no asynchronous progress thread).
    public func gradientsReady(from offset: Int) {
        fatalError("TODO(dist)")
    }

    /// Waits for every bucket and writes the summed gradients back (fp32) into the gradient buffer.
    /// - Returns: false when any reduced value is inf or NaN (the step must then be skipped on every rank).
    public func finish() -> Bool {
        fatalError("TODO(dist)")
    }
}

/// Which tiles each rank trains on, step by step.
public enum ShardPlan {
    /// The epoch's sequence of global batches (indices into the sorted tile list): a seeded shuffle
    /// that depends only on `seed`, `epoch` and `globalBatch`, never on the rank count. The last
    /// partial batch is padded by repeating tiles from the start of the permutation (as PyTorch's
    /// DistributedSampler does), or dropped when `dropLast`.
    public static func globalBatches(tileCount: Int, globalBatch: Int, seed: UInt64, epoch: Int,
                                     dropLast: Bool) -> [[Int]] {
        fatalError("TODO(dist)")
    }

    /// Splits one global batch over `ranks` ranks, balanced by `cost` (longest-processing-time
    /// greedy), every rank getting the same number of tiles when the batch divides evenly; a
    /// deterministic function of its inputs, so every rank computes the same split.
    public static func split(_ batch: [Int], costs: [Double], ranks: Int) -> [[Int]] {
        fatalError("TODO(dist)")
    }
}
