// A small Swift face over MPI_COMM_WORLD. Open MPI's handles are macros Swift cannot import, so every
// handle comes from the CMPI shim accessors (segger_mpi_*). Errors of MPI keep the default handler
// (MPI_ERRORS_ARE_FATAL): a failing call takes the whole job down instead of hanging one rank.
import CMPI
import Foundation

/// A small Swift face over MPI_COMM_WORLD. Works without `mpirun` (singleton init, one rank).
///
/// Its calls must come from the thread that called `world()`, and every rank must make the same
/// collective calls in the same order. (MPI is initialized with MPI_THREAD_MULTIPLE when the library
/// grants it, for `GradientBuckets`' progress thread, which makes MPI calls of its own.)
public final class Communicator {
    public let rank: Int
    public let size: Int
    public var isRoot: Bool { rank == 0 }
    /// MPI granted MPI_THREAD_MULTIPLE: other threads may make MPI calls too.
    public private(set) var threadMultiple = false

    /// The fp16 / bf16 sum ops (2-byte carrier MPI_UINT16_T, fp32 accumulation); see ReductionOps.swift.
    let fp16Sum: MPI_Op
    let bf16Sum: MPI_Op

    private init(rank: Int, size: Int, fp16Sum: MPI_Op, bf16Sum: MPI_Op) {
        self.rank = rank
        self.size = size
        self.fp16Sum = fp16Sum
        self.bf16Sum = bf16Sum
    }

    /// Bytes one ``alltoallv(_:sendCounts:)`` round moves in all (default 2^30); the self-test lowers
    /// it to exercise exchanges of many rounds. Every rank must use the same value.
    public var exchangeRoundBytes = 1 << 30
    nonisolated(unsafe) private static var shared: Communicator?
    private static let sharedLock = NSLock()

