// The two errors about files the user names, shared by every module above this one (docs/architecture.md,
// "Errors"): a file we were given is wrong (InputError), or a place we were told to write cannot be used
// (OutputError). Both become "error: <description>" and exit code 1 at the command line.
import SafeTensors

/// A file or directory the user gave us is wrong: a tile, a segger `.pt` tile, weights, a checkpoint or its
/// metadata, a metrics file. Names the flag that gave it (when known), the file, the tensor (when one is at
/// fault) and the problem: `--checkpoint runs/a/last.safetensors: tensor 'x': …`.
public struct InputError: Error, CustomStringConvertible, Equatable {
    /// The file or directory at fault, as given.
    public let path: String
    /// The tensor (or metadata field) at fault, when there is one.
    public let tensor: String?
    public let message: String
    /// The flag that named the file, without dashes (`checkpoint`), when the thrower knows it.
    public var flag: String?

    public init(path: String, tensor: String? = nil, _ message: String) {
        self.path = path
        self.tensor = tensor
        self.message = message
    }

    /// The safetensors reader's error, as an error about an input file.
    public init(_ e: SafeTensorsError) {
        self.init(path: e.path, tensor: e.tensor, e.message)
    }

    /// This error, saying which flag named the file (kept when one is already named).
    public func given(by flag: String) -> InputError {
        var e = self
        if e.flag == nil { e.flag = flag }
        return e
    }

    public var description: String {
        (flag.map { "--\($0) " } ?? "") + path + ": " + (tensor.map { "tensor '\($0)': " } ?? "") + message
    }
}

/// A place we were told to write cannot be used: not writable, in use by another run, holding files a run
/// would overwrite, or a write that failed. The message names the flag or path and what to do.
public struct OutputError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
