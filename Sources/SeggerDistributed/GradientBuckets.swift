// Gradient buckets in the PyTorch DDP style, with fp16/bf16 compression.
//
// One step:  begin(preScale) → gradientsReady(from:) … (from the backward pass) → finish()
//
//   gradients  [P] fp32, flat, parameter order        bucket 0 = the end of the buffer
//   |--p0--|--p1--|----p2----|--p3--|-p4-|             (last layer's gradients are final first)
//   |      bucket 2    |   bucket 1  | bucket 0 |
//
// Per bucket, at launch: packed[r] = fp16(gradients[r] · preScale) (F16C when present), then
// MPI_Iallreduce in place on packed[r] with the fp32-accumulating user op; at completion
// gradients[r] = fp32(packed[r]). With `.none` the bucket travels as fp64: wide[r] = fp64(gradients[r]) ·
// preScale, MPI_Iallreduce(MPI_SUM, MPI_DOUBLE); gradients[r] = fp32(wide[r]). A sum of fp32 values in fp64
// is exact (unless their exponents span more than 29 binades), so the result does not depend on how the
// values were split over ranks or on MPI's reduction tree: N ranks give what one rank gives.
// When the caller accumulated earlier micro-batches in fp64 (`begin(preScale:accumulated:)`), a bucket's
// values are accumulated[r] + gradients[r], taken in fp64 before any rounding. With one rank nothing is sent but the same scale → compress → decompress happens, so 1-rank and
// N-rank runs round alike. Open MPI has no asynchronous progress: a bucket's all-reduce moves only while
// some MPI call runs on this rank. `.poll` MPI_Tests the in-flight buckets at every gradientsReady call;
// `.thread` adds a helper thread that MPI_Tests them every `pollInterval` while any is in flight (so they
// also move during long GEMMs and edge kernels, needs MPI_THREAD_MULTIPLE). Completed buckets are
// decompressed right away (their parameters are final).
//
// Locking (`.thread`): `lock` guards the bucket bookkeeping and every MPI call on the requests; the
// backward thread packs and launches under it, the helper tests under it, finish() waits under it. The
// gradient ranges themselves need no lock: a bucket's range is written by the backward before its
// launch and by the unpack after its completion, never both at once.
import CFloat16
import CMPI
import Foundation

/// Gradient buckets in the PyTorch DDP style: contiguous slices of the flat gradient buffer in
/// reverse parameter order, each capped in size; a bucket leaves for a non-blocking all-reduce as soon
/// as the backward pass has finished all its parameters, strictly in bucket order.
///
/// Rounding: with P ranks, scale s and unit roundoff u (2⁻¹¹ fp16, 2⁻⁸ bf16, 2⁻²⁴ fp32), every reduced
/// element is within ((1+u)^P − 1)·Σ_r|s·x_r| + (2P−1)(1+u)^(P−1)·η of the exact Σ_r s·x_r, η being half
/// the smallest subnormal (2⁻²⁵ fp16); every rank holds the same bits. One rank rounds exactly as the
/// exchange does (fp16(s·x)), so 1-rank and N-rank runs are comparable. Values beyond the fp16 range
/// (65504 after scaling) become inf, and `finish()` then reports the step as non-finite.
public final class GradientBuckets {
    public let compression: GradientCompression
    public private(set) var stats = ExchangeStats()

    private let communicator: Communicator
    private let gradients: UnsafeMutableBufferPointer<Float>
    /// Bucket boundaries, bucket 0 first (highest offsets).
    private let ranges: [Range<Int>]
    /// fp16/bf16 carrier, same layout as `gradients` (empty for `.none`).
    private let packed: UnsafeMutableBufferPointer<UInt16>
    /// fp64 carrier for `.none`, same layout as `gradients` (empty otherwise).
    private let wide: UnsafeMutableBufferPointer<Double>
    /// fp64 sums of the earlier micro-batches of this step, added to `gradients` at launch (optional).
    private var accumulated: UnsafeMutableBufferPointer<Double>?
    /// One request per bucket (MPI_Iallreduce), valid while the bucket is in flight.
    private let requests: UnsafeMutableBufferPointer<MPI_Request?>
    /// done[b]: bucket b is reduced and written back into `gradients` this step.
    private let done: UnsafeMutableBufferPointer<Bool>