    /// Initializes MPI once per process (MPI_Init_thread, guarded by MPI_Initialized) and registers
    /// MPI_Finalize at exit. Later calls return the same communicator.
    ///
    /// At exit with status 0 every rank finalizes. At exit with any other status (an error on this
    /// rank) the job is aborted instead (MPI_Abort with that status): MPI_Finalize would wait for the
    /// other ranks, which may be blocked in a collective waiting for this one — the job would hang.
    public static func world() throws -> Communicator {
        sharedLock.lock()
        defer { sharedLock.unlock() }
        if let c = shared { return c }
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var finalized: Int32 = 0
            MPI_Finalized(&finalized)
            if finalized != 0 { throw MPIError("MPI was already finalized in this process") }
            tuneOpenMPIForTheExchange()
            var provided: Int32 = 0
            let rc = MPI_Init_thread(nil, nil, segger_mpi_thread_multiple(), &provided)
            if rc != MPI_SUCCESS { throw MPIError("MPI_Init_thread failed with code \(rc)") }
            if provided < segger_mpi_thread_funneled() {
                throw MPIError("MPI_Init_thread granted thread level \(provided), need MPI_THREAD_FUNNELED")
            }
            registerFinalizeAtExit()
        }
        var level: Int32 = 0
        MPI_Query_thread(&level)
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(segger_mpi_comm_world(), &rank)
        MPI_Comm_size(segger_mpi_comm_world(), &size)
        let c = Communicator(rank: Int(rank), size: Int(size),
                             fp16Sum: makeSumOp(fp16SumFunction), bf16Sum: makeSumOp(bf16SumFunction))
        c.threadMultiple = level >= segger_mpi_thread_multiple()
        shared = c
        return c
    }

    /// Finalizes MPI now (collective: every rank must call it). Optional: `world()` registers the same
    /// at exit. After it no MPI call may be made.
    public func finalize() {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if finalized == 0 { MPI_Finalize() }
    }

    /// Ends this rank with `code` after a decision every rank took together (an error all ranks saw,
    /// such as invalid options or a non-finite loss agreed by an all-reduce): MPI_Finalize, then exit.
    /// Every rank must call it. An error on this rank alone needs `abort` (or a plain `exit(code)`, which
    /// aborts the job from the exit handler, with MPI_Abort's banner).
    public func exitTogether(_ code: Int32) -> Never {
        fflush(stdout)
        fflush(stderr)
        finalize()
        exit(code)
    }

    /// Ends every rank of the job with `code` (MPI_Abort) after printing `message` on stderr.
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        fputs("segger-train rank \(rank)/\(size): \(message)\n", stderr)
        fflush(stderr)
        fflush(stdout)
        MPI_Abort(segger_mpi_comm_world(), code)
        exit(code)  // MPI_Abort does not return; keeps the type checker and a broken MPI honest
    }

    /// Aborts the job when an MPI call did not return MPI_SUCCESS (only reachable if someone installs
    /// MPI_ERRORS_RETURN; the default handler already aborts).
    func check(_ rc: Int32, _ call: @autoclosure () -> String) {
        if rc != MPI_SUCCESS { abort("\(call()) failed with MPI error code \(rc)") }
    }

    public func barrier() {
        check(MPI_Barrier(segger_mpi_comm_world()), "MPI_Barrier")
    }

    /// Broadcasts `buffer` from `root` to every rank, in place.
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int = 0) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {  // chunks keep each count within Int32
            let n = min(buffer.count - done, 1 << 28)
            check(MPI_Bcast(base + done, Int32(n), segger_mpi_float(), Int32(root), segger_mpi_comm_world()),
                  "MPI_Bcast")
            done += n
        }
    }

    /// Broadcasts bytes from `root` (their count too): every rank returns root's bytes.
    public func broadcast(bytes: [UInt8], root: Int = 0) -> [UInt8] {
        var count = Int64(bytes.count)
        check(MPI_Bcast(&count, 1, segger_mpi_int64(), Int32(root), segger_mpi_comm_world()), "MPI_Bcast")
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        out.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            var done = 0
            while done < raw.count {
                let n = min(raw.count - done, 1 << 30)
                check(MPI_Bcast(base + done, Int32(n), segger_mpi_byte(), Int32(root), segger_mpi_comm_world()),
                      "MPI_Bcast")
                done += n
            }
        }
        return out
    }

    /// Element-wise sum over ranks of `values` (Double), every rank gets the result.
    public func allreduceSum(_ values: [Double]) -> [Double] {
        allreduce(values, op: segger_mpi_sum(), name: "MPI_Allreduce(sum)")
    }

    /// Element-wise max over ranks.
    public func allreduceMax(_ values: [Double]) -> [Double] {
        allreduce(values, op: segger_mpi_max(), name: "MPI_Allreduce(max)")
    }

    /// Element-wise min over ranks.
    public func allreduceMin(_ values: [Double]) -> [Double] {
        allreduce(values, op: segger_mpi_min(), name: "MPI_Allreduce(min)")
    }

    private func allreduce(_ values: [Double], op: MPI_Op, name: String) -> [Double] {
        var out = values
        out.withUnsafeMutableBufferPointer { b in
            check(MPI_Allreduce(segger_mpi_in_place(), b.baseAddress, Int32(b.count), segger_mpi_double(), op,
                                segger_mpi_comm_world()), name)
        }
        return out
    }

    /// In-place element-wise sum over ranks of fp16 (`.fp16`) or bf16 (`.bf16`) bit patterns, added in
    /// fp32 and rounded back by the user-defined op (`h ← fp16(fp32(in) + fp32(inout))`).
    public func allreduceSum(inPlace halves: UnsafeMutableBufferPointer<UInt16>, format: GradientCompression) {
        precondition(format != .none, "uncompressed gradients travel as fp64 (GradientBuckets), not through this op")
        guard let base = halves.baseAddress, halves.count > 0 else { return }
        check(MPI_Allreduce(segger_mpi_in_place(), base, Int32(halves.count), segger_mpi_uint16(),
                            sumOp(format), segger_mpi_comm_world()), "MPI_Allreduce(\(format) sum)")
    }

    func sumOp(_ format: GradientCompression) -> MPI_Op {
        switch format {
        case .fp16: return fp16Sum
        case .bf16: return bf16Sum
        case .none: return segger_mpi_sum()
        }
    }

    /// Gathers variable-length Float arrays on `root` (MPI_Gatherv): root gets one array per rank in
    /// rank order, other ranks get [].
    public func gather(_ values: [Float], root: Int = 0) -> [[Float]] {
        var myCount = Int32(values.count)
        var counts = [Int32](repeating: 0, count: isRootOf(root) ? size : 0)
        counts.withUnsafeMutableBufferPointer { c in
            check(MPI_Gather(&myCount, 1, segger_mpi_int32(), c.baseAddress, 1, segger_mpi_int32(), Int32(root),
                             segger_mpi_comm_world()), "MPI_Gather")
        }
        var displacements = [Int32](repeating: 0, count: counts.count)
        var total = 0
        for r in 0..<counts.count {
            precondition(total <= Int(Int32.max), "gather: more than 2^31 floats in total")
            displacements[r] = Int32(total)
            total += Int(counts[r])
        }
        var all = [Float](repeating: 0, count: total)
        values.withUnsafeBufferPointer { v in
            all.withUnsafeMutableBufferPointer { a in
                check(MPI_Gatherv(v.baseAddress, myCount, segger_mpi_float(), a.baseAddress, counts, displacements,
                                  segger_mpi_float(), Int32(root), segger_mpi_comm_world()), "MPI_Gatherv")
            }
        }
        guard isRootOf(root) else { return [] }
        return (0..<size).map { r in
            Array(all[Int(displacements[r])..<(Int(displacements[r]) + Int(counts[r]))])
        }
    }

    private func isRootOf(_ root: Int) -> Bool { rank == root }

    /// Gathers one string per rank on every rank (for digest compares and error reports).
    public func allgather(_ text: String) -> [String] {
        let mine = Array(text.utf8)
        var myCount = Int32(mine.count)
        var counts = [Int32](repeating: 0, count: size)
        counts.withUnsafeMutableBufferPointer { c in
            check(MPI_Allgather(&myCount, 1, segger_mpi_int32(), c.baseAddress, 1, segger_mpi_int32(),
                                segger_mpi_comm_world()), "MPI_Allgather")
        }
        var displacements = [Int32](repeating: 0, count: size)
        var total = 0
        for r in 0..<size {
            displacements[r] = Int32(total)
            total += Int(counts[r])
        }
        var all = [UInt8](repeating: 0, count: max(total, 1))
        mine.withUnsafeBufferPointer { m in
            all.withUnsafeMutableBufferPointer { a in
                check(MPI_Allgatherv(m.baseAddress, myCount, segger_mpi_byte(), a.baseAddress, counts, displacements,
                                     segger_mpi_byte(), segger_mpi_comm_world()), "MPI_Allgatherv")
            }
        }
        return (0..<size).map { r in
            let lo = Int(displacements[r])
            return String(decoding: all[lo..<(lo + Int(counts[r]))], as: UTF8.self)
        }
    }
}

