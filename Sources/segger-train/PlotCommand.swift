// segger-train plot: the training curves of a run, drawn from its metrics.csv.
import ArgumentParser
import Foundation
import SeggerTrain

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a run's curves (loss, validation AUROC and F1 per epoch) as curves.svg.",
        discussion: """
        Reads metrics.csv and writes curves.svg next to it (the picture train redraws at every epoch end). \
        RUN_DIR is a run's --default_root_dir (its newest lightning_logs/version_N is drawn) or a \
        lightning_logs/version_N directory. Open the SVG in a browser, or convert it: \
        rsvg-convert curves.svg -o curves.png.
        """)

    @Argument(help: "A run's --default_root_dir, or one of its lightning_logs/version_N directories.")
    var runDir: String
    @Option(name: .customLong("out"), help: "Where to write the SVG (default: curves.svg next to metrics.csv).")
    var out: String?

    func validate() throws {
        if let out { try Flags.path("out", out) }
    }

    func run() throws {
        do {
            let metrics = try metricsFile(forRun: runDir)
            let svg = out ?? ((metrics as NSString).deletingLastPathComponent as NSString).appendingPathComponent("curves.svg")
            try writeCurves(metricsPath: metrics, to: svg)
            print("wrote \(svg) (from \(metrics))")
        } catch {
            fail("\(error)")
        }
    }
}
