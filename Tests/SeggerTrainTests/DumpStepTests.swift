// `segger-train dump-step` against PyTorch Geometric's own float64 numbers (../shared/golden).
import Foundation
import SafeTensors
import XCTest

final class DumpStepTests: XCTestCase {
    func check(variant: String, flags: [String]) throws {
        guard let shared = Support.shared else { throw XCTSkip("../shared is absent: golden files unavailable") }
        let golden = try SafeTensorsFile.read(path: "\(shared)/golden/golden_\(variant).f64.safetensors")
        let out = Support.tempDir("dump") + "/step.safetensors"
        let r = try Support.run(Support.binary, ["dump-step", "--tiles", "\(shared)/golden/tiles", "--batch", "2",
                                                 "--weights", "\(shared)/golden/weights_\(variant).safetensors", "--out", out,
                                                 "--num_tx_tokens", "100", "--init_emb", "8", "--hidden_channels", "16",
                                                 "--out_channels", "8", "--heads", "2", "--mid_layers", "1",
                                                 "--lr", "1e-4", "--weight_decay", "1e-4", "--grad_clip", "1.0"] + flags)
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
        XCTAssertGreaterThan(compared, 80)
        print("dump-step \(variant) vs PyG float64 (\(compared) tensors), worst per group: " +
              worst.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.2e", $0.value.0))" }.joined(separator: ", "))
    }

    func testDumpStepMatchesPyGMainArchitecture() throws {
        try check(variant: "main", flags: ["--no-residual", "--no-l2-normalize"])
    }

    func testDumpStepMatchesPyGDocumentedArchitecture() throws {
        try check(variant: "documented", flags: [])
    }
}
