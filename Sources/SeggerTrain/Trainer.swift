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
    /// Rank 0 only: the log directory and the checkpoints directory (locked for this run).
    let out: RunDirectory?
    let checkpoints: CheckpointDirectory?
    let progress: Progress
    var position: TrainingPosition
    /// Double accumulator for the gradients of a rank's tiles within one step.
    let accumulator: UnsafeMutableBufferPointer<Double>
    var lastValidation: BinaryMetrics?
    /// This lineage's epoch checkpoint names, oldest first (rotated by --save_top_k).
    var savedCheckpoints: [String] = []
    var consecutiveOverflow = 0
    var timing = EpochTiming()

    struct EpochTiming {
        var load = 0.0, compute = 0.0, wait = 0.0, tiles = 0
    }

    /// Prints on rank 0 only.
    func say(_ text: String) { progress.line(text) }

    // MARK: - Start-up

    /// Prepares a run: takes the output root (refusing one that holds another run's checkpoints), scans
    /// the tiles, checks that the model fits in memory, builds the model (rank 0's weights broadcast to
    /// all), restores a checkpoint when resuming, and checks that every rank agrees on config and data.
    /// Every check that can fail runs before the first step; each is decided alike on every rank.
    public init(options: TrainOptions, comm: Communicator) throws {
        var options = options
        self.comm = comm
        progress = Progress(enabled: comm.isRoot, plainInterval: options.progressSeconds)
        readOptions = TileReadOptions(numTxTokens: options.model.txFeatureDim == nil ? options.model.numTxTokens : nil)
        stepReadOptions = TileReadOptions(numTxTokens: readOptions.numTxTokens, positionsAndIDs: false)

        // Rank 0 takes the root and picks the checkpoint to resume and the lineage; all ranks learn them.
        var held: (dir: CheckpointDirectory, checkpoint: Checkpoint?)? = nil
        let start = try comm.rootDecides { () -> StartDecision in
            let (dir, checkpoint, decision) = try CheckpointDirectory.start(options: options)
            held = (dir, checkpoint)
            return decision
        }
        checkpoints = held?.dir
        for note in start.notes { progress.line(note) }

        // Tiles: validated once, the reading split over the ranks.
        let t0 = monotonicSeconds()
        options.trainDir = TileDirectory.resolve(options.trainDir, split: "train")
        options.valDir = options.valDir.map { TileDirectory.resolve($0, split: "val") }
        train = try TileSet.scan(options.trainDir, flag: "train_dir", options: readOptions, skipBad: options.skipBadTiles, comm: comm)
        if let v = options.valDir {
            val = try TileSet.scan(v, flag: "val_dir", options: readOptions, skipBad: options.skipBadTiles, comm: comm)
        } else {
            val = nil
        }
        if train.count < comm.size {
            throw CollectiveError("--train_dir \(options.trainDir) has \(train.count) tile(s), fewer than the \(comm.size) ranks: every rank needs at least one tile")
        }
        // The tiles decide embedding mode and feature widths.
        options.model.txFeatureDim = train.txFeatureDim
        options.model.bdFeatureDim = train.bdFeatureDim ?? options.model.bdFeatureDim
        if let v = val, v.txFeatureDim != train.txFeatureDim || v.bdFeatureDim != train.bdFeatureDim {
            throw CollectiveError("validation tiles (--val_dir \(v.directory)) have different feature widths than the training tiles")
        }
        self.options = options

        // A run that could take no optimizer step is refused here rather than "trained".
        if !train.labelCounts.contains(where: { $0 > 0 }) {
            throw CollectiveError("--train_dir \(options.trainDir): none of the \(train.count) training tile(s) has label pairs (\(TileTensor.labelIndex)): there is nothing to train on")
        }
        let globalBatch = options.batchSizeTrain * comm.size
        let perEpoch = ShardPlan.batchCount(tileCount: train.count, globalBatch: globalBatch, ranks: comm.size,
                                            dropLast: options.dropLast)
        if perEpoch == 0 {
            throw CollectiveError("--drop_last with a global batch of \(globalBatch) tile(s) (\(comm.size) rank(s) × --batch_size_train \(options.batchSizeTrain)) and \(train.count) training tiles: an epoch has no full batch, so nothing would be trained; lower --batch_size_train or drop --drop_last")
        }

        // The checkpoint must fit this run: model config, then its position.
        if let path = start.resumePath, let theirs = start.checkpointModel {
            let diff = theirs.differences(from: options.model)
            if !diff.isEmpty {
                throw CollectiveError("cannot resume from \(path): its model config differs from this run's (checkpoint vs flags and tiles):\n  "
                                      + diff.joined(separator: "\n  "))
            }
            try start.position?.validate(source: path, batchesPerEpoch: perEpoch, optimizerStep: start.optimizerStep)
        }

        // Memory: every rank checks its own budget before the model is allocated.
        let estimate = MemoryEstimate(config: options.model, tile: train.extent.union(val?.extent ?? TileExtent()))
        try comm.agree(estimate.problem(what: "the model (\(options.model.flagSummary)) with the largest tile")
            .map { comm.size > 1 ? "rank \(comm.rank): \($0)" : $0 })  // each rank's own memory

        // Model: rank 0 initializes (or loads), every rank receives the same weights.
        let model = SeggerModel(config: options.model, seed: options.seed)
        let optimizer = Optimizer(config: options.optimizer, parameterCount: model.parameterCount)
        self.model = model
        self.optimizer = optimizer
        try comm.rootDecides {
            if let c = held?.checkpoint {
                try c.file.loadWeights(into: model)
                try TensorChecks.requireValidOptimizerState(c.tensors, count: model.parameterCount, source: c.path)
                try optimizer.loadState(c.tensors, source: c.path)
            } else if let w = options.initWeights {
                // Safetensors (PyG names, with or without `model.`), or segger's Lightning `.ckpt` / a torch
                // state_dict; the config is this run's (flags and tiles), the file's weights must fit it.
                do { try ModelFile.read(path: w).loadWeights(into: model) } catch let e as InputError { throw e.given(by: "init_weights") }
            }
        }
        held?.checkpoint = nil  // its tensors are no longer needed
        comm.broadcast(model.weights)
        comm.broadcast(optimizer.expAvg)
        comm.broadcast(optimizer.expAvgSq)
        optimizer.step = start.optimizerStep
        var pos = start.position ?? TrainingPosition(seed: options.seed, worldSize: comm.size, batchSizeTrain: options.batchSizeTrain)
        pos.runID = start.runID
        position = pos

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

        // Logs last: a start refused above leaves no new version directory behind.
        let hparams = options.hyperparameters + [("run_id", HyperparameterValue.string(start.runID))]
        var runDirectory: RunDirectory? = nil
        try comm.rootDecides {
            guard let dir = held?.dir else { return }
            let o = try RunDirectory(checkpoints: dir, root: options.rootDir)
            try o.writeHyperparameters(hparams)
            runDirectory = o
        }
        out = runDirectory
        try reserveForLargestTiles()
        savedCheckpoints = held?.dir.ownEpochFiles() ?? []
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
        if let path = start.resumePath {
            say("resumed from \(path): epoch \(position.epoch), batch \(position.batchInEpoch), step \(position.globalStep) (run id \(start.runID))")
            if position.worldSize != comm.size || position.batchSizeTrain != options.batchSizeTrain {
                say("warning: the checkpoint was written by \(position.worldSize) rank(s) × batch \(position.batchSizeTrain), this run has \(comm.size) × \(options.batchSizeTrain): the global batches change, so the run will not reproduce an uninterrupted one")
            }
            if position.seed != options.seed {
                say("warning: the checkpoint was written with --seed \(position.seed), this run has --seed \(options.seed): the shuffle of the remaining epochs differs from the original run's")
            }
        }
    }

    deinit {
        accumulator.deallocate()
    }

    // MARK: - The loop

    /// Trains until `options.epochs` (or `maxSteps`, or a stop signal).
    public func run() throws -> TrainSummary {
        let globalBatch = options.batchSizeTrain * comm.size
        var preempted = false
        var trainedAnything = false
        if position.epoch >= options.epochs || options.maxSteps.map({ position.globalStep >= $0 }) == true {
            say("nothing to train: the checkpoint is at epoch \(position.epoch), step \(position.globalStep), which already reaches --epochs \(options.epochs)"
                + (options.maxSteps.map { " / --max_steps \($0)" } ?? "") + "; raise it to train further")
        }
        epochLoop: while position.epoch < options.epochs {
            if let m = options.maxSteps, position.globalStep >= m { break }
            let epoch = position.epoch
            let batches = ShardPlan.globalBatches(tileCount: train.count, globalBatch: globalBatch, ranks: comm.size,
                                                  seed: options.seed, epoch: epoch, dropLast: options.dropLast)
            var epochLoss = 0.0, epochLabels = 0.0
            timing = EpochTiming()
            let epochStart = monotonicSeconds()
            progress.startEpoch(epoch, of: options.epochs, batches: batches.count, resumedAt: position.batchInEpoch)
            while position.batchInEpoch < batches.count {
                let b = position.batchInEpoch
                let result = try step(batch: batches[b], epoch: epoch, index: b)
                if result.interrupted {  // stopped between tiles: the batch is redone on resume
                    preempted = true
                    break epochLoop
                }
                trainedAnything = true
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
                progress.batchFinished(b + 1, step: position.globalStep, loss: epochLoss / max(1, epochLabels),
                                       tilesPerSecond: Double(timing.tiles * comm.size) / max(monotonicSeconds() - epochStart, 1e-9))
                // Stop (signal or --max_steps) now; after the epoch's last batch, only after its end
                // (validation, epoch checkpoint), so that a checkpoint never sits between the two.
                let done = options.maxSteps.map { position.globalStep >= $0 } ?? false
                if result.stop { preempted = true }
                if result.stop || done {
                    if position.batchInEpoch < batches.count { break epochLoop } else { break }
                }
            }
            // An epoch without a single optimizer step since the start of the lineage trained nothing:
            // stop rather than write an "epoch" checkpoint of an untrained model.
            if position.globalStep == 0 {
                throw CollectiveError("epoch \(epoch) ended without a single optimizer step (\(batches.count) global batch(es), \(position.skippedSteps) skipped: no label pairs or non-finite gradients); nothing was trained, no checkpoint written")
            }
            // End of epoch: validation, metrics, checkpoint, replica check.
            position.epoch += 1
            position.batchInEpoch = 0
            let trainLoss = epochLoss / max(1, epochLabels)
            progress.finishEpoch()
            try endOfEpoch(epoch: epoch, trainLoss: trainLoss, seconds: monotonicSeconds() - epochStart)
            if preempted { break }
        }
        if preempted || (trainedAnything && position.batchInEpoch > 0) {
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
        /// A stop signal arrived between tiles: the step was abandoned on every rank (nothing applied).
        var interrupted = false
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
        var interrupted = false
        let g = model.gradients
        for (k, tileIndex) in work.enumerated() {
            // A stop signal is honoured between tiles: a long step ends within one tile's time.
            if k > 0 && StopSignals.received != 0 {
                interrupted = true
                break
            }
            let tl = monotonicSeconds()
            let tile: Tile
            do { tile = try Tile.read(path: train.paths[tileIndex], options: stepReadOptions) } catch {
                throw RankError("rank \(comm.rank): cannot read \(train.paths[tileIndex]) (it validated at start-up): \(error)")
            }
            let tc = monotonicSeconds()
            timing.load += tc - tl
            timing.tiles += 1
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
        if work.isEmpty || interrupted {
            // No tile (or an abandoned step): the buckets still go out, so every rank's collectives match.
            for i in 0..<g.count { g[i] = 0 }
            if interrupted { for i in 0..<accumulator.count { accumulator[i] = 0 } }
            buckets.gradientsReady(from: 0)
        }

        // Step-wide agreement: loss, NaN, stop requests, abandoned steps (one small all-reduce).
        let tw = monotonicSeconds()
        let flags = comm.allreduceSum([lossSum.isFinite ? lossSum : 0, nanTile == nil ? 0 : 1,
                                       StopSignals.received != 0 ? 1 : 0, interrupted ? 1 : 0])
        let ok = buckets.finish()
        timing.wait += monotonicSeconds() - tw
        if flags[1] > 0 {
            let msg = nanTile.map { "rank \(comm.rank): non-finite loss at epoch \(epoch), step \(position.globalStep) on tiles \(mine.map { train.paths[$0] }) (first: \($0))" }
            if let msg { FileHandle.standardError.write(Data((msg + "\n").utf8)) }
            throw CollectiveError("non-finite loss at epoch \(epoch), step \(position.globalStep) (batch \(index)) with --lr \(options.optimizer.lr); the ranks with the NaN printed their tiles above; stopping")
        }
        let stop = flags[2] > 0
        if flags[3] > 0 {
            return StepResult(taken: false, lossSum: 0, labels: 0, gradNorm: 0, stop: true, interrupted: true)
        }
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
            // The picture of the curves so far; failing to draw it does not stop training.
            do { try writeCurves(metricsPath: out.metricsPath, to: (out.logDir as NSString).appendingPathComponent("curves.svg")) }
            catch { say("warning: curves.svg not written: \(error)") }
        }
        // Two lines within 100 columns: the metrics, then where the time went (the slowest rank's figures).
        var text = String(format: "epoch %d/%d  step %d  train_loss %.5f", epoch + 1, options.epochs, position.globalStep, trainLoss)
        if let m = metrics {
            text += String(format: "  validation_loss %.5f  auroc %.4f  f1 %.4f", m.loss, m.auroc, m.f1)
        }
        text += String(format: "\n  %.1f s: load %.2f, compute %.2f", seconds, t[0], t[1])
        if comm.size > 1 {
            text += String(format: ", all-reduce wait %.2f (slowest rank); %.2f MB/step", t[2], Double(bytes) / 1e6)
        }
        say(text)
        var isBest = false
        if comm.isRoot, let m = metrics, !m.auroc.isNaN, m.auroc > (position.bestAUROC ?? -1) {
            position.bestAUROC = m.auroc
            isBest = true
        }
        try saveCheckpoint(epochFile: true, isBest: isBest)
        if options.checkReplicas { _ = try checkReplicas() }
    }

    /// Rank 0 writes `last` and (when `epochFile`) `epoch=E-step=S`, then removes this lineage's epoch
    /// files beyond the newest `--save_top_k` (never the best). `last` goes first: a kill between the two
    /// writes leaves a `last` to resume from, never epoch files without one.
    func saveCheckpoint(epochFile: Bool, isBest: Bool = false) throws {
        guard comm.isRoot, let dir = checkpoints else { return }
        let hp = options.hyperparameters.map { ($0.0, $0.1.text) } + [("run_id", dir.runID)]
        var removals: [String] = []
        do {
            let name = CheckpointDirectory.epochFileName(epoch: position.epoch - 1, step: position.globalStep)
            let previousBest = position.bestCheckpoint.map { ($0 as NSString).lastPathComponent }
            if epochFile && isBest { position.bestCheckpoint = name }
            try dir.ensureWritable(CheckpointDirectory.lastName)
            try Checkpoint.write(to: (dir.path as NSString).appendingPathComponent(CheckpointDirectory.lastName),
                                 model: model, optimizer: optimizer, optimizerConfig: options.optimizer,
                                 position: position, hyperparameters: hp)
            guard epochFile else { return }
            try dir.ensureWritable(name)
            try Checkpoint.write(to: (dir.path as NSString).appendingPathComponent(name), model: model, optimizer: optimizer,
                                 optimizerConfig: options.optimizer, position: position, hyperparameters: hp)
            savedCheckpoints.removeAll { $0 == name }
            savedCheckpoints.append(name)
            // Keep the newest K epoch checkpoints (all with -1) and the best one.
            if options.saveTopK >= 0 {
                while savedCheckpoints.count > options.saveTopK {
                    let old = savedCheckpoints.removeFirst()
                    if old != position.bestCheckpoint, let line = dir.remove(old, reason: "--save_top_k \(options.saveTopK)") {
                        removals.append(line)
                    }
                }
            }
            if let prev = previousBest, prev != position.bestCheckpoint, !savedCheckpoints.contains(prev),
               let line = dir.remove(prev, reason: "no longer the best by validation AUROC") {
                removals.append(line)
            }
        } catch {
            throw RankError("rank 0: writing a checkpoint failed: \(error) (the previous checkpoint files are intact)")
        }
        for line in removals { say(line) }
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
