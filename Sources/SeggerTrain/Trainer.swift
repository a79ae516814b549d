// The training loop: the one place where tiles, model, optimizer and communicator meet.
//
// One step, on every rank:
//   global batch (seeded, rank-independent) → this rank's tiles (balanced by cost)
//   → per tile: forward, backward of Σ bce / L_global, gradients accumulated in Double
//     (the last tile's gradients leave in buckets for the all-reduce as its layers finish)
//   → wait for the buckets → clip → AdamW → (rank 0) log, checkpoint.
// Per-tile forward/backward is PyG's disjoint-union batch computed tile by tile: mathematically the
// same, and it makes each tile's gradient independent of how tiles are grouped, so N ranks compute what
// one rank computes on the same global batch.
import Foundation
import SafeTensors
import SeggerDistributed
import SeggerModel
import SeggerTiles

/// What a finished run reports.
public struct TrainSummary: Sendable {
    public var position: TrainingPosition
    public var lastValidation: BinaryMetrics?
    public var weightsDigest: String
    public var preempted: Bool
    public var outputDir: String?
}

public final class Trainer {
    let options: TrainOptions
    let comm: Communicator
    let model: SeggerModel
    let optimizer: Optimizer
    let buckets: GradientBuckets
    let train: TileSet
    let val: TileSet?
    /// Start-up validation reads every tensor; the per-step re-reads of those tiles skip positions
    /// and ids (training uses neither).
    let readOptions: TileReadOptions
    let stepReadOptions: TileReadOptions
    let out: RunDirectory?
    let progress: Progress
    var position: TrainingPosition
    /// Double accumulator for the gradients of a rank's tiles within one step.
    let accumulator: UnsafeMutableBufferPointer<Double>
    var lastValidation: BinaryMetrics?
    var savedCheckpoints: [String] = []
    var consecutiveOverflow = 0
    var timing = EpochTiming()

    struct EpochTiming {
        var load = 0.0, compute = 0.0, wait = 0.0, steps = 0, tiles = 0, edges = 0
    }

    /// Prints on rank 0 only.
    func say(_ text: String) { progress.line(text) }

    // MARK: - Start-up

