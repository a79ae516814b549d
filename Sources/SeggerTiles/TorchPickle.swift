// A restricted pickle interpreter for what torch.save writes (protocols 2–5). It executes nothing:
// every GLOBAL must be on an explicit allow-list of names whose effect it knows (rebuild a tensor
// from a storage, make an OrderedDict, a numpy array, a PyG storage object, ...), and only builds
// plain values from them. Anything else is an error naming the file and the global.
import Foundation
import SafeTensors

/// A value built by the pickle interpreter. Containers are reference types (pickle mutates them
/// after memoizing them); they live only inside `TorchPickle.withValue`, which tears them down.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(PickleTuple)
    /// A list, or a set (kept as a list).
    case list(PickleList)
    /// A dict, OrderedDict, defaultdict or dict subclass.
    case dict(PickleDict)
    /// An allowed global used as a value (a class or function reference), e.g. `torch FloatStorage`.
    case global(AllowedGlobal)
    /// An instance of an allowed plain class (PyG HeteroData, NodeStorage, ...): its state after BUILD.
    case object(PickleObject)
    /// A tensor rebuilt from a storage, materialized contiguous.
    case tensor(Tensor)
    /// A tensor's element type and shape only (shapes-only reading), its view checked against its storage.
    case tensorShape(DType, [Int])
    /// A storage from persistent_load: `data/<key>` of the archive.
    case storage(TorchStorage)
    case ndarray(NumpyArray)
    case dtype(NumpyDType)

    var string: String? { if case .string(let s) = self { return s }; return nil }
    var int: Int64? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
    var dict: PickleDict? { if case .dict(let d) = self { return d }; return nil }
    var tensor: Tensor? { if case .tensor(let t) = self { return t }; return nil }
    /// The shape of a tensor, materialized or not.
    var tensorShape: [Int]? {
        switch self {
        case .tensor(let t): return t.shape
        case .tensorShape(_, let shape): return shape
        default: return nil
        }
    }
    /// Items of a tuple or list.
    var items: [PickleValue]? {
        switch self {
        case .tuple(let t): return t.items
        case .list(let l): return l.items
        default: return nil
        }
    }

    /// A short description for error messages.
    var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let g): return "global \(g.name)"
        case .object(let o): return "\(o.className) object"
        case .tensor, .tensorShape: return "tensor"
        case .storage: return "storage"
        case .ndarray: return "numpy array"
        case .dtype: return "numpy dtype"
        }
    }

    /// Equality of hashable keys (str, int, bool, None, float, tuples of those).
    func sameKey(_ other: PickleValue, depth: Int = 0) -> Bool {
        if depth > 64 { return false }
        switch (self, other) {
        case (.none, .none): return true
        case (.string(let a), .string(let b)): return a == b
        case (.bytes(let a), .bytes(let b)): return a == b
        case (.float(let a), .float(let b)): return a == b
        case (.tuple(let a), .tuple(let b)):
            return a.items.count == b.items.count && zip(a.items, b.items).allSatisfy { $0.sameKey($1, depth: depth + 1) }
        case (.global(let a), .global(let b)): return a.name == b.name
        default:
            if let a = int, let b = other.int { return a == b }
            return false
        }
    }
}

/// Containers clear their children on teardown so that freeing a deep or cyclic value never recurses.
protocol PickleContainer: AnyObject { func clear() }

final class PickleTuple: PickleContainer {
    private(set) var items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
    func clear() { items = [] }
}

final class PickleList: PickleContainer {
    var items: [PickleValue] = []
    init(_ items: [PickleValue] = []) { self.items = items }
    func clear() { items = [] }
}

final class PickleDict: PickleContainer {
    /// Entries in insertion order (dict keys may be tuples, so no Swift Dictionary).
    private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    /// Instance attributes set by BUILD (e.g. an OrderedDict state_dict's `_metadata`).
    var attributes: PickleValue = .none

    /// Position of each str key in `entries` (other keys are few and found by a scan).
    private var stringIndex: [String: Int] = [:]

    func set(_ key: PickleValue, _ value: PickleValue) {
        if let s = key.string {
            if let i = stringIndex[s] { entries[i].value = value } else {
                stringIndex[s] = entries.count
                entries.append((key, value))
            }
        } else if let i = entries.firstIndex(where: { $0.key.string == nil && $0.key.sameKey(key) }) {
            entries[i].value = value
        } else {
            entries.append((key, value))
        }
    }

