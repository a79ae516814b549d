// Ranges of the model's sizes and the memory a run will need, checked before anything is allocated:
// a size from a flag or from a checkpoint's metadata that would overflow an index or need more memory
// than the machine has ends in a message naming it, never in an allocation failure or an overflow trap.
import Foundation

/// One size of the model config with its valid range (names as the flags and hparams.yaml spell them).
public struct ModelSizeLimit: Sendable {
    public let name: String
    public let value: Int
    public let range: ClosedRange<Int>
}

extension ModelConfig {
    /// Every size with its range. Upper bounds keep index arithmetic in range (token ids are Int32; widths
    /// multiply into element counts); the memory check refuses most configs far below them.
    public var sizeLimits: [ModelSizeLimit] {
        var out = [
            ModelSizeLimit(name: "num_tx_tokens", value: numTxTokens, range: 1...Int(Int32.max)),
            ModelSizeLimit(name: "init_emb", value: initEmb, range: 1...65_536),
            ModelSizeLimit(name: "hidden_channels", value: hiddenChannels, range: 1...65_536),
            ModelSizeLimit(name: "out_channels", value: outChannels, range: 1...65_536),
            ModelSizeLimit(name: "heads", value: heads, range: 1...1024),
            ModelSizeLimit(name: "mid_layers", value: midLayers, range: 0...256),
            ModelSizeLimit(name: "bd_feature_dim", value: bdFeatureDim, range: 1...1_048_576),
        ]
        if let d = txFeatureDim { out.append(ModelSizeLimit(name: "tx_feature_dim", value: d, range: 1...1_048_576)) }
        return out
    }

    /// The first size outside its range, as "name value is outside lo…hi", or nil.
    public var sizeProblem: String? {
        sizeLimits.first { !$0.range.contains($0.value) }.map {
            "\($0.name) \($0.value) is outside \($0.range.lowerBound)…\($0.range.upperBound)"
        }
    }

    /// Exact parameter count of this config (the layout `SeggerModel` builds), in Double so that any
    /// size can be asked about without overflow.
    public var parameterCountEstimate: Double {
        let H = Double(heads), I = Double(initEmb), tokens = Double(numTxTokens)
        var p = 2 * tokens * I + I * Double(txFeatureDim ?? 1) + I * Double(bdFeatureDim)
        let layers = midLayers + 2
        for l in 0..<layers {
            let inDim = l == 0 ? I : H * Double(hiddenChannels)
            let C = Double(l == layers - 1 ? outChannels : hiddenChannels)
            let W = H * C
            let linears = residual ? 6.0 : 4.0  // neighbors lin_l, lin_r; belongs lin_l, lin_r (+ lin_X.tx, lin_X.bd)
            p += linears * (W * inDim + W)      // weights and biases
            p += 2 * H * C + 2 * W              // att and bias of both relations
        }
        return p
    }

    /// The widest activation row: max(init_emb, heads × max(hidden, out), tx/bd feature widths).
    var widestRow: Double {
        Double(Swift.max(initEmb, heads * Swift.max(hiddenChannels, outChannels), txFeatureDim ?? 1, bdFeatureDim))
    }
}

/// The largest tile a rank will hold (each maximum taken separately: an upper bound for every tile).
public struct TileExtent: Codable, Sendable, Equatable {
    public var nodes = 0      // N_tx + N_bd
    public var edges = 0      // E_nn + E_b
    public var labels = 0     // L
    public var txFeatures = 0 // N_tx × C in embedding mode

    public init(nodes: Int = 0, edges: Int = 0, labels: Int = 0, txFeatures: Int = 0) {
        self.nodes = nodes
        self.edges = edges
        self.labels = labels
        self.txFeatures = txFeatures
    }

    public func union(_ o: TileExtent) -> TileExtent {
        TileExtent(nodes: max(nodes, o.nodes), edges: max(edges, o.edges), labels: max(labels, o.labels),
                   txFeatures: max(txFeatures, o.txFeatures))
    }
}

/// An upper bound of the memory one rank needs, from a simple formula:
///
///     bytes = 80 · P + 4 · [ (N_tx + N_bd) · D · (8·L + 16) + (E_nn + E_b) · (2·H·L + 8) + 8·N_label + N_tx·C ] + 64 MiB
///
/// - P parameters, 80 bytes each: weights, gradients and Adam's two moments (4 bytes each), the fp64
///   step accumulator (8), the exchange carrier (≤ 8) and a checkpoint being written or read (the
///   tensors and their serialized bytes, ≤ 48);
/// - per tile (one tile is held at a time; the largest counts): L = mid_layers + 2 GATv2 layers,
///   H heads, D the widest activation row (max of init_emb, heads × max(hidden, out) and the input
///   widths); per node and layer at most 8 rows of width D (inputs, projections, residual, belongs
///   sources, and their gradients), 16 more for the backward scratch; per edge and layer the attention
///   weights of both passes (2·H) plus 8 index words; 8 words per label pair; C the tx feature width;
/// - 64 MiB for the runtime (Swift, MPI, OpenBLAS buffers).
public struct MemoryEstimate: Sendable {
    public var parameters: Double
    public var parameterBytes: Double
    public var activationBytes: Double
    public static let runtimeBytes = 64.0 * 1_048_576
    public var total: Double { parameterBytes + activationBytes + MemoryEstimate.runtimeBytes }

