// segger-train: the command line. Thin: parses flags, calls SeggerTrain.
import ArgumentParser
import Foundation
import SafeTensors
import SeggerDistributed
import SeggerModel
import SeggerTiles
import SeggerTrain

@main
struct SeggerTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segger-train",
        abstract: "Train segger (heterogeneous GATv2 transcript-to-cell assignment) data-parallel with MPI.",
        discussion: """
        One process is one MPI rank. Run it directly for one rank, or under `mpirun -np N` / \
        `srun --mpi=pmix` for N ranks: every rank trains on its share of each global batch \
        (--batch_size_train tiles per rank), gradients are all-reduced (fp16-compressed by default), and \
        all ranks keep bit-identical weights. Rank 0 prints progress and writes metrics and checkpoints \
        under --default_root_dir in PyTorch Lightning's layout.

        Examples:
          segger-train synth --out data/train --tiles 64 --tx_per_tile 2000 --seed 1
          segger-train train --train_dir data/train --val_dir data/val --default_root_dir runs/a --epochs 10
          mpirun -np 4 segger-train train --train_dir data/train --val_dir data/val --default_root_dir runs/a
        """,
        subcommands: [Train.self, SynthCommand.self, Eval.self, DumpStep.self, Convert.self, Digest.self, Plot.self, Bench.self, BenchKernels.self, Predict.self],
        defaultSubcommand: Train.self
    )

    static func main() {
        BLASKernels.reexecWithBetterKernelsIfNeeded()
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

// MARK: - Shared option groups

/// Model hyper-parameters, with segger's flag names.
struct ModelOptions: ParsableArguments {
    @Option(name: .customLong("num_tx_tokens"), help: "Gene token vocabulary size (token mode); every tx.x id must be below it.")
    var numTxTokens: Int = 500
    @Option(name: .customLong("init_emb"), help: "Width of the input embedding / projection.")
    var initEmb: Int = 8
    @Option(name: .customLong("hidden_channels"), help: "Channels per head of the hidden GATv2 layers.")
    var hiddenChannels: Int = 64
    @Option(name: .customLong("out_channels"), help: "Channels per head of the last GATv2 layer (embedding width = heads × out_channels).")
    var outChannels: Int = 16
    @Option(name: .customLong("heads"), help: "Attention heads.")
    var heads: Int = 4
    @Option(name: .customLong("mid_layers"), help: "Number of middle GATv2 layers.")
    var midLayers: Int = 1
    @Option(name: .customLong("aggr"), help: "How to_hetero sums relations into a node type.")
    var aggr: Aggregation = .sum
    @Flag(name: .customLong("no-residual"), help: "segger main (2025) architecture: no residual linears.")
    var noResidual = false
    @Flag(name: .customLong("no-l2-normalize"), help: "segger main (2025) architecture: no L2 normalization of the output embeddings.")
    var noL2Normalize = false

    /// The config, each size in its range (`ModelConfig.sizeLimits`) and the parameters within the
    /// memory this rank may use; errors name the flag.
    func config() throws -> ModelConfig {
        var c = ModelConfig()
        c.numTxTokens = numTxTokens
        c.initEmb = initEmb
        c.hiddenChannels = hiddenChannels
        c.outChannels = outChannels
        c.heads = heads
        c.midLayers = midLayers
        c.aggr = aggr
        c.residual = !noResidual
        c.l2Normalize = !noL2Normalize
        for limit in c.sizeLimits { try Flags.int(limit.name, limit.value, limit.range) }
        // Parameters alone (tiles are not read yet); the trainer checks again with the largest tile.
        if let problem = MemoryEstimate(config: c, tile: TileExtent()).problem(what: "the model (\(c.flagSummary))") {
            throw ValidationError(problem)
        }
        return c
    }
}

/// Optimizer settings.
struct OptimizerOptions: ParsableArguments {
    @Option(name: .customLong("optimizer"), help: "adamw (segger since May 2025) or adam (earlier segger: with no other flag, lr 1e-3, no weight decay, no clipping).")
    var optimizer: OptimizerConfig.Kind = .adamw
    @Option(name: .customLong("lr"), help: "Learning rate (default 1e-4; 1e-3 for --optimizer adam).")
    var lr: Float?
    @Option(name: .customLong("weight_decay"), help: "Weight decay (default 1e-4: decoupled for adamw; 0 for adam, where it is L2).")
    var weightDecay: Float?
    @Option(name: .customLong("grad_clip"), help: "Clip gradients to this global L2 norm; 0 disables (default 1.0; none for adam).")
    var gradClip: Float?

    func config() throws -> OptimizerConfig {
        var c = OptimizerConfig()
        c.kind = optimizer
        if optimizer == .adam { c.lr = 1e-3; c.weightDecay = 0; c.maxNorm = nil }
        if let lr {
            try Flags.real("lr", Double(lr), 0...Double(Float.greatestFiniteMagnitude), openBelow: true)
            c.lr = lr
        }
        if let weightDecay {
            try Flags.real("weight_decay", Double(weightDecay), 0...Double(Float.greatestFiniteMagnitude))
            c.weightDecay = weightDecay
        }
        if let gradClip {
            try Flags.real("grad_clip", Double(gradClip), 0...Double(Float.greatestFiniteMagnitude))
            c.maxNorm = gradClip > 0 ? gradClip : nil
        }
        return c
    }
}

/// Sets OpenBLAS threads per rank (default 1: ranks, not threads, use the cores). `requested` is
/// validated by the caller; an out-of-range `OPENBLAS_NUM_THREADS` is clamped by `BLASThreads.set`.
func configureThreads(_ requested: Int?) {
    let env = ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"].flatMap(Int.init)
    BLASThreads.set(requested ?? env ?? 1)
}

/// Checks `--num_threads`.
func checkThreads(_ n: Int?) throws {
    if let n { try Flags.int("num_threads", n, 1...BLASThreads.maximum) }
}

/// Runs `body` on every rank and ends the process as its error demands (docs/architecture.md, "Errors"):
/// an error every rank raised alike (`ValidationError` for a flag, `CollectiveError`) → all ranks finalize
/// and exit together (64 or 1, rank 0 prints); any other error (`RankError`, or an input or output error
/// that escaped an agreement) happened on this rank only → with one rank just stop (exit 1), with several
/// take the job down (MPI_Abort) so that no other rank waits forever in a collective.
func runOnEveryRank(_ comm: Communicator, _ body: () throws -> Void) {
    do {
        try body()
    } catch let e as ValidationError {
        if comm.isRoot { FileHandle.standardError.write(Data("error: \(e.message)\n".utf8)) }
        comm.exitTogether(64)
    } catch let e as CollectiveError {
        if comm.isRoot { FileHandle.standardError.write(Data("error: \(e.message)\n".utf8)) }
        comm.exitTogether(1)
    } catch {
        let text = error is RankError ? "\(error)" : "error on rank \(comm.rank): \(error)"
        if comm.size == 1 {
            FileHandle.standardError.write(Data("error: \(text)\n".utf8))
            comm.exitTogether(1)
        }
        comm.abort(text)
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
    Foundation.exit(1)
}

// MARK: - train

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train on a tile directory (the default subcommand).",
        discussion: """
        Flags keep the names of segger's training command. Lightning's device flags map onto MPI:
          --accelerator  only `cpu` is supported (`cuda`/`gpu` is an error).
          --devices      number of MPI ranks. Ranks come from the launcher (`mpirun -np N`, `srun`),
                         not from this flag: `auto` (default) takes what the launcher started; a number must
                         equal the MPI world size.
          --strategy     always data-parallel over MPI (DDP); `auto`, `ddp` and its variants are accepted.
          --precision    `16-mixed` (default, as segger's command): fp32 compute, fp16-compressed gradient
                         all-reduce; `bf16-mixed`: bf16 all-reduce; `32`: fp32 everywhere.

        Loss across ranks: by default the step's loss is the mean over all label pairs of the global batch,
        so N ranks × batch b train exactly what 1 rank × batch N·b trains; --loss_reduction rank_mean gives
        PyTorch DDP's semantics (each rank's own mean, gradients averaged).

        Outputs (rank 0): <root>/lightning_logs/version_N/{metrics.csv,hparams.yaml,curves.svg},
        <root>/checkpoints/{epoch=E-step=S,last}.safetensors. A run replaces and deletes only checkpoint
        files of its own run id (kept by --resume within the root) and names each file it removes; a new run
        refuses a root whose checkpoints/ already holds checkpoints (add --resume auto to continue that run,
        or pass another --default_root_dir). SIGUSR1/SIGUSR2/SIGTERM: stop after the current tile (the step
        in progress is redone on resume), write last.safetensors, exit 0; `--resume auto` then continues.
        """
    )

    @Option(name: .customLong("train_dir"), help: "Directory of training tiles (*.safetensors or segger's *.pt).")
    var trainDir: String
    @Option(name: .customLong("val_dir"), help: "Directory of validation tiles; metrics are computed once per epoch.")
    var valDir: String?
    @Option(name: .customLong("batch_size_train"), help: "Tiles per step per rank (global batch = ranks × this; the epoch's last batch may be smaller).")
    var batchSizeTrain: Int = 4
    @Option(name: .customLong("batch_size_val"), help: "Validation tiles per forward pass (results do not depend on it).")
    var batchSizeVal: Int = 4
    @Option(name: .customLong("epochs"), help: "Number of epochs.")
    var epochs: Int = 100
    @Option(name: .customLong("default_root_dir"), help: "Output directory (Lightning layout). A new run refuses a root whose checkpoints/ holds another run's checkpoints.")
    var rootDir: String = "./runs"
    @OptionGroup var model: ModelOptions
    @OptionGroup var opt: OptimizerOptions
    @Option(name: .customLong("precision"), help: "Gradient exchange implied (compute is fp32); see the discussion.")
    var precision: Precision = .mixed16
    @Option(name: .customLong("grad_compression"), help: "none is exact (fp32 gradients summed in fp64, so N ranks give 1 rank's weights bit for bit); overrides what --precision implies.")
    var gradCompression: GradientCompression?
    @Option(name: .customLong("loss_reduction"), help: "global_mean (default) or rank_mean (DDP).")
    var lossReduction: LossReduction = .globalMean
    @Option(name: .customLong("bucket_cap_mb"), help: "Gradient bucket size cap in MB of fp32 gradient.")
    var bucketCapMB: Double = 0.25
    @Option(name: .customLong("accelerator"), help: "cpu (the only choice).")
    var accelerator: String = "cpu"
    @Option(name: .customLong("strategy"), help: "Accepted for compatibility: training is always MPI data-parallel.")
    var strategy: String = "auto"
    @Option(name: .customLong("devices"), help: "auto, or the number of MPI ranks (must equal the world size).")
    var devices: String = "auto"
    @Option(name: .customLong("seed"), help: "Seed of initialization and of the per-epoch shuffle.")
    var seed: UInt64 = 0
    @Option(name: .customLong("init_weights"), help: "Start from these weights (safetensors with PyG names, with or without `model.`, or a Lightning .ckpt); not with --resume.")
    var initWeights: String?
    @Option(name: .customLong("resume"), help: "Continue from a checkpoint: `last` (<root>/checkpoints/last.safetensors, which must exist), `auto` (last if present, else a fresh start) or a checkpoint path.")
    var resume: ResumeMode?
    @Flag(name: .customLong("drop_last"), help: "Drop the epoch's last, smaller global batch.")
    var dropLast = false
    @Flag(name: .customLong("skip_bad_tiles"), help: "Skip (and count) tiles that fail validation instead of stopping.")
    var skipBadTiles = false
    @Option(name: .customLong("save_top_k"), parsing: .unconditional, help: "Epoch checkpoints to keep besides last and the best by validation AUROC; -1 keeps all.")
    var saveTopK: Int = 3
    @Option(name: .customLong("log_every_n_steps"), help: "Write a training-loss row to metrics.csv every N steps.")
    var logEveryNSteps: Int = 50
    @Option(name: .customLong("max_steps"), parsing: .unconditional, help: "Stop after this many optimizer steps in total; -1: no limit (Lightning).")
    var maxSteps: Int = -1
    @Option(name: .customLong("num_threads"), help: "OpenBLAS threads per rank (default: $OPENBLAS_NUM_THREADS or 1).")
    var numThreads: Int?
    @Option(name: .customLong("progress_seconds"), help: "Seconds between progress lines when stdout is not a terminal.")
    var progressSeconds: Double = 30

    /// The run's settings, every flag checked. This runs on every rank inside `runOnEveryRank`, not in
    /// `validate()`: `validate()` runs before MPI is initialized, where each of N ranks would print the
    /// error and exit on its own (mpirun then reports an abnormal end); here rank 0 prints it once and all
    /// ranks finalize and exit 64 together. (`--devices` also needs the world size.)
    func options(worldSize: Int) throws -> TrainOptions {
        var o = TrainOptions()
        try Flags.path("train_dir", trainDir)
        if let v = valDir { try Flags.path("val_dir", v) }
        try Flags.path("default_root_dir", rootDir)
        if let w = initWeights { try Flags.path("init_weights", w) }
        o.trainDir = trainDir
        o.valDir = valDir
        o.rootDir = rootDir
        let counts = 1...Int(Int32.max)
        try Flags.int("batch_size_train", batchSizeTrain, counts)
        try Flags.int("batch_size_val", batchSizeVal, counts)
        try Flags.int("epochs", epochs, counts)
        o.batchSizeTrain = batchSizeTrain
        o.batchSizeVal = batchSizeVal
        o.epochs = epochs
        o.model = try model.config()
        o.optimizer = try opt.config()
        o.seed = seed
        switch accelerator.lowercased() {
        case "cpu", "auto": break
        default: throw ValidationError("--accelerator \(accelerator) is not supported: segger-train runs on CPUs with MPI (use --accelerator cpu and start N ranks with mpirun or srun)")
        }
        if devices != "auto" {
            guard let n = Int(devices), n == worldSize else {
                throw ValidationError("--devices \(devices) does not match the \(worldSize) MPI rank(s) started: ranks come from the launcher (mpirun -np N or srun -n N); use --devices auto")
            }
        }
        let known = ["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false", "mpi"]
        guard known.contains(strategy) else { throw ValidationError("--strategy \(strategy): training is always MPI data-parallel; use auto or ddp") }
        if let c = gradCompression {
            if precision.impliedCompression == .none && c != .none {
                throw ValidationError("--precision \(precision.rawValue) means no gradient compression; drop --grad_compression \(c.rawValue) or use --precision 16-mixed")
            }
            o.compression = c
        } else {
            o.compression = precision.impliedCompression
        }
        o.lossReduction = lossReduction
        try Flags.real("bucket_cap_mb", bucketCapMB, 0...1_048_576, openBelow: true)
        o.bucketCapMB = bucketCapMB
        o.dropLast = dropLast
        o.skipBadTiles = skipBadTiles
        if resume != nil && initWeights != nil {
            throw ValidationError("--init_weights and --resume exclude each other: --resume restores the weights (and optimizer state and position) of its checkpoint; drop one of them")
        }
        o.resume = resume ?? .none
        o.initWeights = initWeights
        try Flags.int("save_top_k", saveTopK, -1...Int(Int32.max), "-1 keeps every epoch checkpoint")
        o.saveTopK = saveTopK
        try Flags.int("log_every_n_steps", logEveryNSteps, counts)
        o.logEveryNSteps = logEveryNSteps
        if maxSteps == 0 {
            throw ValidationError("--max_steps 0 would train nothing; give a positive number of steps, or -1 for no limit")
        }
        try Flags.int("max_steps", maxSteps, -1...(1 << 40), "-1 means no limit")
        o.maxSteps = maxSteps == -1 ? nil : maxSteps
        try checkThreads(numThreads)
        try Flags.real("progress_seconds", progressSeconds, 0...1e9)
        o.progressSeconds = progressSeconds
        return o
    }

    func run() throws {
        let comm: Communicator
        do { comm = try Communicator.world() } catch { fail("MPI initialization failed: \(error)") }
        if let n = ProcessInfo.processInfo.environment["SLURM_NTASKS"].flatMap(Int.init), n != comm.size,
           ProcessInfo.processInfo.environment["SEGGER_IGNORE_SLURM_NTASKS"] == nil {
            if comm.isRoot || comm.size == 1 {
                FileHandle.standardError.write(Data("error: SLURM_NTASKS is \(n) but MPI started \(comm.size) rank(s): the tasks were not connected into one MPI job (use `srun --mpi=pmix` or `mpirun` inside the allocation; set SEGGER_IGNORE_SLURM_NTASKS=1 to run anyway)\n".utf8))
            }
            comm.exitTogether(1)
        }
        StopSignals.install()
        runOnEveryRank(comm) {
            let o = try options(worldSize: comm.size)
            configureThreads(numThreads)
            let trainer = try Trainer(options: o, comm: comm)
            let summary = try trainer.run()
            if comm.isRoot {
                print(comm.size > 1 ? "replicas: \(comm.size) ranks bit-identical (weights digest \(summary.weightsDigest))"
                                    : "weights digest \(summary.weightsDigest)")
                fflush(stdout)  // now, not at exit: what follows is MPI_Finalize and the launcher's teardown
                if let m = summary.lastValidation {
                    print(String(format: "final: validation_loss %.5f validation_auroc %.4f validation_f1 %.4f", m.loss, m.auroc, m.f1))
                }
                if let dir = summary.outputDir { print("outputs: \(dir)") }
            }
        }
    }
}

