// The whole model: finite differences for both architectures, token and embedding mode, aggr sum and
// mean; the gradient-ready callback; parameters, initialization and weight loading.
import XCTest
import SafeTensors
import SeggerTiles
@testable import SeggerModel
import SeggerKernels

final class ModelTests: XCTestCase {
    func config(residual: Bool, l2: Bool, featureDim: Int?, heads: Int, mid: Int, hidden: Int, out: Int, emb: Int,
                aggr: Aggregation) -> ModelConfig {
        var c = ModelConfig()
        c.numTxTokens = 20; c.initEmb = emb; c.hiddenChannels = hidden; c.outChannels = out
        c.heads = heads; c.midLayers = mid; c.txFeatureDim = featureDim; c.bdFeatureDim = 3
        c.residual = residual; c.l2Normalize = l2; c.aggr = aggr
        return c
    }

    /// Every parameter tensor's gradient against central differences (a sample of coordinates per tensor,
    /// all of them for small tensors), dead tensors exactly zero, and one random direction over all.
    func checkModel(_ c: ModelConfig, seed: UInt64) {
        let tile = syntheticTile(numTx: 12, numBd: 4, tokens: 20, featureDim: c.txFeatureDim, bdDim: 3, seed: seed)
        let model = SeggerModel(config: c, seed: seed)
        let loss0 = model.forward(tile)
        XCTAssert(loss0.isFinite && loss0 > 0)
        model.backward(lossScale: 1)
        let grad = Array(model.gradients)
        let w = model.weights.baseAddress!
        let dead: Set<String> = c.txFeatureDim == nil ? ["tx_embedding.bd.weight", "lin0.tx.weight"]
                                                      : ["tx_embedding.bd.weight", "tx_embedding.tx.weight"]
        var r = TestRandom(seed)
        var check = GradientCheck()
        for p in model.parameters {
            if dead.contains(p.name) {
                XCTAssert(grad[p.range].allSatisfy { $0 == 0 }, "dead tensor \(p.name) has a gradient")
                continue
            }
            var idx: [Int]
            if p.name == "tx_embedding.tx.weight", case .tokens(let t) = tile.tx {
                // Rows of tokens present (and one absent row, whose gradient must be zero).
                let used = Set(t.map { Int($0) })
                let unused = (0..<c.numTxTokens).first { !used.contains($0) }!
                XCTAssert(grad[(p.offset + unused * c.initEmb)..<(p.offset + (unused + 1) * c.initEmb)].allSatisfy { $0 == 0 })
                idx = (0..<8).map { _ in p.offset + Int(t[r.int(t.count)]) * c.initEmb + r.int(c.initEmb) }
            } else if p.count <= 12 {
                idx = Array(p.range)
            } else {
                idx = (0..<10).map { _ in p.offset + r.int(p.count) }
            }
            XCTAssert(grad[p.range].contains { $0 != 0 }, "live tensor \(p.name) has no gradient")
            checkGradient(p.name, x: w, analytic: grad, indices: idx, into: &check, analyticAt: { i in
                model.forward(tile)
                model.backward(lossScale: 1)
                return Double(model.gradients[i])
            }) { model.forward(tile) }
        }
        XCTAssertLessThan(check.worstExcess, 1, check.worstName)
        XCTAssertLessThanOrEqual(check.skippedKinks, check.checked / 10, "too many kinks")
        print("model FD \(c.residual ? "documented" : "main") \(c.txFeatureDim == nil ? "token" : "embedding") H=\(c.heads) M=\(c.midLayers) aggr=\(c.aggr): \(check.checked) checked, \(check.skippedKinks) kinks skipped, worst error/tolerance \(String(format: "%.3f", check.worstExcess)) at \(check.worstName)")

        // One random direction u over every parameter: (f(w+hu) − f(w−hu))/2h against ⟨g, u⟩.
        let n = model.parameterCount
        var u = r.floats(n)
        let norm = Float(u.reduce(0.0) { $0 + Double($1 * $1) }.squareRoot())
        for i in 0..<n { u[i] /= norm }
        let saved = Array(model.weights)
        func at(_ t: Float) -> Double {
            for i in 0..<n { w[i] = saved[i] + t * u[i] }
            return model.forward(tile)
        }
        var directional = 0.0
        for i in 0..<n { directional += Double(grad[i]) * Double(u[i]) }
        let h: Float = 1e-3
        let fd = (at(h) - at(-h)) / (2 * Double(h))
        let fd2 = (at(h / 2) - at(-h / 2)) / Double(h)
        for i in 0..<n { w[i] = saved[i] }
        let tol = 1e-3 + 1e-2 * abs(directional)
        if abs(fd - fd2) <= tol {
            XCTAssertEqual(fd, directional, accuracy: tol, "directional derivative")
        }
    }

