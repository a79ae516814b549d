// Progress output on rank 0: on a terminal, one bar per epoch redrawn in place (as Lightning's tqdm bar);
// in a log file (SLURM, a pipe), one plain line every `interval` seconds.
import Foundation
import SeggerDistributed

/// Prints training progress: a `\r`-updated bar per epoch on a terminal, periodic plain lines otherwise.
public final class Progress {
    let enabled: Bool
    let isTerminal: Bool
    let interval: Double
    var lastPrint = 0.0
    var lineOpen = false
    /// The epoch being shown: its label ("epoch 3/20"), batches in it, where this process started it
    /// (a resumed epoch starts mid-way) and when.
    var label = ""
    var total = 0, firstBatch = 0
    var started = 0.0
    var last = EpochState()

    struct EpochState {
        var done = 0, step = 0
        var loss = Double.nan, tilesPerSecond = 0.0
    }

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

    /// Starts the display of epoch `epoch` (0-based) of `epochs`, with `batches` batches of which
    /// `resumedAt` were done before this process started.
    public func startEpoch(_ epoch: Int, of epochs: Int, batches: Int, resumedAt: Int) {
        label = "epoch \(epoch + 1)/\(epochs)"
        total = batches
        firstBatch = resumedAt
        started = monotonicSeconds()
        last = EpochState(done: resumedAt)
        if isTerminal { lastPrint = 0 }     // a new bar at once; in a log, lines stay `interval` apart
    }

    /// Batch `done` (1-based) of the epoch finished: global `step`, the epoch's running mean `loss`, the
    /// throughput so far. Rate-limited.
    public func batchFinished(_ done: Int, step: Int, loss: Double, tilesPerSecond: Double) {
        last = EpochState(done: done, step: step, loss: loss, tilesPerSecond: tilesPerSecond)
        guard enabled else { return }
        let now = monotonicSeconds()
        guard (isTerminal && done == total) || now - lastPrint >= interval else { return }
        lastPrint = now
        if isTerminal {
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + bar(now: now, width: Progress.terminalColumns())).utf8))
            lineOpen = true
        } else {
            print(plainLine(now: now))
            fflush(stdout)
        }
    }

    /// Ends the epoch's bar: on a terminal the finished bar stays on its own line, as tqdm leaves it.
    public func finishEpoch() {
        guard enabled, isTerminal, total > 0 else { return }
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + bar(now: monotonicSeconds(), width: Progress.terminalColumns()) + "\n").utf8))
        lineOpen = false
    }

    /// Prints a full line (ending any live progress line first).
    public func line(_ text: String) {
        guard enabled else { return }
        if lineOpen { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)); lineOpen = false }
        print(text)
        fflush(stdout)
    }

    // MARK: - Text

    /// Seconds since the epoch started here, and the estimate of what is left (nil before a batch).
    func times(now: Double) -> (elapsed: Double, remaining: Double?) {
        let elapsed = now - started
        let doneHere = last.done - firstBatch
        guard doneHere > 0 else { return (elapsed, nil) }
        return (elapsed, elapsed / Double(doneHere) * Double(max(0, total - last.done)))
    }

    /// `epoch 3/20  58%|███████▋     | 14/24 [00:03<00:02, 8.1 tiles/s, loss 0.4123]`, at most `width`
    /// columns (and 100).
    func bar(now: Double, width: Int) -> String {
        let (elapsed, remaining) = times(now: now)
        let fraction = total > 0 ? min(1, Double(last.done) / Double(total)) : 0
        let head = "\(label) \(String(format: "%3d", Int((fraction * 100).rounded(.down))))%|"
        let tail = "| \(last.done)/\(total) [\(clock(elapsed))<\(remaining.map(clock) ?? "?"), "
            + String(format: "%.1f tiles/s, loss %.4f]", last.tilesPerSecond, last.loss)
        let cells = max(10, min(width, 100) - head.count - tail.count)
        return head + barCells(fraction, cells) + tail
    }

    /// The plain line of a log file: `epoch 3/20  batch 14/24  step 62  loss 0.4123  8.1 tiles/s  elapsed 00:03  left 00:02`.
    func plainLine(now: Double) -> String {
        let (elapsed, remaining) = times(now: now)
        return "\(label)  batch \(last.done)/\(total)  step \(last.step)  "
            + String(format: "loss %.4f  %.1f tiles/s", last.loss, last.tilesPerSecond)
            + "  elapsed \(clock(elapsed))  left \(remaining.map(clock) ?? "?")"
    }

    /// Terminal width from the terminal, else $COLUMNS, else 100.
    static func terminalColumns() -> Int {
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init) ?? 100
    }
}

/// `fraction` of `cells` character cells filled with blocks, eighths at the edge.
func barCells(_ fraction: Double, _ cells: Int) -> String {
    let eighths = Int((fraction * Double(cells) * 8).rounded(.down))
    let full = min(cells, eighths / 8)
    let partial = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"][eighths % 8]
    let used = full + (full < cells && !partial.isEmpty ? 1 : 0)
    return String(repeating: "█", count: full) + (full < cells ? partial : "") + String(repeating: " ", count: cells - used)
}

/// `mm:ss`, or `h:mm:ss` from an hour on.
func clock(_ seconds: Double) -> String {
    let s = Int(max(0, seconds).rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%02d:%02d", s / 60, s % 60)
}