    /// Prepares a run: scans the tiles, builds the model (rank 0's weights broadcast to all), restores
    /// a checkpoint when resuming, and checks that every rank agrees on config and data.
    public init(options: TrainOptions, comm: Communicator) throws {
        var options = options
        self.comm = comm
        progress = Progress(enabled: comm.isRoot, plainInterval: options.progressSeconds)
        readOptions = TileReadOptions(numTxTokens: options.model.txFeatureDim == nil ? options.model.numTxTokens : nil)
        stepReadOptions = TileReadOptions(numTxTokens: readOptions.numTxTokens, positionsAndIDs: false)

        // Output directory first: a bad --default_root_dir fails before any work.
        var outError: String? = nil
        var runDir: RunDirectory? = nil
        if comm.isRoot {
            do { runDir = try RunDirectory(root: options.rootDir) } catch { outError = "\(error)" }
        }
        let outStatus = comm.broadcast(bytes: Array((outError ?? "").utf8))
        if !outStatus.isEmpty { throw CollectiveError(String(decoding: outStatus, as: UTF8.self)) }
        out = runDir

        // Resume: rank 0 looks at the disk and reads the checkpoint; the others receive its contents.
        var resumeError = ""
        var resumeFrom = ""
        if comm.isRoot {
            let last = ((options.rootDir as NSString).appendingPathComponent("checkpoints") as NSString)
                .appendingPathComponent("last.safetensors")
            switch options.resume {
            case .none: break
            case .auto: if FileManager.default.fileExists(atPath: last) { resumeFrom = last }
            case .last:
                if FileManager.default.fileExists(atPath: last) { resumeFrom = last } else {
                    resumeError = "--resume last: no checkpoint at \(last)"
                }
            case .path(let p): resumeFrom = p
            }
        }
        let rs = comm.broadcast(bytes: Array(resumeError.utf8))
        if !rs.isEmpty { throw CollectiveError(String(decoding: rs, as: UTF8.self)) }
        let resumePath = String(decoding: comm.broadcast(bytes: Array(resumeFrom.utf8)), as: UTF8.self)

        var checkpoint: Checkpoint? = nil
        var ckptError: String? = nil
        if comm.isRoot, !resumePath.isEmpty {
            let path = resumePath
            do { checkpoint = try Checkpoint.read(path: path) } catch { ckptError = "cannot resume: \(error)" }
            if let c = checkpoint {
                let diff = c.model.differences(from: options.model)
                if !diff.isEmpty {
                    ckptError = "cannot resume from \(path): its model config differs from the flags:\n  "
                        + diff.joined(separator: "\n  ")
                }
            }
        }
        let ckStatus = comm.broadcast(bytes: Array((ckptError ?? "").utf8))
        if !ckStatus.isEmpty { throw CollectiveError(String(decoding: ckStatus, as: UTF8.self)) }

        // Tiles: validated once, the reading split over the ranks.
        let t0 = monotonicSeconds()
        options.trainDir = TileDirectory.resolve(options.trainDir, split: "train")
        options.valDir = options.valDir.map { TileDirectory.resolve($0, split: "val") }
        train = try TileSet.scan(options.trainDir, options: readOptions, skipBad: options.skipBadTiles, comm: comm)
        if let v = options.valDir {
            val = try TileSet.scan(v, options: readOptions, skipBad: options.skipBadTiles, comm: comm)
        } else {
            val = nil
        }
        if train.count < comm.size {
            throw CollectiveError("\(options.trainDir) has \(train.count) tile(s), fewer than the \(comm.size) ranks: every rank needs at least one tile")
        }
        // The tiles decide embedding mode and feature widths.
        options.model.txFeatureDim = train.txFeatureDim
        options.model.bdFeatureDim = train.bdFeatureDim ?? options.model.bdFeatureDim
        if let v = val, v.txFeatureDim != train.txFeatureDim || v.bdFeatureDim != train.bdFeatureDim {
            throw CollectiveError("validation tiles (\(v.directory)) have different feature widths than the training tiles")
        }
        self.options = options

        // Model: rank 0 initializes (or loads), every rank receives the same weights.
        model = SeggerModel(config: options.model, seed: options.seed)
        optimizer = Optimizer(config: options.optimizer, parameterCount: model.parameterCount)
        var loadError: String? = nil
        if comm.isRoot {
            do {
                if let c = checkpoint {
                    try model.loadWeights(c.weights, source: c.path)
                    try optimizer.loadState(c.tensors, source: c.path)
                } else if let w = options.initWeights {
                    try model.loadWeights(try Trainer.readWeights(w), source: w)
                }
            } catch { loadError = "\(error)" }
        }
        let loadStatus = comm.broadcast(bytes: Array((loadError ?? "").utf8))
        if !loadStatus.isEmpty { throw CollectiveError(String(decoding: loadStatus, as: UTF8.self)) }
        comm.broadcast(model.weights)
        comm.broadcast(optimizer.expAvg)
        comm.broadcast(optimizer.expAvgSq)
        var pos = checkpoint?.position ?? TrainingPosition(seed: options.seed, worldSize: comm.size,
                                                           batchSizeTrain: options.batchSizeTrain)
        if comm.isRoot { pos.worldSize = checkpoint?.position?.worldSize ?? comm.size }
        let posBytes = comm.broadcast(bytes: Array(String(decoding: try JSONEncoder().encode(pos), as: UTF8.self).utf8))
        position = try JSONDecoder().decode(TrainingPosition.self, from: Data(posBytes))
        optimizer.step = Int(comm.broadcastInt(optimizer.step))

        // Every rank must agree on config, parameters and data; say what differs.
        let signature = [
            "model config " + options.model.json,
            "optimizer " + options.optimizer.json,
            "parameters " + model.parameters.map { "\($0.name)\($0.shape)" }.joined(separator: ","),
            "train tiles \(train.count) digest \(train.listingDigest)",
            "val tiles \(val?.count ?? 0) digest \(val?.listingDigest ?? "-")",
            "batch \(options.batchSizeTrain) seed \(options.seed) compression \(options.compression.rawValue) reduction \(options.lossReduction.rawValue)",
        ]
        let everyone = comm.allgather(signature.joined(separator: "\n"))
        for (r, text) in everyone.enumerated() where text != everyone[0] {
            let theirs = text.split(separator: "\n").map(String.init)
            let first = zip(signature.indices, theirs).first { everyone[0].split(separator: "\n")[$0.0] != Substring($0.1) }
            let what = first.map { String($0.1.prefix(200)) } ?? "(signature length)"
            throw CollectiveError("rank \(r) disagrees with rank 0 on: \(what)")
        }

        // Gradient buckets over the flat gradient buffer (reverse parameter order, capped size).
        buckets = GradientBuckets(communicator: comm, gradients: model.gradients,
                                  parameterRanges: model.parameters.map(\.range),
                                  capBytes: max(4096, Int(options.bucketCapMB * 1_048_576)),
                                  compression: options.compression, progress: options.exchangeProgress,
                                  pollInterval: options.exchangePollInterval)
        accumulator = .allocate(capacity: model.parameterCount)
        accumulator.initialize(repeating: 0)
        try reserveForLargestTiles()

        if comm.isRoot, let out {
            try out.writeHyperparameters(options.hyperparameters)
        }
        let scan = monotonicSeconds() - t0
        say("segger-train: \(comm.size) rank(s), \(train.count) training tiles" +
            (val.map { ", \($0.count) validation tiles" } ?? "") +
            " (scanned in \(String(format: "%.1f", scan)) s), \(model.parameterCount) parameters in \(model.parameters.count) tensors, " +
            "\(options.model.txFeatureDim == nil ? "token" : "embedding") mode, " +
            "\(options.model.residual ? "documented" : "segger-main") architecture, \(buckets.bucketRanges.count) gradient bucket(s), " +
            "\(options.compression.rawValue) gradient exchange\(comm.size == 1 ? "" : buckets.progress == .thread ? " (progress thread)" : " (polled)"), \(BLASKernels.summary), \(BLASThreads.current) BLAS thread(s) per rank")
        let bad = train.bad.count + (val?.bad.count ?? 0)
        if bad > 0 { say("skipped \(bad) bad tile(s) (--skip_bad_tiles); first: \(train.bad.first?.error ?? val?.bad.first?.error ?? "")") }
        let replaced = train.nonFiniteReplaced + (val?.nonFiniteReplaced ?? 0)
        if replaced > 0 { say("warning: replaced \(replaced) NaN/inf feature value(s) as torch.nan_to_num does") }
        if let c = checkpoint {
            say("resumed from \(c.path): epoch \(position.epoch), batch \(position.batchInEpoch), step \(position.globalStep)")
            if position.worldSize != comm.size {
                say("warning: the checkpoint was written by \(position.worldSize) rank(s), this run has \(comm.size): the global batch size changes, so the run will not reproduce an uninterrupted one")
            }
        }
    }