    subscript(key: String) -> PickleValue? {
        stringIndex[key].map { entries[$0].value }
    }

    func clear() { entries = []; stringIndex = [:]; attributes = .none }
}

final class PickleObject: PickleContainer {
    let className: String
    /// An object of an inert global (checkpoints only): recorded by name, never interpreted.
    let inert: Bool
    /// The state given to BUILD (usually a dict of attributes), `.none` before.
    var state: PickleValue = .none
    init(className: String, inert: Bool = false) { self.className = className; self.inert = inert }
    func clear() { state = .none }

    /// An attribute from a dict state.
    subscript(key: String) -> PickleValue? { state.dict?[key] }
}

/// A storage named by a persistent id: its element type and bytes inside the archive.
struct TorchStorage {
    let key: String
    let dtype: DType
    let count: Int
    let bytes: ArraySlice<UInt8>
}

/// A numpy dtype as pickled: kind character, item size, byte order.
final class NumpyDType: PickleContainer {
    let name: String
    var byteOrder: String = "|"
    init(name: String) { self.name = name }
    func clear() {}
}

/// A numpy array as `_reconstruct` + `__setstate__` build it: object arrays keep their elements,
/// numeric arrays their raw bytes.
final class NumpyArray: PickleContainer {
    var shape: [Int] = [0]
    var dtype: NumpyDType?
    var fortranOrder = false
    var objects: [PickleValue]? = nil
    var raw: [UInt8]? = nil
    func clear() { objects = nil; raw = nil; dtype = nil }

    /// The elements of a 1-D object array of strings (e.g. segger's `bd.id`), or nil.
    var strings: [String]? {
        guard let objects else { return nil }
        var out: [String] = []
        for o in objects {
            switch o {
            case .string(let s): out.append(s)
            case .bytes(let b): out.append(String(decoding: b, as: UTF8.self))
            case .int(let i): out.append(String(i))
            default: return nil
            }
        }
        return out
    }
}

/// What an allowed global does when the pickle calls it (REDUCE), instantiates it (NEWOBJ) or
/// uses it as a value.
struct AllowedGlobal {
    enum Effect {
        case rebuildTensor          // torch._utils._rebuild_tensor_v2 / _rebuild_tensor
        case rebuildFromType        // torch._utils._rebuild_from_type_v2(func, type, args, state): func(*args)
        case rebuildParameter       // torch._utils._rebuild_parameter: the tensor itself
        case storageType(DType)     // torch.FloatStorage, ... (used inside persistent ids)
        case dictClass              // OrderedDict, dict subclasses
        case defaultDict            // collections.defaultdict(factory)
        case setClass               // set / frozenset: kept as a list
        case codecsEncode           // _codecs.encode(str, 'latin1') → bytes (protocol-2 bytes)
        case numpyReconstruct       // numpy.core.multiarray._reconstruct
        case numpyDType             // numpy.dtype
        case numpyScalar            // numpy.core.multiarray.scalar(dtype, bytes)
        case plainClass             // instantiated with NEWOBJ, filled by BUILD (PyG storages)
        case enumClass              // AttrType('EDGE') → the string
        case classReference         // only used as a value (numpy.ndarray, EdgeAttr, ...)
        case inert                  // checkpoints only: calls and instances become opaque objects
    }
    let name: String
    let effect: Effect
}

