// Which rank owns which transcript id (and which cell name): contiguous key ranges cut at splitters
// that every rank computes alike from a sample of every rank's keys. Ranges, not hashes, so that the
// owners' sorted rows, written in rank order, give one file sorted by key whatever the rank count.
import Foundation
import SeggerDistributed

/// A cell name ordered by its UTF-8 bytes (the same order on every machine and in every language).
public struct CellKey: Comparable, Hashable, Sendable {
    public var name: String
    public init(_ name: String) { self.name = name }
    public static func < (a: CellKey, b: CellKey) -> Bool { a.name.utf8.lexicographicallyPrecedes(b.name.utf8) }
}

/// Cuts of the key space: key k belongs to rank `owner(k)` = the number of splitters ≤ k.
public struct KeyRanges<Key: Comparable & Sendable>: Sendable {
    /// size − 1 ascending splitters.
    public let splitters: [Key]

    public init(splitters: [Key]) { self.splitters = splitters }

    /// The rank that owns `key`.
    @inline(__always)
    public func owner(_ key: Key) -> Int {
        var lo = 0, hi = splitters.count  // first splitter > key
        while lo < hi {
            let mid = (lo + hi) >> 1
            if splitters[mid] <= key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Splitters that cut the pooled samples into `parts` ranges of about equal weight. `samples[r]` are
    /// rank r's samples in ascending order, each standing for `weights[r]` keys.
    public static func choose(samples: [[Key]], weights: [Double], parts: Int) -> KeyRanges {
        precondition(parts >= 1 && samples.count == weights.count)
        var pooled: [(Key, Double)] = []
        for (r, s) in samples.enumerated() { for k in s { pooled.append((k, weights[r])) } }
        pooled.sort { $0.0 < $1.0 }
        let total = pooled.reduce(0) { $0 + $1.1 }
        var splitters: [Key] = []
        var acc = 0.0, p = 0
        for part in 1..<max(parts, 1) {
            let target = total * Double(part) / Double(parts)
            while p < pooled.count && acc + pooled[p].1 <= target { acc += pooled[p].1; p += 1 }
            if p < pooled.count {
                splitters.append(pooled[p].0)
            } else if let last = splitters.last ?? pooled.last?.0 {
                splitters.append(last)
            }
        }
        // With no samples at all every key goes to rank 0.
        if splitters.count < parts - 1 { return KeyRanges(splitters: []) }
        return KeyRanges(splitters: splitters)
    }
}

/// At most `count` evenly spaced elements of a sorted array (its quantiles), and the weight each carries.
func quantileSample<Key>(_ sorted: [Key], count: Int) -> (sample: [Key], weight: Double) {
    let n = sorted.count
    guard n > 0 else { return ([], 0) }
    let s = min(n, count)
    return ((0..<s).map { sorted[($0 * n) / s] }, Double(n) / Double(s))
}

/// Key ranges over transcript ids from every rank's rows (sorted by id, one per id). Collective.
func transcriptRanges(sortedIDs rows: [TranscriptRow], comm: Communicator, samplesPerRank: Int = 2048) -> KeyRanges<Int64> {
    let (rowSample, weight) = quantileSample(rows, count: samplesPerRank)
    let sample = rowSample.map(\.id)
    let samples = comm.allgatherv(sample)
    let weights = comm.allgatherv([weight]).map { $0.first ?? 0 }
    return KeyRanges.choose(samples: samples, weights: weights, parts: comm.size)
}

/// Key ranges over cell names from every rank's sorted, distinct names. Collective.
func cellRanges(sortedNames: [CellKey], comm: Communicator, samplesPerRank: Int = 512) -> KeyRanges<CellKey> {
    let (sample, weight) = quantileSample(sortedNames, count: samplesPerRank)
    var bytes = ByteWriter()
    for k in sample { bytes.string(k.name) }
    let gathered = comm.allgatherv(bytes.bytes)
    var samples: [[CellKey]] = []
    for g in gathered {
        var r = ByteReader(g)
        var s: [CellKey] = []
        while !r.atEnd { s.append(CellKey(r.string())) }
        samples.append(s)
    }
    let weights = comm.allgatherv([weight]).map { $0.first ?? 0 }
    return KeyRanges.choose(samples: samples, weights: weights, parts: comm.size)
}

/// Plain values and length-prefixed strings appended to bytes (for exchanges between ranks of one job:
/// same binary, same byte order).
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func value<T: BitwiseCopyable>(_ v: T) {
        withUnsafeBytes(of: v) { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { u in
            value(UInt32(u.count))
            bytes.append(contentsOf: u)
        }
    }
}

/// Reads what ``ByteWriter`` wrote, in the same order.
struct ByteReader {
    let bytes: [UInt8]
    var at = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { at >= bytes.count }

    mutating func value<T: BitwiseCopyable>(_ type: T.Type = T.self) -> T {
        let size = MemoryLayout<T>.size
        precondition(at + size <= bytes.count, "ByteReader: read past the end")
        let v = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: T.self) }
        at += size
        return v
    }

    mutating func string() -> String {
        let n = Int(value(UInt32.self))
        precondition(at + n <= bytes.count, "ByteReader: string past the end")
        let s = String(decoding: bytes[at..<(at + n)], as: UTF8.self)
        at += n
        return s
    }
}
