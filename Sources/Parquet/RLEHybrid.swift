// The RLE / bit-packing hybrid (parquet-format Encodings.md, "RLE = 3"), used here for definition levels.

/// Appends the hybrid encoding of `values` (each < 2^bitWidth) to `out`, without the 4-byte length prefix
/// that data page v1 puts in front of levels.
///
/// A run of at least 8 equal values becomes an RLE run (header `len << 1`, then the value in
/// ceil(bitWidth / 8) little-endian bytes); everything else is bit-packed in groups of 8 values (header
/// `groups << 1 | 1`, then bitWidth bytes per group, values packed from each byte's least significant bit).
/// A bit-packed run stops where a run of 8 equal values begins; only the last group of all may be padded with
/// zeros, which readers drop because they know the value count.
func encodeRLEHybrid<C: RandomAccessCollection>(_ values: C, bitWidth: Int, into out: inout [UInt8])
    where C.Element == UInt32, C.Index == Int {
    precondition(bitWidth >= 1 && bitWidth <= 32)
    let n = values.count
    let base = values.startIndex
    let maxRun = Int(Int32.max)
    // Length of the run of equal values at i, counting at most `cap`.
    func run(at i: Int, cap: Int) -> Int {
        let v = values[base + i]
        var j = i + 1
        let end = min(n, i + cap)
        while j < end && values[base + j] == v { j += 1 }
        return j - i
    }
    func varint(_ x: Int) {
        var v = UInt64(x)
        while v >= 0x80 { out.append(UInt8(truncatingIfNeeded: v) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }
    var i = 0
    while i < n {
        let r = run(at: i, cap: maxRun)
        if r >= 8 {
            varint(r << 1)
            var v = values[base + i]
            for _ in 0..<((bitWidth + 7) / 8) { out.append(UInt8(truncatingIfNeeded: v)); v >>= 8 }
            i += r
            continue
        }
        // Bit-packed: whole groups of 8 until a run of 8 starts at a group boundary, or the end.
        let start = i
        var groups = 0
        repeat {
            i += 8
            groups += 1
        } while i < n && run(at: i, cap: 8) < 8 && groups < maxRun / 8
        varint(groups << 1 | 1)
        var acc: UInt64 = 0
        var bits = 0
        for k in start..<(start + groups * 8) {
            let v = k < n ? UInt64(values[base + k]) : 0
            acc |= v << UInt64(bits)
            bits += bitWidth
            while bits >= 8 {
                out.append(UInt8(truncatingIfNeeded: acc))
                acc >>= 8
                bits -= 8
            }
        }
        i = min(i, n)
    }
}