// MARK: - Variable-length exchanges of plain values

extension Communicator {
    /// The most bytes one MPI_Alltoallv round moves between two ranks: counts and displacements are
    /// Int32 bytes, so a round's whole buffer must stay below 2^31 bytes.
    private var roundBytesPerRank: Int { max(1, exchangeRoundBytes / size) }

    /// Every rank sends `send[sendStart[r] ..< sendStart[r] + sendCounts[r]]` to rank r (the values grouped
    /// by destination, in rank order) and receives what each rank sent to it (MPI_Alltoallv), concatenated
    /// in source-rank order, with the count from each source. Collective: every rank must call it.
    ///
    /// Values travel as their bytes (every rank runs the same binary, so layouts agree). Exchanges larger
    /// than MPI's Int32 counts allow go in several rounds, agreed by an all-reduce, each moving at most
    /// 2^30 / size bytes between any two ranks.
    public func alltoallv<T: BitwiseCopyable>(_ send: [T], sendCounts: [Int]) -> (values: [T], counts: [Int]) {
        precondition(sendCounts.count == size, "alltoallv: one send count per rank")
        precondition(sendCounts.reduce(0, +) == send.count, "alltoallv: send counts do not add up to the values")
        let stride = MemoryLayout<T>.stride
        // Element counts, both ways.
        var outCounts = sendCounts.map { Int64($0) }
        var inCounts = [Int64](repeating: 0, count: size)
        check(MPI_Alltoall(&outCounts, 1, segger_mpi_int64(), &inCounts, 1, segger_mpi_int64(), segger_mpi_comm_world()),
              "MPI_Alltoall(counts)")
        let recvCounts = inCounts.map { Int($0) }
        var sendStart = [Int](repeating: 0, count: size), recvStart = [Int](repeating: 0, count: size)
        for r in 1..<max(size, 1) {
            sendStart[r] = sendStart[r - 1] + sendCounts[r - 1]
            recvStart[r] = recvStart[r - 1] + recvCounts[r - 1]
        }
        let total = recvCounts.reduce(0, +)
        let perRound = max(1, roundBytesPerRank / max(stride, 1))  // elements per pair per round
        let localRounds = (sendCounts + recvCounts).map { ($0 + perRound - 1) / perRound }.max() ?? 0
        let rounds = Int(allreduceMax([Double(localRounds)])[0])
        var out = [T]()
        if rounds <= 1 {
            // One round: straight from the caller's values into the result, no staging copies.
            var sc = [Int32](repeating: 0, count: size), sd = [Int32](repeating: 0, count: size)
            var rc = [Int32](repeating: 0, count: size), rd = [Int32](repeating: 0, count: size)
            for r in 0..<size {
                sc[r] = Int32(sendCounts[r] * stride); sd[r] = Int32(sendStart[r] * stride)
                rc[r] = Int32(recvCounts[r] * stride); rd[r] = Int32(recvStart[r] * stride)
            }
            send.withUnsafeBytes { sb in
                out = [T](unsafeUninitializedCapacity: total) { ob, initialized in
                    var dummy: UInt8 = 0
                    withUnsafeMutablePointer(to: &dummy) { d in
                        check(MPI_Alltoallv(sb.baseAddress ?? UnsafeRawPointer(d), sc, sd, segger_mpi_byte(),
                                            ob.baseAddress.map { UnsafeMutableRawPointer($0) } ?? UnsafeMutableRawPointer(d),
                                            rc, rd, segger_mpi_byte(), segger_mpi_comm_world()), "MPI_Alltoallv")
                    }
                    initialized = total
                }
            }
            return (out, recvCounts)
        }
        send.withUnsafeBytes { sb in
            // The receive buffer is filled by MPI round by round; each source's block lands at its offset.
            out = [T](unsafeUninitializedCapacity: total) { ob, initialized in
                let obRaw = UnsafeMutableRawBufferPointer(ob)
                var sc = [Int32](repeating: 0, count: size), sd = [Int32](repeating: 0, count: size)
                var rc = [Int32](repeating: 0, count: size), rd = [Int32](repeating: 0, count: size)
                var sendRound = [UInt8](), recvRound = [UInt8]()
                for round in 0..<rounds {
                    var sTotal = 0, rTotal = 0
                    for r in 0..<size {
                        let s = min(perRound, max(0, sendCounts[r] - round * perRound))
                        let q = min(perRound, max(0, recvCounts[r] - round * perRound))
                        sc[r] = Int32(s * stride); sd[r] = Int32(sTotal)
                        rc[r] = Int32(q * stride); rd[r] = Int32(rTotal)
                        sTotal += s * stride; rTotal += q * stride
                    }
                    if sendRound.count < sTotal { sendRound = [UInt8](repeating: 0, count: sTotal) }
                    if recvRound.count < rTotal { recvRound = [UInt8](repeating: 0, count: rTotal) }
                    sendRound.withUnsafeMutableBytes { srb in
                        for r in 0..<size where sc[r] > 0 {
                            let from = (sendStart[r] + round * perRound) * stride
                            srb.baseAddress!.advanced(by: Int(sd[r])).copyMemory(from: sb.baseAddress!.advanced(by: from), byteCount: Int(sc[r]))
                        }
                    }
                    sendRound.withUnsafeBytes { srb in
                        recvRound.withUnsafeMutableBytes { rrb in
                            // Empty buffers still need a valid address for MPI.
                            var dummy: UInt8 = 0
                            withUnsafeMutablePointer(to: &dummy) { d in
                                check(MPI_Alltoallv(srb.baseAddress ?? UnsafeRawPointer(d), sc, sd, segger_mpi_byte(),
                                                    rrb.baseAddress ?? UnsafeMutableRawPointer(d), rc, rd, segger_mpi_byte(),
                                                    segger_mpi_comm_world()), "MPI_Alltoallv")
                            }
                        }
                    }
                    recvRound.withUnsafeBytes { rrb in
                        for r in 0..<size where rc[r] > 0 {
                            let to = (recvStart[r] + round * perRound) * stride
                            obRaw.baseAddress!.advanced(by: to).copyMemory(from: rrb.baseAddress!.advanced(by: Int(rd[r])), byteCount: Int(rc[r]))
                        }
                    }
                }
                initialized = total
            }
        }
        return (out, recvCounts)
    }

