import ArgumentParser
import Foundation
import SeggerDistributed
import SeggerModel
import SeggerTiles
import SeggerTrain

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time real training steps and print one JSON object (Scripts/bench runs it, with mpirun for N ranks).",
        discussion: """
        Runs --warmup untimed and --steps timed training steps (forward, backward, gradient exchange, clip,
        AdamW) over the tiles, and measures on this machine: sgemm at the step's own GEMM shapes and memory
        bandwidth. The floor is the step's GEMM time at that sgemm speed plus the edge kernels' minimum bytes at
        that bandwidth; ratio_to_floor = median step time / floor.
        """)

    @Option(name: .customLong("tiles"), help: "Tile directory to train on.")
    var tiles: String
    @Option(name: .customLong("batch"), help: "Tiles per rank per step.")
    var batch: Int = 1
    @Option(name: .customLong("steps"), help: "Timed steps.")
    var steps: Int = 20
    @Option(name: .customLong("warmup"), help: "Untimed steps first.")
    var warmup: Int = 3
    @Option(name: .customLong("grad_compression"), help: "Gradient exchange format.")
    var gradCompression: GradientCompression = .fp16
    @Option(name: .customLong("num_threads"), help: "OpenBLAS threads per rank (default 1).")
    var numThreads: Int?
    @Option(name: .customLong("bucket_cap_mb"), help: "Gradient bucket size cap in MB of fp32 gradient.")
    var bucketCapMB: Double = TrainOptions().bucketCapMB
    @Option(name: .customLong("exchange_progress"), help: "How buckets in flight are driven: thread (a helper thread tests them every --poll_interval_us) or poll (only at the backward's readiness calls).")
    var exchangeProgress: ExchangeProgress = TrainOptions().exchangeProgress
    @Option(name: .customLong("poll_interval_us"), help: "The helper thread's interval between tests, µs.")
    var pollIntervalUs: Double = TrainOptions().exchangePollInterval * 1e6
    @Option(name: .customLong("loss_reduction"), help: "global_mean (tile counts per rank may differ, for balance) or rank_mean (equal counts).")
    var lossReduction: LossReduction = .globalMean
    @Flag(name: .customLong("epoch"), help: "Walk epoch 0 exactly once: --warmup steps, then the rest of the epoch timed (--steps is ignored).")
    var epoch = false

    @OptionGroup var model: ModelOptions
    @OptionGroup var opt: OptimizerOptions

    func run() throws {
        let comm: Communicator
        do { comm = try Communicator.world() } catch { fail("MPI initialization failed: \(error)") }
        runOnEveryRank(comm) {
            // Checked on every rank, not in validate(), for the reason given at Train.options.
            try Flags.path("tiles", tiles)
            try Flags.int("batch", batch, 1...65_536)
            try Flags.int("steps", steps, 1...1_000_000)
            try Flags.real("bucket_cap_mb", bucketCapMB, 0...1_048_576, openBelow: true)
            try Flags.real("poll_interval_us", pollIntervalUs, 1...999_999)
            try Flags.int("warmup", warmup, 0...1_000_000)
            try checkThreads(numThreads)
            _ = try TileFiles.list(tiles, flag: "tiles")  // the trainer would name the directory --train_dir
            configureThreads(numThreads)
            var o = TrainOptions()
            o.trainDir = tiles
            // A directory of its own for the trainer's outputs (removed at the end).
            o.rootDir = FileManager.default.temporaryDirectory
                .appendingPathComponent("segger-bench-\(getpid())-\(UUID().uuidString.prefix(8))").path
            o.batchSizeTrain = batch
            o.model = try model.config()
            o.optimizer = try opt.config()
            o.compression = gradCompression
            o.bucketCapMB = bucketCapMB
            o.lossReduction = lossReduction
            o.exchangeProgress = exchangeProgress
            o.exchangePollInterval = pollIntervalUs * 1e-6
            o.epochs = 1
            o.progressSeconds = 1e9
            // Only rank 0 creates the directory (the trainer's outputs); it goes whatever happens next.
            defer { if comm.isRoot { try? FileManager.default.removeItem(atPath: o.rootDir) } }
            let rssStart = MachineProbe.currentRSSMB()
            let trainer = try Trainer(options: o, comm: comm)
            var timedCount = steps
            if epoch {
                let n = try trainer.epochBatches().count
                guard n > warmup else { throw CollectiveError("bench --epoch: the epoch has \(n) steps, not more than --warmup \(warmup)") }
                timedCount = n - warmup
            }
            let measured = try trainer.timedSteps(warmup: warmup, steps: timedCount)
            let (times, waits, rssTimed) = (measured.times, measured.waits, measured.rssAtStart)
            let rssAfter = MachineProbe.currentRSSMB()
            let peak = comm.allreduceMax([MachineProbe.peakRSSMB(), rssAfter - rssStart, rssAfter - rssTimed])
            guard comm.isRoot else { return }
            // Per-tile work and the floor, from the tiles actually used.
            let set = trainer.trainingTiles
            var flops = 0.0, gemmSeconds = 0.0, edgeBytes = 0.0, tx = 0.0, edges = 0.0, labels = 0.0
            let sample = Array(set.paths.prefix(8))
            var shapes: [StepShapes] = []
            for p in sample {
                let t = try Tile.read(path: p)
                shapes.append(StepShapes(tile: t, config: trainer.modelConfig))
                tx += Double(t.numTx); edges += Double(t.neighbors.count + t.belongs.count); labels += Double(t.numLabels)
            }
            let limits = MachineProbe.limits(shapes: shapes.flatMap { $0.gemmShapes })
            for s in shapes {
                flops += s.gemmFlops
                gemmSeconds += s.gemmFloorSeconds(probed: limits.sgemmSeconds)
                edgeBytes += s.edgeBytes
            }
            let n = Double(sample.count)
            let tilesPerStepPerRank = Double(batch)
            let bandwidth = limits.bandwidth
            let gemmFloor = gemmSeconds / n * tilesPerStepPerRank
            let floor = gemmFloor + edgeBytes / n * tilesPerStepPerRank / bandwidth
            let sorted = times.sorted()
            func pct(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int(q * Double(sorted.count - 1) + 0.5))] }
            let median = pct(0.5)
            let tilesPerStep = tilesPerStepPerRank * Double(comm.size)
            let wait = waits.sorted()[waits.count / 2]
            var report = BenchmarkReport()
            report.ranks = comm.size
            report.batchPerRank = batch
            report.steps = timedCount
            report.architecture = trainer.modelConfig.residual ? "documented" : "segger-main"
            report.msPerStepMedian = median * 1e3
            report.msPerStepP10 = pct(0.1) * 1e3
            report.msPerStepP90 = pct(0.9) * 1e3
            report.tilesPerS = tilesPerStep / median
            report.nodesPerS = tilesPerStep * tx / n / median
            report.edgesPerS = tilesPerStep * edges / n / median
            report.gemmGflopPerStep = flops / n * tilesPerStepPerRank / 1e9
            report.achievedGflopS = flops / n * tilesPerStepPerRank / median / 1e9
            report.sgemmGflopSMeasured = flops / n / (gemmSeconds / n) / 1e9
            report.memoryBandwidthGBs = bandwidth / 1e9
            report.floorMsPerStep = floor * 1e3
            report.ratioToFloor = median / floor
            report.commWaitMsPerStep = wait * 1e3
            report.commWaitShare = wait / median
            report.bytesAllreducedPerStep = trainer.bytesAllreducedPerStep
            report.peakRSSMB = peak[0]
            report.rssGrowthMB = peak[1]
            report.rssGrowthTimedMB = peak[2]
            report.meanTileTx = tx / n
            report.meanTileEdges = edges / n
            report.meanTileLabels = labels / n
            func mid(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
            report.computeMsPerStep = mid(measured.compute) * 1e3
            report.computeBalance = measured.balance.reduce(0, +) / Double(measured.balance.count)
            func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(v.count) }
            report.waitMsPerStepMean = mean(measured.waitMean) * 1e3
            report.waitImbalanceMsPerStep = mean(measured.imbalance) * 1e3
            report.waitExchangeMsPerStep = mean(measured.exchange) * 1e3
            let (progress, interval) = trainer.exchangeProgress
            report.exchangeProgress = progress.rawValue
            report.pollIntervalUs = progress == .thread ? interval * 1e6 : 0
            report.iallreduceAlgorithm = ProcessInfo.processInfo.environment["OMPI_MCA_coll_libnbc_iallreduce_algorithm"] ?? "default"
            if comm.size > 1 {
                report.exchangeTimeline = TimelineSummary(measured.timelines, bytesPerElement: gradCompression.bytesPerElement)
            }
            try printJSONLine(report)
        }
    }
}

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels",
        abstract: "Time the fused GATv2 edge kernels alone and print one JSON object (ns per edge).",
        discussion: """
        A synthetic destination-grouped graph like the kNN relation after the trainer's breadth-first \
        order (--degree edges per destination, sources within ±12 rows except a --far fraction drawn \
        anywhere), --heads × --channels wide. Forward with relu and its mask, then backward as the model \
        calls it; medians over --reps passes. Small --rows (e.g. 300) stay in the caches and measure the \
        kernels' arithmetic; 5000 is the size of the benchmark tiles.
          segger-train bench-kernels --rows 300 --reps 3000
          segger-train bench-kernels --rows 5000
        """)

    @Option(help: "Destinations (and sources).")
    var rows: Int = 5000
    @Option(help: "Edges per destination.")
    var degree: Int = 3
    @Option(help: "Fraction of the sources drawn anywhere instead of near their destination.")
    var far: Double = 0.12
    @Option(help: "Attention heads.")
    var heads: Int = 4
    @Option(help: "Channels per head.")
    var channels: Int = 64
    @Option(help: "Passes (the first three are not timed).")
    var reps: Int = 300
    @Option(help: "Seed of the synthetic graph and values.")
    var seed: UInt64 = 1

    func validate() throws {
        try Flags.int("rows", rows, 1...(1 << 24))
        try Flags.int("degree", degree, 1...1024)
        try Flags.int("heads", heads, 1...1024)
        try Flags.int("channels", channels, 1...65_536)
        try Flags.int("reps", reps, 4...1_000_000, "three untimed passes first")
        try Flags.real("far", far, 0...1)
        guard Double(rows) * Double(degree) < Double(Int32.max) else {
            throw ValidationError("--rows \(rows) × --degree \(degree) edges exceed the kernels' 32-bit edge indices")
        }
        // Buffers: y, dy [rows, 2·W], out, dOut [rows, W], alpha [E, H], edge lists [E] (×2 while growing).
        let W = Double(heads) * Double(channels), E = Double(rows) * Double(degree)
        let need = 4 * (Double(rows) * 6 * W + E * (Double(heads) + 4)) + 64 * 1_048_576
        let budget = MachineMemory.budget()
        if need > budget.bytes {
            throw ValidationError("--rows \(rows) --degree \(degree) --heads \(heads) --channels \(channels) need an estimated \(MachineMemory.format(need)), more than the \(MachineMemory.format(budget.bytes)) available (\(budget.source))")
        }
    }

    func run() throws {
        let report = EdgeKernelBenchmark.run(rows: rows, degree: degree, far: far, heads: heads, channels: channels,
                                             reps: reps, seed: seed)
        try printJSONLine(report)
    }
}

/// Prints `report` as one JSON line, snake_case keys in sorted order (what Scripts/bench parses).
func printJSONLine<T: Encodable>(_ report: T) throws {
    let enc = JSONEncoder()
    enc.keyEncodingStrategy = .convertToSnakeCase
    enc.outputFormatting = [.sortedKeys]
    print(String(decoding: try enc.encode(report), as: UTF8.self))
}
