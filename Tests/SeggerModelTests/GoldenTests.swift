// The model against PyTorch Geometric's float64 numbers for one training step (shared/golden).
import XCTest
import SafeTensors
import SeggerTiles
@testable import SeggerModel

/// `<package root>/../shared`, or nil when absent (as on a user's machine).
func sharedDirectory() -> String? {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let shared = root.deletingLastPathComponent().appendingPathComponent("shared").path
    return FileManager.default.fileExists(atPath: shared + "/golden/README.md") ? shared : nil
}

/// max |a − b| / max |b|, or with `floor`: max over elements of |a − b| / max(|b|, floor).
func relativeError(_ a: [Float], _ b: [Double], floor: Double? = nil) -> Double {
    precondition(a.count == b.count)
    if let floor {
        var worst = 0.0
        for i in a.indices { worst = max(worst, abs(Double(a[i]) - b[i]) / max(abs(b[i]), floor)) }
        return worst
    }
    var diff = 0.0, scale = 0.0
    for i in a.indices { diff = max(diff, abs(Double(a[i]) - b[i])); scale = max(scale, abs(b[i])) }
    if scale == 0 { return diff == 0 ? 0 : .infinity }
    return diff / scale
}

final class GoldenTests: XCTestCase {
    func testGoldenMain() throws { try runGolden(variant: "main", residual: false, l2: false) }
    func testGoldenDocumented() throws { try runGolden(variant: "documented", residual: true, l2: true) }

    func runGolden(variant: String, residual: Bool, l2: Bool) throws {
        guard let shared = sharedDirectory() else { throw XCTSkip("shared/golden is absent") }
        let dir = shared + "/golden"
        let golden = try SafeTensorsFile.read(path: "\(dir)/golden_\(variant).f64.safetensors")
        let weightsFile = try SafeTensorsFile.read(path: "\(dir)/weights_\(variant).safetensors")
        func g(_ name: String) throws -> [Double] { try golden.require(name).doubles() }

        var config = ModelConfig()
        config.numTxTokens = 100; config.initEmb = 8; config.hiddenChannels = 16; config.outChannels = 8
        config.heads = 2; config.midLayers = 1; config.bdFeatureDim = 4
        config.residual = residual; config.l2Normalize = l2
        let model = SeggerModel(config: config, seed: 1)
        try model.loadWeights(weightsFile.tensors, source: "weights_\(variant)")
        XCTAssertEqual(model.parameters.count, residual ? 52 : 40)

        // The batch equals PyG's collated input.
        let tiles = try ["tile_00000", "tile_00001"].map { try Tile.read(path: "\(dir)/tiles/\($0).safetensors") }
        let batch = Tile.batch(tiles)
        guard case .tokens(let tokens) = batch.tx else { return XCTFail("golden tiles are in token mode") }
        XCTAssertEqual(tokens.map { Int64($0) }, golden["input.tx.x"]?.int64s())
        XCTAssertEqual(batch.bdX.map { Double($0) }, try g("input.bd.x"))
        XCTAssertEqual((batch.neighbors.src + batch.neighbors.dst).map { Int64($0) },
                       golden["input.tx__neighbors__tx.edge_index"]?.int64s())
        XCTAssertEqual((batch.belongs.src + batch.belongs.dst).map { Int64($0) },
                       golden["input.tx__belongs__bd.edge_index"]?.int64s())
        XCTAssertEqual((batch.labelTx + batch.labelBd).map { Int64($0) },
                       golden["input.tx__belongs__bd.edge_label_index"]?.int64s())
        XCTAssertEqual(batch.labels.map { Double($0) }, try g("input.tx__belongs__bd.edge_label"))

        for p in model.parameters {
            XCTAssertEqual(relativeError(Array(model.weights[p.range]), try g("param." + p.name)), 0, p.name)
        }

        var worst: [String: (Double, String)] = [:]
        func check(_ group: String, _ name: String, _ ours: [Float]?, _ theirs: [Double], floor: Double? = nil,
                   tolerance: Double = 1e-4) {
            guard let ours else { return XCTFail("\(variant): no value for \(name)") }
            guard ours.count == theirs.count else {
                return XCTFail("\(variant): \(name) has \(ours.count) values, golden \(theirs.count)")
            }
            let r = relativeError(ours, theirs, floor: floor)
            XCTAssertLessThan(r, tolerance, "\(variant): \(name)")
            if r >= (worst[group]?.0 ?? -1) { worst[group] = (r, name) }
        }

        // Forward.
        let lossSum = model.forward(batch)
        let L = batch.numLabels
        check("loss", "loss", [Float(lossSum / Double(L))], try g("loss"))
        check("logits", "logits", Array(model.logits), try g("logits"))
        let (outTx, outBd) = model.outputs()
        check("out", "out.tx", outTx, try g("out.tx"))
        check("out", "out.bd", outBd, try g("out.bd"))
        var actCount = 0, alphaCount = 0
        for name in golden.names {
            if name.hasPrefix("act.") {
                let module = String(name.dropFirst(4))
                check("act", name, model.activation(module), try g(name))
                actCount += 1
            } else if name.hasPrefix("alpha.") {
                let parts = name.split(separator: ".")
                let relation = String(parts.last!)
                let layer = parts.dropFirst().dropLast().joined(separator: ".")
                check("alpha", name, model.attention(layer: layer, relation: relation), try g(name))
                alphaCount += 1
            }
        }
        XCTAssertEqual(actCount, residual ? 32 : 26)
        XCTAssertEqual(alphaCount, 6)

        // Backward of the mean loss.
        var readyOffsets: [Int] = []
        model.backward(lossScale: 1 / Float(L)) { readyOffsets.append($0) }
        XCTAssertEqual(readyOffsets.last, 0)
        for p in model.parameters {
            check("grad", "grad." + p.name, Array(model.gradients[p.range]), try g("grad." + p.name))
        }

        // Clip + AdamW.
        var oc = OptimizerConfig()
        oc.kind = .adamw; oc.lr = 1e-4; oc.weightDecay = 1e-4; oc.maxNorm = 1.0
        let opt = Optimizer(config: oc, parameterCount: model.parameterCount)
        let norm = opt.clip(model.gradients)
        check("clip", "clip.total_norm", [Float(norm)], try g("clip.total_norm"))
        opt.update(weights: model.weights, gradients: model.gradients)
        for p in model.parameters {
            check("step1", "step1." + p.name, Array(model.weights[p.range]), try g("step1." + p.name),
                  floor: 0.1, tolerance: 5e-4)
        }
        for (group, (r, name)) in worst.sorted(by: { $0.key < $1.key }) {
            print("golden \(variant): worst \(group) \(String(format: "%.3e", r)) (\(name))")
        }
    }
}
