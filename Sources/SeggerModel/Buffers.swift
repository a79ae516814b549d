// Memory for the model's activations and indices: buffers that grow to the largest batch and are then
// reused, each placed at its own offset within a 4 KiB page.

/// Allocates `count` elements starting `line` 64-byte lines into a 4 KiB page; returns the allocation
/// (to deallocate) and the buffer.
///
/// Large `malloc` blocks all start at the same page offset. Rows i of two buffers with power-of-two
/// strides (xr and dxr, say), or the same flat offset in the weights and the gradients, then share their
/// address bits 0–11, and the core's store-to-load check, which compares only those bits, makes a load
/// from one wait for a pending store to the other ("4K aliasing"). Distinct page offsets avoid that.
public func allocateAtPageOffset<T>(_ type: T.Type, count: Int, line: Int)
    -> (UnsafeMutableRawPointer, UnsafeMutableBufferPointer<T>) {
    let offset = 64 * (line % 64)
    let raw = UnsafeMutableRawPointer.allocate(byteCount: offset + max(count, 1) * MemoryLayout<T>.stride,
                                               alignment: 4096)
    return (raw, UnsafeMutableBufferPointer(start: (raw + offset).bindMemory(to: T.self, capacity: count), count: count))
}

/// Page offset of the next `GrowableBuffer`, in 64-byte lines (a step coprime with 64 visits all of them).
nonisolated(unsafe) private var growableBufferNextLine = 0

/// A growable buffer: grows to the largest request and is then reused (no per-step allocation).
/// Each buffer starts at its own page offset (see `allocateAtPageOffset`).
final class GrowableBuffer<Element> {
    private(set) var p: UnsafeMutablePointer<Element>
    private(set) var capacity: Int
    private var raw: UnsafeMutableRawPointer
    private let line: Int
    init() {
        line = growableBufferNextLine
        growableBufferNextLine = (growableBufferNextLine + 23) % 64
        capacity = 16
        (raw, p) = GrowableBuffer.allocate(16, line: line)
    }
    private static func allocate(_ n: Int, line: Int) -> (UnsafeMutableRawPointer, UnsafeMutablePointer<Element>) {
        let (raw, b) = allocateAtPageOffset(Element.self, count: n, line: line)
        return (raw, b.baseAddress!)
    }
    deinit { raw.deallocate() }
    /// At least n elements (contents undefined after a grow).
    func reserve(_ n: Int) -> UnsafeMutablePointer<Element> {
        if n > capacity {
            raw.deallocate()
            capacity = max(n, capacity + capacity / 4)
            (raw, p) = GrowableBuffer.allocate(capacity, line: line)
        }
        return p
    }
    /// Copies `a` in (growing if needed) and returns the pointer.
    func load(_ a: [Element]) -> UnsafeMutablePointer<Element> {
        let q = reserve(a.count)
        a.withUnsafeBufferPointer { if let b = $0.baseAddress { q.update(from: b, count: a.count) } }
        return q
    }
}

/// Activations and gradients.
typealias Scratch = GrowableBuffer<Float>
/// Indices (edges, orders, tokens).
typealias IndexScratch = GrowableBuffer<Int32>