    /// The weights and the gradients start half a page apart, and the scratch buffers each at their own
    /// page offset (so same-index rows of two buffers never share address bits 0–11).
    func testBuffersStartAtDistinctPageOffsets() {
        let model = SeggerModel(config: config(residual: false, l2: false, featureDim: nil, heads: 2, mid: 1,
                                               hidden: 4, out: 3, emb: 4, aggr: .sum), seed: 1)
        let w = Int(bitPattern: model.weights.baseAddress!), g = Int(bitPattern: model.gradients.baseAddress!)
        XCTAssertEqual((g - w) & 4095, 2048)
        let buffers = (0..<64).map { _ in GrowableBuffer<Float>() }
        let offsets = Set(buffers.map { Int(bitPattern: $0.reserve(1 << 16)) & 4095 })
        XCTAssertEqual(offsets.count, 64, "64 consecutive buffers take all 64 line offsets of a page")
        XCTAssertTrue(offsets.allSatisfy { $0 % 64 == 0 })
    }

    func testFiniteDifferencesDocumentedTokens() {
        checkModel(config(residual: true, l2: true, featureDim: nil, heads: 3, mid: 2, hidden: 4, out: 3, emb: 5, aggr: .sum), seed: 11)
    }
    func testFiniteDifferencesMainTokensMean() {
        checkModel(config(residual: false, l2: false, featureDim: nil, heads: 1, mid: 0, hidden: 5, out: 4, emb: 3, aggr: .mean), seed: 12)
    }
    func testFiniteDifferencesDocumentedEmbeddingMean() {
        checkModel(config(residual: true, l2: true, featureDim: 6, heads: 2, mid: 1, hidden: 3, out: 2, emb: 4, aggr: .mean), seed: 13)
    }
    func testFiniteDifferencesMainEmbedding() {
        checkModel(config(residual: false, l2: false, featureDim: 3, heads: 4, mid: 3, hidden: 2, out: 3, emb: 6, aggr: .sum), seed: 14)
    }
    /// Channel counts ≥ 8 take the kernels' 8-lane paths (9 = one chunk + a tail).
    func testFiniteDifferencesWideChannels() {
        checkModel(config(residual: true, l2: true, featureDim: nil, heads: 1, mid: 1, hidden: 9, out: 8, emb: 4, aggr: .sum), seed: 16)
    }
    func testFiniteDifferencesResidualWithoutNorm() {
        checkModel(config(residual: true, l2: false, featureDim: nil, heads: 2, mid: 1, hidden: 3, out: 3, emb: 4, aggr: .sum), seed: 15)
    }

    /// Offsets decrease, end at 0, and everything at or above a reported offset is already final.
    func testGradientsReadyCallback() {
        for featureDim in [nil, 5] as [Int?] {
            let c = config(residual: true, l2: true, featureDim: featureDim, heads: 2, mid: 2, hidden: 3, out: 2, emb: 4, aggr: .sum)
            let model = SeggerModel(config: c, seed: 3)
            let tile = syntheticTile(numTx: 12, numBd: 4, tokens: 20, featureDim: featureDim, bdDim: 3, seed: 3)
            model.forward(tile)
            // Poison the gradient buffer: values left over from "before" must not survive.
            for i in 0..<model.parameterCount { model.gradients[i] = .nan }
            var offsets: [Int] = []
            var snapshots: [[Float]] = []
            model.backward(lossScale: 0.5) { offset in
                offsets.append(offset)
                snapshots.append(Array(model.gradients[offset...]))
            }
            XCTAssertEqual(offsets.last, 0)
            // Three per layer (bd weights, belongs weights, tx weights; an 8-wide first layer, whose weight
            // gradients come from one pass each, has one), then lin0 and the embedding.
            let firstLayer = c.initEmb == narrowLinearInput ? 1 : 3
            XCTAssertEqual(offsets.count, 3 * (c.midLayers + 1) + firstLayer + 2)
            for k in 1..<offsets.count { XCTAssertLessThan(offsets[k], offsets[k - 1]) }
            XCTAssertEqual(Array(offsets.prefix(3)), [model.layers.last!.bdW, model.layers.last!.blW, model.layers.last!.start])
            let final = Array(model.gradients)
            XCTAssert(final.allSatisfy { $0.isFinite })
            for (offset, snap) in zip(offsets, snapshots) {
                XCTAssertEqual(snap, Array(final[offset...]), "gradients at offset ≥ \(offset) changed after being reported")
            }
            // backward(lossScale) is linear in the scale.
            let half = final
            model.backward(lossScale: 1)
            for i in 0..<model.parameterCount { XCTAssertEqual(model.gradients[i], 2 * half[i], accuracy: 1e-6 * max(1, abs(half[i]))) }
        }
    }

