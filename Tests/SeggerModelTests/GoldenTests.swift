// The model against PyTorch Geometric's float64 numbers for one training step: the repository's own
// golden files (Tests/Fixtures/golden, made by Scripts/pyg_reference.py --write-golden; see the README
// there), in token and embedding mode, for both architectures; and, as an optional cross-check with other
// tiles and a wider config, ../shared/golden when it exists beside the package.
import Foundation
import XCTest
import SafeTensors
import SeggerTiles
@testable import SeggerModel
import TestSupport

/// `<package root>/Tests/Fixtures/golden/<name>` (always in the repository).
func goldenFixture(_ name: String) -> String { Support.fixture("golden/" + name) }

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

/// The config a golden file was made with (its `config` and `optimizer` metadata).
struct GoldenConfig {
    var model = ModelConfig()
    var optimizer = OptimizerConfig()
    var tiles: [String] = []

    init(_ file: SafeTensorsFile, path: String) throws {
        func object(_ key: String) throws -> [String: Any] {
            guard let text = file.metadata[key], let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                throw InputError(path: path, "no `\(key)` JSON in the metadata")
            }
            return o
        }
        let c = try object("config"), o = try object("optimizer")
        func int(_ k: String) throws -> Int {
            guard let v = c[k] as? Int else { throw InputError(path: path, "config has no integer \(k)") }
            return v
        }
        model.numTxTokens = try int("num_tx_tokens"); model.initEmb = try int("init_emb")
        model.hiddenChannels = try int("hidden_channels"); model.outChannels = try int("out_channels")
        model.heads = try int("heads"); model.midLayers = try int("num_mid_layers")
        model.residual = ["documented", "residual"].contains(c["variant"] as? String ?? "")
        model.l2Normalize = c["l2norm"] as? Bool ?? false
        guard o["name"] as? String == "adamw", let lr = o["lr"] as? Double, let wd = o["weight_decay"] as? Double,
              let clip = o["clip"] as? Double else { throw InputError(path: path, "optimizer metadata is not AdamW with lr, weight_decay, clip") }
        optimizer.kind = .adamw; optimizer.lr = Float(lr); optimizer.weightDecay = Float(wd); optimizer.maxNorm = Float(clip)
        guard let t = file.metadata["tiles"], let names = try JSONSerialization.jsonObject(with: Data(t.utf8)) as? [String] else {
            throw InputError(path: path, "no `tiles` list in the metadata")
        }
        tiles = names
    }
}

final class GoldenTests: XCTestCase {
    func testGoldenMainTokenMode() throws { try runGolden(goldenFixture("token"), variant: "main") }
    func testGoldenDocumentedTokenMode() throws { try runGolden(goldenFixture("token"), variant: "documented") }
    func testGoldenMainEmbeddingMode() throws { try runGolden(goldenFixture("embedding"), variant: "main") }
    func testGoldenDocumentedEmbeddingMode() throws { try runGolden(goldenFixture("embedding"), variant: "documented") }

    /// Optional: ../shared/golden (wider layers, 300-transcript tiles) when it is beside the package.
    func testSharedGoldenMain() throws { try runGolden(try sharedGolden(), variant: "main") }
    func testSharedGoldenDocumented() throws { try runGolden(try sharedGolden(), variant: "documented") }

    func sharedGolden() throws -> String {
        let readme = try Support.requireShared("golden/README.md",
                                               for: "optional cross-check (the repository's own golden files in Tests/Fixtures/golden ran)")
        return (readme as NSString).deletingLastPathComponent
    }

    /// One step of `variant` from the golden weights, compared tensor by tensor with the README
    /// tolerances (Tests/Fixtures/golden/README.md): 1e-4 of each tensor's largest value, and for the
    /// weights after the step 5e-4 of max(value, 0.1).
    func runGolden(_ dir: String, variant: String) throws {
        let path = "\(dir)/golden_\(variant).f64.safetensors"
        let golden = try SafeTensorsFile.read(path: path)
        let weightsFile = try SafeTensorsFile.read(path: "\(dir)/weights_\(variant).safetensors")
        func g(_ name: String) throws -> [Double] { try golden.require(name).doubles() }
        let setup = try GoldenConfig(golden, path: path)
        let tag = "\(URL(fileURLWithPath: dir).pathComponents.suffix(2).joined(separator: "/")) \(variant)"

        let tiles = try setup.tiles.map { try Tile.read(path: "\(dir)/tiles/\($0)") }
        let batch = Tile.batch(tiles)
        var config = setup.model
        config.txFeatureDim = batch.txFeatureDim
        config.bdFeatureDim = batch.bdDim
        let model = SeggerModel(config: config, seed: 1)
        try model.loadWeights(weightsFile.tensors, source: "weights_\(variant)")
        let M = config.midLayers
        XCTAssertEqual(model.parameters.count, 4 + 12 * (M + 2) + (config.residual ? 4 * (M + 2) : 0))

        // The batch equals PyG's collated input.
        switch batch.tx {
        case .tokens(let tokens): XCTAssertEqual(tokens.map { Int64($0) }, golden["input.tx.x"]?.int64s())
        case .features(let x, _): XCTAssertEqual(x.map { Double($0) }, try g("input.tx.x"))
        }
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
            guard let ours else { return XCTFail("\(tag): no value for \(name)") }
            guard ours.count == theirs.count else {
                return XCTFail("\(tag): \(name) has \(ours.count) values, golden \(theirs.count)")
            }
            let r = relativeError(ours, theirs, floor: floor)
            XCTAssertLessThan(r, tolerance, "\(tag): \(name)")
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
        // Every layer's every module: the input layer (2), per layer and relation lin_l, lin_r, aggr_module
        // and the output, and with residuals the two residual linears per layer.
        XCTAssertEqual(actCount, 2 + 8 * (M + 2) + (config.residual ? 2 * (M + 2) : 0))
        XCTAssertEqual(alphaCount, 2 * (M + 2))

        // Backward of the mean loss.
        var readyOffsets: [Int] = []
        model.backward(lossScale: 1 / Float(L)) { readyOffsets.append($0) }
        XCTAssertEqual(readyOffsets.last, 0)
        for p in model.parameters {
            check("grad", "grad." + p.name, Array(model.gradients[p.range]), try g("grad." + p.name))
        }

        // Clip + AdamW.
        let opt = Optimizer(config: setup.optimizer, parameterCount: model.parameterCount)
        let norm = opt.clip(model.gradients)
        check("clip", "clip.total_norm", [Float(norm)], try g("clip.total_norm"))
        opt.update(weights: model.weights, gradients: model.gradients)
        for p in model.parameters {
            check("step1", "step1." + p.name, Array(model.weights[p.range]), try g("step1." + p.name),
                  floor: 0.1, tolerance: 5e-4)
        }
        for (group, (r, name)) in worst.sorted(by: { $0.key < $1.key }) {
            print("golden \(tag): worst \(group) \(String(format: "%.3e", r)) (\(name))")
        }
    }
}
