// The output tables of a segmentation, behind a small writer interface (Parquet or CSV), and the output
// directory they appear in all at once: files are written into a staging directory inside --out and
// renamed into place only when every one of them is complete.
import Foundation
import Parquet
import SeggerTiles

/// One column's kind.
public enum ColumnKind: String, Sendable {
    case int64, int32, int8, float32, string
}

/// A column of an output table.
public struct ColumnSpec: Sendable, Equatable {
    public var name: String
    public var kind: ColumnKind
    public var nullable: Bool

    public init(_ name: String, _ kind: ColumnKind, nullable: Bool = false) {
        self.name = name
        self.kind = kind
        self.nullable = nullable
    }
}

/// The values of one column for a batch of rows; `valid[i] == false` marks a null (nullable columns only).
public enum ColumnValues {
    case int64([Int64])
    case int32([Int32], valid: [Bool]?)
    case int8([Int8])
    case float32([Float], valid: [Bool]?)
    case string([String], valid: [Bool]?)

    public var count: Int {
        switch self {
        case .int64(let v): return v.count
        case .int32(let v, _): return v.count
        case .int8(let v): return v.count
        case .float32(let v, _): return v.count
        case .string(let v, _): return v.count
        }
    }
}

/// Writes one table to one file: batches of rows in, the file complete only after `close()`.
public protocol TableWriter: AnyObject {
    /// The rows of `columns` (one entry per schema column, equal lengths).
    func append(_ columns: [ColumnValues]) throws
    /// Completes the file at its path.
    func close() throws
    /// Stops and removes whatever was written; safe after `close()` or an error.
    func abandon()
}

/// The output formats of `predict`.
public enum TableFormat: String, Sendable, CaseIterable, Codable {
    case parquet, csv

    public var fileExtension: String { rawValue }
}

/// Makes a writer of `format` for `path` (a file in the staging directory).
public enum TableWriterFactory {
    public static func make(_ format: TableFormat, path: String, schema: [ColumnSpec],
                            metadata: [String: String] = [:]) throws -> TableWriter {
        switch format {
        case .csv: return try CSVTableWriter(path: path, schema: schema)
        case .parquet: return try ParquetTableWriter(path: path, schema: schema, metadata: metadata)
        }
    }
}

/// A table as one Parquet file (the Parquet module's writer: zstd pages, row groups of up to 2^20 rows).
public final class ParquetTableWriter: TableWriter {
    let writer: ParquetWriter

    public init(path: String, schema: [ColumnSpec], metadata: [String: String] = [:]) throws {
        do {
            writer = try ParquetWriter(path: path, schema: schema.map { c in
                let type: ParquetType
                switch c.kind {
                case .int64: type = .int64
                case .int32: type = .int32
                case .int8: type = .int8
                case .float32: type = .float32
                case .string: type = .string
                }
                return ParquetColumn(name: c.name, type: type, nullable: c.nullable)
            }, metadata: metadata)
        } catch {
            throw OutputError("\(error)")
        }
    }

    public func append(_ columns: [ColumnValues]) throws {
        let batch = ParquetBatch(columns: columns.map { c -> ParquetColumnValues in
            switch c {
            case .int64(let v): return .int64(v)
            case .int8(let v): return .int8(v)
            case .int32(let v, let valid): return valid.map { .int32(v, valid: $0) } ?? .int32(v)
            case .float32(let v, let valid): return valid.map { .float32(v, valid: $0) } ?? .float32(v)
            case .string(let v, let valid): return valid.map { .string(v, valid: $0) } ?? .string(v)
            }
        })
        do { try writer.append(batch) } catch { throw OutputError("\(error)") }
    }

    public func close() throws {
        do { try writer.close() } catch { throw OutputError("\(error)") }
    }

    public func abandon() { writer.abandon() }
}

/// A comma-separated table with a header line (RFC 4180 quoting; nulls as empty fields; floats in their
/// shortest round-trip form).
public final class CSVTableWriter: TableWriter {
    let path: String
    let schema: [ColumnSpec]
    private var handle: FileHandle?
    private var buffer: [UInt8] = []