// MARK: - eval

/// What `eval` prints (one JSON object; a metric that is undefined, e.g. AUROC with one class, is null).
struct EvalReport: Encodable {
    var validationLoss: Double?
    var validationAuroc: Double?
    var validationF1: Double?
    var pairs: Int
    var tiles: Int

    enum CodingKeys: String, CodingKey {
        case validationLoss = "validation_loss", validationAuroc = "validation_auroc", validationF1 = "validation_f1"
        case pairs, tiles
    }

    /// Undefined metrics as explicit nulls (the synthesized encoder would leave the keys out).
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(validationLoss, forKey: .validationLoss)
        try c.encode(validationAuroc, forKey: .validationAuroc)
        try c.encode(validationF1, forKey: .validationF1)
        try c.encode(pairs, forKey: .pairs)
        try c.encode(tiles, forKey: .tiles)
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validation metrics of a checkpoint on a tile directory, as JSON.")

    @Option(name: .customLong("tiles"), help: "Directory of tiles with labels.")
    var tiles: String
    @Option(name: .customLong("checkpoint"), help: "A checkpoint written by train.")
    var checkpoint: String
    @Option(name: .customLong("num_threads"), help: "OpenBLAS threads.")
    var numThreads: Int?

    func validate() throws {
        try Flags.path("tiles", tiles)
        try Flags.path("checkpoint", checkpoint)
        try checkThreads(numThreads)
    }

