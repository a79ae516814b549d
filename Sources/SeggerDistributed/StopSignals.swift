// Preemption and interruption: SLURM sends a warning signal (sbatch --signal) before the time limit;
// SIGTERM precedes a kill; Ctrl-C sends SIGINT. The handler only sets a flag; the long loops (training's
// steps, prediction's tiles) read it between units of work, agree on it across ranks, and stop cleanly:
// training writes `last`, prediction removes what it staged.
import Foundation

/// Set by the signal handler; read between units of work (and agreed across ranks).
nonisolated(unsafe) var stopSignalReceived: Int32 = 0

/// Signals that request a clean stop instead of killing the process.
public enum StopSignals {
    /// Installs handlers for `signals` (default SIGUSR1, SIGUSR2 and SIGTERM) that request a clean stop.
    public static func install(_ signals: [Int32] = [SIGUSR1, SIGUSR2, SIGTERM]) {
        for s in signals {
            signal(s) { sig in stopSignalReceived = sig }
        }
    }

    /// The signal received, or 0.
    public static var received: Int32 { stopSignalReceived }

    /// Forgets a received signal (a test that raised one, a loop that has handled it).
    public static func clear() { stopSignalReceived = 0 }

    /// The signal's name ("SIGTERM"), or its number.
    public static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        case SIGUSR2: return "SIGUSR2"
        default: return "signal \(sig)"
        }
    }
}
