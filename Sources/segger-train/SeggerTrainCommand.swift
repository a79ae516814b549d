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
    @Option(name: .customLong("aggr"), help: "How to_hetero sums relations into a node type: sum or mean.")
    var aggr: String = "sum"
    @Flag(name: .customLong("no-residual"), help: "segger main (2025) architecture: no residual linears.")
    var noResidual = false
    @Flag(name: .customLong("no-l2-normalize"), help: "segger main (2025) architecture: no L2 normalization of the output embeddings.")
    var noL2Normalize = false

    func config() throws -> ModelConfig {
        var c = ModelConfig()
        c.numTxTokens = numTxTokens
        c.initEmb = initEmb
        c.hiddenChannels = hiddenChannels
        c.outChannels = outChannels
        c.heads = heads
        c.midLayers = midLayers
        guard let a = Aggregation(rawValue: aggr) else { throw ValidationError("--aggr must be sum or mean, not '\(aggr)'") }
        c.aggr = a
        c.residual = !noResidual
        c.l2Normalize = !noL2Normalize
        for (name, v) in [("num_tx_tokens", numTxTokens), ("init_emb", initEmb), ("hidden_channels", hiddenChannels),
                          ("out_channels", outChannels), ("heads", heads)] where v < 1 {
            throw ValidationError("--\(name) must be at least 1")
        }
        if midLayers < 0 { throw ValidationError("--mid_layers must be 0 or more") }
        return c
    }
}

/// Optimizer settings.
struct OptimizerOptions: ParsableArguments {
    @Option(name: .customLong("optimizer"), help: "adamw (segger since May 2025) or adam (earlier segger: with no other flag, lr 1e-3, no weight decay, no clipping).")
    var optimizer: String = "adamw"
    @Option(name: .customLong("lr"), help: "Learning rate (default 1e-4; 1e-3 for --optimizer adam).")
    var lr: Float?
    @Option(name: .customLong("weight_decay"), help: "Weight decay (default 1e-4: decoupled for adamw; 0 for adam, where it is L2).")
    var weightDecay: Float?
    @Option(name: .customLong("grad_clip"), help: "Clip gradients to this global L2 norm; 0 disables (default 1.0; none for adam).")
    var gradClip: Float?

    func config() throws -> OptimizerConfig {
        var c = OptimizerConfig()
        guard let kind = OptimizerConfig.Kind(rawValue: optimizer) else {
            throw ValidationError("--optimizer must be adamw or adam, not '\(optimizer)'")
        }
        c.kind = kind
        if kind == .adam { c.lr = 1e-3; c.weightDecay = 0; c.maxNorm = nil }
        if let lr { c.lr = lr }
        if let weightDecay { c.weightDecay = weightDecay }
        if let gradClip { c.maxNorm = gradClip > 0 ? gradClip : nil }
        guard c.lr > 0 else { throw ValidationError("--lr must be positive") }
        return c
    }
}

/// Sets OpenBLAS threads per rank (default 1: ranks, not threads, use the cores).
func configureThreads(_ requested: Int?) {
    let env = ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"].flatMap(Int.init)
    BLASThreads.set(requested ?? env ?? 1)
}

