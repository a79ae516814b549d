// The model's weights as named tensors: loading them by PyG name (checked before anything changes) and
// writing weights and gradients out under those names.
import SafeTensors
import SeggerTiles

extension SeggerModel {
    /// The parameter with this PyG name.
    public func parameter(_ name: String) -> ParameterInfo? {
        parameters.first { $0.name == name }
    }

    /// Loads weights by PyG name (with or without Lightning's `model.` prefix). Every parameter must be
    /// present with its shape; extra tensors are ignored. Errors name `source` and the tensor.
    public func loadWeights(_ tensors: [String: Tensor], source: String) throws {
        // Validate everything before changing anything.
        var found: [(ParameterInfo, Tensor)] = []
        for p in parameters {
            guard let t = tensors[p.name] ?? tensors["model." + p.name] else {
                throw InputError(path: source, "missing tensor '\(p.name)' (shape \(p.shape))")
            }
            guard t.dtype.isFloatingPoint else {
                throw InputError(path: source, "tensor '\(p.name)' has dtype \(t.dtype.rawValue), expected a float type")
            }
            guard t.shape == p.shape else {
                throw InputError(path: source, "tensor '\(p.name)' has shape \(t.shape), the model expects \(p.shape)")
            }
            found.append((p, t))
        }
        for (p, t) in found {
            let v = t.floats()
            for i in 0..<p.count { weights[p.offset + i] = v[i] }
        }
    }

    /// The weights as named tensors (PyG names, with `prefix` prepended), in flat-buffer order.
    public func weightTensors(prefix: String = "") -> [(String, Tensor)] {
        parameters.map { p in
            (prefix + p.name, Tensor(Array(weights[p.range]), shape: p.shape))
        }
    }

    /// The gradients as named tensors, in flat-buffer order.
    public func gradientTensors(prefix: String = "") -> [(String, Tensor)] {
        parameters.map { p in
            (prefix + p.name, Tensor(Array(gradients[p.range]), shape: p.shape))
        }
    }
}
