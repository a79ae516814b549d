import COpenBLAS

/// OpenBLAS threads of this process (one rank). Ranks, not BLAS threads, should fill the cores.
public enum BLASThreads {
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
    public static var current: Int { Int(openblas_get_num_threads()) }
}
