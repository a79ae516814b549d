// Weights from PyTorch files: a Lightning `.ckpt` (torch.save of a dict whose `state_dict` holds the
// LightningModule's tensors, segger's model under `model.`) or a bare `torch.save(state_dict)`.
import Foundation
import SafeTensors

/// Reading the weights of Lightning checkpoints and torch state_dict files.
public enum TorchCheckpoint {
    /// The tensors of the file's `state_dict` under their names as stored (segger's Lightning
    /// module: `model.<PyG name>`), each contiguous. Accepts a Lightning checkpoint (a dict with a
    /// `state_dict` entry) or a bare state_dict. Other entries (optimizer state, loops, callbacks,
    /// hyper-parameters) are parsed by the restricted reader but not returned; segger main's
    /// checkpoints pickle the whole model there, whose PyG/torch.nn/torch.fx globals are admitted as
    /// opaque objects (see `TorchPickle.inertInCheckpoints`), never interpreted.
    public static func readStateDict(path: String) throws -> [String: Tensor] {
        try readStateDict(archive: try TorchArchive.read(path: path))
    }

    static func readStateDict(archive: TorchArchive) throws -> [String: Tensor] {
        let path = archive.path
        guard let pkl = try archive.record("data.pkl") else { throw InputError(path: path, "no data.pkl") }
        return try TorchPickle.withValue(pkl, archive: archive, path: path, checkpoint: true) { root in
            guard let top = root.dict else {
                throw InputError(path: path, "the pickle holds a \(root.kind), not a checkpoint dict or state_dict")
            }
            let stateDict: PickleDict
            if let sd = top["state_dict"] {
                guard let d = sd.dict else { throw InputError(path: path, "'state_dict' is a \(sd.kind), not a dict") }
                stateDict = d
            } else {
                stateDict = top
            }
            var out: [String: Tensor] = [:]
            for (k, v) in stateDict.entries {
                guard let name = k.string else { throw InputError(path: path, "state_dict key is a \(k.kind), not a str") }
                guard case .tensor(let t) = v else {
                    throw InputError(path: path, "state_dict entry '\(name)' is a \(v.kind), not a tensor")
                }
                out[name] = t
            }
            guard !out.isEmpty else { throw InputError(path: path, "the state_dict holds no tensors") }
            return out
        }
    }
}
