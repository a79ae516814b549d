// Clipping and AdamW / Adam against hand-computed two-step references (torch.optim semantics).
import XCTest
@testable import SeggerModel

final class OptimizerTests: XCTestCase {
    func buffer(_ v: [Float]) -> UnsafeMutableBufferPointer<Float> {
        let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: v.count)
        _ = b.initialize(from: v)
        return b
    }

    func testGlobalNormAndClip() {
        let g = buffer([3, 0, -4])
        defer { g.deallocate() }
        XCTAssertEqual(Optimizer.globalNorm(g), 5)
        var c = OptimizerConfig(); c.maxNorm = 1
        let opt = Optimizer(config: c, parameterCount: 3)
        XCTAssertEqual(opt.clip(g), 5)                        // returns the norm before clipping
        let coef = Float(1 / (5 + 1e-6))                     // torch: max_norm / (norm + 1e-6)
        XCTAssertEqual(Array(g), [3 * coef, 0, -4 * coef])
        // Below the threshold nothing changes (the coefficient is clamped to 1).
        let small = buffer([0.3, 0.4])
        defer { small.deallocate() }
        XCTAssertEqual(Optimizer(config: c, parameterCount: 2).clip(small), 0.5, accuracy: 1e-7)
        XCTAssertEqual(Array(small), [0.3, 0.4])
        // maxNorm nil: no clipping, the norm is still reported.
        c.maxNorm = nil
        let big = buffer([30, 40])
        defer { big.deallocate() }
        XCTAssertEqual(Optimizer(config: c, parameterCount: 2).clip(big), 50)
        XCTAssertEqual(Array(big), [30, 40])
        // Many values: Double accumulation.
        let many = buffer([Float](repeating: 1e-3, count: 1_000_003))
        defer { many.deallocate() }
        let v = Double(Float(1e-3))
        XCTAssertEqual(Optimizer.globalNorm(many), (1_000_003 * v * v).squareRoot(), accuracy: 1e-9)   // Float accumulation errs by ~1e-4
    }

    /// The 16-lane loop gives the scalar loop's numbers exactly: 37 parameters (two vectors and a tail of 5)
    /// against the same formula one parameter at a time, over three steps, AdamW and Adam.
    func testVectorUpdateEqualsScalarFormula() {
        for kind in OptimizerConfig.Kind.allCases {
            var c = OptimizerConfig()
            c.kind = kind; c.lr = 0.01; c.weightDecay = 0.05; c.maxNorm = nil
            let n = 37
            let opt = Optimizer(config: c, parameterCount: n)
            var rw = (0..<n).map { Float(sin(Double($0)) * 2) }
            var rm = [Float](repeating: 0, count: n), rv = [Float](repeating: 0, count: n)
            let w = buffer(rw), g = buffer([Float](repeating: 0, count: n))
            defer { w.deallocate(); g.deallocate() }
            for step in 1...3 {
                for i in 0..<n { g[i] = Float(cos(Double(i * step))) * (i % 3 == 0 ? 1e-3 : 0.7) }
                opt.update(weights: w, gradients: g)
                // The formula, scalar (as Optimizer.update documents it).
                let lr = Double(c.lr), b1 = Double(c.beta1), b2 = Double(c.beta2)
                let stepSize = Float(lr / (1 - pow(b1, Double(step))))
                let invBc2Sqrt = Float(1 / (1 - pow(b2, Double(step))).squareRoot())
                let decay: Float = kind == .adamw ? Float(1 - lr * Double(c.weightDecay)) : 1
                let l2: Float = kind == .adam ? c.weightDecay : 0
                for i in 0..<n {
                    let gi = g[i] + l2 * rw[i]
                    let pi = rw[i] * decay
                    rm[i] = rm[i] + (gi - rm[i]) * (1 - c.beta1)
                    rv[i] = rv[i] * c.beta2 + (1 - c.beta2) * gi * gi
                    rw[i] = pi - stepSize * (rm[i] / (rv[i].squareRoot() * invBc2Sqrt + c.eps))
                }
                XCTAssertEqual(Array(w), rw, "\(kind) step \(step)")
                XCTAssertEqual(Array(opt.expAvg), rm, "\(kind) step \(step)")
                XCTAssertEqual(Array(opt.expAvgSq), rv, "\(kind) step \(step)")
            }
        }
    }

    /// p = 1, gradients 0.5 then −0.25, lr 0.1, wd 0.1, β 0.9/0.999, ε 1e-8.
    /// AdamW by hand: step 1: p·(1 − 0.01) = 0.99; m̂ = 0.5, v̂ = 0.25 → p = 0.99 − 0.1·0.5/0.5 = 0.89
    /// (+2e-9 from ε); step 2: p = 0.89·0.99 − 0.1·(0.02/0.19)/√(0.00031225/0.001999) = 0.854466299.
    func testAdamWTwoSteps() {
        var c = OptimizerConfig()
        c.kind = .adamw; c.lr = 0.1; c.weightDecay = 0.1; c.maxNorm = nil
        let opt = Optimizer(config: c, parameterCount: 2)
        let w = buffer([1, -2]), g = buffer([0.5, 0])
        defer { w.deallocate(); g.deallocate() }
        opt.update(weights: w, gradients: g)
        XCTAssertEqual(Double(w[0]), 0.890000002, accuracy: 1e-7)
        XCTAssertEqual(Double(w[1]), -2 * 0.99, accuracy: 1e-7)     // zero gradient: decay only
        g[0] = -0.25
        opt.update(weights: w, gradients: g)
        XCTAssertEqual(Double(w[0]), 0.8544662986878463, accuracy: 1e-6)
        XCTAssertEqual(Double(w[1]), -2 * 0.99 * 0.99, accuracy: 1e-6)
        XCTAssertEqual(opt.step, 2)
        XCTAssertEqual(opt.expAvg[0], 0.02, accuracy: 1e-8)
        XCTAssertEqual(opt.expAvgSq[0], 0.00031225, accuracy: 1e-8)   // β2 is a Float: 1 − β2 off by 1.3e-5 relative
        XCTAssertEqual(Array(g), [-0.25, 0])                        // gradients are not modified
    }

    /// torch.optim.Adam with weight_decay 0.1: g ← g + wd·p (L2), no decoupled decay.
    /// Step 1: g = 0.6 → p = 1 − 0.1 = 0.9 (+1.7e-9); step 2: g = −0.25 + 0.09 → p = 0.85444136746.
    func testAdamTwoSteps() {
        var c = OptimizerConfig()
        c.kind = .adam; c.lr = 0.1; c.weightDecay = 0.1; c.maxNorm = nil
        let opt = Optimizer(config: c, parameterCount: 1)
        let w = buffer([1]), g = buffer([0.5])
        defer { w.deallocate(); g.deallocate() }
        opt.update(weights: w, gradients: g)
        XCTAssertEqual(Double(w[0]), 0.9000000016666666, accuracy: 1e-7)
        g[0] = -0.25
        opt.update(weights: w, gradients: g)
        XCTAssertEqual(Double(w[0]), 0.8544413674617625, accuracy: 1e-6)
        // Without weight decay Adam and AdamW coincide.
        c.weightDecay = 0
        let a = Optimizer(config: c, parameterCount: 3)
        c.kind = .adamw
        let b = Optimizer(config: c, parameterCount: 3)
        let wa = buffer([1, 2, 3]), wb = buffer([1, 2, 3]), gg = buffer([0.1, -0.2, 0.3])
        defer { wa.deallocate(); wb.deallocate(); gg.deallocate() }
        for _ in 0..<3 { a.update(weights: wa, gradients: gg); b.update(weights: wb, gradients: gg) }
        XCTAssertEqual(Array(wa), Array(wb))
    }

    func testStateRoundTrip() throws {
        let c = OptimizerConfig()
        let a = Optimizer(config: c, parameterCount: 3)
        let w = buffer([1, 2, 3]), g = buffer([0.1, -0.2, 0.3])
        defer { w.deallocate(); g.deallocate() }
        a.update(weights: w, gradients: g)
        let b = Optimizer(config: c, parameterCount: 3)
        try b.loadState(Dictionary(uniqueKeysWithValues: a.stateTensors()), source: "ckpt")
        XCTAssertEqual(b.step, 1)
        XCTAssertEqual(Array(b.expAvg), Array(a.expAvg))
        XCTAssertEqual(Array(b.expAvgSq), Array(a.expAvgSq))
    }
}