    func run() throws {
        configureThreads(numThreads)
        do {
            let paths = try TileFiles.list(tiles, flag: "tiles")
            let extent: TileExtent
            do { extent = try TileExtent.largest(of: paths) } catch let e as InputError { throw e.given(by: "tiles") }
            let loaded = try ModelFile.load(path: checkpoint, flag: "checkpoint", largestTile: extent)
            let model = loaded.model
            var logits: [Float] = [], labels: [Float] = []
            for p in paths {
                // Token ids are checked against the checkpoint's vocabulary below (the reader's own check
                // would cite a train flag).
                let t: Tile
                do { t = try Tile.read(path: p) } catch let e as InputError { throw e.given(by: "tiles") }
                if let problem = loaded.config.incompatibility(with: t) {
                    throw InputError(path: p, "\(problem) (--checkpoint \(checkpoint))").given(by: "tiles")
                }
                guard t.numLabels > 0 else { continue }
                model.forward(t)
                logits += model.logits
                labels += t.labels
            }
            let m = BinaryMetrics(logits: logits, labels: labels)
            func j(_ x: Double) -> Double? { x.isFinite ? x : nil }
            try printJSONLine(EvalReport(validationLoss: j(m.loss), validationAuroc: j(m.auroc), validationF1: j(m.f1),
                                         pairs: m.count, tiles: paths.count))
        } catch {
            fail("\(error)")
        }
    }
}

