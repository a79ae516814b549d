// Throughput measurement of real training steps (the same `Trainer.step` a run uses), with the
// machine's own limits measured alongside: sgemm at the step's shapes and memory bandwidth.
import COpenBLAS
import Foundation
import SeggerDistributed
import SeggerModel
import SeggerTiles

/// What one benchmark run reports (printed as one JSON object by `segger-train bench`).
public struct BenchmarkReport: Codable {
    public var ranks: Int = 0
    public var batchPerRank: Int = 0
    public var steps: Int = 0
    public var architecture: String = ""
    public var msPerStepMedian: Double = 0
    public var msPerStepP10: Double = 0
    public var msPerStepP90: Double = 0
    public var tilesPerS: Double = 0
    public var nodesPerS: Double = 0
    public var edgesPerS: Double = 0
    public var gemmGflopPerStep: Double = 0
    public var achievedGflopS: Double = 0
    public var sgemmGflopSMeasured: Double = 0
    public var memoryBandwidthGBs: Double = 0
    public var floorMsPerStep: Double = 0
    public var ratioToFloor: Double = 0
    public var commWaitMsPerStep: Double = 0
    public var commWaitShare: Double = 0
    public var bytesAllreducedPerStep: Int = 0
    public var peakRSSMB: Double = 0
    /// RSS after the timed steps minus RSS before the trainer was built (model, arena, tiles in flight).
    public var rssGrowthMB: Double = 0
    /// RSS change over the timed steps alone (after warm-up): 0 when memory is flat from step to step.
    public var rssGrowthTimedMB: Double = 0
    public var meanTileTx: Double = 0
    public var meanTileEdges: Double = 0
    public var meanTileLabels: Double = 0
    /// Mean over ranks of the time before the wait (reading, forward, backward), median over steps.
    public var computeMsPerStep: Double = 0
    /// Mean over ranks / max over ranks of that time, averaged over the steps (1 = perfectly balanced).
    public var computeBalance: Double = 0
    /// Time waiting (the step's flag all-reduce and the buckets), mean over ranks and steps, and its split:
    /// waiting for a slower rank's compute, and waiting on the exchange itself beyond that (the two add up
    /// to the mean wait, up to a rank that finished waiting before the slower rank finished computing).
    public var waitMsPerStepMean: Double = 0
    public var waitImbalanceMsPerStep: Double = 0
    public var waitExchangeMsPerStep: Double = 0
    /// How the buckets were driven (poll or thread) and the thread's interval.
    public var exchangeProgress: String = ""
    public var pollIntervalUs: Double = 0
    /// Open MPI's non-blocking all-reduce algorithm in effect (OMPI_MCA_coll_libnbc_iallreduce_algorithm).
    public var iallreduceAlgorithm: String = ""
    /// Rank 0's exchange timeline, medians over the timed steps, ms from the step's begin().
    public var exchangeTimeline: TimelineSummary? = nil
    public init() {}
}

/// Medians over steps of rank 0's `ExchangeTimeline`, in ms from begin() (the start of the step's
/// last tile: forward, then backward).
public struct TimelineSummary: Codable {
    /// The backward's last readiness call, finish() entered (after the step's flag all-reduce) and returned.
    public var backwardEndMs: Double = 0
    public var finishStartMs: Double = 0
    public var finishEndMs: Double = 0
    public var buckets: [Bucket] = []
    public struct Bucket: Codable {
        public var kb: Double = 0
        public var launchMs: Double = 0
        public var doneMs: Double = 0
    }

    public init(_ timelines: [ExchangeTimeline], bytesPerElement: Int) {
        func median(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.sorted()[v.count / 2] }
        let valid = timelines.filter { $0.begin > 0 }
        guard let first = valid.first else { return }
        backwardEndMs = median(valid.map { ($0.lastReady - $0.begin) * 1e3 })
        finishStartMs = median(valid.map { ($0.finishStart - $0.begin) * 1e3 })
        finishEndMs = median(valid.map { ($0.finishEnd - $0.begin) * 1e3 })
        for b in first.bucketElements.indices {
            var bucket = Bucket()
            bucket.kb = Double(first.bucketElements[b] * bytesPerElement) / 1024
            let launches: [Double] = valid.map { ($0.launch[b] - $0.begin) * 1e3 }
            let returns: [Double] = valid.map { ($0.done[b] - $0.begin) * 1e3 }
            bucket.launchMs = median(launches)
            bucket.doneMs = median(returns)
            buckets.append(bucket)
        }
    }
}

