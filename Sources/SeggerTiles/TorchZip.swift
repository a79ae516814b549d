// The zip container that torch.save writes since torch 1.6: `<archive>/data.pkl` (the pickle),
// `<archive>/data/<key>` (one entry per storage, raw little-endian elements), `<archive>/byteorder`,
// `<archive>/version`, ... Every entry is stored (torch never compresses), each storage 64-byte
// aligned through padding in the local header's extra field. Read with every offset checked.
import Foundation

/// The entries of a torch.save zip archive, read into memory and indexed by name.
struct TorchArchive {
    let path: String
    let bytes: [UInt8]
    /// Entry name → byte range of its (stored) data in `bytes`, with the CRC-32 the directory records.
    private(set) var entries: [String: (range: Range<Int>, crc: UInt32)] = [:]
    /// Entry names in central-directory order.
    private(set) var names: [String] = []
    /// The archive's top folder with its slash, e.g. `archive/` or `tiles_x=..._h=60/`.
    private(set) var prefix: String = ""
    /// True when `byteorder` says `big`: storages then hold big-endian elements.
    private(set) var bigEndian = false

    static func read(path: String) throws -> TorchArchive {
        // Only regular files: reading a FIFO named like a tile would block forever.
        var st = stat()
        if stat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG {
            let what = (st.st_mode & S_IFMT) == S_IFDIR ? "is a directory" : "is a FIFO, socket or device"
            throw InputError(path: path, "cannot read file: not a regular file (\(what))")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: [.mappedIfSafe])
        } catch {
            let ns = error as NSError
            var reason = ns.localizedDescription
            if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
                reason = String(cString: strerror(Int32(u.code)))
            } else if ns.domain == NSCocoaErrorDomain && ns.code == NSFileReadNoSuchFileError {
                reason = "no such file"
            }
            throw InputError(path: path, "cannot read file (\(reason))")
        }
        return try TorchArchive(bytes: [UInt8](data), path: path)
    }

    init(bytes: [UInt8], path: String) throws {
        self.path = path
        self.bytes = bytes
        func fail(_ m: String) -> InputError { InputError(path: path, m) }
        let n = bytes.count
        func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }

        if n >= 2 && bytes[0] == 0x80 {
            throw fail("legacy torch.save format (a bare pickle, torch < 1.6) is not supported; re-save it with a current torch")
        }
        guard n >= 4, u32(0) == 0x0403_4b50 else {
            throw fail("not a torch.save file: no zip signature at the start (\(n) bytes)")
        }
        // End of central directory: 22 bytes plus a comment of at most 65535 bytes, at the end.
        var eocd = -1
        if n >= 22 {
            var p = n - 22
            let lowest = max(0, n - 22 - 65535)
            while p >= lowest {
                if bytes[p] == 0x50 && bytes[p + 1] == 0x4b && bytes[p + 2] == 0x05 && bytes[p + 3] == 0x06
                    && p + 22 + u16(p + 20) == n {
                    eocd = p
                    break
                }
                p -= 1
            }
        }
        guard eocd >= 0 else {
            throw fail("truncated or damaged zip archive: no end-of-central-directory record in its \(n) bytes")
        }
        var count = u16(eocd + 10)
        var cdSize = UInt64(u32(eocd + 12))
        var cdOffset = UInt64(u32(eocd + 16))
        if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            // zip64: a locator right before the record points at the zip64 end-of-central-directory.
            let loc = eocd - 20
            guard loc >= 0, u32(loc) == 0x0706_4b50 else { throw fail("damaged zip64 archive: no zip64 locator") }
            let z = u64(loc + 8)
            guard z <= UInt64(loc), Int(z) + 56 <= n, u32(Int(z)) == 0x0606_4b50 else {
                throw fail("damaged zip64 archive: zip64 end-of-central-directory record at \(z) is out of bounds")
            }
            let c = u64(Int(z) + 32)
            guard c < UInt64(n / 46 + 1) else { throw fail("damaged zip64 archive: \(c) entries cannot fit in \(n) bytes") }
            count = Int(c)
            cdSize = u64(Int(z) + 40)
            cdOffset = u64(Int(z) + 48)
        }
        guard cdOffset <= UInt64(eocd), cdSize <= UInt64(eocd) - cdOffset else {
            throw fail("truncated or damaged zip archive: central directory (offset \(cdOffset), \(cdSize) bytes) runs past the end record at \(eocd)")
        }
        var p = Int(cdOffset)
        let cdEnd = Int(cdOffset + cdSize)
        for i in 0..<count {
            guard p + 46 <= cdEnd, u32(p) == 0x0201_4b50 else {
                throw fail("damaged zip archive: central directory entry \(i) of \(count) is missing or cut short")
            }
            let flags = u16(p + 8)
            let method = u16(p + 10)
            let crc = UInt32(u32(p + 16))
            var compressed = UInt64(u32(p + 20))
            var size = UInt64(u32(p + 24))
            let nameLength = u16(p + 28), extraLength = u16(p + 30), commentLength = u16(p + 32)
            var local = UInt64(u32(p + 42))
            let nameStart = p + 46
            guard nameStart + nameLength + extraLength + commentLength <= cdEnd else {
                throw fail("damaged zip archive: central directory entry \(i) runs past the directory")
            }
            guard let name = String(bytes: bytes[nameStart..<(nameStart + nameLength)], encoding: .utf8) else {
                throw fail("damaged zip archive: entry \(i) has a name that is not UTF-8")
            }
            // zip64 extended information: the 8-byte fields present are those whose 32-bit field is all ones.
            var e = nameStart + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = u16(e), len = u16(e + 2)
                guard e + 4 + len <= extraEnd else { throw fail("damaged zip archive: entry '\(name)' has a cut-short extra field") }
                if id == 0x0001 {
                    var q = e + 4
                    func next() throws -> UInt64 {
                        guard q + 8 <= e + 4 + len else { throw fail("damaged zip archive: entry '\(name)' has a short zip64 field") }
                        defer { q += 8 }
                        return u64(q)
                    }
                    if size == 0xFFFF_FFFF { size = try next() }
                    if compressed == 0xFFFF_FFFF { compressed = try next() }
                    if local == 0xFFFF_FFFF { local = try next() }
                }
                e += 4 + len
            }
            if flags & 1 != 0 { throw fail("zip entry '\(name)' is encrypted") }
            guard method == 0 else {
                let what = method == 8 ? "deflate-compressed" : "compressed with method \(method)"
                throw fail("zip entry '\(name)' is \(what); torch.save writes stored (uncompressed) entries only, so this file was re-packed: re-save it with torch.save")
            }
            guard compressed == size else {
                throw fail("damaged zip archive: stored entry '\(name)' has compressed size \(compressed) ≠ size \(size)")
            }
            guard local + 30 <= UInt64(n), u32(Int(local)) == 0x0403_4b50 else {
                throw fail("truncated or damaged zip archive: local header of '\(name)' at \(local) is missing")
            }
            let l = Int(local)
            let dataStart = l + 30 + u16(l + 26) + u16(l + 28)
            guard size <= UInt64(n), UInt64(dataStart) + size <= cdOffset else {
                throw fail("truncated or damaged zip archive: data of '\(name)' (\(size) bytes at \(dataStart)) runs past the central directory at \(cdOffset)")
            }
            entries[name] = (dataStart..<(dataStart + Int(size)), crc)
            names.append(name)
            p = extraEnd + commentLength
        }
        guard let pkl = names.first(where: { $0 == "data.pkl" || $0.hasSuffix("/data.pkl") }) else {
            if names.contains(where: { $0.hasSuffix("constants.pkl") }) {
                throw fail("this is a TorchScript archive (torch.jit.save), not a torch.save file")
            }
            throw fail("zip archive has no data.pkl entry: not a torch.save file")
        }
        prefix = String(pkl.dropLast("data.pkl".count))
        if let order = entries[prefix + "byteorder"] {
            let text = String(decoding: try data(prefix + "byteorder", range: order.range, crc: order.crc), as: UTF8.self)
            switch text.trimmingCharacters(in: .whitespacesAndNewlines) {
            case "little": bigEndian = false
            case "big": bigEndian = true
            default: throw fail("unknown byteorder '\(text)'")
            }
        }
    }

    private func data(_ name: String, range: Range<Int>, crc: UInt32) throws -> ArraySlice<UInt8> {
        let slice = bytes[range]
        let actual = CRC32.checksum(slice)
        guard actual == crc else {
            throw InputError(path: path, "damaged zip archive: entry '\(name)' fails its CRC-32 check (\(String(actual, radix: 16)) ≠ \(String(crc, radix: 16)))")
        }
        return slice
    }

    /// The bytes of an entry named relative to the archive's top folder (e.g. `data.pkl`, `data/3`),
    /// CRC-checked unless `checked` is false; nil when there is no such entry.
    func record(_ relativeName: String, checked: Bool = true) throws -> ArraySlice<UInt8>? {
        let name = prefix + relativeName
        guard let e = entries[name] else { return nil }
        return checked ? try data(name, range: e.range, crc: e.crc) : bytes[e.range]
    }
}

/// CRC-32 (IEEE 802.3, the zip checksum).
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            bytes.withUnsafeBufferPointer { b in
                for x in b { c = t[Int((c ^ UInt32(x)) & 0xFF)] ^ (c >> 8) }
            }
        }
        return c ^ 0xFFFF_FFFF
    }
}
