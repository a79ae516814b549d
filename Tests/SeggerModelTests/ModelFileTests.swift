// The one model-file reader: config from metadata or from the shapes, weights by PyG name with or without
// `model.`, and every check an untrusted file needs, each failing with an InputError that names the flag,
// the file and what is wrong.
import Foundation
import SafeTensors
import SeggerTiles
@testable import SeggerModel
import TestSupport
import XCTest

final class ModelFileTests: XCTestCase {
    func config(residual: Bool = true) -> ModelConfig {
        var c = ModelConfig()
        c.numTxTokens = 20
        c.initEmb = 4
        c.hiddenChannels = 8
        c.outChannels = 4
        c.heads = 2
        c.midLayers = 1
        c.bdFeatureDim = 4
        c.residual = residual
        c.l2Normalize = residual
        return c
    }

    func json(_ c: ModelConfig) throws -> String { String(decoding: try JSONEncoder().encode(c), as: UTF8.self) }

    /// A file laid out as train writes checkpoints: weights under `model.`, optimizer state, the config.
    func writeCheckpoint(_ m: SeggerModel, to path: String, metadata: [String: String]? = nil) throws {
        let n = m.parameterCount
        let state: [(String, Tensor)] = [("optimizer.exp_avg", Tensor([Float](repeating: 0, count: n))),
                                         ("optimizer.exp_avg_sq", Tensor([Float](repeating: 0, count: n))),
                                         ("optimizer.step", Tensor([Int64(0)]))]
        try SafeTensorsFile.write(m.weightTensors(prefix: "model.") + state,
                                  metadata: metadata ?? [ModelFile.configKey: try json(m.config)], to: path)
    }

