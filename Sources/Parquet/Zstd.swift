// Page compression through libzstd's one-shot API (a Parquet ZSTD page is one standard zstd frame).
import CZstd

/// A reusable compression context at one level.
final class ZstdCompressor {
    private let context: OpaquePointer
    let level: Int32
    /// The file being written, named in errors.
    let path: String

    static var levelRange: ClosedRange<Int32> { ZSTD_minCLevel()...ZSTD_maxCLevel() }

    init?(level: Int32, path: String) {
        guard let c = ZSTD_createCCtx() else { return nil }
        context = c
        self.level = level
        self.path = path
    }
    deinit { ZSTD_freeCCtx(context) }

    /// Compresses `input` (a page of column `column`) into the front of `output` (grown when too small for
    /// the worst case); returns the frame's length.
    func compress(_ input: [UInt8], into output: inout [UInt8], column: String) throws -> Int {
        let bound = ZSTD_compressBound(input.count)
        if output.count < bound { output = [UInt8](repeating: 0, count: bound) }
        let n = input.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                ZSTD_compressCCtx(context, dst.baseAddress, dst.count, src.baseAddress, src.count, level)
            }
        }
        if ZSTD_isError(n) != 0 {
            throw ParquetError(path: path, message: "zstd compression of column \"\(column)\" failed: \(String(cString: ZSTD_getErrorName(n)))")
        }
        return n
    }
}
