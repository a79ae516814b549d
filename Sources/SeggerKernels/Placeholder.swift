// Kernels: math only (GEMM wrappers, GATv2 edge kernels, L2 normalize, BCE).