    deinit {
        accumulator.deallocate()
    }

    /// Starting weights: safetensors (PyG names, with or without `model.`), or a Lightning `.ckpt` /
    /// torch `state_dict` file as segger writes them.
    static func readWeights(_ path: String) throws -> [String: Tensor] {
        do {
            if path.hasSuffix(".ckpt") || path.hasSuffix(".pt") || path.hasSuffix(".pth") {
                return try TorchCheckpoint.readStateDict(path: path)
            }
            return try SafeTensorsFile.read(path: path).tensors
        } catch {
            throw CollectiveError("--init_weights: \(error)")
        }
    }

    // MARK: - The loop

    /// Trains until `options.epochs` (or `maxSteps`, or a stop signal).
    public func run() throws -> TrainSummary {
        let globalBatch = options.batchSizeTrain * comm.size
        var preempted = false
        epochLoop: while position.epoch < options.epochs {
            let epoch = position.epoch
            let batches = ShardPlan.globalBatches(tileCount: train.count, globalBatch: globalBatch, seed: options.seed,
                                                  epoch: epoch, dropLast: options.dropLast)
            var epochLoss = 0.0, epochLabels = 0.0
            timing = EpochTiming()
            let epochStart = monotonicSeconds()
            while position.batchInEpoch < batches.count {
                let b = position.batchInEpoch
                let result = try step(batch: batches[b], epoch: epoch, index: b)
                position.batchInEpoch += 1
                position.batchesSeen += 1
                if result.taken { position.globalStep += 1 } else { position.skippedSteps += 1 }
                epochLoss += result.lossSum
                epochLabels += result.labels
                if out != nil, position.globalStep % max(1, options.logEveryNSteps) == 0, result.taken {
                    out?.log(["epoch": "\(epoch)", "step": "\(position.globalStep)",
                              "train_loss": RunDirectory.cell(result.lossSum / max(1, result.labels)),
                              "grad_norm": RunDirectory.cell(result.gradNorm), "lr": "\(options.optimizer.lr)"])
                }
                let elapsed = monotonicSeconds() - epochStart
                progress.update(String(format: "epoch %d/%d  batch %d/%d  step %d  loss %.4f  %.1f tiles/s",
                                       epoch + 1, options.epochs, b + 1, batches.count, position.globalStep,
                                       epochLoss / max(1, epochLabels),
                                       Double(timing.tiles * comm.size) / max(elapsed, 1e-9)))
                if result.stop {
                    preempted = true
                    break epochLoop
                }
                if let m = options.maxSteps, position.globalStep >= m { break epochLoop }
            }
            // End of epoch: validation, metrics, checkpoint, replica check.
            position.epoch += 1
            position.batchInEpoch = 0
            let trainLoss = epochLoss / max(1, epochLabels)
            try endOfEpoch(epoch: epoch, trainLoss: trainLoss, seconds: monotonicSeconds() - epochStart)
        }
        if preempted || (options.maxSteps != nil && position.batchInEpoch > 0) {
            try saveCheckpoint(epochFile: false)
            if preempted {
                say("preempted: checkpoint written at epoch \(position.epoch) step \(position.globalStep)")
            }
        }
        let digest = try checkReplicas()
        return TrainSummary(position: position, lastValidation: lastValidation, weightsDigest: digest,
                            preempted: preempted, outputDir: out?.root)
    }

