// Helpers for the tests that run the real segger-train binary: synthetic tiles made by it, checkpoints,
// metrics.csv and file snapshots (the locators and the process runner are in TestSupport).
import Foundation
import SafeTensors
import TestSupport
import XCTest

extension Support {
    /// What a finished run prints with its weights digest: the replica check's line with several ranks,
    /// the digest alone with one (nothing to compare).
    static func finalDigestLine(ranks: Int) -> String {
        ranks > 1 ? "replicas: \(ranks) ranks bit-identical (weights digest " : "\nweights digest "
    }

    /// Synthetic tiles written by the real binary, cached per configuration for the test run.
    static func synth(tiles: Int, tx: Int, seed: Int, extra: [String] = []) throws -> String {
        let key = "synth-\(tiles)-\(tx)-\(seed)-\(extra.joined(separator: "_").replacingOccurrences(of: "-", with: ""))"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segger-cache-\(getppid())-\(key)").path
        if FileManager.default.fileExists(atPath: dir + "/.done") { return dir }
        let r = try run(binary, ["synth", "--out", dir, "--tiles", "\(tiles)", "--tx_per_tile", "\(tx)", "--seed", "\(seed)"] + extra)
        guard r.status == 0 else { throw NSError(domain: "synth", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.output]) }
        _ = FileManager.default.createFile(atPath: dir + "/.done", contents: nil)
        return dir
    }

    /// The model tensors (`model.*`) of a checkpoint.
    static func weights(_ checkpoint: String) throws -> [String: Tensor] {
        try SafeTensorsFile.read(path: checkpoint).tensors.filter { $0.key.hasPrefix("model.") }
    }

    /// Largest per-tensor relative difference: max |a−b| / max |a| (0 for equal all-zero tensors).
    static func maxRelativeDifference(_ a: [String: Tensor], _ b: [String: Tensor]) -> (Double, String) {
        var worst = (0.0, "")
        for (k, ta) in a {
            guard let tb = b[k] else { return (.infinity, k + " missing") }
            let x = ta.doubles(), y = tb.doubles()
            let scale = x.map { abs($0) }.max() ?? 0
            let diff = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            let r = scale > 0 ? diff / scale : diff
            if r > worst.0 || r.isNaN { worst = (r, k) }
        }
        return worst
    }

    /// Rows of metrics.csv of the newest version under `root`.
    static func metrics(_ root: String) throws -> [[String: String]] {
        let logs = root + "/lightning_logs"
        let versions = try FileManager.default.contentsOfDirectory(atPath: logs).compactMap { Int($0.dropFirst(8)) }.sorted()
        let text = try String(contentsOfFile: "\(logs)/version_\(versions.last!)/metrics.csv", encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        let header = lines[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        return lines.dropFirst().map { line in
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            var row: [String: String] = [:]
            for (h, c) in zip(header, cells) where !c.isEmpty { row[h] = c }
            return row
        }
    }

    /// FNV-1a 64 of every regular file under `dir` (recursively), keyed by path relative to `dir`: two
    /// snapshots are equal when no file was added, removed or changed.
    static func checksums(_ dir: String) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return out }
        while let rel = walker.nextObject() as? String {
            let path = dir + "/" + rel
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
                  let data = FileManager.default.contents(atPath: path) else { continue }
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in data { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
            out[rel] = h
        }
        return out
    }

    /// Rewrites a safetensors file with `edit` applied to its tensors and metadata (a hostile edit).
    static func edit(_ path: String, _ edit: (inout [(String, Tensor)], inout [String: String]) throws -> Void) throws {
        let f = try SafeTensorsFile.read(path: path)
        var tensors = f.names.map { ($0, f[$0]!) }
        var meta = f.metadata
        try edit(&tensors, &meta)
        try SafeTensorsFile.write(tensors, metadata: meta, to: path)
    }

    /// Edits the JSON of a checkpoint's training position.
    static func editPosition(_ path: String, _ change: @escaping (inout [String: Any]) -> Void) throws {
        try edit(path) { _, meta in
            var pos = try JSONSerialization.jsonObject(with: Data(meta["training_position"]!.utf8)) as! [String: Any]
            change(&pos)
            meta["training_position"] = String(decoding: try JSONSerialization.data(withJSONObject: pos), as: UTF8.self)
        }
    }
}
