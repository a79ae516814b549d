import ArgumentParser
import Foundation
import SeggerTiles

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert segger's .pt tiles (torch.save of a PyG HeteroData) to safetensors tiles.",
        discussion: """
        --from takes a directory of .pt tiles, its processed/ folder, or a segger dataset root holding
        {train,val,test}_tiles/processed (each split is written to <to>/<split>). Reading needs no Python:
        the zip and the pickle stream are interpreted natively, and only the known torch/PyG/numpy globals are
        accepted. segger's quirks are handled as training does (per-vertex NaN bd.x rows → zeros [N_bd, 4],
        1-D label index, missing belongs edges). --to must lie apart from --from (not the same directory,
        not inside it, not containing it) and must not hold the files it would write.
        """)

    @Option(name: .customLong("from"), help: "Directory of .pt tiles or a segger dataset root.")
    var from: String
    @Option(name: .customLong("to"), help: "Output directory for .safetensors tiles (apart from --from).")
    var to: String

    func validate() throws {
        try Flags.path("from", from)
        try Flags.path("to", to)
    }

    func run() throws {
        do {
            let n = try TorchTiles.convert(from: from, to: to)
            print("converted \(n) tile(s) from \(from) to \(to)")
        } catch {
            fail("\(error)")
        }
    }
}
