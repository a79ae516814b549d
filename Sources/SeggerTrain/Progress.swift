// Progress output on rank 0: a live line on a terminal, plain periodic lines in a log file (SLURM).
import Foundation
import SeggerDistributed

/// Prints training progress: `\r`-updated on a terminal, one line every `interval` seconds otherwise.
public final class Progress {
    let enabled: Bool
    let isTerminal: Bool
    let interval: Double
    var lastPrint = 0.0
    var lineOpen = false

    public init(enabled: Bool, plainInterval: Double) {
        self.enabled = enabled
        isTerminal = Progress.stdoutIsInteractive()
        interval = isTerminal ? 0.1 : plainInterval
    }

    /// A live line only for a person at a terminal. Under mpirun, ranks write to a pseudo-terminal even
    /// when mpirun's own output goes to a file (a SLURM log), so there the launcher's stdout decides.
    static func stdoutIsInteractive() -> Bool {
        let env = ProcessInfo.processInfo.environment
        if let mode = env["SEGGER_PROGRESS"] { return mode == "tty" }
        guard isatty(STDOUT_FILENO) == 1 else { return false }
        if env["SLURM_JOB_ID"] != nil { return false }
        if env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil {
            // mpirun forks local ranks directly: look at where the parent's stdout goes.
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(getppid())/fd/1")) ?? ""
            return target.hasPrefix("/dev/pts/") || target.hasPrefix("/dev/tty")
        }
        return true
    }

    /// Updates the progress display (rate-limited).
    public func update(_ text: @autoclosure () -> String, force: Bool = false) {
        guard enabled else { return }
        let now = monotonicSeconds()
        guard force || now - lastPrint >= interval else { return }
        lastPrint = now
        if isTerminal {
            let line = text()
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
            lineOpen = true
        } else {
            print(text())
            fflush(stdout)
        }
    }

    /// Prints a full line (ending any live progress line first).
    public func line(_ text: String) {
        guard enabled else { return }
        if lineOpen { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)); lineOpen = false }
        print(text)
        fflush(stdout)
    }
}