    func testParameterNamesOrderAndCounts() {
        // The example config of docs/model-and-training.md (segger main): 40 tensors, 348,520 numbers.
        var c = ModelConfig()
        c.residual = false; c.l2Normalize = false
        let main = SeggerModel(config: c, seed: 0)
        XCTAssertEqual(main.parameters.count, 40)
        XCTAssertEqual(main.parameterCount, 348_520)
        let documented = SeggerModel(config: ModelConfig(), seed: 0)
        XCTAssertEqual(documented.parameters.count, 52)
        // Offsets are contiguous, and the layers come in forward order.
        var next = 0
        for p in documented.parameters { XCTAssertEqual(p.offset, next); next += p.count }
        XCTAssertEqual(next, documented.parameterCount)
        let names = documented.parameters.map(\.name)
        XCTAssertEqual(Array(names.prefix(4)), ["tx_embedding.tx.weight", "tx_embedding.bd.weight", "lin0.tx.weight", "lin0.bd.weight"])
        func pos(_ prefix: String) -> Int { names.firstIndex { $0.hasPrefix(prefix) }! }
        XCTAssertLessThan(pos("conv_first"), pos("conv_mid_layers.0"))
        XCTAssertLessThan(pos("lin_first"), pos("conv_mid_layers.0"))
        XCTAssertLessThan(pos("lin_mid_layers.0"), pos("conv_last"))
        XCTAssertLessThan(pos("conv_mid_layers.0"), pos("conv_last"))
        XCTAssertEqual(documented.parameter("lin0.tx.weight")?.shape, [8, 1])
        XCTAssertEqual(documented.parameter("conv_last.tx__belongs__bd.att")?.shape, [1, 4, 16])
        XCTAssertEqual(documented.parameter("lin_last.bd.weight")?.shape, [64, 256])
        var e = ModelConfig(); e.txFeatureDim = 7
        XCTAssertEqual(SeggerModel(config: e, seed: 0).parameter("lin0.tx.weight")?.shape, [8, 7])
    }