    public init(path: String, schema: [ColumnSpec]) throws {
        self.path = path
        self.schema = schema
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let h = FileHandle(forWritingAtPath: path) else {
            throw OutputError("\(path): cannot create the file")
        }
        handle = h
        buffer.append(contentsOf: schema.map { Self.quoted($0.name) }.joined(separator: ",").utf8)
        buffer.append(10)
    }

    static func quoted(_ s: String) -> String {
        if s.utf8.contains(where: { $0 == 44 || $0 == 34 || $0 == 10 || $0 == 13 }) {
            return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return s
    }

    public func append(_ columns: [ColumnValues]) throws {
        guard handle != nil else { throw OutputError("\(path): writer already closed") }
        precondition(columns.count == schema.count, "CSVTableWriter: one column per schema entry")
        let n = columns.first?.count ?? 0
        precondition(columns.allSatisfy { $0.count == n }, "CSVTableWriter: columns of unequal length")
        for i in 0..<n {
            for (c, col) in columns.enumerated() {
                if c > 0 { buffer.append(44) }
                switch col {
                case .int64(let v): buffer.append(contentsOf: String(v[i]).utf8)
                case .int8(let v): buffer.append(contentsOf: String(v[i]).utf8)
                case .int32(let v, let valid):
                    if valid?[i] ?? true { buffer.append(contentsOf: String(v[i]).utf8) }
                case .float32(let v, let valid):
                    if valid?[i] ?? true { buffer.append(contentsOf: "\(v[i])".utf8) }
                case .string(let v, let valid):
                    if valid?[i] ?? true { buffer.append(contentsOf: Self.quoted(v[i]).utf8) }
                }
            }
            buffer.append(10)
            if buffer.count >= 1 << 20 { try flush() }
        }
    }

    private func flush() throws {
        guard let h = handle else { return }
        do { try h.write(contentsOf: buffer) } catch { throw OutputError("\(path): write failed (\(error.localizedDescription))") }
        buffer.removeAll(keepingCapacity: true)
    }

    public func close() throws {
        try flush()
        guard let h = handle else { return }
        handle = nil
        do {
            try h.synchronize()
            try h.close()
        } catch {
            throw OutputError("\(path): write failed (\(error.localizedDescription))")
        }
    }

    public func abandon() {
        if let h = handle { try? h.close() }
        handle = nil
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// The output directory of one run: the files are written into a hidden staging directory inside it
/// (`.segger-predict-HOST-PID-RANDOM`) and renamed into place together at ``commit()``; ``abandon()``
/// removes everything this run made. Files it did not write are never touched; existing outputs are
/// refused unless `overwrite`. A staging directory left by a run that was killed outright (SIGKILL, a
/// node lost) is removed by the next run into the same directory, when its name says it was made on
/// this host by a process that no longer exists.
public final class OutputStage {
    public let directory: String
    public let names: [String]
    public let staging: String
    /// Lines for the log: the stale staging directories removed at start.
    public private(set) var removedStale: [String] = []
    private let createdDirectory: Bool
    private var finished = false

    /// Checks `directory` (created when missing; its parent must exist) and creates the staging directory.
    public init(directory: String, names: [String], overwrite: Bool) throws {
        let fm = FileManager.default
        self.directory = directory
        self.names = names
        var isDir: ObjCBool = false
        var created = false
        if fm.fileExists(atPath: directory, isDirectory: &isDir) {
            guard isDir.boolValue else { throw OutputError("--out \(directory): exists and is not a directory") }
            for name in names {
                let p = (directory as NSString).appendingPathComponent(name)
                var d: ObjCBool = false
                guard fm.fileExists(atPath: p, isDirectory: &d) else { continue }
                if d.boolValue {
                    throw OutputError("--out \(directory): '\(name)' exists and is a directory (not written by segger-train predict); move it away")
                }
                if !overwrite { throw OutputError("--out \(directory): '\(name)' exists (pass --overwrite to replace the outputs)") }
            }
        } else {
            // (URL, not NSString.deletingLastPathComponent: swift-corelibs-foundation traps on a
            // one-character relative path such as "0".)
            let parentPath = URL(fileURLWithPath: directory).deletingLastPathComponent().path
            guard fm.fileExists(atPath: parentPath, isDirectory: &isDir), isDir.boolValue else {
                throw OutputError("--out \(directory): its parent directory \(parentPath) does not exist")
            }
            do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: false) } catch {
                throw OutputError("--out \(directory): cannot create the directory (\(error.localizedDescription))")
            }
            created = true
        }
        createdDirectory = created
        let host = OutputStage.hostName()
        staging = (directory as NSString).appendingPathComponent("\(OutputStage.prefix)\(host)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        if !created { removedStale = OutputStage.removeStaleStaging(in: directory, host: host) }
        do { try fm.createDirectory(atPath: staging, withIntermediateDirectories: false) } catch {
            if created { try? fm.removeItem(atPath: directory) }
            throw OutputError("--out \(directory): not writable (\(error.localizedDescription))")
        }
    }

    static let prefix = ".segger-predict-"

    /// This host's name as it appears in staging names (characters other than letters, digits, '.'
    /// and '_' replaced by '_', so the name's '-' separators stay unambiguous).
    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        let name = gethostname(&buf, buf.count - 1) == 0 ? String(cString: buf) : "unknown"
        return String(name.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" ? $0 : "_" })
    }

    /// Removes `.segger-predict-HOST-PID-RANDOM` directories in `directory` made on `host` by a process
    /// that no longer exists; names of another host, of a live process, or of another form are kept.
    static func removeStaleStaging(in directory: String, host: String) -> [String] {
        let fm = FileManager.default
        guard let entries = try? fm.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        // What a staging directory holds: the output files by their names, or temporary files of them
        // (`.NAME.tmp-…`, as AtomicFile and the Parquet writer name them).
        let known: Set<String> = Set(TableFormat.allCases.flatMap { f -> [String] in
            let n = outputNames(f)
            return [n.transcripts, n.cells, n.log]
        })
        let isOutput = { (name: String) -> Bool in
            known.contains(name) || known.contains(String((name.split(separator: ".tmp-", maxSplits: 1).first ?? "").drop(while: { $0 == "." })))
        }
        for entry in entries.sorted() where entry.hasPrefix(prefix) {
            let parts = entry.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == host, let pid = Int32(parts[1]), pid > 0, UInt32(parts[2]) != nil else { continue }
            guard kill(pid, 0) != 0 && errno == ESRCH else { continue }  // alive, or not ours to ask about
            let path = (directory as NSString).appendingPathComponent(entry)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { continue }
            let inside = (try? fm.contentsOfDirectory(atPath: path)) ?? ["?"]
            guard inside.allSatisfy(isOutput) else { continue }
            if (try? fm.removeItem(atPath: path)) != nil {
                removed.append("removed \(path) (the staging directory of a killed run, process \(pid) on this host)")
            }
        }
        return removed
    }

    /// Where to write output `name` before the commit.
    public func stagedPath(_ name: String) -> String { (staging as NSString).appendingPathComponent(name) }

    /// Renames every staged output into the directory (each rename atomic) and removes the staging directory.
    public func commit() throws {
        for name in names {
            let from = stagedPath(name), to = (directory as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: from) else { throw OutputError("\(from): missing at commit") }
            if rename(from, to) != 0 {
                throw OutputError("\(to): cannot move the output into place (\(String(cString: strerror(errno))))")
            }
        }
        finished = true
        try? FileManager.default.removeItem(atPath: staging)
    }

    /// Removes the staging directory with its files, and --out itself when this run created it and it is empty.
    public func abandon() {
        guard !finished else { return }
        finished = true
        let fm = FileManager.default
        try? fm.removeItem(atPath: staging)
        if createdDirectory, (try? fm.contentsOfDirectory(atPath: directory))?.isEmpty == true {
            try? fm.removeItem(atPath: directory)
        }
    }
}