    public init(config: ModelConfig, tile: TileExtent) {
        parameters = config.parameterCountEstimate
        parameterBytes = 80 * parameters
        let L = Double(config.midLayers + 2), H = Double(config.heads), D = config.widestRow
        activationBytes = 4 * (Double(tile.nodes) * D * (8 * L + 16) + Double(tile.edges) * (2 * H * L + 8)
                               + 8 * Double(tile.labels) + Double(tile.txFeatures))
    }

    /// nil when the estimate fits in what this rank may use; else a message naming what was asked
    /// (`what`, e.g. the flags) with the estimate and the limit.
    public func problem(what: String, available: MachineMemory.Budget = MachineMemory.budget()) -> String? {
        guard !(total <= available.bytes) else { return nil }
        return "\(what) needs an estimated \(MachineMemory.format(total)) per rank (\(MachineMemory.count(parameters)) parameters × 80 B = "
            + "\(MachineMemory.format(parameterBytes)), activations of the largest tile \(MachineMemory.format(activationBytes)), "
            + "runtime 64 MiB), more than the \(MachineMemory.format(available.bytes)) this rank may use (\(available.source)); "
            + "nothing was allocated"
    }
}

/// How much memory this process may still allocate.
public enum MachineMemory {
    public struct Budget: Sendable {
        public var bytes: Double
        /// Which limit it is, e.g. "MemAvailable 12.1 GB / 2 ranks on this node".
        public var source: String
    }

    /// The least of: MemAvailable (/proc/meminfo), the cgroup's memory.max − memory.current, and the
    /// address-space and data limits (ulimit -v, -d) less what this process already maps; divided by
    /// the MPI ranks on this node (`OMPI_COMM_WORLD_LOCAL_SIZE`), which share it.
    public static func budget() -> Budget {
        var best = Budget(bytes: .infinity, source: "no limit found")
        func consider(_ bytes: Double?, _ source: String) {
            if let b = bytes, b < best.bytes { best = Budget(bytes: max(0, b), source: source) }
        }
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        consider(kB(meminfo, "MemAvailable:"), "MemAvailable")
        if let maxText = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
           let limit = Double(maxText.trimmingCharacters(in: .whitespacesAndNewlines)) {
            let current = (try? String(contentsOfFile: "/sys/fs/cgroup/memory.current", encoding: .utf8))
                .flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
            consider(limit - current, "cgroup memory.max")
        }
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        for (resource, field, name) in [(RLIMIT_AS, "VmSize:", "ulimit -v"), (RLIMIT_DATA, "VmData:", "ulimit -d")] {
            var rl = rlimit()
            #if canImport(Glibc)
            let r = getrlimit(__rlimit_resource_t(resource.rawValue), &rl)
            #else
            let r = getrlimit(resource, &rl)
            #endif
            if r == 0, rl.rlim_cur != rlim_t.max {  // RLIM_INFINITY (all ones; the macro does not import)
                consider(Double(rl.rlim_cur) - (kB(status, field) ?? 0), name)
            }
        }
        let local = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
        if local > 1, best.bytes.isFinite {
            best = Budget(bytes: best.bytes / Double(local), source: "\(best.source) shared by \(local) ranks on this node")
        }
        return best
    }

    /// A "Key:   123 kB" field of a /proc file, in bytes.
    static func kB(_ text: String, _ key: String) -> Double? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return nil }
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 2, let v = Double(fields[1]) else { return nil }
        return v * 1024
    }

    public static func format(_ bytes: Double) -> String {
        if !bytes.isFinite { return "unlimited" }
        let units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"]
        var v = bytes, u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        if u == units.count - 1 && v >= 1000 { return String(format: "%.3g B", bytes) }
        return String(format: u == 0 ? "%.0f" : "%.1f", v) + " " + units[u]
    }

    static func count(_ n: Double) -> String {
        n < 1e15 ? String(format: "%.0f", n) : String(format: "%.3g", n)
    }
}

extension ModelConfig {
    /// The sizes of this config by name, for messages about a checkpoint ("num_tx_tokens 500, init_emb 8, …").
    public var sizeSummary: String {
        "num_tx_tokens \(numTxTokens), init_emb \(initEmb), hidden_channels \(hiddenChannels), out_channels \(outChannels), heads \(heads), mid_layers \(midLayers)"
    }

    /// The size flags of this config, for messages ("--num_tx_tokens 500 --init_emb 8 …").
    public var flagSummary: String {
        "--num_tx_tokens \(numTxTokens) --init_emb \(initEmb) --hidden_channels \(hiddenChannels) --out_channels \(outChannels) --heads \(heads) --mid_layers \(midLayers)"
    }
}
