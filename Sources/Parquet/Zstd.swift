// Page compression through libzstd's one-shot API (a Parquet ZSTD page is one standard zstd frame).
import CZstd

/// A reusable compression context at one level.
final class ZstdCompressor {
    private let context: OpaquePointer
    let level: Int32

    static var levelRange: ClosedRange<Int32> { ZSTD_minCLevel()...ZSTD_maxCLevel() }

    init?(level: Int32) {
        guard let c = ZSTD_createCCtx() else { return nil }
        context = c
        self.level = level
    }
    deinit { ZSTD_freeCCtx(context) }

    struct Failure: Error { let name: String }

    /// Compresses `input` into the front of `output` (grown when too small for the worst case); returns the
    /// frame's length.
    func compress(_ input: [UInt8], into output: inout [UInt8]) throws -> Int {
        let bound = ZSTD_compressBound(input.count)
        if output.count < bound { output = [UInt8](repeating: 0, count: bound) }
        let n = input.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                ZSTD_compressCCtx(context, dst.baseAddress, dst.count, src.baseAddress, src.count, level)
            }
        }
        if ZSTD_isError(n) != 0 { throw Failure(name: String(cString: ZSTD_getErrorName(n))) }
        return n
    }
}