enum TorchPickle {
    /// The allow-list: `module name` (as pickletools prints a GLOBAL) → effect.
    static let allowed: [String: AllowedGlobal.Effect] = {
        var a: [String: AllowedGlobal.Effect] = [
            "torch._utils _rebuild_tensor_v2": .rebuildTensor,
            "torch._utils _rebuild_tensor": .rebuildTensor,
            "torch._utils _rebuild_parameter": .rebuildParameter,
            "torch._utils _rebuild_from_type_v2": .rebuildFromType,
            "torch FloatStorage": .storageType(.F32),
            "torch DoubleStorage": .storageType(.F64),
            "torch HalfStorage": .storageType(.F16),
            "torch BFloat16Storage": .storageType(.BF16),
            "torch LongStorage": .storageType(.I64),
            "torch IntStorage": .storageType(.I32),
            "torch ShortStorage": .storageType(.I16),
            "torch CharStorage": .storageType(.I8),
            "torch ByteStorage": .storageType(.U8),
            "torch BoolStorage": .storageType(.BOOL),
            "collections OrderedDict": .dictClass,
            "collections defaultdict": .defaultDict,
            "__builtin__ set": .setClass, "builtins set": .setClass,
            "__builtin__ frozenset": .setClass, "builtins frozenset": .setClass,
            "_codecs encode": .codecsEncode,
            "numpy.core.multiarray _reconstruct": .numpyReconstruct,
            "numpy._core.multiarray _reconstruct": .numpyReconstruct,
            "numpy.core.multiarray scalar": .numpyScalar,
            "numpy._core.multiarray scalar": .numpyScalar,
            "numpy dtype": .numpyDType,
            "numpy ndarray": .classReference,
            "torch_geometric.data.storage AttrType": .enumClass,
            "torch_geometric.data.graph_store EdgeAttr": .classReference,
            "torch_geometric.data.feature_store TensorAttr": .classReference,
            // Lightning's hyper-parameter dict.
            "lightning.fabric.utilities.data AttributeDict": .dictClass,
            "lightning_fabric.utilities.data AttributeDict": .dictClass,
            "pytorch_lightning.utilities.parsing AttributeDict": .dictClass,
        ]
        for c in ["hetero_data HeteroData", "data Data", "storage BaseStorage", "storage NodeStorage",
                  "storage EdgeStorage", "storage GlobalStorage"] {
            a["torch_geometric.data.\(c)"] = .plainClass
        }
        return a
    }()

    /// Globals that a checkpoint may hold besides its tensors and that are recorded by name only,
    /// never interpreted: segger main's LitSegger saves its whole to_hetero model (a torch.fx
    /// GraphModule of PyG layers) in `hyper_parameters`. Nothing here is ever called, so these
    /// objects are opaque and cannot become one of the tensors returned; `os.system`,
    /// `builtins.eval` and the like stay errors.
    static func inertInCheckpoints(_ module: String, _ name: String) -> Bool {
        let modules = ["torch.nn.", "torch.fx.", "torch_geometric.nn.", "torch_geometric.inspector", "segger.",
                       "torchmetrics.", "typing", "inspect"]
        if modules.contains(where: { module == $0 || module.hasPrefix($0) || ($0.hasSuffix(".") && module == String($0.dropLast())) }) {
            return true
        }
        return ["__builtin__ type", "builtins type", "__builtin__ long", "builtins int", "builtins float",
                "builtins str", "builtins bool", "_operator getitem", "torch Tensor", "torch Size", "torch device",
                "torch dtype", "torch float32", "torch int64"].contains("\(module) \(name)")
    }

    /// Runs the pickle in `bytes` (storages from `archive`) and hands the root value to `body`.
    /// Containers are torn down afterwards: `body` must copy out what it needs. `checkpoint`
    /// admits the inert globals of `inertInCheckpoints` as opaque objects.
    /// `shapesOnly` rebuilds tensors as `.tensorShape` (views still checked, storage data neither
    /// copied nor CRC-checked).
    static func withValue<T>(_ bytes: ArraySlice<UInt8>, archive: TorchArchive?, path: String, checkpoint: Bool = false,
                             shapesOnly: Bool = false, _ body: (PickleValue) throws -> T) throws -> T {
        let machine = Unpickler(bytes: bytes, archive: archive, path: path, checkpoint: checkpoint, shapesOnly: shapesOnly)
        defer { machine.teardown() }
        let root = try machine.run()
        return try body(root)
    }
}

/// The pickle machine: a stack, a mark stack, a memo; no calls into anything but the allow-list.
final class Unpickler {
    let bytes: ArraySlice<UInt8>
    let archive: TorchArchive?
    let path: String
    var pos: Int
    var stack: [PickleValue] = []
    var marks: [Int] = []
    var memo: [Int: PickleValue] = [:]
    var arena: [PickleContainer] = []
    var storages: [String: TorchStorage] = [:]
    let checkpoint: Bool
    let shapesOnly: Bool