    /// How in-flight buckets are driven (`.thread` falls back to `.poll` below MPI_THREAD_MULTIPLE).
    public let progress: ExchangeProgress
    /// Seconds between the helper thread's tests of the in-flight buckets.
    public let pollInterval: Double
    /// Timestamps of the last finished step (monotonicSeconds), for diagnostics.
    public private(set) var timeline = ExchangeTimeline()

    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private let wake: UnsafeMutablePointer<pthread_cond_t>
    private var thread: pthread_t? = nil
    private var stopThread = false
    private var launchTimes: [Double]
    private var doneTimes: [Double]

    private var scale: Float = 1
    private var inStep = false
    /// Buckets 0..<launched have left for the all-reduce this step.
    public private(set) var launchedBuckets = 0
    /// Buckets 0..<firstPending are done.
    private var firstPending = 0
    /// Some reduced value of this step is inf or NaN.
    private var sawNonFinite = false
    /// Launch order of the current step (bucket indices), for tests. Capacity preallocated.
    var launchLog: [Int] = []

    /// - Parameters:
    ///   - gradients: the flat gradient buffer (stays valid for the buckets' life).
    ///   - parameterRanges: each parameter's flat range, in parameter (buffer) order; buckets never
    ///     split a parameter unless a single parameter is larger than the cap.
    ///   - capBytes: bucket size cap in bytes of fp32 gradient.
    ///   - progress: `.thread` (a helper thread tests in-flight buckets every `pollInterval` seconds) or
    ///     `.poll` (tests only at the backward's readiness calls). `.thread` needs MPI_THREAD_MULTIPLE and
    ///     more than one rank; otherwise `.poll` is used (see `progress`).
    public init(communicator: Communicator, gradients: UnsafeMutableBufferPointer<Float>,
                parameterRanges: [Range<Int>], capBytes: Int, compression: GradientCompression,
                progress: ExchangeProgress = .thread, pollInterval: Double = ExchangeProgress.defaultInterval) {
        precondition(capBytes >= 4, "bucket cap must hold at least one fp32 value")
        precondition(pollInterval > 0 && pollInterval < 1, "poll interval must lie in (0, 1) s")
        self.communicator = communicator
        self.gradients = gradients
        self.compression = compression
        let capElements = min(capBytes / 4, Int(Int32.max))
        ranges = GradientBuckets.layout(count: gradients.count, parameterRanges: parameterRanges,
                                        capElements: capElements)
        packed = .allocate(capacity: compression == .none ? 0 : gradients.count)
        wide = .allocate(capacity: compression == .none ? gradients.count : 0)
        requests = .allocate(capacity: ranges.count)
        requests.initialize(repeating: segger_mpi_request_null())
        done = .allocate(capacity: ranges.count)
        done.initialize(repeating: false)
        launchLog.reserveCapacity(ranges.count)
        stats.buckets = ranges.count
        stats.bytesPerStep = communicator.size > 1 ? gradients.count * compression.bytesPerElement : 0
        launchTimes = [Double](repeating: 0, count: ranges.count)
        doneTimes = [Double](repeating: 0, count: ranges.count)
        self.pollInterval = pollInterval
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        wake = .allocate(capacity: 1)
        pthread_cond_init(wake, nil)
        let threaded = progress == .thread && communicator.size > 1 && communicator.threadMultiple
        self.progress = threaded ? .thread : .poll
        if threaded { startThread() }
    }

    deinit {
        if let t = thread {
            pthread_mutex_lock(lock)
            stopThread = true
            pthread_cond_signal(wake)
            pthread_mutex_unlock(lock)
            pthread_join(t, nil)
        }
        // A bucket still in flight would be written into freed memory: complete it first (every rank
        // drops its buckets at the same point of the program, so the collectives still match).
        for b in firstPending..<launchedBuckets where !done[b] {
            MPI_Wait(requests.baseAddress! + b, segger_mpi_status_ignore())
        }
        pthread_cond_destroy(wake)
        pthread_mutex_destroy(lock)
        wake.deallocate()
        lock.deallocate()
        packed.deallocate()
        wide.deallocate()
        requests.deallocate()
        done.deallocate()
    }

    /// Bucket boundaries (flat ranges), bucket 0 first (it covers the end of the buffer).
    public var bucketRanges: [Range<Int>] { ranges }