/// What `Trainer.timedSteps` measured, step by step (timed steps only).
public struct TimedSteps {
    /// Wall time of each step and the time waiting on the exchange (flag all-reduce + buckets), max over ranks.
    public var times: [Double] = [], waits: [Double] = []
    /// Per step, mean over ranks of the time before the wait (tile reading, forward, backward).
    public var compute: [Double] = []
    /// Per step, mean over ranks / max over ranks of that compute time.
    public var balance: [Double] = []
    /// Per step, mean over ranks of (max compute − own compute): waiting for a slower rank to finish.
    public var imbalance: [Double] = []
    /// Per step, mean over ranks of the wait beyond that: the exchange itself, not hidden by backward.
    public var exchange: [Double] = []
    /// Per step, mean over ranks of the wait.
    public var waitMean: [Double] = []
    /// Rank 0's exchange timeline of each step.
    public var timelines: [ExchangeTimeline] = []
    /// This rank's RSS (MB) when the timed steps began.
    public var rssAtStart = 0.0
}

extension Trainer {
    /// Runs `warmup` + `steps` training steps over the epoch-0 batch sequence (wrapping around) and
    /// returns, for each timed step, its wall time and exchange wait (max over ranks), the compute
    /// balance and the split of the wait into rank imbalance and exchange, and this rank's RSS (MB)
    /// when the timed steps begin.
    public func timedSteps(warmup: Int, steps: Int) throws -> TimedSteps {
        let batches = try epochBatches()
        var out = TimedSteps()
        out.rssAtStart = MachineProbe.currentRSSMB()
        for i in 0..<(warmup + steps) {
            if i == warmup { out.rssAtStart = MachineProbe.currentRSSMB() }
            comm.barrier()
            timing = EpochTiming()
            let t0 = monotonicSeconds()
            _ = try step(batch: batches[i % batches.count], epoch: 0, index: i % batches.count)
            let dt = monotonicSeconds() - t0
            let busy = timing.load + timing.compute
            let m = comm.allreduceMax([dt, timing.wait, busy])
            let behind = m[2] - busy
            let n = Double(comm.size)
            let sums = comm.allreduceSum([busy, behind, max(0, timing.wait - behind), timing.wait])
            if i >= warmup {
                out.times.append(m[0]); out.waits.append(m[1])
                out.compute.append(sums[0] / n)
                out.balance.append(m[2] > 0 ? sums[0] / n / m[2] : 1)
                out.imbalance.append(sums[1] / n)
                out.exchange.append(sums[2] / n)
                out.waitMean.append(sums[3] / n)
                out.timelines.append(buckets.timeline)
            }
        }
        return out
    }

    /// The epoch-0 sequence of global batches (as the benchmark walks it).
    public func epochBatches() throws -> [[Int]] {
        let globalBatch = options.batchSizeTrain * comm.size
        let batches = ShardPlan.globalBatches(tileCount: train.count, globalBatch: globalBatch, ranks: comm.size,
                                              seed: options.seed, epoch: 0, dropLast: true)
        guard !batches.isEmpty else {
            throw CollectiveError("bench: a step takes \(globalBatch) tile(s) (\(comm.size) rank(s) × --batch \(options.batchSizeTrain)) but --tiles \(train.directory) has \(train.count)")
        }
        return batches
    }

    /// Bytes the gradient exchange sends per step.
    public var bytesAllreducedPerStep: Int { buckets.stats.bytesPerStep }
    /// How the gradient buckets are driven (after any fallback) and the thread's interval (s).
    public var exchangeProgress: (ExchangeProgress, Double) { (buckets.progress, buckets.pollInterval) }
    public var worldSize: Int { comm.size }
    public var trainingTiles: TileSet { train }
    public var modelConfig: ModelConfig { options.model }
}

/// Machine limits measured at the shapes a step uses.
public enum MachineProbe {
    /// What the floor is computed from: the seconds of one row-major sgemm C[M,N] = A[M,K]·B[K,N] at each
    /// shape (keyed "MxKxN") and the copy-and-scale bandwidth (read + write bytes per second) over arrays
    /// larger than the caches.
    public struct Limits {
        public var sgemmSeconds: [String: Double]
        public var bandwidth: Double
    }

    /// The key of a shape in `Limits.sgemmSeconds`.
    public static func key(_ s: (m: Int, k: Int, n: Int)) -> String { "\(s.m)x\(s.k)x\(s.n)" }

