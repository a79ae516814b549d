// Training curves as an SVG picture, drawn from a run's metrics.csv: per epoch, the training and
// validation loss (left panel) and the validation AUROC and F1 (right panel). Plain functions; rank 0
// redraws the picture at every epoch end, `segger-train plot` draws it for a finished run.
import Foundation
import SafeTensors
import SeggerTiles

/// One epoch's values from metrics.csv (nil: not logged, or NaN).
public struct EpochMetrics: Equatable, Sendable {
    public var epoch: Int
    public var trainLoss: Double?
    public var validationLoss: Double?
    public var validationAUROC: Double?
    public var validationF1: Double?
}

/// The per-epoch rows of a metrics.csv text (Lightning's CSVLogger layout: a header, one row per logging
/// call, empty cells for what a call did not log). Rows of one epoch are merged; step-only rows
/// (`train_loss` without `train_loss_epoch`) are ignored. `source` names the file in errors.
public func epochMetrics(csv: String, source: String) throws -> [EpochMetrics] {
    let lines = csv.split(whereSeparator: \.isNewline).map(String.init)
    guard let header = lines.first else { throw InputError(path: source, "empty (no header line)") }
    let columns = header.split(separator: ",", omittingEmptySubsequences: false).map {
        $0.trimmingCharacters(in: .whitespaces)
    }
    guard let epochColumn = columns.firstIndex(of: "epoch") else {
        throw InputError(path: source, "no `epoch` column in the header (\(header.prefix(120)))")
    }
    let wanted = ["train_loss_epoch", "validation_loss", "validation_auroc", "validation_f1"]
    let index = wanted.map { columns.firstIndex(of: $0) }
    guard index.contains(where: { $0 != nil }) else {
        throw InputError(path: source, "none of the columns \(wanted.joined(separator: ", ")) in the header")
    }
    var byEpoch: [Int: EpochMetrics] = [:]
    for (n, line) in lines.dropFirst().enumerated() {
        let cells = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard epochColumn < cells.count, !cells[epochColumn].isEmpty else { continue }
        guard let epoch = Int(cells[epochColumn]), epoch >= 0 else {
            throw InputError(path: source, "line \(n + 2): epoch `\(cells[epochColumn].prefix(40))` is not a count")
        }
        func value(_ k: Int) -> Double? {
            guard let i = index[k], i < cells.count, let v = Double(cells[i]), v.isFinite else { return nil }
            return v
        }
        let values = (0..<wanted.count).map(value)
        guard values.contains(where: { $0 != nil }) else { continue }
        var row = byEpoch[epoch] ?? EpochMetrics(epoch: epoch)
        row.trainLoss = values[0] ?? row.trainLoss
        row.validationLoss = values[1] ?? row.validationLoss
        row.validationAUROC = values[2] ?? row.validationAUROC
        row.validationF1 = values[3] ?? row.validationF1
        byEpoch[epoch] = row
    }
    return byEpoch.values.sorted { $0.epoch < $1.epoch }
}

/// The metrics.csv of a run: `dir` is a version directory holding metrics.csv, or a run's root
/// (`--default_root_dir`), whose newest `lightning_logs/version_N` is taken.
public func metricsFile(forRun dir: String) throws -> String {
    let fm = FileManager.default
    var isDirectory: ObjCBool = false
    guard fm.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw InputError(path: dir, "not a directory (give a run's --default_root_dir or one of its lightning_logs/version_N)")
    }
    let direct = (dir as NSString).appendingPathComponent("metrics.csv")
    if fm.fileExists(atPath: direct) { return direct }
    let logs = (dir as NSString).appendingPathComponent("lightning_logs")
    let versions = ((try? fm.contentsOfDirectory(atPath: logs)) ?? []).compactMap { name -> Int? in
        name.hasPrefix("version_") ? Int(name.dropFirst(8)) : nil
    }
    guard let newest = versions.max() else {
        throw InputError(path: dir, "holds neither metrics.csv nor lightning_logs/version_N (is it a run's --default_root_dir?)")
    }
    let path = "\(logs)/version_\(newest)/metrics.csv"
    guard fm.fileExists(atPath: path) else { throw InputError(path: path, "does not exist") }
    return path
}