    struct StepResult {
        var taken: Bool
        var lossSum: Double
        var labels: Double
        var gradNorm: Double
        var stop: Bool
    }

    /// One optimizer step over one global batch.
    func step(batch: [Int], epoch: Int, index: Int) throws -> StepResult {
        // The global mean does not depend on the split: tile counts may differ between ranks (balance).
        let shards = ShardPlan.split(batch, costs: train.costs, ranks: comm.size,
                                     equalCounts: options.lossReduction == .rankMean)
        let mine = shards[comm.rank]
        let localLabels = mine.reduce(0) { $0 + train.labelCounts[$1] }
        let globalLabels = batch.reduce(0) { $0 + train.labelCounts[$1] }
        // Scale of Σ bce in the backward, and of the gradients before the exchange.
        let lossScale: Float
        let preScale: Float
        switch options.lossReduction {
        case .globalMean:
            lossScale = globalLabels > 0 ? 1 / Float(globalLabels) : 0
            preScale = 1
        case .rankMean:
            lossScale = localLabels > 0 ? 1 / Float(localLabels) : 0
            preScale = 1 / Float(comm.size)
        }

        // Forward/backward per tile; earlier tiles accumulate in fp64, and the last tile's gradients
        // (plus that sum) leave in buckets for the all-reduce as its layers finish.
        let work = mine.filter { train.labelCounts[$0] > 0 }
        buckets.begin(preScale: preScale, accumulated: work.count > 1 ? accumulator : nil)
        var lossSum = 0.0
        var nanTile: String? = nil
        let g = model.gradients
        if work.isEmpty {
            for i in 0..<g.count { g[i] = 0 }
            buckets.gradientsReady(from: 0)
        }
        for (k, tileIndex) in work.enumerated() {
            let tl = monotonicSeconds()
            let tile: Tile
            do { tile = try Tile.read(path: train.paths[tileIndex], options: stepReadOptions) } catch {
                throw RankError("rank \(comm.rank): cannot read \(train.paths[tileIndex]) (it validated at start-up): \(error)")
            }
            let tc = monotonicSeconds()
            timing.load += tc - tl
            timing.tiles += 1
            timing.edges += tile.neighbors.count + tile.belongs.count
            let loss = model.forward(tile)
            if !loss.isFinite { nanTile = nanTile ?? train.paths[tileIndex] }
            lossSum += loss
            if k == work.count - 1 {
                model.backward(lossScale: lossScale) { [buckets] offset in buckets.gradientsReady(from: offset) }
            } else {
                model.backward(lossScale: lossScale)
                let acc = accumulator
                if k == 0 {
                    for i in 0..<g.count { acc[i] = Double(g[i]) }
                } else {
                    for i in 0..<g.count { acc[i] += Double(g[i]) }
                }
            }
            timing.compute += monotonicSeconds() - tc
        }

        // Step-wide agreement: loss, NaN, stop requests (one small all-reduce).
        let tw = monotonicSeconds()
        let flags = comm.allreduceSum([lossSum.isFinite ? lossSum : 0, nanTile == nil ? 0 : 1,
                                       StopSignals.received != 0 ? 1 : 0])
        let ok = buckets.finish()
        timing.wait += monotonicSeconds() - tw
        timing.steps += 1
        if flags[1] > 0 {
            let msg = nanTile.map { "rank \(comm.rank): non-finite loss at epoch \(epoch), step \(position.globalStep) on tiles \(mine.map { train.paths[$0] }) (first: \($0))" }
            if let msg { FileHandle.standardError.write(Data((msg + "\n").utf8)) }
            throw CollectiveError("non-finite loss at epoch \(epoch), step \(position.globalStep) (batch \(index)); the ranks with the NaN printed their tiles above; stopping")
        }
        let stop = flags[2] > 0
        guard globalLabels > 0 else {
            return StepResult(taken: false, lossSum: 0, labels: 0, gradNorm: 0, stop: stop)
        }
        guard ok else {
            consecutiveOverflow += 1
            say("warning: non-finite gradients after the all-reduce at step \(position.globalStep): step skipped on every rank (\(consecutiveOverflow) in a row)")
            if consecutiveOverflow >= options.maxConsecutiveOverflow {
                throw CollectiveError("\(consecutiveOverflow) consecutive steps with non-finite reduced gradients: stopping (try --grad_compression bf16 or none, or a lower --lr)")
            }
            return StepResult(taken: false, lossSum: flags[0], labels: Double(globalLabels), gradNorm: .nan, stop: stop)
        }
        consecutiveOverflow = 0
        var norm = Double.nan
        if options.optimizer.maxNorm != nil { norm = optimizer.clip(model.gradients) }
        optimizer.update(weights: model.weights, gradients: model.gradients)
        return StepResult(taken: true, lossSum: flags[0], labels: Double(globalLabels), gradNorm: norm, stop: stop)
    }