    /// `parts[r]` goes to rank r; returns what each rank sent to this one, in source-rank order.
    public func alltoallv<T: BitwiseCopyable>(_ parts: [[T]]) -> [[T]] {
        precondition(parts.count == size, "alltoallv: one part per rank")
        let (values, counts) = alltoallv(parts.flatMap { $0 }, sendCounts: parts.map(\.count))
        var out: [[T]] = []
        var at = 0
        for c in counts {
            out.append(Array(values[at..<(at + c)]))
            at += c
        }
        return out
    }

    /// Every rank's `values`, on every rank, in rank order (MPI_Allgatherv). Meant for small arrays
    /// (samples, summaries): the total must stay below 2^31 bytes.
    public func allgatherv<T: BitwiseCopyable>(_ values: [T]) -> [[T]] {
        let stride = MemoryLayout<T>.stride
        var mine = Int64(values.count)
        var counts = [Int64](repeating: 0, count: size)
        check(MPI_Allgather(&mine, 1, segger_mpi_int64(), &counts, 1, segger_mpi_int64(), segger_mpi_comm_world()),
              "MPI_Allgather(counts)")
        let totalBytes = counts.reduce(0, +) * Int64(stride)
        precondition(totalBytes < Int64(Int32.max), "allgatherv: more than 2^31 bytes in total")
        var rc = [Int32](repeating: 0, count: size), rd = [Int32](repeating: 0, count: size)
        var at: Int32 = 0
        for r in 0..<size { rc[r] = Int32(Int(counts[r]) * stride); rd[r] = at; at += rc[r] }
        var all = [UInt8](repeating: 0, count: max(Int(at), 1))
        values.withUnsafeBytes { vb in
            all.withUnsafeMutableBytes { ab in
                var dummy: UInt8 = 0
                withUnsafeMutablePointer(to: &dummy) { d in
                    check(MPI_Allgatherv(vb.baseAddress ?? UnsafeRawPointer(d), Int32(vb.count), segger_mpi_byte(),
                                         ab.baseAddress, rc, rd, segger_mpi_byte(), segger_mpi_comm_world()), "MPI_Allgatherv")
                }
            }
        }
        return (0..<size).map { r in
            let n = Int(counts[r])
            return [T](unsafeUninitializedCapacity: n) { b, initialized in
                all.withUnsafeBytes { ab in
                    UnsafeMutableRawBufferPointer(b).copyMemory(from: UnsafeRawBufferPointer(rebasing: ab[Int(rd[r])..<(Int(rd[r]) + n * stride)]))
                }
                initialized = n
            }
        }
    }

