// Thrift compact protocol, the encoder half: what Parquet's footer and page headers need (structs, lists,
// i8/i32/i64 as zigzag varints, binary, bool fields). Spec: apache/thrift doc/specs/thrift-compact-protocol.md.

/// Compact-protocol type ids (field headers; list element types use the same ids, bool as 2).
enum ThriftType: UInt8 {
    case boolTrue = 1, boolFalse = 2, i8 = 3, i16 = 4, i32 = 5, i64 = 6, double = 7, binary = 8, list = 9,
         set = 10, map = 11, structure = 12
}

/// Appends compact-protocol bytes to `bytes`. Fields must be written in increasing id order within a struct
/// (the short header form stores the delta from the previous id); the long form covers every other case.
struct ThriftCompactEncoder {
    var bytes: [UInt8] = []
    /// The last field id written in each open struct, innermost last.
    private var lastFieldId: [Int16] = [0]

    // MARK: primitives

    /// Unsigned LEB128.
    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

    mutating func i32(_ v: Int32) { varint(Self.zigzag(Int64(v))) }
    mutating func i64(_ v: Int64) { varint(Self.zigzag(v)) }
    mutating func binary(_ b: [UInt8]) {
        varint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }
    mutating func string(_ s: String) { binary(Array(s.utf8)) }

    // MARK: structs

    mutating func fieldHeader(_ id: Int16, _ type: ThriftType) {
        let last = lastFieldId[lastFieldId.count - 1]
        let delta = Int(id) - Int(last)
        if delta > 0 && delta <= 15 {
            bytes.append(UInt8(delta) << 4 | type.rawValue)
        } else {
            bytes.append(type.rawValue)
            varint(Self.zigzag(Int64(id)))
        }
        lastFieldId[lastFieldId.count - 1] = id
    }

    mutating func fieldI8(_ id: Int16, _ v: Int8) { fieldHeader(id, .i8); bytes.append(UInt8(bitPattern: v)) }
    mutating func fieldI32(_ id: Int16, _ v: Int32) { fieldHeader(id, .i32); i32(v) }
    mutating func fieldI64(_ id: Int16, _ v: Int64) { fieldHeader(id, .i64); i64(v) }
    mutating func fieldBinary(_ id: Int16, _ b: [UInt8]) { fieldHeader(id, .binary); binary(b) }
    mutating func fieldString(_ id: Int16, _ s: String) { fieldHeader(id, .binary); string(s) }
    /// A bool field's value lives in its header's type nibble.
    mutating func fieldBool(_ id: Int16, _ v: Bool) { fieldHeader(id, v ? .boolTrue : .boolFalse) }

    /// Opens a struct-valued field; close it with `endStruct()`.
    mutating func beginStructField(_ id: Int16) {
        fieldHeader(id, .structure)
        lastFieldId.append(0)
    }
    /// Opens a struct that is a list element (no field header).
    mutating func beginStruct() { lastFieldId.append(0) }
    /// Writes the stop byte of the innermost struct.
    mutating func endStruct() {
        bytes.append(0)
        lastFieldId.removeLast()
    }
    /// The stop byte of the top-level struct (whose field ids live at the bottom of the stack).
    mutating func endMessage() {
        bytes.append(0)
        lastFieldId = [0]
    }

    // MARK: lists

    /// A list header: size and element type in one byte below 15 elements, else 0xF_ then the size.
    mutating func listHeader(_ element: ThriftType, count: Int) {
        precondition(count >= 0 && count <= Int(Int32.max))
        if count < 15 {
            bytes.append(UInt8(count) << 4 | element.rawValue)
        } else {
            bytes.append(0xF0 | element.rawValue)
            varint(UInt64(count))
        }
    }
    mutating func fieldList(_ id: Int16, _ element: ThriftType, count: Int) {
        fieldHeader(id, .list)
        listHeader(element, count: count)
    }
}
