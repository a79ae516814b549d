import XCTest
@testable import SeggerTrain

final class MetricsTests: XCTestCase {
    /// AUROC by its definition: P(score of a positive > score of a negative) + ½ P(tie).
    func bruteForceAUROC(_ s: [Float], _ y: [Float]) -> Double {
        var wins = 0.0, pairs = 0.0
        for i in s.indices where y[i] == 1 {
            for j in s.indices where y[j] == 0 {
                pairs += 1
                if s[i] > s[j] { wins += 1 } else if s[i] == s[j] { wins += 0.5 }
            }
        }
        return wins / pairs
    }

    func testAUROCMatchesDefinitionWithTies() {
        var rng = UInt64(42)
        func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 33 }
        for trial in 0..<50 {
            let n = 5 + trial * 3
            // Coarse scores force many ties.
            let s = (0..<n).map { _ in Float(Int(next() % 7)) - 3 }
            var y = (0..<n).map { _ in Float(next() % 2) }
            y[0] = 1; y[1] = 0
            XCTAssertEqual(BinaryMetrics.auroc(logits: s, labels: y), bruteForceAUROC(s, y), accuracy: 1e-12, "trial \(trial)")
        }
    }

    func testKnownValues() {
        let m = BinaryMetrics(logits: [2, 1, -1, -2, 0.5], labels: [1, 0, 1, 0, 1])
        // Positives 2, -1, 0.5 vs negatives 1, -2: wins 2>1,2>-2,-1>-2,0.5>-2 = 4 of 6.
        XCTAssertEqual(m.auroc, 4.0 / 6.0, accuracy: 1e-12)
        // Predicted positive when s > 0: 2 (tp), 1 (fp), 0.5 (tp); -1 is a false negative: F1 = 4/6.
        XCTAssertEqual(m.f1, 4.0 / 6.0, accuracy: 1e-12)
        let expectedLoss = [(2.0, 1.0), (1, 0), (-1, 1), (-2, 0), (0.5, 1)].map { s, y in log(1 + exp(s)) - y * s }.reduce(0, +) / 5
        XCTAssertEqual(m.loss, expectedLoss, accuracy: 1e-12)
        XCTAssertTrue(BinaryMetrics.auroc(logits: [1, 2], labels: [1, 1]).isNaN, "AUROC is undefined with one class")
    }

    func testStableBCE() {
        XCTAssertEqual(BinaryMetrics.bce(100, 1), 0, accuracy: 1e-30)
        XCTAssertEqual(BinaryMetrics.bce(-100, 1), 100, accuracy: 1e-9)
        XCTAssertEqual(BinaryMetrics.bce(0, 0), log(2), accuracy: 1e-15)
    }
}
