// Overlap measurement: a model-sized gradient buffer (~350k floats in 40 tensors) and a simulated
// backward pass (a spin of `backwardMs` spread over the tensors in proportion to their size). Time spent
// in finish() with readiness reported after every tensor (buckets leave during backward and are driven
// by MPI_Test) against readiness reported only at the end (everything leaves in finish()).
import Foundation
import SeggerDistributed
import SeggerRandom

func runBench(arguments: [String]) -> Never {
    guard let comm = try? Communicator.world() else { exit(3) }
    let backwardMs = Double(arguments.first ?? "") ?? 30
    var rng = SplitMix64(seed: 3)
    var params: [Range<Int>] = []
    var offset = 0
    for _ in 0..<40 {
        let n = 1000 + rng.below(16_500)
        params.append(offset..<(offset + n))
        offset += n
    }
    let total = offset
    let gradients = UnsafeMutableBufferPointer<Float>.allocate(capacity: total)
    let values = randomGradients(count: total, rank: comm.rank, step: 0)
    if comm.isRoot {
        print("bench: \(comm.size) ranks, \(total) floats in \(params.count) tensors, simulated backward \(backwardMs) ms")
    }
    for compression in [GradientCompression.fp16, .none] {
        for capBytes in [65_536, 262_144, 1 << 24] {
            let buckets = GradientBuckets(communicator: comm, gradients: gradients, parameterRanges: params,
                                          capBytes: capBytes, compression: compression)
            // Modes: 0 readiness after every tensor, 1 readiness only at the end, 2 exchange alone
            // (no backward: the all-reduce time that overlap can hide).
            for mode in 0..<3 {
                var finishTimes: [Double] = []
                for step in 0..<45 {
                    comm.barrier()
                    buckets.begin(preScale: 0.5)
                    for range in params.reversed() {
                        for i in range { gradients[i] = values[i] }
                        if mode != 2 { spin(seconds: backwardMs * 1e-3 * Double(range.count) / Double(total)) }
                        if mode == 0 { buckets.gradientsReady(from: range.lowerBound) }
                    }
                    let t0 = monotonic()
                    if mode == 2 { buckets.gradientsReady(from: 0) }
                    _ = buckets.finish()
                    if step >= 5 { finishTimes.append(monotonic() - t0) }
                }
                finishTimes.sort()
                let m = comm.allreduceMax([finishTimes[0], finishTimes[finishTimes.count / 2]])
                if comm.isRoot {
                    let label = ["ready after each tensor", "ready only at the end  ", "exchange alone         "][mode]
                    print(String(format: "bench %@ cap %8d B, %2d buckets, %@: finish() min %6.2f ms, median %6.2f ms",
                                 compression.rawValue, capBytes, buckets.bucketRanges.count, label,
                                 m[0] * 1e3, m[1] * 1e3))
                    fflush(stdout)
                }
            }
        }
    }
    exit(0)
}

/// All-reduce time against message size, run as the gradient buckets run it: one bucket holding the
/// whole buffer, packed (fp32 → fp16, or → fp64 for none), one MPI_Iallreduce in place, MPI_Wait
/// (`.poll`: no helper thread), unpacked; every rank starts together after a barrier. For each size
/// (bytes on the wire per rank, powers of two from `--min_bytes` to `--max_bytes`) rank 0 prints one
/// JSON line with the median and fastest of `--reps` runs (max over ranks) and the packing time:
///   {"ranks":2,"compression":"fp16","bytes":65536,"median_ms":…,"min_ms":…,"pack_ms":…,"algbw_gbit_s":…}
/// algbw = bytes / (median − pack): the buffer over the time on the network (Rabenseifner's or a ring's
/// all-reduce moves 2(P−1)/P of it each way).
func runSweep(arguments: [String]) -> Never {
    guard let comm = try? Communicator.world() else { exit(3) }
    var compression = GradientCompression.fp16
    var minBytes = 1 << 10, maxBytes = 1 << 23, reps = 15
    var i = 0
    while i < arguments.count {
        let value = i + 1 < arguments.count ? arguments[i + 1] : ""
        switch arguments[i] {
        case "--compression": compression = GradientCompression(rawValue: value) ?? compression
        case "--min_bytes": minBytes = Int(value) ?? minBytes
        case "--max_bytes": maxBytes = Int(value) ?? maxBytes
        case "--reps": reps = Int(value) ?? reps
        default:
            if comm.isRoot { fputs("usage: mpi-selftest sweep [--compression fp16|bf16|none] [--min_bytes B] [--max_bytes B] [--reps N]\n", stderr) }
            exit(2)
        }
        i += 2
    }
    guard minBytes >= 8, maxBytes >= minBytes, reps >= 1 else { exit(2) }
    let floats = UnsafeMutableBufferPointer<Float>.allocate(capacity: maxBytes / compression.bytesPerElement)
    var bytes = minBytes
    while bytes <= maxBytes {
        let n = bytes / compression.bytesPerElement
        let g = UnsafeMutableBufferPointer(rebasing: floats[0..<n])
        let buckets = GradientBuckets(communicator: comm, gradients: g, parameterRanges: [0..<n], capBytes: 4 * n,
                                      compression: compression, progress: .poll)
        var times: [Double] = [], packs: [Double] = []
        for rep in 0..<(reps + 2) {
            for k in 0..<n { g[k] = 1 }
            let pack0 = buckets.stats.packSeconds
            comm.barrier()
            let t0 = monotonic()
            buckets.begin(preScale: 1)
            buckets.gradientsReady(from: 0)
            _ = buckets.finish()
            let m = comm.allreduceMax([monotonic() - t0, buckets.stats.packSeconds - pack0])
            if rep >= 2 { times.append(m[0]); packs.append(m[1]) }
        }
        times.sort(); packs.sort()
        if comm.isRoot {
            let median = times[times.count / 2], pack = packs[packs.count / 2]
            print(String(format: "{\"ranks\":%d,\"compression\":\"%@\",\"bytes\":%d,\"median_ms\":%.4f,\"min_ms\":%.4f,\"pack_ms\":%.4f,\"algbw_gbit_s\":%.4f}",
                         comm.size, compression.rawValue, bytes, median * 1e3, times[0] * 1e3, pack * 1e3,
                         Double(bytes) * 8 / max(median - pack, 1e-9) / 1e9))
            fflush(stdout)
        }
        bytes *= 2
    }
    floats.deallocate()
    exit(0)
}

func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Busy-waits (stands in for backward compute, which keeps the core busy too).
func spin(seconds: Double) {
    let end = monotonic() + seconds
    while monotonic() < end {}
}
