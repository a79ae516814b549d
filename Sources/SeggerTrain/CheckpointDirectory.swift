// What a run may do to the files under <root>/checkpoints. A run writes `last.safetensors` and
// `epoch=E-step=S.safetensors` files of its own lineage only, and deletes only epoch files of its own
// lineage: each run has a run id (random at a fresh start, carried over by a resume within the same
// root, stored in every checkpoint's training position), and before anything is replaced or removed
// the file's own metadata must carry that id. Paths from checkpoint metadata are never acted on.
import Foundation
import SafeTensors
import SeggerModel
import SeggerTiles

/// The checkpoints directory of one run root, held by one run at a time.
public final class CheckpointDirectory {
    public static let lastName = "last.safetensors"
    static let lockName = ".segger-train.lock"

    /// `<root>/checkpoints` as given, and with symbolic links resolved.
    public let path: String
    let resolved: String
    /// This run's lineage (see ``TrainingPosition/runID``).
    public private(set) var runID: String = ""
    /// Files without a run id (written before run ids existed) that this run may replace: the
    /// checkpoint it resumed from.
    private var adopted: Set<String> = []
    private var lockFD: Int32 = -1

    /// Creates `<root>/checkpoints` if needed and takes its lock, so that two runs never write into one
    /// root at once. Errors name `--default_root_dir`.
    public init(root: String) throws {
        path = (root as NSString).appendingPathComponent("checkpoints")
        try OutputPaths.makeDirectories(path, flag: "default_root_dir", given: root)
        resolved = OutputPaths.realPath(path) ?? path
        let lock = (path as NSString).appendingPathComponent(CheckpointDirectory.lockName)
        lockFD = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lockFD >= 0 else {
            throw OutputError("--default_root_dir \(root) is not writable: cannot create \(lock): \(String(cString: strerror(errno)))")
        }
        // A POSIX record lock (released by the kernel when the process ends, however it ends); the file
        // itself is never written, so a refused run changes nothing in the root.
        var fl = flock()
        fl.l_type = Int16(F_WRLCK)
        fl.l_whence = Int16(SEEK_SET)
        if fcntl(lockFD, F_SETLK, &fl) != 0 {
            let e = errno
            if e == EACCES || e == EAGAIN {
                var probe = flock()
                probe.l_type = Int16(F_WRLCK)
                probe.l_whence = Int16(SEEK_SET)
                let holder = fcntl(lockFD, F_GETLK, &probe) == 0 && probe.l_type != Int16(F_UNLCK) && probe.l_pid > 0
                    ? "pid \(probe.l_pid)" : "another process"
                close(lockFD)
                lockFD = -1
                throw OutputError("--default_root_dir \(root) is in use by another segger-train run (\(holder) holds the lock on \(lock)): wait for it to end, or pass another --default_root_dir")
            }
            // File systems without record locks (some network mounts): go on unlocked.
        }
    }

    deinit {
        if lockFD >= 0 { close(lockFD) }
    }

    // MARK: Names

    /// A new run id: 16 random lowercase hex digits.
    public static func newRunID() -> String {
        var g = SystemRandomNumberGenerator()
        return String(format: "%016llx", g.next() as UInt64)
    }

    public static func isValidRunID(_ id: String) -> Bool {
        (16...64).contains(id.utf8.count) && id.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    public static func epochFileName(epoch: Int, step: Int) -> String {
        "epoch=\(epoch)-step=\(step).safetensors"
    }

    /// (E, S) of a name `epoch=E-step=S.safetensors` with decimal E and S, else nil.
    public static func parseEpochName(_ name: String) -> (epoch: Int, step: Int)? {
        guard name.hasPrefix("epoch="), name.hasSuffix(".safetensors") else { return nil }
        let middle = name.dropFirst(6).dropLast(12)
        let parts = middle.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].hasPrefix("step="),
              let e = digits(parts[0]), let s = digits(parts[1].dropFirst(5)) else { return nil }
        return (e, s)
    }

    private static func digits(_ s: Substring) -> Int? {
        guard !s.isEmpty, s.count <= 18, s.utf8.allSatisfy({ (48...57).contains($0) }) else { return nil }
        return Int(s)
    }

    static func isCheckpointName(_ name: String) -> Bool {
        name == lastName || parseEpochName(name) != nil
    }

    /// Temporary names this program leaves when killed in the middle of a write: AtomicFile's
    /// `.<name>.tmp-<pid>` for a checkpoint name, and the `.write-test-<pid>` probe of earlier versions.
    static func isStaleTemporaryName(_ name: String) -> Bool {
        func pid(_ s: Substring) -> Bool { !s.isEmpty && s.count <= 10 && s.utf8.allSatisfy { (48...57).contains($0) } }
        if name.hasPrefix(".write-test-") { return pid(name.dropFirst(12)) }
        guard name.hasPrefix("."), let r = name.range(of: ".tmp-", options: .backwards) else { return false }
        let target = String(name[name.index(after: name.startIndex)..<r.lowerBound])
        return pid(name[r.upperBound...]) && (isCheckpointName(target) || isStaleTemporaryName(target))
    }