    // MARK: - Validation, checkpoints, replicas

    /// Scores every validation pair (each rank its share) and computes exact global metrics on rank 0.
    public func validate() throws -> BinaryMetrics? {
        guard let val else { return nil }
        var logits: [Float] = [], labels: [Float] = []
        for i in stride(from: comm.rank, to: val.count, by: comm.size) where val.labelCounts[i] > 0 {
            let tile = try Tile.read(path: val.paths[i], options: stepReadOptions)
            model.forward(tile)
            logits.append(contentsOf: model.logits)
            labels.append(contentsOf: tile.labels)
        }
        let allLogits = comm.gather(logits)
        let allLabels = comm.gather(labels)
        guard comm.isRoot else { return nil }
        return BinaryMetrics(logits: allLogits.flatMap { $0 }, labels: allLabels.flatMap { $0 })
    }

    func endOfEpoch(epoch: Int, trainLoss: Double, seconds: Double) throws {
        let metrics = try validate()
        lastValidation = metrics
        // Time in loading, compute and communication: the slowest rank's figures.
        let t = comm.allreduceMax([timing.load, timing.compute, timing.wait])
        let bytes = buckets.stats.bytesPerStep
        if let out {
            var row = ["epoch": "\(epoch)", "step": "\(position.globalStep)",
                       "train_loss_epoch": RunDirectory.cell(trainLoss),
                       "skipped_steps": "\(position.skippedSteps)", "elapsed_s": String(format: "%.3f", seconds)]
            if let m = metrics {
                row["validation_loss"] = RunDirectory.cell(m.loss)
                row["validation_auroc"] = RunDirectory.cell(m.auroc)
                row["validation_f1"] = RunDirectory.cell(m.f1)
            }
            out.log(row)
        }
        var text = String(format: "epoch %d/%d  step %d  train_loss %.5f", epoch + 1, options.epochs, position.globalStep, trainLoss)
        if let m = metrics {
            text += String(format: "  validation_loss %.5f  validation_auroc %.4f  validation_f1 %.4f", m.loss, m.auroc, m.f1)
        }
        text += String(format: "  (%.1f s: load %.2f s, compute %.2f s, communication wait %.2f s, max over ranks; %d bytes all-reduced per step)",
                       seconds, t[0], t[1], t[2], bytes)
        say(text)
        if comm.isRoot, let m = metrics, !m.auroc.isNaN, m.auroc > (position.bestAUROC ?? -1) {
            position.bestAUROC = m.auroc
        }
        try saveCheckpoint(epochFile: true)
        if options.checkReplicas { _ = try checkReplicas() }
    }

