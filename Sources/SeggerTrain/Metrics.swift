// Validation metrics over all label pairs (docs/model-and-training.md): exact global values, not per-batch averages.
import Foundation

/// Loss, AUROC and F1 of a set of scored label pairs.
public struct BinaryMetrics: Equatable, Codable, Sendable {
    /// Mean BCE-with-logits.
    public var loss: Double
    /// Area under the ROC curve, ties averaged (Mann–Whitney U); NaN when one class is absent.
    public var auroc: Double
    /// F1 at threshold 0.5 on sigmoid(s), i.e. positive when s > 0.
    public var f1: Double
    /// Number of label pairs.
    public var count: Int

    /// Computes the metrics from logits and 0/1 labels.
    public init(logits: [Float], labels: [Float]) {
        precondition(logits.count == labels.count)
        count = logits.count
        var lossSum = 0.0
        var tp = 0, fp = 0, fn = 0
        for (s, y) in zip(logits, labels) {
            lossSum += BinaryMetrics.bce(Double(s), Double(y))
            let predicted = s > 0
            if predicted && y == 1 { tp += 1 } else if predicted { fp += 1 } else if y == 1 { fn += 1 }
        }
        loss = count > 0 ? lossSum / Double(count) : .nan
        let denom = 2 * tp + fp + fn
        f1 = denom > 0 ? Double(2 * tp) / Double(denom) : 0
        auroc = BinaryMetrics.auroc(logits: logits, labels: labels)
    }

    /// softplus(s) − y·s, stable for large |s|.
    public static func bce(_ s: Double, _ y: Double) -> Double {
        max(s, 0) - y * s + log1p(exp(-abs(s)))
    }

    /// Exact AUROC with tied scores given average ranks.
    public static func auroc(logits: [Float], labels: [Float]) -> Double {
        let n = logits.count
        let positives = labels.reduce(0) { $0 + ($1 == 1 ? 1 : 0) }
        let negatives = n - positives
        guard positives > 0, negatives > 0 else { return .nan }
        let order = (0..<n).sorted { logits[$0] < logits[$1] }
        var rankSumPositive = 0.0
        var i = 0
        while i < n {
            var j = i
            while j + 1 < n && logits[order[j + 1]] == logits[order[i]] { j += 1 }
            let averageRank = Double(i + j) / 2 + 1 // ranks are 1-based
            for k in i...j where labels[order[k]] == 1 { rankSumPositive += averageRank }
            i = j + 1
        }
        let u = rankSumPositive - Double(positives) * Double(positives + 1) / 2
        return u / (Double(positives) * Double(negatives))
    }
}