    /// The bucket layout: parameter i owns [start_i, start_{i+1}) (the first from 0, the last to `count`,
    /// so gaps between parameters travel with the parameter before them and the buckets cover the buffer
    /// exactly once); walking from the last parameter down, a bucket grows while it stays within
    /// `capElements`; a parameter larger than the cap alone is cut into cap-sized chunks from its end,
    /// its lowest remainder opening the next bucket. Then a bucket of fewer than cap/16 elements (other
    /// than the last) joins the next one, which may so exceed the cap by less than cap/16.
    static func layout(count: Int, parameterRanges: [Range<Int>], capElements: Int) -> [Range<Int>] {
        guard count > 0 else { return [] }
        var starts = parameterRanges.filter { !$0.isEmpty }.map(\.lowerBound)
        for (a, b) in zip(parameterRanges.filter { !$0.isEmpty }, parameterRanges.filter { !$0.isEmpty }.dropFirst()) {
            precondition(a.upperBound <= b.lowerBound, "parameter ranges must be sorted and disjoint")
        }
        precondition(parameterRanges.allSatisfy { $0.upperBound <= count }, "parameter range beyond the buffer")
        if starts.isEmpty { starts = [0] }
        starts[0] = 0
        var result: [Range<Int>] = []
        var open: Range<Int>? = nil  // the bucket being filled, growing downwards
        for i in stride(from: starts.count - 1, through: 0, by: -1) {
            let lo = starts[i], hi = i + 1 < starts.count ? starts[i + 1] : count
            if hi - lo > capElements {
                if let o = open { result.append(o); open = nil }
                var top = hi
                while top - lo > capElements {
                    result.append((top - capElements)..<top)
                    top -= capElements
                }
                open = lo..<top
            } else if let o = open, o.count + (hi - lo) <= capElements {
                open = lo..<o.upperBound
            } else {
                if let o = open { result.append(o) }
                open = lo..<hi
            }
        }
        if let o = open { result.append(o) }
        // A bucket below cap/16 (a bias between two weights that each fill a bucket) joins the bucket
        // after it (launched later): one message less, and no all-reduce of fewer elements than ranks,
        // which Open MPI's reduce-scatter algorithm hands to a ring of 2(P−1) rounds. The last bucket
        // stays: joining the one before would hold that one back until the end of the backward.
        let small = max(1, capElements / 16)
        var merged: [Range<Int>] = []
        var carry: Range<Int>? = nil
        for (i, b) in result.enumerated() {
            let bucket = carry.map { b.lowerBound..<$0.upperBound } ?? b
            carry = nil
            if bucket.count < small && i + 1 < result.count {
                carry = bucket
            } else {
                merged.append(bucket)
            }
        }
        return merged
    }