/// Reads `metricsPath` and writes the picture to `svgPath` (atomically), titled with the directory of
/// `metricsPath` (the run's version directory).
public func writeCurves(metricsPath: String, to svgPath: String) throws {
    let title = "segger-train: " + (metricsPath as NSString).deletingLastPathComponent
    let text: String
    do { text = try String(contentsOfFile: metricsPath, encoding: .utf8) } catch {
        throw InputError(path: metricsPath, "cannot read (\(error.localizedDescription))")
    }
    let rows = try epochMetrics(csv: text, source: metricsPath)
    try AtomicFile.write(curvesSVG(rows, title: title), to: svgPath)
}

// MARK: - Drawing

/// One plotted series: a name for the legend, a colour, and (epoch, value) points.
struct Series {
    var name: String
    var color: String
    var points: [(x: Double, y: Double)]
}

/// Picture size and the two panels' plot areas (x0, y0 top-left; x1, y1 bottom-right), in pixels.
private let pictureWidth = 960.0, pictureHeight = 430.0
private let panelLeft = (x0: 80.0, y0: 92.0, x1: 450.0, y1: 360.0)
private let panelRight = (x0: 560.0, y0: 92.0, x1: 930.0, y1: 360.0)

/// The SVG text of the two-panel picture.
public func curvesSVG(_ rows: [EpochMetrics], title: String) -> String {
    func series(_ name: String, _ color: String, _ value: (EpochMetrics) -> Double?) -> Series {
        Series(name: name, color: color, points: rows.compactMap { r in value(r).map { (Double(r.epoch), $0) } })
    }
    let losses = [series("train loss", "#1f77b4", \.trainLoss), series("validation loss", "#ff7f0e", \.validationLoss)]
    let scores = [series("validation AUROC", "#2ca02c", \.validationAUROC),
                  series("validation F1", "#d62728", \.validationF1)]
    var svg = """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(pictureWidth))" height="\(Int(pictureHeight))" \
    viewBox="0 0 \(Int(pictureWidth)) \(Int(pictureHeight))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
    <rect width="100%" height="100%" fill="white"/>
    <text x="\(Int(pictureWidth / 2))" y="26" font-size="17" font-weight="bold" text-anchor="middle">\(xmlEscaped(title))</text>

    """
    svg += panel(losses, area: panelLeft, heading: "Loss (BCE) per epoch", yLabel: "loss", clamp: nil)
    svg += panel(scores, area: panelRight, heading: "Validation AUROC and F1 per epoch", yLabel: "score", clamp: (0, 1))
    svg += "</svg>\n"
    return svg
}

