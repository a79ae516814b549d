import COpenBLAS
import Foundation

/// OpenBLAS threads of this process (one rank). Ranks, not BLAS threads, should fill the cores.
public enum BLASThreads {
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(clamping: min(max(1, n), BLASThreads.maximum))) }
    /// The most threads a rank may ask for (`--num_threads`, `OPENBLAS_NUM_THREADS`).
    public static let maximum = 1024
    public static var current: Int { Int(openblas_get_num_threads()) }
}

/// Which OpenBLAS kernel family is in use, and the fix for CPUs that OpenBLAS does not recognise.
///
/// Debian's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its kernels when the library loads. On a CPU model it
/// does not know (a recent Xeon shown to a VM as "Intel(R) Xeon(R) Processor") it falls back to the SSE3
/// `Prescott` kernels, several times slower than the AVX-512 `SkylakeX` ones at this model's shapes
/// (figures in docs/performance.md). The library reads `OPENBLAS_CORETYPE` only at load time, so the
/// process re-executes itself once with it set. An explicit `OPENBLAS_CORETYPE` is always respected.
public enum BLASKernels {
    /// The kernel family OpenBLAS is using.
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// Families older than AVX2; if the CPU can do better, OpenBLAS did not recognise it.
    static let legacyFamilies: Set<String> = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
                                              "Sandybridge", "Katmai", "Coppermine", "Northwood", "Banias"]

    /// The family this CPU should use, when OpenBLAS fell back to a legacy one; nil when all is well.
    public static var better: String? {
        guard legacyFamilies.contains(coreName) else { return nil }
        if segger_cpu_has_avx512() != 0 { return "SkylakeX" }
        if segger_cpu_has_avx2_fma() != 0 { return "Haswell" }
        return nil
    }

    /// Re-executes this program with `OPENBLAS_CORETYPE` set when OpenBLAS picked legacy kernels on a
    /// CPU with AVX2/AVX-512. Call first thing in `main`, before MPI is initialized. Returns (doing
    /// nothing) when the variable is already set, when re-execution was already tried, or on failure.
    public static func reexecWithBetterKernelsIfNeeded() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, env["SEGGER_BLAS_REEXEC"] == nil, let core = better else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv("SEGGER_BLAS_REEXEC", "1", 1)
        let args = CommandLine.arguments
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        cargs.append(nil)
        execv("/proc/self/exe", &cargs)
        // Only reached when exec failed: carry on with the kernels we have.
        unsetenv("OPENBLAS_CORETYPE")
    }

    /// One line for the start-up log.
    public static var summary: String {
        let env = ProcessInfo.processInfo.environment
        if env["SEGGER_BLAS_REEXEC"] != nil { return "OpenBLAS kernels \(coreName) (auto-selected: OpenBLAS did not recognise this CPU)" }
        return "OpenBLAS kernels \(coreName)"
    }
}