    /// Starts a step: every bucket's gradient will be multiplied by `preScale` before compression.
    /// - Parameter accumulated: fp64 sums of this rank's earlier micro-batches (same layout as the
    ///   gradients); when given, each bucket sends `accumulated + gradients`, added in fp64.
    public func begin(preScale: Float, accumulated: UnsafeMutableBufferPointer<Double>? = nil) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        precondition(!inStep, "GradientBuckets.begin: the previous step was not finished")
        precondition(accumulated == nil || accumulated!.count == gradients.count, "accumulator size")
        stepBegin = monotonicSeconds()
        lastReady = stepBegin
        inStep = true
        scale = preScale
        self.accumulated = accumulated
        launchedBuckets = 0
        firstPending = 0
        sawNonFinite = false
        for b in 0..<ranges.count { done[b] = false; launchTimes[b] = 0; doneTimes[b] = 0 }
        launchLog.removeAll(keepingCapacity: true)
    }

    /// Called from the backward pass: every gradient at flat offset ≥ `offset` is final. Launches
    /// the buckets that became complete (in bucket order) and drives in-flight ones with MPI_Test
    /// (Open MPI has no asynchronous progress thread).
    public func gradientsReady(from offset: Int) {
        let due = launchedBuckets < ranges.count && ranges[launchedBuckets].lowerBound >= offset
        if progress == .thread {
            // Nothing to launch: test only if the helper is not testing right now (never wait for it).
            if due { pthread_mutex_lock(lock) } else if pthread_mutex_trylock(lock) != 0 { return }
        }
        defer { if progress == .thread { pthread_mutex_unlock(lock) } }
        precondition(inStep, "GradientBuckets.gradientsReady outside begin/finish")
        lastReady = monotonicSeconds()
        var launched = false
        while launchedBuckets < ranges.count && ranges[launchedBuckets].lowerBound >= offset {
            launch(launchedBuckets)
            launchedBuckets += 1
            launched = true
        }
        drive()
        if launched && progress == .thread { pthread_cond_signal(wake) }
    }

    /// Waits for every bucket and writes the summed gradients back (fp32) into the gradient buffer.
    /// - Returns: false when any reduced value is inf or NaN (the step must then be skipped on every rank).
    public func finish() -> Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        precondition(inStep, "GradientBuckets.finish without begin")
        let finishStart = monotonicSeconds()
        while launchedBuckets < ranges.count {
            launch(launchedBuckets)
            launchedBuckets += 1
        }
        for b in firstPending..<ranges.count where !done[b] {
            let t0 = monotonicSeconds()
            communicator.check(MPI_Wait(requests.baseAddress! + b, segger_mpi_status_ignore()), "MPI_Wait")
            stats.waitSeconds += monotonicSeconds() - t0
            unpack(b)
        }
        firstPending = ranges.count
        inStep = false
        timeline = ExchangeTimeline(begin: stepBegin, lastReady: lastReady, finishStart: finishStart,
                                    finishEnd: monotonicSeconds(), bucketElements: ranges.map(\.count),
                                    launch: launchTimes, done: doneTimes)
        return !sawNonFinite
    }

    /// Scales and compresses bucket b, then starts its all-reduce (or, with one rank, completes it).
    private func launch(_ b: Int) {
        launchLog.append(b)
        launchTimes[b] = monotonicSeconds()
        let r = ranges[b]
        let n = r.count
        let g = gradients.baseAddress! + r.lowerBound
        let t0 = monotonicSeconds()
        switch compression {
        case .fp16, .bf16:
            if let acc = accumulated { foldInto(g, acc.baseAddress! + r.lowerBound, n) }
            if compression == .fp16 {
                segger_f32_to_f16(g, packed.baseAddress! + r.lowerBound, n, scale)
            } else {
                segger_f32_to_bf16(g, packed.baseAddress! + r.lowerBound, n, scale)
            }
        case .none:
            widen(g, accumulated.map { $0.baseAddress! + r.lowerBound }, wide.baseAddress! + r.lowerBound, n, Double(scale))
        }
        stats.packSeconds += monotonicSeconds() - t0
        if communicator.size == 1 {
            unpack(b)
            return
        }
        let comm = segger_mpi_comm_world()
        let rc: Int32
        if compression == .none {
            rc = MPI_Iallreduce(segger_mpi_in_place(), wide.baseAddress! + r.lowerBound, Int32(n), segger_mpi_double(),
                                segger_mpi_sum(), comm, requests.baseAddress! + b)
        } else {
            rc = MPI_Iallreduce(segger_mpi_in_place(), packed.baseAddress! + r.lowerBound, Int32(n),
                                segger_mpi_uint16(), communicator.sumOp(compression), comm, requests.baseAddress! + b)
        }
        communicator.check(rc, "MPI_Iallreduce")
    }

    /// MPI_Test on every in-flight bucket (this is what moves them along); unpacks the finished ones.
    private func drive() {
        guard communicator.size > 1 else { return }
        var flag: Int32 = 0
        for b in firstPending..<launchedBuckets where !done[b] {
            communicator.check(MPI_Test(requests.baseAddress! + b, &flag, segger_mpi_status_ignore()), "MPI_Test")
            if flag != 0 { unpack(b) }
        }
        while firstPending < launchedBuckets && done[firstPending] { firstPending += 1 }
    }

    /// Decompresses reduced bucket b into `gradients` and notes any inf/NaN.
    private func unpack(_ b: Int) {
        let r = ranges[b]
        let g = gradients.baseAddress! + r.lowerBound
        let t0 = monotonicSeconds()
        switch compression {
        case .fp16: segger_f16_to_f32(packed.baseAddress! + r.lowerBound, g, r.count)
        case .bf16: segger_bf16_to_f32(packed.baseAddress! + r.lowerBound, g, r.count)
        case .none: narrow(wide.baseAddress! + r.lowerBound, g, r.count)
        }
        if !allFinite(g, r.count) { sawNonFinite = true }
        let t1 = monotonicSeconds()
        stats.packSeconds += t1 - t0
        doneTimes[b] = t1
        done[b] = true
    }

    private var stepBegin = 0.0
    private var lastReady = 0.0

    /// The helper thread of `.thread`: sleeps on `wake` while no bucket is in flight, else tests the
    /// in-flight buckets every `pollInterval`.
    private func startThread() {
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, 1 << 18)
        let context = Unmanaged.passUnretained(self).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, &attr, { context in
            let me = Unmanaged<GradientBuckets>.fromOpaque(context!).takeUnretainedValue()
            me.progressLoop()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed (\(rc))")
        thread = t
    }

    private func progressLoop() {
        let nanos = Int(pollInterval * 1e9)
        var pause = timespec(tv_sec: nanos / 1_000_000_000, tv_nsec: nanos % 1_000_000_000)
        pthread_mutex_lock(lock)
        while !stopThread {
            if !(inStep && firstPending < launchedBuckets) {
                pthread_cond_wait(wake, lock)
                continue
            }
            drive()
            pthread_mutex_unlock(lock)
            nanosleep(&pause, nil)
            pthread_mutex_lock(lock)
        }
        pthread_mutex_unlock(lock)
    }
}