/// Runs `body` on every rank and ends the process as its error demands: an error every rank raised
/// alike (`ValidationError`, `CollectiveError`) → all ranks finalize and exit together (64 or 1, rank 0
/// prints); an error on this rank only → with one rank just stop, with several take the job down
/// (MPI_Abort) so that no other rank waits forever in a collective.
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
        <root>/checkpoints/{epoch=E-step=S,last}.safetensors. SIGUSR1/SIGUSR2/SIGTERM: finish the step,
        write last.safetensors, exit 0; `--resume auto` then continues where it stopped.
        """
    )

    @Option(name: .customLong("train_dir"), help: "Directory of training tiles (*.safetensors).")
    var trainDir: String
    @Option(name: .customLong("val_dir"), help: "Directory of validation tiles; metrics are computed once per epoch.")
    var valDir: String?
    @Option(name: .customLong("batch_size_train"), help: "Tiles per step per rank (global batch = ranks × this).")
    var batchSizeTrain: Int = 4
    @Option(name: .customLong("batch_size_val"), help: "Validation tiles per forward pass (results do not depend on it).")
    var batchSizeVal: Int = 4
    @Option(name: .customLong("epochs"), help: "Number of epochs.")
    var epochs: Int = 100
    @Option(name: .customLong("default_root_dir"), help: "Output directory (Lightning layout).")
    var rootDir: String = "./runs"
    @OptionGroup var model: ModelOptions
    @OptionGroup var opt: OptimizerOptions
    @Option(name: .customLong("precision"), help: "16-mixed (default), bf16-mixed or 32; see the discussion.")
    var precision: String = "16-mixed"
    @Option(name: .customLong("grad_compression"), help: "fp16, bf16 or none (exact: fp32 gradients summed in fp64, so N ranks give 1 rank's weights bit for bit); overrides what --precision implies.")
    var gradCompression: String?
    @Option(name: .customLong("loss_reduction"), help: "global_mean (default) or rank_mean (DDP).")
    var lossReduction: String = "global_mean"
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
    @Option(name: .customLong("init_weights"), help: "Start from these weights (safetensors, PyG names with or without `model.`).")
    var initWeights: String?
    @Option(name: .customLong("resume"), help: "Continue from a checkpoint: `last`, `auto` (last if present, else fresh) or a path.")
    var resume: String?
    @Flag(name: .customLong("drop_last"), help: "Drop the last partial global batch instead of padding it by repetition.")
    var dropLast = false
    @Flag(name: .customLong("skip_bad_tiles"), help: "Skip (and count) tiles that fail validation instead of stopping.")
    var skipBadTiles = false
    @Option(name: .customLong("save_top_k"), help: "Epoch checkpoints to keep besides last and the best by validation AUROC.")
    var saveTopK: Int = 3
    @Option(name: .customLong("log_every_n_steps"), help: "Write a training-loss row to metrics.csv every N steps.")
    var logEveryNSteps: Int = 50
    @Option(name: .customLong("max_steps"), help: "Stop after this many optimizer steps in total.")
    var maxSteps: Int?
    @Option(name: .customLong("num_threads"), help: "OpenBLAS threads per rank (default: $OPENBLAS_NUM_THREADS or 1).")
    var numThreads: Int?
    @Option(name: .customLong("progress_seconds"), help: "Seconds between progress lines when stdout is not a terminal.")
    var progressSeconds: Double = 30

    func options(worldSize: Int) throws -> TrainOptions {
        var o = TrainOptions()
        o.trainDir = trainDir
        o.valDir = valDir
        o.rootDir = rootDir
        guard batchSizeTrain >= 1, batchSizeVal >= 1 else { throw ValidationError("batch sizes must be at least 1") }
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
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
        let implied: GradientCompression
        switch precision {
        case "16-mixed", "16", "16-true": implied = .fp16
        case "bf16-mixed", "bf16", "bf16-true": implied = .bf16
        case "32", "32-true": implied = .none
        default: throw ValidationError("--precision must be 16-mixed, bf16-mixed or 32, not '\(precision)'")
        }
        if let gc = gradCompression {
            guard let c = GradientCompression(rawValue: gc) else { throw ValidationError("--grad_compression must be fp16, bf16 or none") }
            if implied == .none && c != .none { throw ValidationError("--precision 32 means no gradient compression; drop --grad_compression \(gc) or use --precision 16-mixed") }
            o.compression = c
        } else {
            o.compression = implied
        }
        guard let r = LossReduction(rawValue: lossReduction) else { throw ValidationError("--loss_reduction must be global_mean or rank_mean") }
        o.lossReduction = r
        guard bucketCapMB > 0 else { throw ValidationError("--bucket_cap_mb must be positive") }
        o.bucketCapMB = bucketCapMB
        o.dropLast = dropLast
        o.skipBadTiles = skipBadTiles
        o.resume = ResumeMode(resume)
        o.initWeights = initWeights
        o.saveTopK = saveTopK
        o.logEveryNSteps = logEveryNSteps
        o.maxSteps = maxSteps
        o.progressSeconds = progressSeconds
        return o
    }

    func run() throws {
        configureThreads(numThreads)
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
            let trainer = try Trainer(options: o, comm: comm)
            let summary = try trainer.run()
            if comm.isRoot {
                print(comm.size > 1 ? "replicas: \(comm.size) ranks bit-identical (weights digest \(summary.weightsDigest))"
                                    : "weights digest \(summary.weightsDigest)")
                if let m = summary.lastValidation {
                    print(String(format: "final: validation_loss %.5f validation_auroc %.4f validation_f1 %.4f", m.loss, m.auroc, m.f1))
                }
                if let dir = summary.outputDir { print("outputs: \(dir)") }
            }
        }
    }
}

// MARK: - eval

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validation metrics of a checkpoint on a tile directory, as JSON.")

    @Option(name: .customLong("tiles"), help: "Directory of tiles with labels.")
    var tiles: String
    @Option(name: .customLong("checkpoint"), help: "A checkpoint written by train.")
    var checkpoint: String
    @Option(name: .customLong("num_threads"), help: "OpenBLAS threads.")
    var numThreads: Int?

    func run() throws {
        configureThreads(numThreads)
        do {
            let ck = try Checkpoint.read(path: checkpoint)
            let model = SeggerModel(config: ck.model, seed: 0)
            try model.loadWeights(ck.weights, source: checkpoint)
            let options = TileReadOptions(numTxTokens: ck.model.txFeatureDim == nil ? ck.model.numTxTokens : nil)
            var logits: [Float] = [], labels: [Float] = []
            let paths = try TileDirectory.list(tiles)
            for p in paths {
                let t = try Tile.read(path: p, options: options)
                guard t.numLabels > 0 else { continue }
                model.forward(t)
                logits += model.logits
                labels += t.labels
            }
            let m = BinaryMetrics(logits: logits, labels: labels)
            func j(_ x: Double) -> String { x.isNaN ? "null" : String(format: "%.9g", x) }
            print("{\"validation_loss\": \(j(m.loss)), \"validation_auroc\": \(j(m.auroc)), \"validation_f1\": \(j(m.f1)), \"pairs\": \(m.count), \"tiles\": \(paths.count)}")
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

    func run() throws {
        configureThreads(1)
        do {
            var config = try model.config()
            let paths = Array(try TileDirectory.list(tiles).prefix(max(1, batch)))
            let first = try Tile.read(path: paths[0])
            config.txFeatureDim = first.txFeatureDim
            config.bdFeatureDim = first.bdDim
            let options = TileReadOptions(numTxTokens: config.txFeatureDim == nil ? config.numTxTokens : nil)
            let b = Tile.batch(try paths.map { try Tile.read(path: $0, options: options) })
            let m = SeggerModel(config: config, seed: 0)
            try m.loadWeights(try SafeTensorsFile.read(path: weights).tensors, source: weights)
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

    func run() throws {
        do {
            let ck = try Checkpoint.read(path: checkpoint)
            let m = SeggerModel(config: ck.model, seed: 0)
            try m.loadWeights(ck.weights, source: checkpoint)
            print(weightsDigest(m.weights))
        } catch {
            fail("\(error)")
        }
    }
}