    // MARK: Inventory

    /// Checkpoint files present (`last.safetensors`, `epoch=E-step=S.safetensors`), sorted by name.
    public func checkpointFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter(CheckpointDirectory.isCheckpointName).sorted()
    }

    /// Removes what killed writes of this program left (names matching its own temporary pattern, not
    /// this process's); returns the names removed.
    func removeStaleTemporaryFiles() -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        var removed: [String] = []
        for name in names where CheckpointDirectory.isStaleTemporaryName(name) && !name.hasSuffix("-\(getpid())") {
            let p = (path as NSString).appendingPathComponent(name)
            var st = stat()
            guard lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            if unlink(p) == 0 { removed.append(name) }
        }
        return removed
    }

    /// Whether `file` lies directly in this directory (symbolic links resolved).
    func contains(_ file: String) -> Bool {
        guard let real = OutputPaths.realPath(file) else { return false }
        return (real as NSString).deletingLastPathComponent == resolved
    }

    /// Sets the lineage; `adopting` names a file without a run id that this run continues from.
    func setLineage(_ id: String, adopting: String? = nil) {
        runID = id
        if let a = adopting { adopted.insert(a) }
    }

    /// Whether the file `name` of this directory was written by this run's lineage (or adopted).
    func isOwn(_ name: String) -> Bool {
        if adopted.contains(name) { return true }
        return Checkpoint.runID(ofFile: (path as NSString).appendingPathComponent(name)) == runID
    }

    /// This lineage's epoch files, oldest first (by step, then epoch).
    func ownEpochFiles() -> [String] {
        checkpointFiles().compactMap { name in CheckpointDirectory.parseEpochName(name).map { (name, $0) } }
            .filter { isOwn($0.0) }
            .sorted { ($0.1.step, $0.1.epoch) < ($1.1.step, $1.1.epoch) }
            .map(\.0)
    }

    /// Throws unless `name` is absent or this lineage's own: a run never writes over another run's file.
    func ensureWritable(_ name: String) throws {
        let p = (path as NSString).appendingPathComponent(name)
        var st = stat()
        guard lstat(p, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFREG, isOwn(name) else {
            throw OutputError("\(p) exists and was not written by this run (run id \(runID)); not overwriting it")
        }
    }

    /// Removes the epoch checkpoint `name` if, and only if, it lies in this directory (symbolic links
    /// resolved), is named `epoch=E-step=S.safetensors` and carries this run's id. Returns a line for the
    /// log: what was removed, or why a file was kept; nil when there is nothing there.
    func remove(_ name: String, reason: String) -> String? {
        guard CheckpointDirectory.parseEpochName(name) != nil, !name.contains("/") else {
            return "not removing '\(name.prefix(200))': not an epoch checkpoint name"
        }
        let p = (path as NSString).appendingPathComponent(name)
        var st = stat()
        guard lstat(p, &st) == 0 else { return nil }
        guard (st.st_mode & S_IFMT) == S_IFREG, contains(p) else {
            return "not removing \(p): not a regular file of \(path)"
        }
        guard isOwn(name) else { return "not removing \(p): written by another run" }
        guard unlink(p) == 0 else { return "could not remove \(p): \(String(cString: strerror(errno)))" }
        return "removed old checkpoint \(name) (\(reason))"
    }
}

// MARK: - Start-up

/// What rank 0 decides at start-up about the root and the checkpoint to resume from; every rank gets it.
struct StartDecision: Codable {
    var runID: String
    var resumePath: String?
    var position: TrainingPosition?
    var checkpointModel: ModelConfig?
    var optimizerStep: Int
    /// Lines for the log (stale temporary files removed).
    var notes: [String]
}

