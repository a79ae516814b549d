// Global-norm clipping and AdamW / Adam over the flat buffers (docs/model-and-training.md).
import Foundation
import SafeTensors
import SeggerTiles
import CVectorMath

/// Optimizer settings. Defaults are segger's since May 2025: AdamW lr 1e-4, weight decay 1e-4, clip 1.0.
public struct OptimizerConfig: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Decoupled weight decay: p ← p·(1 − lr·wd), then the Adam update.
        case adamw
        /// torch.optim.Adam: weight decay (if any) added to the gradient (L2).
        case adam
    }
    public var kind: Kind = .adamw
    public var lr: Float = 1e-4
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var weightDecay: Float = 1e-4
    /// Clip to this global L2 norm; nil disables clipping.
    public var maxNorm: Float? = 1.0

    public init() {}
}

/// Adam/AdamW state: first and second moments in flat buffers with the parameters' layout.
public final class Optimizer {
    public let config: OptimizerConfig
    public let count: Int
    /// Number of updates applied so far (Adam's t).
    public var step: Int = 0
    public let expAvg: UnsafeMutableBufferPointer<Float>
    public let expAvgSq: UnsafeMutableBufferPointer<Float>

    public init(config: OptimizerConfig, parameterCount: Int) {
        self.config = config
        self.count = parameterCount
        expAvg = .allocate(capacity: parameterCount)
        expAvg.initialize(repeating: 0)
        expAvgSq = .allocate(capacity: parameterCount)
        expAvgSq.initialize(repeating: 0)
    }

    deinit {
        expAvg.deallocate()
        expAvgSq.deallocate()
    }

    /// Global L2 norm of the gradients (accumulated in Double).
    public static func globalNorm(_ g: UnsafeMutableBufferPointer<Float>) -> Double {
        // Four Double partial sums: exact enough for any parameter count and easy to vectorize.
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        let n = g.count, p = g.baseAddress!
        var i = 0
        while i + 4 <= n {
            let a = Double(p[i]), b = Double(p[i + 1]), c = Double(p[i + 2]), d = Double(p[i + 3])
            s0 += a * a; s1 += b * b; s2 += c * c; s3 += d * d
            i += 4
        }
        while i < n { let a = Double(p[i]); s0 += a * a; i += 1 }
        return ((s0 + s1) + (s2 + s3)).squareRoot()
    }

    /// Clips to `config.maxNorm` as torch.nn.utils.clip_grad_norm_ does: g ← g·min(1, max/(norm+1e-6)).
    /// - Returns: the norm before clipping.
    @discardableResult
    public func clip(_ g: UnsafeMutableBufferPointer<Float>) -> Double {
        let norm = Optimizer.globalNorm(g)
        guard let maxNorm = config.maxNorm else { return norm }
        let coef = Double(maxNorm) / (norm + 1e-6)
        if coef < 1 {
            let c = Float(coef)
            for i in 0..<g.count { g[i] *= c }
        }
        return norm
    }

    /// One update of `w` from `g` (after clipping).
    public func update(weights w: UnsafeMutableBufferPointer<Float>, gradients g: UnsafeMutableBufferPointer<Float>) {
        precondition(w.count == count && g.count == count, "optimizer built for \(count) parameters")
        step += 1
        let lr = Double(config.lr), b1 = Double(config.beta1), b2 = Double(config.beta2)
        // As torch: step_size = lr / (1 − β1^t); denom = √v / √(1 − β2^t) + ε.
        let bc1 = 1 - pow(b1, Double(step))
        let bc2Sqrt = (1 - pow(b2, Double(step))).squareRoot()
        let stepSize = Float(lr / bc1)
        let invBc2Sqrt = Float(1 / bc2Sqrt)
        let beta1 = config.beta1, beta2 = config.beta2, eps = config.eps
        let oneMinusB1 = 1 - beta1, oneMinusB2 = 1 - beta2
        let wd = config.weightDecay
        let decay: Float = config.kind == .adamw ? Float(1 - lr * Double(wd)) : 1
        let l2: Float = config.kind == .adam ? wd : 0
        let p = w.baseAddress!, gp = g.baseAddress!, m = expAvg.baseAddress!, v = expAvgSq.baseAddress!
        // 16 parameters at a time with the same operations in the same order as the scalar loop below
        // (all elementwise, square root and division correctly rounded in both): the same numbers. The
        // scalar form compiles to one square root and one division per parameter, the step's bottleneck here
        // (and SIMD16's squareRoot() to sixteen scalar ones: hence `segger_sqrt16`).
        typealias V = SIMD16<Float>
        let l2V = V(repeating: l2), decayV = V(repeating: decay), b1V = V(repeating: oneMinusB1)
        let beta2V = V(repeating: beta2), b2V = V(repeating: oneMinusB2), stepV = V(repeating: stepSize)
        let bcV = V(repeating: invBc2Sqrt), epsV = V(repeating: eps)
        @inline(__always) func load(_ q: UnsafeMutablePointer<Float>) -> V { UnsafeRawPointer(q).loadUnaligned(as: V.self) }
        @inline(__always) func store(_ x: V, _ q: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(q).storeBytes(of: x, as: V.self) }
        var start = 0
        while start + 16 <= count {
            let pv = load(p + start), mv = load(m + start)
            let gi = load(gp + start) + l2V * pv
            let pi = pv * decayV
            let mi = mv + (gi - mv) * b1V
            let vi = load(v + start) * beta2V + b2V * gi * gi
            store(mi, m + start)
            store(vi, v + start)
            store(pi - stepV * (mi / (segger_sqrt16(vi) * bcV + epsV)), p + start)
            start += 16
        }
        for i in start..<count {
            let gi = gp[i] + l2 * p[i]                      // Adam: L2 decay joins the gradient
            let pi = p[i] * decay                           // AdamW: decoupled decay first
            let mi = m[i] + (gi - m[i]) * oneMinusB1        // exp_avg.lerp_(grad, 1 − β1)
            let vi = v[i] * beta2 + oneMinusB2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = pi - stepSize * (mi / (vi.squareRoot() * invBc2Sqrt + eps))
        }
    }

    /// The state as named tensors for checkpoints: `optimizer.exp_avg`, `optimizer.exp_avg_sq`, `optimizer.step`.
    public func stateTensors() -> [(String, Tensor)] {
        [("optimizer.exp_avg", Tensor(Array(expAvg), shape: [count])),
         ("optimizer.exp_avg_sq", Tensor(Array(expAvgSq), shape: [count])),
         ("optimizer.step", Tensor([Int64(step)]))]
    }

    /// Restores the state written by `stateTensors()`.
    public func loadState(_ tensors: [String: Tensor], source: String) throws {
        guard let m = tensors["optimizer.exp_avg"], let v = tensors["optimizer.exp_avg_sq"],
              let s = tensors["optimizer.step"]?.int64s()?.first else {
            throw InputError(path: source, "optimizer state missing (optimizer.exp_avg / exp_avg_sq / step)")
        }
        guard m.count == count, v.count == count, m.dtype == .F32, v.dtype == .F32 else {
            throw InputError(path: source, "optimizer state has \(m.count) values, the model has \(count) parameters")
        }
        let mf = m.floats(), vf = v.floats()
        for i in 0..<count { expAvg[i] = mf[i]; expAvgSq[i] = vf[i] }
        step = Int(s)
    }
}
