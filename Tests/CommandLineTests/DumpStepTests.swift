// `segger-train dump-step` against PyTorch Geometric's own float64 numbers: the repository's golden files
// (Tests/Fixtures/golden: token and embedding mode, both architectures) and, as an optional cross-check,
// ../shared/golden when it exists beside the package.
import Foundation
import SafeTensors
import TestSupport
import XCTest

final class DumpStepTests: XCTestCase {
    /// Runs dump-step with the config in the golden file's metadata and compares every tensor it writes.
    func check(_ dir: String, variant: String) throws {
        let path = "\(dir)/golden_\(variant).f64.safetensors"
        let golden = try SafeTensorsFile.read(path: path)
        func object(_ key: String) throws -> [String: Any] {
            let text = try XCTUnwrap(golden.metadata[key], "\(path): no \(key) metadata")
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        }
        let c = try object("config"), o = try object("optimizer")
        var flags: [String] = []
        for (flag, key) in [("num_tx_tokens", "num_tx_tokens"), ("init_emb", "init_emb"), ("hidden_channels", "hidden_channels"),
                            ("out_channels", "out_channels"), ("heads", "heads"), ("mid_layers", "num_mid_layers")] {
            flags += ["--\(flag)", "\(try XCTUnwrap(c[key] as? Int, key))"]
        }
        for (flag, key) in [("lr", "lr"), ("weight_decay", "weight_decay"), ("grad_clip", "clip")] {
            flags += ["--\(flag)", "\(try XCTUnwrap(o[key] as? Double, key))"]
        }
        if variant == "main" { flags += ["--no-residual", "--no-l2-normalize"] }
        let tiles = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((golden.metadata["tiles"] ?? "").utf8)) as? [String])
        let tileDir = "\(dir)/tiles"
        let listed = try FileManager.default.contentsOfDirectory(atPath: tileDir).filter { $0.hasSuffix(".safetensors") }.sorted()
        XCTAssertEqual(Array(listed.prefix(tiles.count)), tiles, "the step's tiles are the directory's first by name")

        let out = Support.tempDir("dump") + "/step.safetensors"
        let r = try Support.run(Support.binary, ["dump-step", "--tiles", tileDir, "--batch", "\(tiles.count)",
                                                 "--weights", "\(dir)/weights_\(variant).safetensors", "--out", out] + flags)
        XCTAssertEqual(r.status, 0, r.output)
        let mine = try SafeTensorsFile.read(path: out)
        var worst: [String: (Double, String)] = [:]
        var compared = 0
        for name in golden.names {
            let group = String(name.split(separator: ".")[0])
            guard ["out", "logits", "loss", "grad", "step1", "clip"].contains(group) else { continue }
            guard let m = mine[name] else { XCTFail("dump-step did not write \(name)"); continue }
            let g = golden[name]!.doubles(), x = m.doubles()
            XCTAssertEqual(g.count, x.count, name)
            let scale = g.map { abs($0) }.max() ?? 0
            let diff = zip(g, x).map { abs($0 - $1) }.max() ?? 0
            // README tolerances: 1e-4 of the tensor's largest value; step1 against max(value, 0.1) at 5e-4.
            let ratio = group == "step1" ? diff / max(scale, 0.1) : (scale > 0 ? diff / scale : diff)
            let limit = group == "step1" ? 5e-4 : 1e-4
            XCTAssertLessThan(ratio, limit, "\(variant) \(name): \(ratio)")
            if ratio > (worst[group]?.0 ?? -1) { worst[group] = (ratio, name) }
            compared += 1
        }
        // out.tx, out.bd, logits, loss, clip.total_norm, and grad + step1 of every parameter.
        let parameters = golden.names.filter { $0.hasPrefix("param.") }.count
        XCTAssertGreaterThan(parameters, 30)
        XCTAssertEqual(compared, 5 + 2 * parameters)
        let tag = URL(fileURLWithPath: dir).pathComponents.suffix(2).joined(separator: "/")
        print("dump-step \(tag) \(variant) vs PyG float64 (\(compared) tensors), worst per group: " +
              worst.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.2e", $0.value.0))" }.joined(separator: ", "))
    }

    var fixtures: String { Support.packageRoot.appendingPathComponent("Tests/Fixtures/golden").path }

    func testDumpStepMatchesPyGMainArchitectureTokenMode() throws { try check(fixtures + "/token", variant: "main") }
    func testDumpStepMatchesPyGDocumentedArchitectureTokenMode() throws { try check(fixtures + "/token", variant: "documented") }
    func testDumpStepMatchesPyGMainArchitectureEmbeddingMode() throws { try check(fixtures + "/embedding", variant: "main") }
    func testDumpStepMatchesPyGDocumentedArchitectureEmbeddingMode() throws { try check(fixtures + "/embedding", variant: "documented") }

    /// Optional: ../shared/golden (wider layers, 300-transcript tiles) when it is beside the package.
    func sharedGolden() throws -> String {
        guard let shared = Support.shared else {
            throw XCTSkip("optional cross-check: ../shared/golden is absent (the repository's own golden files in Tests/Fixtures/golden ran)")
        }
        return shared + "/golden"
    }

    func testDumpStepMatchesSharedGoldenMain() throws { try check(try sharedGolden(), variant: "main") }
    func testDumpStepMatchesSharedGoldenDocumented() throws { try check(try sharedGolden(), variant: "documented") }
}