/// How the buckets in flight are moved along while the backward pass computes (Open MPI has no
/// asynchronous progress: an all-reduce advances only inside MPI calls on its rank).
public enum ExchangeProgress: String, Sendable, CaseIterable {
    /// MPI_Test on the in-flight buckets at each readiness call of the backward pass only.
    case poll
    /// Also a helper thread that tests them every poll interval while any is in flight.
    case thread

    /// The helper thread's default interval between tests, seconds.
    public static let defaultInterval = 0.0005
}

/// When the last step's buckets left and came back (monotonicSeconds; 0 for a bucket never launched).
public struct ExchangeTimeline: Sendable {
    /// begin(), the last gradientsReady call (the end of the backward), finish() entered and returned.
    public var begin = 0.0, lastReady = 0.0, finishStart = 0.0, finishEnd = 0.0
    /// Elements per bucket, bucket 0 first.
    public var bucketElements: [Int] = []
    /// Per bucket: all-reduce started, and reduced values written back (as seen by the next test).
    public var launch: [Double] = [], done: [Double] = []
    public init() {}
    public init(begin: Double, lastReady: Double, finishStart: Double, finishEnd: Double, bucketElements: [Int],
                launch: [Double], done: [Double]) {
        self.begin = begin; self.lastReady = lastReady; self.finishStart = finishStart; self.finishEnd = finishEnd
        self.bucketElements = bucketElements; self.launch = launch; self.done = done
    }
}

/// g[i] = fp32(acc[i] + g[i]), g [n], acc [n] (fp64 micro-batch sums folded in before compression).
@inline(__always)
private func foldInto(_ g: UnsafeMutablePointer<Float>, _ acc: UnsafePointer<Double>, _ n: Int) {
    for i in 0..<n { g[i] = Float(acc[i] + Double(g[i])) }
}

/// w[i] = (acc[i] + g[i]) · s in fp64, g [n], acc [n] or nil, w [n].
@inline(__always)
private func widen(_ g: UnsafePointer<Float>, _ acc: UnsafePointer<Double>?, _ w: UnsafeMutablePointer<Double>, _ n: Int, _ s: Double) {
    if let acc {
        for i in 0..<n { w[i] = (acc[i] + Double(g[i])) * s }
    } else {
        for i in 0..<n { w[i] = Double(g[i]) * s }
    }
}

/// g[i] = fp32(w[i]), w [n], g [n].
@inline(__always)
private func narrow(_ w: UnsafePointer<Double>, _ g: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { g[i] = Float(w[i]) }
}

/// True when no element of x [n] is inf or NaN: Σ (x − x) is 0 for finite x and NaN otherwise.
private func allFinite(_ x: UnsafePointer<Float>, _ n: Int) -> Bool {
    // x − x is 0 for a finite x and NaN otherwise; 16 independent lanes (a single running sum is one
    // chain of n dependent additions, which was most of the unpack's time).
    var acc = SIMD16<Float>.zero
    var i = 0
    while i + 16 <= n {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        acc += v - v
        i += 16
    }
    var tail: Float = 0
    while i < n { tail += x[i] - x[i]; i += 1 }
    return acc == .zero && tail == 0
}

/// Seconds from a monotonic clock (also Train's clock for step timing).
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
