// Lightning's output layout under --default_root_dir, written by rank 0 only:
//   <root>/lightning_logs/version_N/{metrics.csv, hparams.yaml}
//   <root>/checkpoints/{epoch=E-step=S.safetensors, last.safetensors}
import Foundation
import SafeTensors
import SeggerTiles

/// The run's output directories and the metrics log.
public final class RunDirectory {
    public let root: String
    public let checkpoints: String
    public let version: Int
    public let logDir: String
    public let metricsPath: String
    private var metrics: FileHandle?

    /// Columns of metrics.csv (Lightning's CSVLogger writes one row per logging call, empty cells
    /// for the metrics that call did not log).
    public static let columns = ["epoch", "step", "train_loss", "train_loss_epoch", "validation_loss",
                                 "validation_auroc", "validation_f1", "grad_norm", "lr", "skipped_steps",
                                 "elapsed_s"]

    /// Creates `lightning_logs/version_N` (a new N each run, as Lightning does) and its metrics.csv under
    /// the root whose checkpoints directory `checkpoints` holds (created and locked before, so that a
    /// start that must be refused leaves no trace in the root).
    public init(checkpoints: CheckpointDirectory, root: String) throws {
        self.root = root
        self.checkpoints = checkpoints.path
        let logs = (root as NSString).appendingPathComponent("lightning_logs")
        try OutputPaths.makeDirectories(logs, flag: "default_root_dir", given: root)
        let fm = FileManager.default
        let existing = (try? fm.contentsOfDirectory(atPath: logs)) ?? []
        let versions = existing.compactMap { $0.hasPrefix("version_") ? Int($0.dropFirst(8)) : nil }
        version = (versions.max() ?? -1) + 1
        logDir = (logs as NSString).appendingPathComponent("version_\(version)")
        metricsPath = (logDir as NSString).appendingPathComponent("metrics.csv")
        try OutputPaths.makeDirectories(logDir, flag: "default_root_dir", given: root)
        // O_EXCL: a version directory another process just created is never written over.
        let fd = open(metricsPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw OutputError("--default_root_dir \(root) is not writable: cannot create \(metricsPath): \(String(cString: strerror(errno)))")
        }
        metrics = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        metrics?.write(Data((RunDirectory.columns.joined(separator: ",") + "\n").utf8))
    }

    /// Appends one row; `values` maps column names to already formatted cells.
    public func log(_ values: [String: String]) {
        let row = RunDirectory.columns.map { values[$0] ?? "" }.joined(separator: ",") + "\n"
        metrics?.write(Data(row.utf8))
    }

    /// Writes hparams.yaml: flat `key: value` lines, every string double-quoted (a path such as `nan`,
    /// `1e3`, `[x]` or `true` stays a string), numbers, bools, null and lists plain.
    public func writeHyperparameters(_ pairs: [(String, HyperparameterValue)]) throws {
        let text = RunDirectory.yaml(pairs)
        try AtomicFile.write(text, to: (logDir as NSString).appendingPathComponent("hparams.yaml"))
    }

    public static func yaml(_ pairs: [(String, HyperparameterValue)]) -> String {
        pairs.map { "\($0.0): \($0.1.yaml)\n" }.joined()
    }

    /// Formats a metric the way CSV readers expect (full float precision, NaN as empty-safe "nan").
    public static func cell(_ x: Double) -> String {
        x.isNaN ? "nan" : String(format: "%.9g", x)
    }
}
