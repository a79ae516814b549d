// The safetensors format (8-byte little-endian header length, JSON header, raw little-endian data),
// read with every field validated and written atomically. Tiles, weights, checkpoints and the golden
// PyTorch files all go through this one reader and writer.
import Foundation

/// Element types of the safetensors format.
public enum DType: String, Sendable, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .F64, .I64: return 8
        case .F32, .I32: return 4
        case .F16, .BF16, .I16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }

    public var isFloatingPoint: Bool { self == .F64 || self == .F32 || self == .F16 || self == .BF16 }
}

/// The one error of this library, reading or writing: it names the file, the tensor (when there is one)
/// and the problem.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let tensor: String?
    public let message: String

    public init(path: String, tensor: String? = nil, _ message: String) {
        self.path = path
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        if let tensor { return "\(path): tensor '\(tensor)': \(message)" }
        return "\(path): \(message)"
    }
}

/// One tensor: element type, shape and its raw little-endian bytes.
public struct Tensor: Sendable, Equatable {
    public var dtype: DType
    public var shape: [Int]
    public var data: [UInt8]

    /// Number of elements (1 for a scalar with shape []).
    public var count: Int { shape.reduce(1, *) }

    public init(dtype: DType, shape: [Int], data: [UInt8]) {
        precondition(shape.reduce(1, *) * dtype.size == data.count, "Tensor bytes do not match shape")
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    public init(_ values: [Float], shape: [Int]? = nil) {
        self.init(dtype: .F32, shape: shape ?? [values.count], data: Tensor.bytes(of: values))
    }

    public init(_ values: [Double], shape: [Int]? = nil) {
        self.init(dtype: .F64, shape: shape ?? [values.count], data: Tensor.bytes(of: values))
    }

    public init(_ values: [Int64], shape: [Int]? = nil) {
        self.init(dtype: .I64, shape: shape ?? [values.count], data: Tensor.bytes(of: values))
    }

    public init(_ values: [Int32], shape: [Int]? = nil) {
        self.init(dtype: .I32, shape: shape ?? [values.count], data: Tensor.bytes(of: values))
    }

    public init(_ values: [UInt8], shape: [Int]? = nil) {
        self.init(dtype: .U8, shape: shape ?? [values.count], data: values)
    }

    static func bytes<T>(of values: [T]) -> [UInt8] {
        values.withUnsafeBytes { Array($0) }
    }

    func load<T>(_: T.Type) -> [T] {
        let n = count
        return [T](unsafeUninitializedCapacity: n) { buf, initialized in
            data.withUnsafeBytes { raw in
                if n > 0 { memcpy(buf.baseAddress!, raw.baseAddress!, n * MemoryLayout<T>.stride) }
            }
            initialized = n
        }
    }

    /// The elements as Float, converting from any floating or integer type.
    public func floats() -> [Float] {
        switch dtype {
        case .F32: return load(Float.self)
        case .F64: return load(Double.self).map { Float($0) }
        case .F16: return load(UInt16.self).map { Float(Float16(bitPattern: $0)) }
        case .BF16: return load(UInt16.self).map { Float(bitPattern: UInt32($0) << 16) }
        case .I64: return load(Int64.self).map { Float($0) }
        case .I32: return load(Int32.self).map { Float($0) }
        case .I16: return load(Int16.self).map { Float($0) }
        case .I8: return load(Int8.self).map { Float($0) }
        case .U8, .BOOL: return data.map { Float($0) }
        }
    }

    /// The elements as Double, converting from any floating or integer type.
    public func doubles() -> [Double] {
        switch dtype {
        case .F64: return load(Double.self)
        default: return floats().map { Double($0) }
        }
    }

    /// The elements as Int64; nil when the tensor holds floating-point values.
    public func int64s() -> [Int64]? {
        switch dtype {
        case .I64: return load(Int64.self)
        case .I32: return load(Int32.self).map { Int64($0) }
        case .I16: return load(Int16.self).map { Int64($0) }
        case .I8: return load(Int8.self).map { Int64($0) }
        case .U8, .BOOL: return data.map { Int64($0) }
        default: return nil
        }
    }
}

/// A parsed safetensors file: metadata and tensors, every offset and size checked.
public struct SafeTensorsFile: Sendable {
    public let path: String
    public var metadata: [String: String]
    /// Tensor names in the order of their data offsets in the file.
    public var names: [String]
    public var tensors: [String: Tensor]

    public init(path: String, metadata: [String: String] = [:], names: [String] = [], tensors: [String: Tensor] = [:]) {
        self.path = path
        self.metadata = metadata
        self.names = names
        self.tensors = tensors
    }

