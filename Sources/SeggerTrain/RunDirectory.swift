// Lightning's output layout under --default_root_dir, written by rank 0 only:
//   <root>/lightning_logs/version_N/{metrics.csv, hparams.yaml}
//   <root>/checkpoints/{epoch=E-step=S.safetensors, last.safetensors}
import Foundation
import SafeTensors

/// A problem with the output directory, reported before training starts or at the failed write.
public struct OutputError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

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

    /// Creates the directories (a new `version_N` each run, as Lightning does) and checks that they
    /// are writable, so a bad `--default_root_dir` fails before any training.
    public init(root: String) throws {
        self.root = root
        checkpoints = (root as NSString).appendingPathComponent("checkpoints")
        let logs = (root as NSString).appendingPathComponent("lightning_logs")
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
            try fm.createDirectory(atPath: logs, withIntermediateDirectories: true)
        } catch {
            throw OutputError("cannot create output directories under --default_root_dir \(root): \(error.localizedDescription)")
        }
        let existing = (try? fm.contentsOfDirectory(atPath: logs)) ?? []
        let versions = existing.compactMap { $0.hasPrefix("version_") ? Int($0.dropFirst(8)) : nil }
        version = (versions.max() ?? -1) + 1
        logDir = (logs as NSString).appendingPathComponent("version_\(version)")
        metricsPath = (logDir as NSString).appendingPathComponent("metrics.csv")
        do {
            try fm.createDirectory(atPath: logDir, withIntermediateDirectories: true)
            let probe = (checkpoints as NSString).appendingPathComponent(".write-test-\(getpid())")
            try AtomicFile.write("ok\n", to: probe)
            unlink(probe)
            guard fm.createFile(atPath: metricsPath, contents: Data((RunDirectory.columns.joined(separator: ",") + "\n").utf8)) else {
                throw OutputError("cannot create \(metricsPath)")
            }
            metrics = FileHandle(forWritingAtPath: metricsPath)
            metrics?.seekToEndOfFile()
        } catch let e as OutputError {
            throw e
        } catch {
            throw OutputError("--default_root_dir \(root) is not writable: \(error)")
        }
    }

    /// Appends one row; `values` maps column names to already formatted cells.
    public func log(_ values: [String: String]) {
        let row = RunDirectory.columns.map { values[$0] ?? "" }.joined(separator: ",") + "\n"
        metrics?.write(Data(row.utf8))
    }

    /// Writes hparams.yaml (flat `key: value` lines, strings quoted).
    public func writeHyperparameters(_ pairs: [(String, String)]) throws {
        var text = ""
        for (k, v) in pairs {
            let plain = Double(v) != nil || ["true", "false", "null"].contains(v) || v.hasPrefix("[")
            text += "\(k): \(plain ? v : "'\(v.replacingOccurrences(of: "'", with: "''"))'")\n"
        }
        try AtomicFile.write(text, to: (logDir as NSString).appendingPathComponent("hparams.yaml"))
    }

    public var lastCheckpoint: String { (checkpoints as NSString).appendingPathComponent("last.safetensors") }

    public func checkpointPath(epoch: Int, step: Int) -> String {
        (checkpoints as NSString).appendingPathComponent("epoch=\(epoch)-step=\(step).safetensors")
    }

    /// Formats a metric the way CSV readers expect (full float precision, NaN as empty-safe "nan").
    public static func cell(_ x: Double) -> String {
        x.isNaN ? "nan" : String(format: "%.9g", x)
    }
}
