// mpi-selftest: multi-rank checks of SeggerDistributed, run under mpirun by SeggerDistributedTests.
//
//   mpirun -np 2 mpi-selftest            all checks; rank 0 prints "PASS <check>" / "FAIL <check>: why"
//   mpirun -np 2 mpi-selftest abort      the last rank aborts while the others wait in a barrier
//   mpirun -np 2 mpi-selftest exit       the last rank calls exit(1) while the others wait in a barrier
//   mpirun -np 2 mpi-selftest exit-together   every rank leaves with status 3 through exitTogether
//   mpirun -np 2 mpi-selftest bench [ms] overlap measurement of GradientBuckets (a model-sized buffer)
//   mpirun -np 2 mpi-selftest sweep [--compression fp16|none] [--min_bytes B] [--max_bytes B] [--reps N]
//                                        all-reduce time against message size (JSON lines)
//
// Every rank exits 0 when all checks pass and 1 otherwise.
import Foundation
import SeggerDistributed

let arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first ?? "check"
switch mode {
case "check": exit(runChecks())
case "abort": runAbort()
case "exit": runExit()
case "exit-together": runExitTogether()
case "bench": runBench(arguments: Array(arguments.dropFirst()))
case "sweep": runSweep(arguments: Array(arguments.dropFirst()))
default:
    FileHandle.standardError.write("usage: mpi-selftest [check|abort|exit|exit-together|bench|sweep]\n".data(using: .utf8)!)
    exit(2)
}
