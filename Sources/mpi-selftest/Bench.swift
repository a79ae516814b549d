// Overlap measurement: a model-sized gradient buffer (~350k floats in 40 tensors) and a simulated
// backward pass (a spin of `backwardMs` spread over the tensors in proportion to their size). Time spent
// in finish() with readiness reported after every tensor (buckets leave during backward and are driven
// by MPI_Test) against readiness reported only at the end (everything leaves in finish()).
import Foundation
import SeggerDistributed

func runBench(arguments: [String]) -> Never {
    guard let comm = try? Communicator.world() else { exit(3) }
    let backwardMs = Double(arguments.first ?? "") ?? 30
    var rng = ShardPlan.SplitMix64(seed: 3)
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