// MARK: - dump-step

struct DumpStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump-step",
        abstract: "One training step on the first B tiles, every tensor written for comparison with PyTorch.",
        discussion: "Writes out.tx, out.bd, logits, loss, clip.total_norm, grad.<name> and step1.<name> (F32) to --out.")

    @Option(name: .customLong("tiles"), help: "Tile directory (the first --batch tiles by name are collated).")
    var tiles: String
    @Option(name: .customLong("batch"), help: "Number of tiles in the batch.")
    var batch: Int = 1
    @Option(name: .customLong("weights"), help: "Starting weights (safetensors, PyG names, with or without `model.`).")
    var weights: String
    @Option(name: .customLong("out"), help: "Output safetensors file.")
    var out: String
    @OptionGroup var model: ModelOptions
    @OptionGroup var opt: OptimizerOptions

    func validate() throws {
        try Flags.path("tiles", tiles)
        try Flags.int("batch", batch, 1...65_536)
        try Flags.path("weights", weights)
        try Flags.path("out", out)
        _ = try model.config()
        _ = try opt.config()
    }

    func run() throws {
        configureThreads(1)
        do {
            var config = try model.config()
            let paths = Array(try TileFiles.list(tiles, flag: "tiles").prefix(batch))
            let first = try Tile.read(path: paths[0])
            config.txFeatureDim = first.txFeatureDim
            config.bdFeatureDim = first.bdDim
            let options = TileReadOptions(numTxTokens: config.txFeatureDim == nil ? config.numTxTokens : nil)
            let read = try paths.map { try Tile.read(path: $0, options: options) }
            for (t, p) in zip(read, paths) {
                if let problem = config.incompatibility(with: t) {
                    throw InputError(path: p, "\(problem) (the first tile decides)").given(by: "tiles")
                }
            }
            let b = Tile.batch(read)
            let extent = TileExtent(nodes: b.numTx + b.numBd, edges: b.neighbors.count + b.belongs.count, labels: b.numLabels)
            if let problem = MemoryEstimate(config: config, tile: extent).problem(what: "the model (\(config.flagSummary)) with this batch") {
                throw ValidationError(problem)
            }
            let m = SeggerModel(config: config, seed: 0)
            let file: ModelFile
            do {
                file = try ModelFile.read(path: weights)
                try file.requireFiniteWeights(for: m.parameters)
            } catch let e as InputError { throw e.given(by: "weights") }
            do { try file.loadWeights(into: m, requireFinite: false) } catch let e as InputError {
                let arch = (config.residual ? "" : " --no-residual") + (config.l2Normalize ? "" : " --no-l2-normalize")
                throw InputError(path: weights, "does not fit the model of the flags (\(config.flagSummary)\(arch)): \(e.message)").given(by: "weights")
            }
            let lossSum = m.forward(b)
            let L = max(1, b.numLabels)
            let (tx, bd) = m.outputs()
            let width = config.heads * config.outChannels
            var outTensors: [(String, Tensor)] = [
                ("out.tx", Tensor(tx, shape: [b.numTx, width])), ("out.bd", Tensor(bd, shape: [b.numBd, width])),
                ("logits", Tensor(Array(m.logits))), ("loss", Tensor([Float(lossSum / Double(L))])),
            ]
            m.backward(lossScale: 1 / Float(L))
            outTensors += m.gradientTensors(prefix: "grad.")
            let optConfig = try opt.config()
            let o = Optimizer(config: optConfig, parameterCount: m.parameterCount)
            let norm = optConfig.maxNorm != nil ? o.clip(m.gradients) : Optimizer.globalNorm(m.gradients)
            outTensors.append(("clip.total_norm", Tensor([Float(norm)])))
            o.update(weights: m.weights, gradients: m.gradients)
            outTensors += m.weightTensors(prefix: "step1.")
            try SafeTensorsFile.write(outTensors, metadata: ["format": "segger-dump-step", "config": config.json,
                                                              "optimizer": optConfig.json,
                                                              "tiles": paths.map { ($0 as NSString).lastPathComponent }.joined(separator: ",")],
                                      to: out)
            print("wrote \(outTensors.count) tensors to \(out) (loss \(String(format: "%.6f", lossSum / Double(L))), \(b.numLabels) label pairs)")
        } catch {
            fail("\(error)")
        }
    }
}

// MARK: - digest

struct Digest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the weights digest of a checkpoint (the value train compares across ranks).")

    @Option(name: .customLong("checkpoint"), help: "A checkpoint written by train.")
    var checkpoint: String

    func validate() throws {
        try Flags.path("checkpoint", checkpoint)
    }

    func run() throws {
        do {
            // The digest is of the bytes as they are: non-finite weights are reported, not refused.
            let m = try ModelFile.load(path: checkpoint, flag: "checkpoint", requireFinite: false).model
            print(weightsDigest(m.weights))
        } catch {
            fail("\(error)")
        }
    }
}