    func assertInputError(_ body: @autoclosure () throws -> Any, _ fragments: [String],
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            XCTAssertTrue(e is InputError, "not an InputError: \(type(of: e)): \(e)", file: file, line: line)
            for f in fragments { XCTAssertTrue("\(e)".contains(f), "\(e) lacks \(f)", file: file, line: line) }
        }
    }

    func testConfigFromMetadataOrShapesAndTheWeightsBitForBit() throws {
        let dir = Support.tempDir("modelfile", removedAfter: self)
        for residual in [true, false] {
            let m = SeggerModel(config: config(residual: residual), seed: 5)
            try writeCheckpoint(m, to: dir + "/ck.safetensors")
            let a = try ModelFile.load(path: dir + "/ck.safetensors", flag: "checkpoint")
            XCTAssertEqual(a.config, m.config)
            XCTAssertEqual(a.configSource, .metadata)
            XCTAssertEqual(Array(a.model.weights), Array(m.weights))
            XCTAssertNil(try ModelFile.read(path: dir + "/ck.safetensors").weights.keys.first { $0.hasPrefix("optimizer.") || $0.hasPrefix("model.") })

            // Bare weights, no metadata, no prefix: the config from the shapes.
            try SafeTensorsFile.write(m.weightTensors(), metadata: [:], to: dir + "/bare.safetensors")
            let b = try ModelFile.load(path: dir + "/bare.safetensors", flag: "checkpoint")
            XCTAssertEqual(b.config, m.config)
            XCTAssertEqual(b.configSource, .shapes)
            XCTAssertEqual(Array(b.model.weights), Array(m.weights))
        }
    }

    /// segger's own Lightning checkpoint, and files as predict is often given them: weights under
    /// `model.` with a config but no optimizer state, or with neither config nor optimizer state.
    func testSeggersLightningCheckpointAndWeightsWithoutOptimizerState() throws {
        let dir = Support.tempDir("modelfile", removedAfter: self)
        for residual in [true, false] {
            let m = SeggerModel(config: config(residual: residual), seed: 2)
            try SafeTensorsFile.write(m.weightTensors(prefix: "model."), metadata: [ModelFile.configKey: try json(m.config)],
                                      to: dir + "/with.safetensors")
            let a = try ModelFile.load(path: dir + "/with.safetensors", flag: "checkpoint")
            XCTAssertEqual(a.config, m.config)
            XCTAssertEqual(a.configSource, .metadata)
            XCTAssertEqual(Array(a.model.weights), Array(m.weights))
        }
        // segger's own Lightning checkpoint (segger main architecture).
        let fixture = Support.fixture("pt/model.ckpt")
        let c = try ModelFile.load(path: fixture, flag: "checkpoint")
        XCTAssertEqual(c.configSource, .shapes)
        XCTAssertFalse(c.config.residual)
        XCTAssertFalse(c.config.l2Normalize)
        let want = try SafeTensorsFile.read(path: fixture.replacingOccurrences(of: "model.ckpt", with: "model.expected.safetensors")).tensors
        XCTAssertEqual(c.config.numTxTokens, want["model.tx_embedding.tx.weight"]!.shape[0])
        XCTAssertEqual(c.config.heads, want["model.conv_first.tx__neighbors__tx.att"]!.shape[1])
        // Its weights by PyG name (the Lightning module's `model.` prefix removed), bit for bit.
        let weights = try ModelFile.read(path: fixture).weights
        XCTAssertEqual(weights.count, want.keys.filter { $0.hasPrefix("model.") }.count)
        for (k, t) in want where k.hasPrefix("model.") { XCTAssertEqual(weights[String(k.dropFirst(6))], t, k) }
        // Without metadata (config from the shapes): a non-finite weight under `model.`, a missing tensor.
        let m = SeggerModel(config: config(), seed: 2)
        var tensors = m.weightTensors(prefix: "model.")
        var v = tensors[5].1.floats()
        v[0] = .nan
        tensors[5].1 = Tensor(v, shape: tensors[5].1.shape)
        try SafeTensorsFile.write(tensors, metadata: [:], to: dir + "/nan.safetensors")
        assertInputError(try ModelFile.load(path: dir + "/nan.safetensors", flag: "checkpoint"), ["non-finite weight"])
        try SafeTensorsFile.write(Array(m.weightTensors().dropFirst()), metadata: [:], to: dir + "/partial.safetensors")
        assertInputError(try ModelFile.load(path: dir + "/partial.safetensors", flag: "checkpoint"), ["tx_embedding.tx.weight"])
    }

    func testEveryCheckFailsWithAnInputErrorNamingFlagFileAndProblem() throws {
        let dir = Support.tempDir("modelfile", removedAfter: self)
        let m = SeggerModel(config: config(), seed: 5)
        let path = dir + "/ck.safetensors"

        // A stated size out of range, a config that is not JSON, a model too large for this machine.
        var c = config()
        c.heads = 1_000_000
        try writeCheckpoint(m, to: path, metadata: [ModelFile.configKey: try json(c)])
        assertInputError(try ModelFile.load(path: path, flag: "checkpoint"), ["--checkpoint \(path): ", "metadata 'model_config'", "heads 1000000"])
        try writeCheckpoint(m, to: path, metadata: [ModelFile.configKey: "{\"heads\": "])
        assertInputError(try ModelFile.load(path: path, flag: "checkpoint"), ["--checkpoint \(path): ", "not a valid model config"])
        c = config()
        c.hiddenChannels = 60_000
        try writeCheckpoint(m, to: path, metadata: [ModelFile.configKey: try json(c)])
        assertInputError(try ModelFile.load(path: path, flag: "checkpoint"), ["--checkpoint \(path): ", "hidden_channels 60000", "needs an estimated"])

        // Weights: one non-finite value, a missing tensor, a tensor of another shape.
        var tensors = m.weightTensors(prefix: "model.")
        var v = tensors[3].1.floats()
        v[1] = .infinity
        tensors[3].1 = Tensor(v, shape: tensors[3].1.shape)
        let name = String(tensors[3].0.dropFirst(6))
        try SafeTensorsFile.write(tensors, metadata: [ModelFile.configKey: try json(m.config)], to: path)
        assertInputError(try ModelFile.load(path: path, flag: "checkpoint"), ["--checkpoint \(path): ", "'\(name)'", "non-finite weight"])
        // … which digest reads as it is.
        XCTAssertTrue(try ModelFile.load(path: path, flag: "checkpoint", requireFinite: false).model.weights.contains(.infinity))
        try SafeTensorsFile.write(Array(m.weightTensors(prefix: "model.").dropFirst()), metadata: [ModelFile.configKey: try json(m.config)], to: path)
        assertInputError(try ModelFile.load(path: path, flag: "weights"), ["--weights \(path): ", "missing tensor"])
        c = config()
        c.heads = 3
        try writeCheckpoint(m, to: path, metadata: [ModelFile.configKey: try json(c)])
        assertInputError(try ModelFile.load(path: path, flag: "checkpoint"), ["--checkpoint \(path): ", "shape"])

        // Shapes that imply no model, a file that is not a model file at all, a missing file.
        try SafeTensorsFile.write([("w", Tensor([Float(1), 2, 3]))], metadata: [:], to: path)
        assertInputError(try ModelFile.load(path: path, flag: "checkpoint"), ["cannot infer the model config", "tx_embedding.tx.weight"])
        try Data("not safetensors".utf8).write(to: URL(fileURLWithPath: path))
        assertInputError(try ModelFile.load(path: path, flag: "checkpoint"), ["--checkpoint \(path): "])
        assertInputError(try ModelFile.load(path: dir + "/none.ckpt", flag: "init_weights"), ["--init_weights \(dir)/none.ckpt: "])
    }

    func testLoadingIntoAModelChangesNothingWhenACheckFails() throws {
        let dir = Support.tempDir("modelfile", removedAfter: self)
        let m = SeggerModel(config: config(), seed: 5)
        let before = Array(m.weights)
        var tensors = SeggerModel(config: config(), seed: 6).weightTensors()
        var v = tensors[tensors.count - 1].1.floats()
        v[0] = .nan
        tensors[tensors.count - 1].1 = Tensor(v, shape: tensors[tensors.count - 1].1.shape)
        try SafeTensorsFile.write(tensors, metadata: [:], to: dir + "/w.safetensors")
        let file = try ModelFile.read(path: dir + "/w.safetensors")
        XCTAssertThrowsError(try file.loadWeights(into: m))
        XCTAssertEqual(Array(m.weights), before)
    }
}