    public subscript(name: String) -> Tensor? { tensors[name] }

    /// The tensor, or an error naming the file and the missing tensor.
    public func require(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw SafeTensorsError(path: path, tensor: name, "missing required tensor") }
        return t
    }

    /// Reads and validates a file. Errors name the file and, where one is at fault, the tensor.
    public static func read(path: String) throws -> SafeTensorsFile {
        try parse(bytes: readBytes(path: path), path: path)
    }

    /// The largest JSON header accepted (the limit of the reference `safetensors` crate).
    public static let maxHeaderLength = 100_000_000
    /// The deepest JSON nesting accepted in a header (a valid header nests 3 deep).
    static let maxHeaderDepth = 16

    static func checkRegularFile(_ st: stat, path: String) throws {
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG else {
            throw SafeTensorsError(path: path, kind == S_IFDIR ? "not a regular file: is a directory" : "not a regular file")
        }
    }

    /// Opens `path` for reading (non-blocking, so that a FIFO named like a tile cannot block the open) and
    /// checks that it is a regular file. Returns the descriptor (the caller closes it) and the size.
    static func openRegularFile(_ path: String) throws -> (fd: Int32, size: Int) {
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw SafeTensorsError(path: path, "cannot open file (\(String(cString: strerror(errno))))") }
        var st = stat()
        do {
            guard fstat(fd, &st) == 0 else { throw SafeTensorsError(path: path, "cannot stat file (\(String(cString: strerror(errno))))") }
            try checkRegularFile(st, path: path)
        } catch {
            close(fd)
            throw error
        }
        return (fd, Int(st.st_size))
    }

    /// The whole file, read with POSIX calls so that every failure (missing, not a regular file,
    /// permission, short read) becomes an error naming the file.
    static func readBytes(path: String) throws -> [UInt8] {
        let (fd, size) = try openRegularFile(path)
        defer { close(fd) }
        return try [UInt8](unsafeUninitializedCapacity: size) { buf, initialized in
            initialized = 0
            while initialized < size {
                let n = Foundation.read(fd, buf.baseAddress! + initialized, size - initialized)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw SafeTensorsError(path: path, "read failed (\(String(cString: strerror(errno))))") }
                if n == 0 { break } // the file shrank while being read: parse what is there
                initialized += n
            }
        }
    }

    /// Reads only the 8-byte length and the JSON header of a file (not the tensor data) and validates
    /// every entry against the file's size, exactly as ``read(path:)`` does.
    public static func readHeader(path: String) throws -> SafeTensorsHeader {
        let (fd, fileSize) = try openRegularFile(path)
        defer { close(fd) }
        func readExactly(_ count: Int, at offset: Int) throws -> [UInt8] {
            try [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
                initialized = 0
                while initialized < count {
                    let n = pread(fd, buf.baseAddress! + initialized, count - initialized, off_t(offset + initialized))
                    if n < 0 && errno == EINTR { continue }
                    guard n >= 0 else { throw SafeTensorsError(path: path, "read failed (\(String(cString: strerror(errno))))") }
                    guard n > 0 else { throw SafeTensorsError(path: path, "truncated file: ended while reading the header") }
                    initialized += n
                }
            }
        }
        guard fileSize >= 8 else {
            throw SafeTensorsError(path: path, "truncated file: \(fileSize) bytes, shorter than the 8-byte header length")
        }
        let headerLength = try checkedHeaderLength(try readExactly(8, at: 0), fileSize: fileSize, path: path)
        let header = try readExactly(headerLength, at: 8)
        return try parseHeader(header[...], dataLength: fileSize - 8 - headerLength, path: path)
    }

    /// The header length stored in the first 8 bytes, checked against the file size and the limit.
    static func checkedHeaderLength(_ first8: [UInt8], fileSize: Int, path: String) throws -> Int {
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(first8[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(fileSize - 8) else {
            throw SafeTensorsError(path: path, "header length \(headerLength) runs past the end of the file (\(fileSize) bytes): truncated or not a safetensors file")
        }
        guard headerLength <= UInt64(maxHeaderLength) else {
            throw SafeTensorsError(path: path, "header length \(headerLength) exceeds the limit of \(maxHeaderLength) bytes")
        }
        guard headerLength >= 2 else { throw SafeTensorsError(path: path, "header length \(headerLength) is too short for a JSON object") }
        return Int(headerLength)
    }

    /// A non-negative integer from a JSON number, nil for fractions, negatives, non-numbers and
    /// values past 2^50 (so that no later size computation can overflow).
    static func jsonCount(_ any: Any) -> Int? {
        guard let n = any as? NSNumber else { return nil }
        let d = n.doubleValue
        guard d.isFinite, d >= 0, d <= Double(1 << 50), d == d.rounded(.towardZero) else { return nil }
        return Int(d)
    }

    /// Rejects headers nested deeper than `maxHeaderDepth` before they reach the (recursive) JSON parser.
    static func checkNesting(_ bytes: ArraySlice<UInt8>, path: String) throws {
        var depth = 0, inString = false, escaped = false
        for b in bytes {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                guard depth <= maxHeaderDepth else { throw SafeTensorsError(path: path, "invalid header JSON: nested deeper than \(maxHeaderDepth) levels") }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
    }

    /// Parses and validates the JSON header against a data section of `dataLength` bytes.
    ///
    /// The tensors' `data_offsets`, sorted, must tile the data section exactly as the reference
    /// `safetensors` crate requires: the first starts at 0, each starts where the previous one ends
    /// (no overlap, no gap) and the last ends at the end of the file (no trailing bytes). The header
    /// itself may list tensors in any order.
    static func parseHeader(_ headerBytes: ArraySlice<UInt8>, dataLength: Int, path: String) throws -> SafeTensorsHeader {
        func fail(_ message: String) -> SafeTensorsError { SafeTensorsError(path: path, message) }
        func fail(_ tensor: String, _ message: String) -> SafeTensorsError {
            SafeTensorsError(path: path, tensor: tensor, message)
        }
        try checkNesting(headerBytes, path: path)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            throw fail("invalid header JSON")
        }
        guard let header = json as? [String: Any] else { throw fail("invalid header JSON: not an object") }
        var out = SafeTensorsHeader(path: path, metadata: [:], entries: [], dataLength: dataLength)
        for (name, value) in header {
            if name == "__metadata__" {
                guard let meta = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (k, v) in meta {
                    guard let s = v as? String else { throw fail("__metadata__ value for '\(k)' is not a string") }
                    out.metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else { throw fail(name, "header entry is not an object") }
            guard let dtypeName = info["dtype"] as? String else { throw fail(name, "missing dtype") }
            guard let dtype = DType(rawValue: dtypeName) else { throw fail(name, "unknown dtype '\(dtypeName)'") }
            guard let shapeAny = info["shape"] as? [Any] else { throw fail(name, "missing or invalid shape") }
            guard shapeAny.count <= 8 else { throw fail(name, "shape has \(shapeAny.count) dimensions (at most 8 supported)") }
            var shape: [Int] = []
            for d in shapeAny {
                guard let n = jsonCount(d) else { throw fail(name, "invalid shape \(shapeAny): dimensions must be non-negative integers") }
                shape.append(n)
            }
            guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
                  let begin = jsonCount(offsets[0]), let end = jsonCount(offsets[1]) else {
                throw fail(name, "missing or invalid data_offsets (expected [begin, end], non-negative integers)")
            }
            guard end >= begin else { throw fail(name, "data_offsets [\(begin), \(end)] end before they begin") }
            guard end <= dataLength else {
                throw fail(name, "data_offsets [\(begin), \(end)] run past the end of the data (\(dataLength) bytes): truncated file?")
            }
            var count = 1
            for d in shape {
                let (m, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow, m <= (1 << 50) else { throw fail(name, "shape \(shape) is too large") }
                count = m
            }
            guard count * dtype.size == end - begin else {
                throw fail(name, "shape \(shape) of \(dtype.rawValue) needs \(count * dtype.size) bytes but data_offsets [\(begin), \(end)] give \(end - begin)")
            }
            out.entries.append(TensorInfo(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        out.entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var cursor = 0
        var previous: String? = nil
        for e in out.entries {
            if e.begin < cursor {
                throw fail(e.name, "data_offsets [\(e.begin), \(e.end)] overlap tensor '\(previous!)' (which ends at \(cursor))")
            }
            if e.begin > cursor {
                throw fail(e.name, "data_offsets [\(e.begin), \(e.end)] leave a gap of \(e.begin - cursor) unused bytes before them" + (previous.map { " (after tensor '\($0)')" } ?? " (data must start at 0)"))
            }
            cursor = e.end
            previous = e.name
        }
        guard cursor == dataLength else {
            throw fail("\(dataLength - cursor) trailing bytes after the last tensor's data (tensors cover \(cursor) of \(dataLength) data bytes)")
        }
        return out
    }

    /// Parses the bytes of a safetensors file; `path` is used in error messages only.
    public static func parse(bytes: [UInt8], path: String) throws -> SafeTensorsFile {
        guard bytes.count >= 8 else {
            throw SafeTensorsError(path: path, "truncated file: \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        let headerLength = try checkedHeaderLength(Array(bytes[0..<8]), fileSize: bytes.count, path: path)
        let headerEnd = 8 + headerLength
        let header = try parseHeader(bytes[8..<headerEnd], dataLength: bytes.count - headerEnd, path: path)
        var file = SafeTensorsFile(path: path, metadata: header.metadata)
        for e in header.entries {
            let slice = Array(bytes[(headerEnd + e.begin)..<(headerEnd + e.end)])
            file.tensors[e.name] = Tensor(dtype: e.dtype, shape: e.shape, data: slice)
            file.names.append(e.name)
        }
        return file
    }

    /// Serializes tensors (in the given order) and metadata into safetensors bytes.
    public static func serialize(_ tensors: [(String, Tensor)], metadata: [String: String] = [:]) -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let meta = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            parts.append("\"__metadata__\":{\(meta.joined(separator: ","))}")
        }
        var offset = 0
        for (name, t) in tensors {
            let end = offset + t.data.count
            parts.append("\(jsonString(name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Array("{\(parts.joined(separator: ","))}".utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        let n = UInt64(header.count)
        for i in 0..<8 { out.append(UInt8((n >> (8 * UInt64(i))) & 0xff)) }
        out.append(contentsOf: header)
        for (_, t) in tensors { out.append(contentsOf: t.data) }
        return out
    }

    /// Writes tensors and metadata to `path` atomically (see ``AtomicFile``).
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to path: String) throws {
        try AtomicFile.write(serialize(tensors, metadata: metadata), to: path)
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}

/// Where one tensor lies in a safetensors file (from the header alone).
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Byte range in the data section (after the header).
    public var begin: Int
    public var end: Int

    /// Number of elements (1 for a scalar with shape []).
    public var count: Int { shape.reduce(1, *) }
}

/// The validated header of a safetensors file, without the tensor data.
public struct SafeTensorsHeader: Sendable {
    public let path: String
    public var metadata: [String: String]
    /// Entries sorted by their data offsets.
    public var entries: [TensorInfo]
    /// Bytes after the header.
    public var dataLength: Int

    public subscript(name: String) -> TensorInfo? { entries.first { $0.name == name } }
}

/// Writes a file so that a crash at any moment leaves either the old file or the complete new one:
/// temporary file in the same directory, fsync, rename over the target, fsync of the directory.
public enum AtomicFile {
    /// Test hook: pause this long halfway through writing the temporary file, so that tests can kill a
    /// process in the middle of a write. Set from `SEGGER_TEST_WRITE_PAUSE_MS`; 0 in normal runs.
    nonisolated(unsafe) public static var pauseMidwayMicroseconds: UInt32 =
        UInt32(ProcessInfo.processInfo.environment["SEGGER_TEST_WRITE_PAUSE_MS"].flatMap(UInt32.init) ?? 0) * 1000

    public static func write(_ bytes: [UInt8], to path: String) throws {
        // (Not NSString.deletingLastPathComponent: swift-corelibs-foundation traps on a one-character
        // relative path such as "0".)
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let tmp = "\(dir)/.\(name).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw SafeTensorsError(path: path, "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var written = 0
        let ok: Bool = bytes.withUnsafeBytes { raw in
            var paused = pauseMidwayMicroseconds == 0
            while written < raw.count {
                var chunk = raw.count - written
                if !paused { chunk = max(1, raw.count / 2 - written) }
                let n = Foundation.write(fd, raw.baseAddress! + written, chunk)
                if !paused && written + max(n, 0) >= raw.count / 2 { paused = true; usleep(pauseMidwayMicroseconds) }
                if n < 0 { if errno == EINTR { continue }; return false }
                written += n
            }
            return true
        }
        let writeErrno = errno
        if !ok || fsync(fd) != 0 {
            let e = ok ? errno : writeErrno
            close(fd)
            unlink(tmp)
            throw SafeTensorsError(path: path, "write failed after \(written) of \(bytes.count) bytes: \(String(cString: strerror(e))); the previous file is intact")
        }
        close(fd)
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw SafeTensorsError(path: path, "rename failed: \(String(cString: strerror(e)))")
        }
        let dfd = open(dir, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func write(_ text: String, to path: String) throws {
        try write(Array(text.utf8), to: path)
    }
}