    init(bytes: ArraySlice<UInt8>, archive: TorchArchive?, path: String, checkpoint: Bool = false, shapesOnly: Bool = false) {
        self.checkpoint = checkpoint
        self.shapesOnly = shapesOnly
        self.bytes = bytes
        self.archive = archive
        self.path = path
        self.pos = bytes.startIndex
    }

    func teardown() {
        stack = []
        memo = [:]
        for c in arena { c.clear() }
        arena = []
    }

    func fail(_ m: String) -> InputError { InputError(path: path, "pickle: \(m)") }

    func track<C: PickleContainer>(_ c: C) -> C { arena.append(c); return c }

    // MARK: reading the byte stream

    func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.endIndex - pos else {
            throw fail("truncated: needs \(n) bytes at offset \(pos - bytes.startIndex), \(bytes.endIndex - pos) left")
        }
        defer { pos += n }
        return bytes[pos..<(pos + n)]
    }
    func u8() throws -> Int { Int(try take(1).first!) }
    func uint(_ n: Int) throws -> UInt64 {
        let b = try take(n)
        var v: UInt64 = 0
        for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
        return v
    }
    func length(_ n: Int) throws -> Int {
        let v = try uint(n)
        guard v <= UInt64(bytes.endIndex - pos) else {
            throw fail("truncated: a \(v)-byte item at offset \(pos - bytes.startIndex) runs past the end of the pickle")
        }
        return Int(v)
    }
    func line() throws -> String {
        guard let nl = bytes[pos...].firstIndex(of: 0x0A) else { throw fail("truncated: unterminated GLOBAL line") }
        defer { pos = nl + 1 }
        guard let s = String(bytes: bytes[pos..<nl], encoding: .utf8) else { throw fail("GLOBAL name is not UTF-8") }
        return s
    }
    func utf8(_ n: Int) throws -> String {
        guard let s = String(bytes: try take(n), encoding: .utf8) else {
            throw fail("string at offset \(pos - bytes.startIndex - n) is not valid UTF-8")
        }
        return s
    }

    // MARK: the stack

    func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw fail("stack underflow at offset \(pos - bytes.startIndex - 1)") }
        if let m = marks.last, stack.count < m { throw fail("stack underflow past a MARK at offset \(pos - bytes.startIndex - 1)") }
        return v
    }
    func popMark() throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw fail("no MARK on the stack at offset \(pos - bytes.startIndex - 1)") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }
    func top() throws -> PickleValue {
        guard let v = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow at offset \(pos - bytes.startIndex - 1)") }
        return v
    }
    func tuple(_ items: [PickleValue]) -> PickleValue { .tuple(track(PickleTuple(items))) }

    // MARK: the interpreter

    func run() throws -> PickleValue {
        while true {
            let at = pos - bytes.startIndex
            let op = try u8()
            switch op {
            case 0x80: // PROTO
                let p = try u8()
                guard p >= 2 && p <= 5 else { throw fail("pickle protocol \(p) is not supported (torch writes 2)") }
            case 0x95: _ = try uint(8) // FRAME: framing only
            case 0x2e: // STOP
                let v = try pop()
                return v
            case 0x28: marks.append(stack.count) // MARK
            case 0x30: _ = try pop() // POP
            case 0x31: _ = try popMark() // POP_MARK
            case 0x32: stack.append(try top()) // DUP
            case 0x4e: stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case 0x4a: stack.append(.int(Int64(Int32(truncatingIfNeeded: try uint(4))))) // BININT
            case 0x4b: stack.append(.int(Int64(try uint(1)))) // BININT1
            case 0x4d: stack.append(.int(Int64(try uint(2)))) // BININT2
            case 0x8a, 0x8b: // LONG1, LONG4
                let n = try length(op == 0x8a ? 1 : 4)
                let b = try take(n)
                guard n <= 8 else { throw fail("integer of \(n) bytes at offset \(at) does not fit in 64 bits") }
                var v: UInt64 = 0
                for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
                if n > 0 && n < 8 && b.last! & 0x80 != 0 { v |= ~0 << (8 * UInt64(n)) } // sign-extend
                stack.append(.int(Int64(bitPattern: v)))
            case 0x47: // BINFLOAT: big-endian double
                let b = try take(8)
                var v: UInt64 = 0
                for x in b { v = v << 8 | UInt64(x) }
                stack.append(.float(Double(bitPattern: v)))
            case 0x58: stack.append(.string(try utf8(try length(4)))) // BINUNICODE
            case 0x8c: stack.append(.string(try utf8(try length(1)))) // SHORT_BINUNICODE
            case 0x8d: stack.append(.string(try utf8(try length(8)))) // BINUNICODE8
            case 0x43: stack.append(.bytes(Array(try take(try length(1))))) // SHORT_BINBYTES
            case 0x42: stack.append(.bytes(Array(try take(try length(4))))) // BINBYTES
            case 0x8e, 0x96: stack.append(.bytes(Array(try take(try length(8))))) // BINBYTES8, BYTEARRAY8
            case 0x29: stack.append(tuple([])) // EMPTY_TUPLE
            case 0x85, 0x86, 0x87: // TUPLE1..3
                let n = Int(op) - 0x84
                var items: [PickleValue] = []
                for _ in 0..<n { items.append(try pop()) }
                stack.append(tuple(items.reversed()))
            case 0x74: stack.append(tuple(try popMark())) // TUPLE
            case 0x5d: stack.append(.list(track(PickleList()))) // EMPTY_LIST
            case 0x6c: stack.append(.list(track(PickleList(try popMark())))) // LIST
            case 0x8f: stack.append(.list(track(PickleList()))) // EMPTY_SET
            case 0x91: stack.append(.list(track(PickleList(try popMark())))) // FROZENSET
            case 0x7d: stack.append(.dict(track(PickleDict()))) // EMPTY_DICT
            case 0x64: // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("DICT with an odd number of items at offset \(at)") }
                let d = track(PickleDict())
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
                stack.append(.dict(d))
            case 0x61: // APPEND
                let v = try pop()
                if case .object(let o) = try top(), o.inert { break }
                guard case .list(let l) = try top() else { throw fail("APPEND to a \(try top().kind) at offset \(at)") }
                l.items.append(v)
            case 0x65, 0x90: // APPENDS, ADDITEMS
                let items = try popMark()
                if case .object(let o) = try top(), o.inert { break }
                guard case .list(let l) = try top() else { throw fail("APPENDS to a \(try top().kind) at offset \(at)") }
                l.items.append(contentsOf: items)
            case 0x73: // SETITEM
                let v = try pop(), k = try pop()
                if case .object(let o) = try top(), o.inert { break }
                guard case .dict(let d) = try top() else { throw fail("SETITEM on a \(try top().kind) at offset \(at)") }
                d.set(k, v)
            case 0x75: // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items at offset \(at)") }
                if case .object(let o) = try top(), o.inert { break }
                guard case .dict(let d) = try top() else { throw fail("SETITEMS on a \(try top().kind) at offset \(at)") }
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
            case 0x71: memo[Int(try uint(1))] = try top() // BINPUT
            case 0x72: memo[Int(try uint(4))] = try top() // LONG_BINPUT
            case 0x94: memo[memo.count] = try top() // MEMOIZE
            case 0x68, 0x6a: // BINGET, LONG_BINGET
                let i = Int(try uint(op == 0x68 ? 1 : 4))
                guard let v = memo[i] else { throw fail("memo entry \(i) read before it was written (offset \(at))") }
                stack.append(v)
            case 0x63: // GLOBAL
                let module = try line(), name = try line()
                stack.append(.global(try allow(module, name)))
            case 0x93: // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard let n = name.string, let m = module.string else { throw fail("STACK_GLOBAL with non-string names at offset \(at)") }
                stack.append(.global(try allow(m, n)))
            case 0x51: // BINPERSID
                stack.append(try persistentLoad(try pop()))
            case 0x52: // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args, at: at))
            case 0x81: // NEWOBJ
                let args = try pop(), cls = try pop()
                stack.append(try newObject(cls, args, at: at))
            case 0x92: // NEWOBJ_EX
                _ = try pop()
                let args = try pop(), cls = try pop()
                stack.append(try newObject(cls, args, at: at))
            case 0x62: // BUILD
                let state = try pop()
                try build(try top(), state, at: at)
            default:
                throw fail(unsupported(op, at: at))
            }
        }
    }

    func unsupported(_ op: Int, at: Int) -> String {
        let names: [Int: String] = [0x69: "INST", 0x6f: "OBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
                                    0x50: "PERSID", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
                                    0x49: "INT", 0x4c: "LONG", 0x46: "FLOAT", 0x53: "STRING", 0x54: "BINSTRING",
                                    0x55: "SHORT_BINSTRING", 0x56: "UNICODE", 0x67: "GET", 0x70: "PUT"]
        let hex = String(format: "0x%02x", op)
        if let n = names[op] { return "opcode \(n) (\(hex)) at offset \(at) is not supported by this restricted reader" }
        return "unknown opcode \(hex) at offset \(at)"
    }

    func allow(_ module: String, _ name: String) throws -> AllowedGlobal {
        let full = "\(module) \(name)"
        if checkpoint && TorchPickle.allowed[full] == nil && TorchPickle.inertInCheckpoints(module, name) {
            return AllowedGlobal(name: "\(module).\(name)", effect: .inert)
        }
        guard let effect = TorchPickle.allowed[full] else {
            throw fail("global '\(module).\(name)' is not on the allow-list of this restricted reader (it executes no code; only torch tensors/storages, OrderedDict, numpy arrays and PyG HeteroData are rebuilt)")
        }
        return AllowedGlobal(name: "\(module).\(name)", effect: effect)
    }

    // MARK: calls of allowed globals

    func ints(_ v: PickleValue, _ what: String) throws -> [Int] {
        guard let items = v.items else { throw fail("\(what) is a \(v.kind), expected a tuple of ints") }
        return try items.map {
            guard let i = $0.int, i >= 0, i < (1 << 40) else { throw fail("\(what) holds \($0.kind) \($0.int.map(String.init) ?? ""), expected a non-negative int") }
            return Int(i)
        }
    }

    func reduce(_ callable: PickleValue, _ argsValue: PickleValue, at: Int) throws -> PickleValue {
        guard case .global(let g) = callable else { throw fail("REDUCE calls a \(callable.kind) at offset \(at); only allowed globals can be called") }
        guard case .tuple(let argsTuple) = argsValue else { throw fail("REDUCE of \(g.name) with \(argsValue.kind) arguments at offset \(at)") }
        let args = argsTuple.items
        func arg(_ i: Int) throws -> PickleValue {
            guard i < args.count else { throw fail("\(g.name) called with \(args.count) arguments at offset \(at)") }
            return args[i]
        }
        switch g.effect {
        case .rebuildTensor:
            guard case .storage(let s) = try arg(0) else { throw fail("\(g.name) at offset \(at): argument 0 is a \(try arg(0).kind), expected a storage") }
            guard let offset = try arg(1).int, offset >= 0 else { throw fail("\(g.name) at offset \(at): bad storage offset") }
            let size = try ints(try arg(2), "tensor size"), stride = try ints(try arg(3), "tensor stride")
            if shapesOnly {
                _ = try checkView(s, offset: Int(offset), size: size, stride: stride)
                return .tensorShape(s.dtype, size)
            }
            return .tensor(try rebuild(s, offset: Int(offset), size: size, stride: stride))
        case .rebuildFromType:
            let inner = try arg(2)
            guard case .tuple = inner else { throw fail("\(g.name) at offset \(at): argument 2 is a \(inner.kind), expected a tuple") }
            return try reduce(try arg(0), inner, at: at)
        case .inert:
            return .object(track(PickleObject(className: g.name, inert: true)))
        case .rebuildParameter:
            guard try arg(0).tensorShape != nil else { throw fail("\(g.name) at offset \(at): argument 0 is a \(try arg(0).kind), expected a tensor") }
            return try arg(0)
        case .dictClass, .defaultDict:
            let d = track(PickleDict())
            if case .dictClass = g.effect, let first = args.first {
                // OrderedDict(iterable of pairs)
                for pair in first.items ?? [] {
                    guard let kv = pair.items, kv.count == 2 else { throw fail("\(g.name) at offset \(at): argument is not a list of pairs") }
                    d.set(kv[0], kv[1])
                }
            }
            return .dict(d)
        case .setClass:
            return .list(track(PickleList(args.first?.items ?? [])))
        case .codecsEncode:
            guard let s = try arg(0).string else { throw fail("_codecs.encode of a \(try arg(0).kind) at offset \(at)") }
            let encoding = args.count > 1 ? args[1].string ?? "" : "utf-8"
            if encoding == "latin1" || encoding == "latin-1" || encoding == "iso-8859-1" {
                var out: [UInt8] = []
                out.reserveCapacity(s.unicodeScalars.count)
                for u in s.unicodeScalars {
                    guard u.value < 256 else { throw fail("_codecs.encode: character U+\(String(u.value, radix: 16)) is not latin-1") }
                    out.append(UInt8(u.value))
                }
                return .bytes(out)
            }
            guard encoding == "utf-8" || encoding == "utf8" else { throw fail("_codecs.encode with encoding '\(encoding)' at offset \(at)") }
            return .bytes(Array(s.utf8))
        case .numpyReconstruct:
            return .ndarray(track(NumpyArray()))
        case .numpyDType:
            guard let name = try arg(0).string else { throw fail("numpy.dtype of a \(try arg(0).kind) at offset \(at)") }
            return .dtype(track(NumpyDType(name: name)))
        case .numpyScalar:
            guard case .dtype(let dt) = try arg(0) else { throw fail("numpy scalar without a dtype at offset \(at)") }
            guard case .bytes(let b) = try arg(1) else { return .none }
            return numpyScalar(dt, b)
        case .enumClass:
            return try arg(0)
        case .storageType, .plainClass, .classReference:
            throw fail("\(g.name) cannot be called (REDUCE at offset \(at))")
        }
    }

    func numpyScalar(_ dt: NumpyDType, _ b: [UInt8]) -> PickleValue {
        var v: UInt64 = 0
        let little = dt.byteOrder != ">"
        for (i, x) in (little ? b : b.reversed()).enumerated() where i < 8 { v |= UInt64(x) << (8 * UInt64(i)) }
        switch (dt.name, b.count) {
        case ("f8", 8): return .float(Double(bitPattern: v))
        case ("f4", 4): return .float(Double(Float(bitPattern: UInt32(v))))
        case ("i8", 8): return .int(Int64(bitPattern: v))
        case ("i4", 4): return .int(Int64(Int32(truncatingIfNeeded: v)))
        case ("b1", 1): return .bool(v != 0)
        default: return .int(Int64(bitPattern: v))
        }
    }

    func newObject(_ cls: PickleValue, _ args: PickleValue, at: Int) throws -> PickleValue {
        guard case .global(let g) = cls else { throw fail("NEWOBJ of a \(cls.kind) at offset \(at)") }
        switch g.effect {
        case .plainClass: return .object(track(PickleObject(className: g.name)))
        case .inert: return .object(track(PickleObject(className: g.name, inert: true)))
        case .dictClass, .defaultDict: return .dict(track(PickleDict()))
        case .setClass: return .list(track(PickleList()))
        default: throw fail("\(g.name) cannot be instantiated (NEWOBJ at offset \(at))")
        }
    }

    func build(_ target: PickleValue, _ state: PickleValue, at: Int) throws {
        switch target {
        case .object(let o):
            // (dict, slots) pairs come from classes with __slots__; keep the dict part.
            if let items = state.items, items.count == 2, case .dict = items[0] { o.state = items[0] } else { o.state = state }
        case .dict(let d):
            d.attributes = state
        case .dtype(let dt):
            // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
            if let items = state.items, items.count >= 2, let order = items[1].string { dt.byteOrder = order }
        case .ndarray(let a):
            // (version, shape, dtype, is_fortran, data)
            guard let items = state.items, items.count == 5, case .dtype(let dt) = items[2] else {
                throw fail("numpy array state at offset \(at) is not (version, shape, dtype, fortran, data)")
            }
            a.shape = try ints(items[1], "numpy array shape")
            a.dtype = dt
            a.fortranOrder = items[3].int == 1
            switch items[4] {
            case .list(let l): a.objects = l.items
            case .bytes(let b): a.raw = b
            case .string(let s): a.raw = s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }
            default: throw fail("numpy array data at offset \(at) is a \(items[4].kind)")
            }
        default:
            throw fail("BUILD on a \(target.kind) at offset \(at) is not supported")
        }
    }

    // MARK: storages and tensors

    /// persistent_load(('storage', storage_type, key, location, numel)) → the archive's `data/<key>`.
    func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard let items = pid.items, items.count == 5, items[0].string == "storage" else {
            throw fail("persistent id is a \(pid.kind), expected ('storage', type, key, location, numel)")
        }
        guard case .global(let g) = items[1], case .storageType(let dtype) = g.effect else {
            throw fail("persistent id names \(items[1].kind), expected a torch storage type")
        }
        guard let key = items[2].string else { throw fail("storage key is a \(items[2].kind)") }
        guard let numel = items[4].int, numel >= 0, numel < (1 << 40) else { throw fail("storage '\(key)' has a bad element count") }
        if let s = storages[key] {
            guard s.dtype == dtype else { throw fail("storage '\(key)' is used as both \(s.dtype.rawValue) and \(dtype.rawValue)") }
            return .storage(s)
        }
        guard let archive else { throw fail("persistent id for storage '\(key)' outside a torch archive") }
        guard let data = try archive.record("data/\(key)", checked: !shapesOnly) else {
            throw fail("storage '\(key)' (\(g.name)) has no entry 'data/\(key)' in the archive")
        }
        let needed = Int(numel) * dtype.size
        guard data.count == needed else {
            throw fail("storage '\(key)' holds \(data.count) bytes but \(numel) × \(dtype.rawValue) need \(needed)")
        }
        let s = TorchStorage(key: key, dtype: dtype, count: Int(numel), bytes: data)
        storages[key] = s
        return .storage(s)
    }

    /// `_rebuild_tensor_v2`: the view (offset, size, stride) of a storage, copied out contiguous
    /// (row-major) and little-endian. Every element the view reaches must lie inside the storage.
    func rebuild(_ s: TorchStorage, offset: Int, size: [Int], stride: [Int]) throws -> Tensor {
        let count = try checkView(s, offset: offset, size: size, stride: stride)
        let e = s.dtype.size
        var out = [UInt8](repeating: 0, count: count * e)
        if count > 0 {
            var contiguous = true
            var expect = 1
            for (d, st) in zip(size, stride).reversed() where d != 1 {
                if st != expect { contiguous = false; break }
                expect *= d
            }
            s.bytes.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    if contiguous {
                        memcpy(dst.baseAddress!, src.baseAddress! + offset * e, count * e)
                    } else {
                        // Walk the view in row-major order with an index counter.
                        let n = size.count
                        var index = [Int](repeating: 0, count: n)
                        var at = offset
                        for k in 0..<count {
                            memcpy(dst.baseAddress! + k * e, src.baseAddress! + at * e, e)
                            var dim = n - 1
                            while dim >= 0 {
                                index[dim] += 1
                                at += stride[dim]
                                if index[dim] < size[dim] { break }
                                at -= stride[dim] * size[dim]
                                index[dim] = 0
                                dim -= 1
                            }
                        }
                    }
                }
            }
            if archive?.bigEndian == true && e > 1 {
                for k in 0..<count { out[(k * e)..<(k * e + e)].reverse() }
            }
        }
        return Tensor(dtype: s.dtype, shape: size, data: out)
    }

    /// Checks that every element of the view lies inside the storage; returns the element count.
    func checkView(_ s: TorchStorage, offset: Int, size: [Int], stride: [Int]) throws -> Int {
        guard size.count == stride.count else {
            throw fail("tensor on storage '\(s.key)' has size \(size) but stride \(stride)")
        }
        var count = 1
        for d in size {
            let (m, o) = count.multipliedReportingOverflow(by: d)
            guard !o, m < (1 << 40) else { throw fail("tensor size \(size) is too large") }
            count = m
        }
        if count > 0 {
            var last = offset
            var overflow = false
            for (d, st) in zip(size, stride) {
                let (step, o1) = (d - 1).multipliedReportingOverflow(by: st)
                let (sum, o2) = last.addingReportingOverflow(step)
                overflow = overflow || o1 || o2
                last = sum
            }
            guard !overflow, last < s.count else {
                throw fail("tensor of size \(size), stride \(stride) at offset \(offset) runs past its storage '\(s.key)' of \(s.count) \(s.dtype.rawValue) elements")
            }
        } else if offset > s.count {
            throw fail("tensor at offset \(offset) starts past its storage '\(s.key)' of \(s.count) elements")
        }
        return count
    }
}