    /// Measures `Limits` for `shapes`: the fastest of `rounds` passes, each over all the shapes and then the
    /// bandwidth — the machine's limit at each. A busy neighbour on a shared machine only slows runs down,
    /// and in bursts of seconds: interleaving puts a burst into one round of every measurement instead of
    /// into every run of one (run back to back, the median of three sgemm runs printed floors up to 20 %
    /// high, and ratios below 1). A pass runs each shape about 0.2 GFLOP worth of times, at least once.
    public static func limits(shapes: [(m: Int, k: Int, n: Int)], rounds: Int = 5) -> Limits {
        var best: [String: Double] = [:]
        var distinct: [(m: Int, k: Int, n: Int)] = []
        for s in shapes where s.m > 0 && s.k > 0 && s.n > 0 && best[key(s)] == nil {
            best[key(s)] = .infinity
            distinct.append(s)
        }
        let largest = distinct.map { $0.m * max($0.k, $0.n) + $0.k * $0.n }.max() ?? 0
        let a = [Float](repeating: 0.5, count: largest), b = [Float](repeating: 0.25, count: largest)
        var c = [Float](repeating: 0, count: largest)
        let n = 16 << 20
        let x = UnsafeMutableBufferPointer<Float>.allocate(capacity: n); x.initialize(repeating: 1)
        let y = UnsafeMutableBufferPointer<Float>.allocate(capacity: n); y.initialize(repeating: 2)
        defer { x.deallocate(); y.deallocate() }
        var triadBest = Double.infinity
        for _ in 0..<rounds {
            for s in distinct {
                let key = key(s)
                for _ in 0..<max(1, min(50, Int(2e8 / Double(2 * s.m * s.k * s.n)))) {
                    let t0 = monotonicSeconds()
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(s.m), Int32(s.n), Int32(s.k), 1, a, Int32(s.k),
                                b, Int32(s.n), 0, &c, Int32(s.n))
                    best[key] = min(best[key]!, monotonicSeconds() - t0)
                }
            }
            let t0 = monotonicSeconds()
            triad(x, y, n)
            triadBest = min(triadBest, monotonicSeconds() - t0)
        }
        return Limits(sgemmSeconds: best, bandwidth: Double(3 * n * 4) / triadBest)
    }

    @inline(never)
    static func triad(_ a: UnsafeMutableBufferPointer<Float>, _ b: UnsafeMutableBufferPointer<Float>, _ n: Int) {
        for i in 0..<n { a[i] = a[i] + 0.5 * b[i] }
    }

    /// Peak resident set size of this process in MB (VmHWM).
    public static func peakRSSMB() -> Double { statusField("VmHWM") }
    /// Current resident set size in MB (VmRSS).
    public static func currentRSSMB() -> Double { statusField("VmRSS") }

    static func statusField(_ key: String) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return .nan }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? .nan
            return kb / 1024
        }
        return .nan
    }
}

/// The dense-layer work of one training step on one tile, shape by shape (what the floor is made of).
public struct StepShapes {
    /// (M, K, N) of every forward GEMM: Y[M,N] = X[M,K]·Wᵀ. Backward adds dX (M,N,K) and dW (N,M,K).
    public var forward: [(m: Int, k: Int, n: Int)] = []
    /// Bytes the edge kernels must move at least (projections read once, outputs written once).
    public var edgeBytes: Double = 0

    /// Shapes for `tile` under `config`. The belongs relation's source projection counts only the
    /// transcripts that are sources of a belongs edge (the rows that are read).
    public init(tile: Tile, config: ModelConfig) {
        let nTx = tile.numTx, nBd = tile.numBd
        var belongsSources = Set<Int32>()
        for s in tile.belongs.src { belongsSources.insert(s) }
        let nBs = belongsSources.count
        let hidden = config.heads * config.hiddenChannels, out = config.heads * config.outChannels
        var din = config.initEmb
        if let c = config.txFeatureDim { forward.append((nTx, c, config.initEmb)) }
        forward.append((nBd, config.bdFeatureDim, config.initEmb))
        let widths = [hidden] + Array(repeating: hidden, count: config.midLayers) + [out]
        for d in widths {
            forward.append((nTx, din, 2 * d))            // neighbors: lin_l and lin_r read the same rows
            forward.append((nBs, din, d))                // belongs lin_l, only rows that are read
            forward.append((nBd, din, d))                // belongs lin_r
            if config.residual {
                forward.append((nTx, din, d))
                forward.append((nBd, din, d))
            }
            // Forward reads xl, xr and writes out; backward reads them again plus dout and writes dxl, dxr.
            let floats = Double(nTx * 2 + nTx + nBs + nBd * 2) * Double(d)
            edgeBytes += floats * 4 * 3
            din = d
        }
    }

    public var gemmFlops: Double {
        forward.reduce(0) { $0 + 3 * 2 * Double($1.m) * Double($1.k) * Double($1.n) }
    }

    /// Every sgemm shape of the step (forward, dX and dW of each forward GEMM), as `MachineProbe` takes them.
    public var gemmShapes: [(m: Int, k: Int, n: Int)] {
        forward.flatMap { s in [(s.m, s.k, s.n), (s.m, s.n, s.k), (s.n, s.m, s.k)] }
    }

    /// Seconds the step's GEMMs take at the sgemm speeds `probed` (`MachineProbe.Limits.sgemmSeconds`).
    public func gemmFloorSeconds(probed: [String: Double]) -> Double {
        gemmShapes.reduce(0) { $0 + (probed[MachineProbe.key($1)] ?? 0) }
    }
}