/// One panel: frame, grid and ticks, axis labels, heading, legend and the series.
private func panel(_ series: [Series], area a: (x0: Double, y0: Double, x1: Double, y1: Double),
                   heading: String, yLabel: String, clamp: (Double, Double)?) -> String {
    var s = "<g>\n"
    s += "<text x=\(q((a.x0 + a.x1) / 2)) y=\(q(a.y0 - 32)) font-size=\"14\" text-anchor=\"middle\">\(xmlEscaped(heading))</text>\n"
    // Legend above the plot area, left to right.
    var lx = a.x0
    for one in series {
        s += "<line x1=\(q(lx)) y1=\(q(a.y0 - 14)) x2=\(q(lx + 22)) y2=\(q(a.y0 - 14)) stroke=\"\(one.color)\" stroke-width=\"2.5\"/>"
        s += "<circle cx=\(q(lx + 11)) cy=\(q(a.y0 - 14)) r=\"3\" fill=\"\(one.color)\"/>"
        s += "<text x=\(q(lx + 28)) y=\(q(a.y0 - 10)) font-size=\"12\">\(xmlEscaped(one.name))</text>\n"
        lx += 40 + 7 * Double(one.name.count)
    }
    s += "<rect x=\(q(a.x0)) y=\(q(a.y0)) width=\(q(a.x1 - a.x0)) height=\(q(a.y1 - a.y0)) fill=\"none\" stroke=\"#333\"/>\n"
    s += "<text x=\(q((a.x0 + a.x1) / 2)) y=\(q(a.y1 + 42)) font-size=\"13\" text-anchor=\"middle\">epoch</text>\n"
    let yMid = (a.y0 + a.y1) / 2
    s += "<text x=\(q(a.x0 - 58)) y=\(q(yMid)) font-size=\"13\" text-anchor=\"middle\" transform=\"rotate(-90 \(f(a.x0 - 58)) \(f(yMid)))\">\(xmlEscaped(yLabel))</text>\n"

    let all = series.flatMap(\.points)
    guard !all.isEmpty else {
        s += "<text x=\(q((a.x0 + a.x1) / 2)) y=\(q(yMid)) font-size=\"13\" fill=\"#666\" text-anchor=\"middle\">no values logged yet</text>\n</g>\n"
        return s
    }
    // Axes: whole epochs on x; on y the data's range widened to round ticks (within `clamp`).
    let xs = all.map(\.x), ys = all.map(\.y)
    let xAxis = niceAxis(lo: xs.min()!, hi: max(xs.max()!, xs.min()! + 1), minStep: 1)
    var yLo = ys.min()!, yHi = ys.max()!
    let pad = max((yHi - yLo) * 0.05, abs(yHi) * 0.02, 1e-3)
    yLo -= pad; yHi += pad
    if let (lo, hi) = clamp { yLo = max(yLo, lo); yHi = min(yHi, hi) }
    var yAxis = niceAxis(lo: yLo, hi: yHi, minStep: 0)
    if let (lo, hi) = clamp { yAxis.lo = max(yAxis.lo, lo); yAxis.hi = min(yAxis.hi, hi) }
    func px(_ x: Double) -> Double { a.x0 + (x - xAxis.lo) / (xAxis.hi - xAxis.lo) * (a.x1 - a.x0) }
    func py(_ y: Double) -> Double { a.y1 - (y - yAxis.lo) / (yAxis.hi - yAxis.lo) * (a.y1 - a.y0) }

    for t in xAxis.ticks {
        let x = px(t)
        s += "<line x1=\(q(x)) y1=\(q(a.y0)) x2=\(q(x)) y2=\(q(a.y1)) stroke=\"#e4e4e4\"/>"
        s += "<line x1=\(q(x)) y1=\(q(a.y1)) x2=\(q(x)) y2=\(q(a.y1 + 5)) stroke=\"#333\"/>"
        s += "<text x=\(q(x)) y=\(q(a.y1 + 19)) font-size=\"12\" text-anchor=\"middle\">\(tickLabel(t, step: xAxis.step))</text>\n"
    }
    for t in yAxis.ticks {
        let y = py(t)
        s += "<line x1=\(q(a.x0)) y1=\(q(y)) x2=\(q(a.x1)) y2=\(q(y)) stroke=\"#e4e4e4\"/>"
        s += "<line x1=\(q(a.x0 - 5)) y1=\(q(y)) x2=\(q(a.x0)) y2=\(q(y)) stroke=\"#333\"/>"
        s += "<text x=\(q(a.x0 - 8)) y=\(q(y + 4)) font-size=\"12\" text-anchor=\"end\">\(tickLabel(t, step: yAxis.step))</text>\n"
    }
    for one in series where !one.points.isEmpty {
        let path = one.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
        s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(one.color)\" stroke-width=\"2\" stroke-linejoin=\"round\"/>\n"
        if one.points.count <= 60 {
            for p in one.points { s += "<circle cx=\(q(px(p.x))) cy=\(q(py(p.y))) r=\"3\" fill=\"\(one.color)\"/>" }
            s += "\n"
        }
    }
    s += "</g>\n"
    return s
}

/// An axis from `lo` to `hi` widened to multiples of a 1-2-5 step giving 3–7 ticks (step ≥ minStep).
struct NiceAxis {
    var lo: Double
    var hi: Double
    var step: Double
    var ticks: [Double] {
        var out: [Double] = []
        var k = (lo / step).rounded(.up)
        while k * step <= hi + step * 1e-9 { out.append(k * step); k += 1 }
        return out
    }
}

func niceAxis(lo: Double, hi: Double, minStep: Double) -> NiceAxis {
    let span = max(hi - lo, 1e-12)
    let raw = span / 6
    let magnitude = pow(10, (log10(raw)).rounded(.down))
    let step = max([1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude, minStep)
    return NiceAxis(lo: (lo / step).rounded(.down) * step, hi: (hi / step).rounded(.up) * step, step: step)
}

/// A tick value with as many decimals as the step needs.
func tickLabel(_ v: Double, step: Double) -> String {
    let decimals = max(0, Int((-log10(step)).rounded(.up)))
    let text = String(format: "%.\(decimals)f", v)
    return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
}

/// A coordinate as a quoted attribute value.
private func q(_ v: Double) -> String { "\"\(f(v))\"" }
private func f(_ v: Double) -> String { String(format: "%.1f", v) }

func xmlEscaped(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