extension CheckpointDirectory {
    /// Rank 0's start-up: takes the root, removes stale temporary files, picks the checkpoint to resume
    /// from and the run's lineage, and refuses — before any work — a start that would overwrite another
    /// run's checkpoints. Returns the directory, the checkpoint read (nil for a fresh start) and the decision.
    static func start(options: TrainOptions) throws -> (CheckpointDirectory, Checkpoint?, StartDecision) {
        let dir = try CheckpointDirectory(root: options.rootDir)
        let removed = dir.removeStaleTemporaryFiles()
        var notes = removed.map { "removed \((dir.path as NSString).appendingPathComponent($0)) (a temporary file left by a killed write)" }
        let present = dir.checkpointFiles()
        let last = (dir.path as NSString).appendingPathComponent(lastName)
        func listing(_ names: [String]) -> String {
            let shown = names.prefix(6).joined(separator: ", ")
            return names.count > 6 ? "\(shown) and \(names.count - 6) more" : shown
        }
        var resumePath: String? = nil
        switch options.resume {
        case .none:
            guard present.isEmpty else {
                throw OutputError("\(dir.path) already holds checkpoints of an earlier run (\(listing(present))); a new run would overwrite them. To continue that run, add --resume auto; to start a new one, pass another --default_root_dir")
            }
        case .auto:
            if present.contains(lastName) {
                resumePath = last
            } else if !present.isEmpty {
                throw OutputError("--resume auto: \(dir.path) holds epoch checkpoints (\(listing(present))) but no \(lastName), so which run they belong to and where it stopped cannot be told. Resume from one of them explicitly (--resume \((dir.path as NSString).appendingPathComponent(present.last!))), move them away, or pass another --default_root_dir")
            }
        case .last:
            guard present.contains(lastName) else { throw OutputError("--resume last: no checkpoint at \(last)") }
            resumePath = last
        case .path(let p):
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else { throw InputError(path: p, "no such file").given(by: "resume") }
            guard !isDir.boolValue else { throw InputError(path: p, "is a directory; give a checkpoint file (e.g. \(p)/last.safetensors) or --resume auto").given(by: "resume") }
            resumePath = p
        }

        var checkpoint: Checkpoint? = nil
        var runID = CheckpointDirectory.newRunID()
        if let path = resumePath {
            do { checkpoint = try Checkpoint.read(path: path) } catch let e as InputError { throw e.given(by: "resume") }
            guard let position = checkpoint!.position else {
                throw InputError(path: path, "has no training position (not written by segger-train train), so it cannot be resumed; to start from its weights, use --init_weights").given(by: "resume")
            }
            if let id = position.runID, !isValidRunID(id) {
                throw InputError(path: path, "training position field 'runID' is '\(id.prefix(80))': expected 16 to 64 lowercase hex digits (was the checkpoint edited or damaged?)").given(by: "resume")
            }
            let inside = dir.contains(path)
            let name = (path as NSString).lastPathComponent
            if inside, let id = position.runID {
                runID = id
                dir.setLineage(runID)
            } else {
                dir.setLineage(runID, adopting: inside && position.runID == nil ? name : nil)
            }
            if !inside && !present.isEmpty {
                throw OutputError("--resume \(path) lies outside --default_root_dir \(options.rootDir), whose checkpoints directory already holds another run's checkpoints (\(listing(present))); resuming there would overwrite them. Resume into an empty --default_root_dir, or use --resume auto to continue the run of \(options.rootDir)")
            }
            // Names this run will write: last, and epoch files from the resumed epoch on.
            let conflicts = present.filter { name in
                let future = name == lastName || (parseEpochName(name).map { $0.epoch >= position.epoch } ?? false)
                return future && !dir.isOwn(name)
            }
            if !conflicts.isEmpty {
                throw OutputError("\(dir.path) holds checkpoints of another run that resuming \(path) would overwrite (\(listing(conflicts))); move them away, or resume into another --default_root_dir")
            }
        } else {
            dir.setLineage(runID)
        }
        if let c = checkpoint, !dir.contains(c.path) {
            notes.append("\(c.path) lies outside \(dir.path): this run starts a lineage of its own (run id \(runID)) and leaves the files of the run it came from untouched")
        }
        let step = checkpoint.flatMap { $0.tensors["optimizer.step"]?.int64s()?.first }.map { Int(clamping: $0) } ?? 0
        let decision = StartDecision(runID: runID, resumePath: resumePath, position: checkpoint?.position,
                                     checkpointModel: checkpoint?.model, optimizerStep: step, notes: notes)
        return (dir, checkpoint, decision)
    }
}

// MARK: - Paths

/// Directory creation and path resolution with messages that say what is wrong.
public enum OutputPaths {
    /// `mkdir -p path`: a component that is a file, or a mkdir that fails, is an error naming the flag
    /// (`--flag given`) and the path at fault.
    public static func makeDirectories(_ path: String, flag: String, given: String) throws {
        guard !given.isEmpty else { throw OutputError("--\(flag) is empty: give a directory") }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") where !component.isEmpty {
            prefix = prefix.isEmpty || prefix.hasSuffix("/") ? prefix + component : prefix + "/" + component
            var st = stat()
            if stat(prefix, &st) == 0 {
                if (st.st_mode & S_IFMT) == S_IFDIR { continue }
                let trimmed = given.hasSuffix("/") ? String(given.dropLast()) : given
                if prefix == trimmed || prefix == given {
                    throw OutputError("--\(flag) \(given) is a file, not a directory")
                }
                throw OutputError("--\(flag) \(given): \(prefix) is a file, not a directory")
            }
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw OutputError("--\(flag) \(given): cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// The path with symbolic links and `..` resolved, or nil when it does not exist.
    public static func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }
}
