// Helpers for tests that run the real segger-train binary (and mpirun).
import Foundation
import SafeTensors
import XCTest

enum Support {
    /// Package root, from this file's path.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// `../shared` beside the package, or nil (as on a user's machine).
    static var shared: String? {
        let p = packageRoot.deletingLastPathComponent().appendingPathComponent("shared").path
        return FileManager.default.fileExists(atPath: p) ? p : nil
    }

    /// The binary under test: $SEGGER_TRAIN_BIN (Scripts/test sets the release build), else the one built
    /// next to the test bundle.
    static var binary: String {
        if let b = ProcessInfo.processInfo.environment["SEGGER_TRAIN_BIN"], FileManager.default.isExecutableFile(atPath: b) {
            return b
        }
        let dir = Bundle.main.bundleURL.deletingLastPathComponent()
        for candidate in [dir.appendingPathComponent("segger-train").path,
                          packageRoot.appendingPathComponent(".build/debug/segger-train").path] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return packageRoot.appendingPathComponent(".build/debug/segger-train").path
    }

    static var mpirun: String? {
        for p in ["/usr/bin/mpirun", "/usr/local/bin/mpirun"] where FileManager.default.isExecutableFile(atPath: p) { return p }
        return nil
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var seconds: Double
        /// The process ended by a signal (`status` is then the signal number).
        var signaled = false
        var output: String { stdout + stderr }
    }

    /// The test process's environment without the variables of an MPI job it may have joined as a singleton.
    static var cleanEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.filter { key, _ in
            !["OMPI_", "PMIX_", "ORTE_", "OPAL_"].contains { key.hasPrefix($0) }
        }
    }

    /// Runs a program to completion (or kills it after `timeout` seconds and fails the test).
    @discardableResult
    static func run(_ exe: String, _ args: [String], env: [String: String] = [:], timeout: Double = 300,
                    cwd: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        // Another test in this process may have initialized MPI (a singleton), which exports OMPI_*/PMIX_*
        // variables describing that job; a child mpirun that inherits them believes it runs inside it.
        var e = cleanEnvironment
        e["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        e["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        e["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        e.removeValue(forKey: "SLURM_NTASKS")
        for (k, v) in env { e[k] = v }
        p.environment = e
        let outURL = FileManager.default.temporaryDirectory.appendingPathComponent("segger-out-\(UUID().uuidString)")
        let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("segger-err-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        let start = Date()
        try p.run()
        while p.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                p.terminate()
                usleep(500_000)
                if p.isRunning { kill(p.processIdentifier, SIGKILL) }
                XCTFail("timed out after \(timeout) s: \(exe) \(args.joined(separator: " "))", file: file, line: line)
                break
            }
            usleep(20_000)
        }
        p.waitUntilExit()
        try out.close(); try err.close()
        let r = Result(status: p.terminationStatus,
                       stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
                       seconds: Date().timeIntervalSince(start), signaled: p.terminationReason == .uncaughtSignal)
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
        return r
    }

    /// Runs segger-train with `args`, directly (ranks == 1 and !useMPI) or under mpirun.
    @discardableResult
    static func train(_ args: [String], ranks: Int = 1, timeout: Double = 300,
                      file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        if ranks == 1 { return try run(binary, args, timeout: timeout, file: file, line: line) }
        guard let mpirun else { throw XCTSkip("mpirun not installed") }
        return try run(mpirun, ["-np", "\(ranks)", "--oversubscribe", "--bind-to", "none", binary] + args,
                       timeout: timeout, file: file, line: line)
    }

    /// What a finished run prints with its weights digest: the replica check's line with several ranks,
    /// the digest alone with one (nothing to compare).
    static func finalDigestLine(ranks: Int) -> String {
        ranks > 1 ? "replicas: \(ranks) ranks bit-identical (weights digest " : "\nweights digest "
    }

    /// A fresh temporary directory.
    static func tempDir(_ name: String) -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("segger-test-\(name)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// Synthetic tiles written by the real binary, cached per configuration for the test run.
    static func synth(tiles: Int, tx: Int, seed: Int, extra: [String] = []) throws -> String {
        let key = "synth-\(tiles)-\(tx)-\(seed)-\(extra.joined(separator: "_").replacingOccurrences(of: "-", with: ""))"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segger-cache-\(getppid())-\(key)").path
        if FileManager.default.fileExists(atPath: dir + "/.done") { return dir }
        let r = try run(binary, ["synth", "--out", dir, "--tiles", "\(tiles)", "--tx_per_tile", "\(tx)", "--seed", "\(seed)"] + extra)
        guard r.status == 0 else { throw NSError(domain: "synth", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.output]) }
        FileManager.default.createFile(atPath: dir + "/.done", contents: nil)
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