    /// Rank 0 writes `epoch=E-step=S` (when `epochFile`) and `last`, keeping the newest K plus the best.
    func saveCheckpoint(epochFile: Bool) throws {
        guard comm.isRoot, let out else { return }
        let hp = options.hyperparameters
        do {
            if epochFile {
                let path = out.checkpointPath(epoch: position.epoch - 1, step: position.globalStep)
                var isBest = false
                if let m = lastValidation, !m.auroc.isNaN, m.auroc >= (position.bestAUROC ?? -1) {
                    isBest = true
                }
                let previousBest = position.bestCheckpoint
                if isBest { position.bestCheckpoint = path }
                try Checkpoint.write(to: path, model: model, optimizer: optimizer, optimizerConfig: options.optimizer,
                                     position: position, hyperparameters: hp)
                savedCheckpoints.append(path)
                // Keep the newest K epoch checkpoints and the best one.
                while savedCheckpoints.count > max(0, options.saveTopK) {
                    let old = savedCheckpoints.removeFirst()
                    if old != position.bestCheckpoint { unlink(old) }
                }
                if let prev = previousBest, prev != position.bestCheckpoint, !savedCheckpoints.contains(prev) {
                    unlink(prev)
                }
            }
            try Checkpoint.write(to: out.lastCheckpoint, model: model, optimizer: optimizer, optimizerConfig: options.optimizer,
                                 position: position, hyperparameters: hp)
        } catch {
            throw RankError("rank 0: writing a checkpoint failed: \(error) (the previous checkpoint files are intact)")
        }
    }

    /// Compares a digest of the weights across ranks; differing replicas stop the run.
    func checkReplicas() throws -> String {
        let digest = weightsDigest(model.weights)
        let all = comm.allgather(digest)
        if let bad = all.firstIndex(where: { $0 != all[0] }) {
            throw CollectiveError("replicas differ: rank \(bad) has weights digest \(all[bad]), rank 0 has \(all[0])")
        }
        return digest
    }
}

/// An error raised on one rank only: the job must be aborted (MPI_Abort) rather than left to hang.
public struct RankError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Communicator {
    /// Broadcasts one integer from rank 0.
    func broadcastInt(_ v: Int) -> Int {
        let bytes = broadcast(bytes: Array(String(v).utf8))
        return Int(String(decoding: bytes, as: UTF8.self)) ?? v
    }
}