    /// Sends `values` to rank `to` (blocking MPI_Send of the count, then the bytes in chunks below 2^30).
    /// The receiver calls ``receive(from:tag:)`` with the same tag.
    public func send<T: BitwiseCopyable>(_ values: [T], to: Int, tag: Int = 0) {
        var count = Int64(values.count)
        check(MPI_Send(&count, 1, segger_mpi_int64(), Int32(to), Int32(tag), segger_mpi_comm_world()), "MPI_Send(count)")
        values.withUnsafeBytes { vb in
            var done = 0
            while done < vb.count {
                let n = min(vb.count - done, 1 << 30)
                check(MPI_Send(vb.baseAddress! + done, Int32(n), segger_mpi_byte(), Int32(to), Int32(tag),
                               segger_mpi_comm_world()), "MPI_Send")
                done += n
            }
        }
    }

    /// Receives what rank `from` sent with ``send(_:to:tag:)`` and the same tag.
    public func receive<T: BitwiseCopyable>(from: Int, tag: Int = 0, as type: T.Type = T.self) -> [T] {
        var count: Int64 = 0
        check(MPI_Recv(&count, 1, segger_mpi_int64(), Int32(from), Int32(tag), segger_mpi_comm_world(),
                       segger_mpi_status_ignore()), "MPI_Recv(count)")
        let n = Int(count)
        return [T](unsafeUninitializedCapacity: n) { b, initialized in
            let raw = UnsafeMutableRawBufferPointer(b)
            var done = 0
            while done < n * MemoryLayout<T>.stride {
                let k = min(n * MemoryLayout<T>.stride - done, 1 << 30)
                check(MPI_Recv(raw.baseAddress! + done, Int32(k), segger_mpi_byte(), Int32(from), Int32(tag),
                               segger_mpi_comm_world(), segger_mpi_status_ignore()), "MPI_Recv")
                done += k
            }
            initialized = n
        }
    }
}

