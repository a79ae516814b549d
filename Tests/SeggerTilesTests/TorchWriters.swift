// Helpers for the torch reader tests: where the fixtures and the shared data live, a tiny pickle
// writer and a stored-zip writer to craft hostile files.
import Foundation
import XCTest
@testable import SeggerTiles
import SafeTensors
import TestSupport

/// `Tests/Fixtures/pt/<name>`: the small torch files Scripts/make_pt_fixtures.py wrote.
func torchFixture(_ name: String) -> String { Support.fixture("pt/" + name) }

/// ../shared's xenium-lung-10k dataset (segger's .pt tiles beside their safetensors twins), or a skip.
func lungDataset() throws -> String {
    let pt = try Support.requireShared("data/xenium-lung-10k/segger-pt", for: "segger's real .pt tiles unavailable")
    return (pt as NSString).deletingLastPathComponent
}

/// Emits pickle opcodes (protocol 2, as torch.save writes them).
struct PickleWriter {
    var bytes: [UInt8] = [0x80, 0x02]
    mutating func op(_ b: UInt8) { bytes.append(b) }
    mutating func global(_ module: String, _ name: String) { bytes.append(0x63); bytes += Array("\(module)\n\(name)\n".utf8) }
    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        bytes.append(0x58)
        for i in 0..<4 { bytes.append(UInt8((u.count >> (8 * i)) & 0xff)) }
        bytes += u
    }
    mutating func int(_ v: Int) {
        precondition(v >= 0 && v < 65536)
        if v < 256 { bytes += [0x4b, UInt8(v)] } else { bytes += [0x4d, UInt8(v & 0xff), UInt8(v >> 8)] }
    }
    mutating func intTuple(_ v: [Int]) {
        op(0x28); for x in v { int(x) }; op(0x74)
    }
    /// `_rebuild_tensor_v2(storage(key, numel), offset, size, stride, False, OrderedDict())`.
    mutating func tensor(storage key: String, type: String = "FloatStorage", numel: Int, offset: Int, size: [Int], stride: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        op(0x28)
        op(0x28); string("storage"); global("torch", type); string(key); string("cpu"); int(numel); op(0x74)
        op(0x51) // BINPERSID
        int(offset); intTuple(size); intTuple(stride); op(0x89)
        global("collections", "OrderedDict"); op(0x29); op(0x52)
        op(0x74); op(0x52)
    }
    mutating func stop() { op(0x2e) }
}

/// Writes a zip of stored entries the way torch.save lays them out (`archive/...`).
func storedZip(_ entries: [(String, [UInt8])], method: UInt16 = 0) -> [UInt8] {
    var out: [UInt8] = [], central: [UInt8] = []
    func u16(_ v: Int, _ a: inout [UInt8]) { a += [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    func u32(_ v: Int, _ a: inout [UInt8]) { u16(v & 0xffff, &a); u16((v >> 16) & 0xffff, &a) }
    for (name, data) in entries {
        let n = Array(name.utf8)
        let crc = Int(CRC32.checksum(data[...]))
        let offset = out.count
        u32(0x0403_4b50, &out); u16(20, &out); u16(0, &out); u16(Int(method), &out); u16(0, &out); u16(0, &out)
        u32(crc, &out); u32(data.count, &out); u32(data.count, &out); u16(n.count, &out); u16(0, &out)
        out += n; out += data
        u32(0x0201_4b50, &central); u16(20, &central); u16(20, &central); u16(0, &central); u16(Int(method), &central)
        u16(0, &central); u16(0, &central); u32(crc, &central); u32(data.count, &central); u32(data.count, &central)
        u16(n.count, &central); u16(0, &central); u16(0, &central); u16(0, &central); u16(0, &central)
        u32(0, &central); u32(offset, &central); central += n
    }
    let cdOffset = out.count
    out += central
    u32(0x0605_4b50, &out); u16(0, &out); u16(0, &out); u16(entries.count, &out); u16(entries.count, &out)
    u32(central.count, &out); u32(cdOffset, &out); u16(0, &out)
    return out
}

/// Writes `bytes` to a file in a fresh temporary directory and returns its path.
func writeTemporary(_ bytes: [UInt8], name: String) throws -> String {
    let path = Support.tempDir("torch") + "/" + name
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

/// Asserts that `body` throws an error whose description names `path` and contains every fragment.
func assertRejects(_ path: String, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                   _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("\(path) was accepted", file: file, line: line)
    } catch {
        let text = "\(error)"
        XCTAssertTrue(text.contains(path), "error does not name the file: \(text)", file: file, line: line)
        for f in fragments {
            XCTAssertTrue(text.contains(f), "error lacks '\(f)': \(text)", file: file, line: line)
        }
    }
}
