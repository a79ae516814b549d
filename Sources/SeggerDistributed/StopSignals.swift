// Preemption: SLURM sends a warning signal (sbatch --signal) before the time limit; SIGTERM precedes a
// kill. The handler only sets a flag; the loop finishes its step, writes `last`, and exits cleanly.
import Foundation

/// Set by the signal handler; read once per step (and agreed across ranks by an all-reduce).
nonisolated(unsafe) var stopSignalReceived: Int32 = 0

public enum StopSignals {
    /// Installs handlers for SIGUSR1, SIGUSR2 and SIGTERM that request a clean stop.
    public static func install() {
        for s in [SIGUSR1, SIGUSR2, SIGTERM] {
            signal(s) { sig in stopSignalReceived = sig }
        }
    }

    /// The signal received, or 0.
    public static var received: Int32 { stopSignalReceived }
}