/// Two Open MPI settings for the gradient exchange, made before MPI_Init and only where the user has not
/// chosen (an OMPI_MCA_… variable of their own, which `mpirun --mca` also sets, wins):
/// - The non-blocking all-reduce (coll/libnbc) picks, for fewer than 4 ranks or an in-place buffer (the
///   buckets are both), a binomial reduce to rank 0 and then a broadcast: with 2 ranks the whole bucket
///   crosses the link twice, one direction after the other. Reduce-scatter + allgather (Rabenseifner,
///   "3") sends 2(P−1)/P of it each way at once, in 2·log₂P rounds.
/// - Over TCP, a message above 64 KiB (half of a default fp16 bucket, with its header) goes by
///   rendezvous: its sender waits for the receiver's reply, which travels behind the bulk data queued on
///   the same connection the other way, so on a slow link every round of every bucket waits a queue's
///   drain. Sending up to 512 KiB eagerly (a bucket half of either format) removes those round trips.
private func tuneOpenMPIForTheExchange() {
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0)
    setenv("OMPI_MCA_btl_tcp_eager_limit", "524288", 0)
    setenv("OMPI_MCA_btl_tcp_rndv_eager_limit", "524288", 0)
}

/// `exit(0)` (or returning from main): MPI_Finalize. Any other status on a job of several ranks:
/// MPI_Abort(status), because MPI_Finalize blocks until every rank finalizes and the others may be
/// waiting for this rank in a collective (measured: `exit(1)` on one of 2 ranks while the other sat in a
/// barrier hung the job). Signals (crashes) skip exit handlers; mpirun then ends the job itself.
private func finalizeAtExit(status: Int32) {
    var initialized: Int32 = 0, finalized: Int32 = 0
    MPI_Initialized(&initialized)
    MPI_Finalized(&finalized)
    guard initialized != 0 && finalized == 0 else { return }
    var size: Int32 = 1, rank: Int32 = 0
    MPI_Comm_size(segger_mpi_comm_world(), &size)
    MPI_Comm_rank(segger_mpi_comm_world(), &rank)
    if status != 0 && size > 1 {
        fputs("segger-train rank \(rank)/\(size): exit status \(status) before MPI_Finalize: aborting the job\n", stderr)
        fflush(stderr)
        MPI_Abort(segger_mpi_comm_world(), status)
    }
    MPI_Finalize()
}

private func registerFinalizeAtExit() {
    #if canImport(Glibc)
    on_exit({ status, _ in finalizeAtExit(status: status) }, nil)
    #else
    atexit { finalizeAtExit(status: 0) }
    #endif
}