    func testInitialization() {
        let a = SeggerModel(config: ModelConfig(), seed: 42), b = SeggerModel(config: ModelConfig(), seed: 42)
        let c = SeggerModel(config: ModelConfig(), seed: 43)
        XCTAssertEqual(Array(a.weights), Array(b.weights))
        XCTAssertNotEqual(Array(a.weights), Array(c.weights))
        func values(_ name: String) -> [Float] { Array(a.weights[a.parameter(name)!.range]) }
        func checkUniform(_ name: String, bound: Double) {
            let v = values(name)
            XCTAssert(v.allSatisfy { abs(Double($0)) <= bound }, name)
            XCTAssertGreaterThan(Double(v.map { abs($0) }.max()!), 0.9 * bound, name)   // fills the range
        }
        checkUniform("conv_first.tx__neighbors__tx.lin_l.weight", bound: (6.0 / (8 + 256)).squareRoot())
        checkUniform("conv_mid_layers.0.tx__belongs__bd.lin_r.weight", bound: (6.0 / (256 + 256)).squareRoot())
        checkUniform("conv_first.tx__neighbors__tx.lin_l.bias", bound: 1 / 8.0.squareRoot())
        checkUniform("lin_last.tx.weight", bound: (6.0 / (256 + 64)).squareRoot())
        checkUniform("conv_last.tx__belongs__bd.att", bound: (6.0 / (4 + 16)).squareRoot())
        checkUniform("lin0.bd.weight", bound: 1 / 4.0.squareRoot())
        XCTAssert(values("conv_first.tx__belongs__bd.bias").allSatisfy { $0 == 0 })
        let emb = values("tx_embedding.tx.weight").map(Double.init)
        let mean = emb.reduce(0, +) / Double(emb.count)
        let sd = (emb.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(emb.count)).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 0.06)     // 4000 draws: standard error 0.016
        XCTAssertEqual(sd, 1, accuracy: 0.05)
    }

    func testLoadWeights() throws {
        var c = ModelConfig(); c.numTxTokens = 20; c.hiddenChannels = 4; c.outChannels = 2; c.heads = 2
        let source = SeggerModel(config: c, seed: 1)
        let target = SeggerModel(config: c, seed: 2)
        // With Lightning's prefix, plus an extra tensor that is ignored.
        var tensors = Dictionary(uniqueKeysWithValues: source.weightTensors(prefix: "model."))
        tensors["model.something_else"] = Tensor([1, 2] as [Float])
        try target.loadWeights(tensors, source: "ckpt.safetensors")
        XCTAssertEqual(Array(target.weights), Array(source.weights))
        // Missing tensor: the error names the source and the tensor.
        var missing = Dictionary(uniqueKeysWithValues: source.weightTensors())
        missing["conv_last.tx__belongs__bd.att"] = nil
        XCTAssertThrowsError(try target.loadWeights(missing, source: "w.safetensors")) { e in
            let s = "\(e)"
            XCTAssert(s.contains("w.safetensors") && s.contains("conv_last.tx__belongs__bd.att"), s)
        }
        // Wrong shape.
        var wrong = Dictionary(uniqueKeysWithValues: source.weightTensors())
        wrong["lin0.bd.weight"] = Tensor([Float](repeating: 0, count: 8 * 5), shape: [8, 5])
        XCTAssertThrowsError(try target.loadWeights(wrong, source: "w2.safetensors")) { e in
            let s = "\(e)"
            XCTAssert(s.contains("w2.safetensors") && s.contains("lin0.bd.weight") && s.contains("[8, 5]"), s)
        }
    }

    /// With one relation into each node type, aggr mean equals aggr sum.
    func testMeanEqualsSumWithOneRelationPerType() {
        var c = config(residual: true, l2: true, featureDim: nil, heads: 2, mid: 1, hidden: 3, out: 2, emb: 4, aggr: .sum)
        let sum = SeggerModel(config: c, seed: 5)
        c.aggr = .mean
        let mean = SeggerModel(config: c, seed: 5)
        let tile = syntheticTile(numTx: 12, numBd: 4, tokens: 20, bdDim: 3, seed: 5)
        XCTAssertEqual(sum.forward(tile), mean.forward(tile))
        XCTAssertEqual(sum.outputs().tx, mean.outputs().tx)
    }

    /// The arena is reused across batches of different sizes: results do not depend on what ran before.
    func testArenaReuseAcrossBatchSizes() {
        let c = config(residual: true, l2: true, featureDim: nil, heads: 2, mid: 1, hidden: 3, out: 2, emb: 4, aggr: .sum)
        let big = syntheticTile(numTx: 40, numBd: 6, tokens: 20, bdDim: 3, seed: 8)
        let small = syntheticTile(numTx: 10, numBd: 3, tokens: 20, bdDim: 3, seed: 9)
        let fresh = SeggerModel(config: c, seed: 1), used = SeggerModel(config: c, seed: 1)
        used.forward(big); used.backward(lossScale: 1)
        XCTAssertEqual(used.forward(small), fresh.forward(small))
        used.backward(lossScale: 1); fresh.backward(lossScale: 1)
        XCTAssertEqual(Array(used.gradients), Array(fresh.gradients))
        XCTAssertEqual(Array(used.logits), Array(fresh.logits))
        XCTAssertEqual(used.logits.count, small.numLabels)
        XCTAssertEqual(used.outputs().bd.count, 3 * 4)
    }

    /// Tiles with no belongs edges (segger's test split) and batches without labels run and give 0.
    func testTileWithoutBelongsEdgesOrLabels() {
        let c = config(residual: true, l2: true, featureDim: nil, heads: 2, mid: 1, hidden: 3, out: 2, emb: 4, aggr: .sum)
        let model = SeggerModel(config: c, seed: 4)
        var t = syntheticTile(numTx: 10, numBd: 3, tokens: 20, bdDim: 3, seed: 4)
        t.belongs = Relation(numSrc: 10, numDst: 3, src: [], dst: [])
        let withLabels = model.forward(t)
        XCTAssert(withLabels.isFinite && withLabels > 0)
        model.backward(lossScale: 1)
        XCTAssert(model.gradients.allSatisfy { $0.isFinite })
        // Every bd row is then the belongs conv's bias (+ residual): gradients still reach lin0.bd.
        t.labelTx = []; t.labelBd = []; t.labels = []
        XCTAssertEqual(model.forward(t), 0)
        XCTAssertEqual(model.logits.count, 0)
        model.backward(lossScale: 1)
        XCTAssert(model.gradients.allSatisfy { $0 == 0 })
    }
}
