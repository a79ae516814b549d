// User-defined MPI sums for compressed gradients. The carrier type is MPI_UINT16_T (2 bytes: MPI moves
// the bit patterns without looking at them); the op widens both operands to fp32, adds, and rounds back
// to nearest even — h ← fp16(fp32(in) + fp32(inout)). Never MPI_SUM on these bits: that is an integer sum.
// CFloat16 picks its F16C path at run time. Both ops are commutative (fp32 addition is), so Open MPI may
// use any reduction tree; every tree gives each rank the same bits.
import CFloat16
import CMPI

/// `inout[i] = fp16(fp32(in[i]) + fp32(inout[i]))`; `len` counts carrier elements (2 bytes each).
let fp16SumFunction: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
                                     UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<MPI_Datatype?>?) -> Void = {
    input, accumulator, len, _ in
    guard let input, let accumulator, let len, len.pointee > 0 else { return }
    segger_f16_add(input.assumingMemoryBound(to: UInt16.self), accumulator.assumingMemoryBound(to: UInt16.self),
                   Int(len.pointee))
}

/// `inout[i] = bf16(fp32(in[i]) + fp32(inout[i]))`.
let bf16SumFunction: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
                                     UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<MPI_Datatype?>?) -> Void = {
    input, accumulator, len, _ in
    guard let input, let accumulator, let len, len.pointee > 0 else { return }
    segger_bf16_add(input.assumingMemoryBound(to: UInt16.self), accumulator.assumingMemoryBound(to: UInt16.self),
                    Int(len.pointee))
}

/// MPI_Op_create(function, commute = 1). Called once per process, after MPI_Init.
func makeSumOp(_ function: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
                                          UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<MPI_Datatype?>?) -> Void)
    -> MPI_Op
{
    var op: MPI_Op?
    let rc = MPI_Op_create(function, 1, &op)
    guard rc == MPI_SUCCESS, let op else { fatalError("MPI_Op_create failed with code \(rc)") }
    return op
}
