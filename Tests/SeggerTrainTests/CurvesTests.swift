// curves.svg: parsing metrics.csv and the picture (well-formed, rendered by rsvg-convert).
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import SeggerTrain
import TestSupport
import XCTest

final class CurvesTests: XCTestCase {
    let csv = """
    epoch,step,train_loss,train_loss_epoch,validation_loss,validation_auroc,validation_f1,grad_norm,lr,skipped_steps,elapsed_s
    0,2,0.71,,,,,0.5,0.001,,
    0,4,,0.70,0.69,0.55,0.61,,,0,1.0
    1,8,,0.62,nan,0.70,0.66,,,0,1.0
    2,12,,0.55,0.52,0.81,0.74,,,0,1.0

    """

    func testEpochRowsAreMergedAndStepRowsAndNaNsLeftOut() throws {
        let rows = try epochMetrics(csv: csv, source: "m.csv")
        XCTAssertEqual(rows.map(\.epoch), [0, 1, 2])
        XCTAssertEqual(rows[0], EpochMetrics(epoch: 0, trainLoss: 0.70, validationLoss: 0.69, validationAUROC: 0.55, validationF1: 0.61))
        XCTAssertNil(rows[1].validationLoss, "nan is not plotted")
        // Lightning's own layout: the epoch's values in separate rows.
        let split = try epochMetrics(csv: "epoch,train_loss_epoch,validation_auroc\n3,0.5,\n3,,0.9\n", source: "m.csv")
        XCTAssertEqual(split, [EpochMetrics(epoch: 3, trainLoss: 0.5, validationAUROC: 0.9)])
    }

    func testBadMetricsFilesNameTheFileAndTheProblem() {
        XCTAssertThrowsError(try epochMetrics(csv: "", source: "a.csv")) { XCTAssertTrue("\($0)".contains("a.csv")) }
        XCTAssertThrowsError(try epochMetrics(csv: "step,train_loss\n1,2\n", source: "b.csv")) {
            XCTAssertTrue("\($0)".contains("b.csv") && "\($0)".contains("epoch"), "\($0)")
        }
        XCTAssertThrowsError(try epochMetrics(csv: "epoch,lr\n1,2\n", source: "c.csv")) {
            XCTAssertTrue("\($0)".contains("train_loss_epoch"), "\($0)")
        }
        XCTAssertThrowsError(try epochMetrics(csv: "epoch,train_loss_epoch\n1e9x,0.5\n", source: "d.csv")) {
            XCTAssertTrue("\($0)".contains("d.csv: line 2"), "\($0)")
        }
    }

    func testAxesHaveRoundTicksCoveringTheData() {
        let a = niceAxis(lo: 0.613, hi: 0.702, minStep: 0)
        XCTAssertEqual(a.step, 0.02, accuracy: 1e-12)
        XCTAssertLessThanOrEqual(a.lo, 0.613)
        XCTAssertGreaterThanOrEqual(a.hi, 0.702)
        XCTAssertTrue((3...7).contains(a.ticks.count), "\(a.ticks)")
        XCTAssertEqual(a.ticks.map { tickLabel($0, step: a.step) }, ["0.60", "0.62", "0.64", "0.66", "0.68", "0.70", "0.72"])
        let epochs = niceAxis(lo: 0, hi: 1, minStep: 1)
        XCTAssertEqual(epochs.ticks, [0, 1], "one epoch: whole-epoch ticks")
        XCTAssertEqual(niceAxis(lo: 0, hi: 99, minStep: 1).step, 20)
    }

    func testPictureIsWellFormedWithAxesLegendAndTitle() throws {
        let svg = curvesSVG(try epochMetrics(csv: csv, source: "m.csv"), title: "run <a & b>")
        #if canImport(FoundationXML) || os(macOS)
        let doc = try XMLDocument(xmlString: svg)
        XCTAssertEqual(doc.rootElement()?.name, "svg")
        #endif
        for text in ["run &lt;a &amp; b&gt;", "train loss", "validation loss", "validation AUROC", "validation F1",
                     ">epoch<", ">loss<", ">score<"] {
            XCTAssertTrue(svg.contains(text), text)
        }
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 4, "four series")
        // No rows yet: the panels say so rather than drawing nothing.
        XCTAssertTrue(curvesSVG([], title: "t").contains("no values logged yet"))
    }

    /// rsvg-convert (librsvg2-bin; Scripts/test installs it) renders the picture to a PNG with far more
    /// ink than a blank page of the same size.
    func testPictureRendersToANonTrivialPNG() throws {
        guard let rsvg = ["/usr/bin/rsvg-convert", "/usr/local/bin/rsvg-convert"].first(where: {
            FileManager.default.isExecutableFile(atPath: $0)
        }) else { throw XCTSkip("rsvg-convert is not installed (Debian package librsvg2-bin): cannot render curves.svg") }
        let dir = Support.tempDir("curves", removedAfter: self)
        let rows = (0..<30).map { (e: Int) -> EpochMetrics in
            let t = Double(e)
            let trainLoss: Double = 0.7 * exp(-t / 10) + 0.2
            let validationLoss: Double = 0.72 * exp(-t / 12) + 0.22
            let auroc: Double = 0.95 - 0.4 * exp(-t / 8)
            let f1: Double = 0.9 - 0.35 * exp(-t / 9)
            return EpochMetrics(epoch: e, trainLoss: trainLoss, validationLoss: validationLoss, validationAUROC: auroc, validationF1: f1)
        }
        try curvesSVG(rows, title: "render test").write(toFile: dir + "/curves.svg", atomically: true, encoding: .utf8)
        try #"<svg xmlns="http://www.w3.org/2000/svg" width="960" height="430"><rect width="100%" height="100%" fill="white"/></svg>"#
            .write(toFile: dir + "/blank.svg", atomically: true, encoding: .utf8)
        for name in ["curves", "blank"] {
            let r = try Support.run(rsvg, [dir + "/\(name).svg", "-o", dir + "/\(name).png"])
            XCTAssertEqual(r.status, 0, r.output)
        }
        let png = try Data(contentsOf: URL(fileURLWithPath: dir + "/curves.png"))
        let blank = try Data(contentsOf: URL(fileURLWithPath: dir + "/blank.png"))
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "a PNG")
        func be32(_ o: Int) -> Int { png[o..<o + 4].reduce(0) { $0 << 8 | Int($1) } }
        XCTAssertEqual([be32(16), be32(20)], [960, 430], "IHDR width and height")
        XCTAssertGreaterThan(png.count, 10 * blank.count, "curves.png \(png.count) B, blank \(blank.count) B")
    }
}
