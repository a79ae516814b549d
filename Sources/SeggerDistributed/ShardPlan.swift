// Which tiles each rank trains on. The order of the tiles in an epoch depends only on (seed, epoch) —
// the rank count only decides how far the epoch is padded (to a multiple of the ranks, as PyTorch's
// DistributedSampler pads) — and the split of one global batch over ranks is a pure function of its
// inputs, so every rank computes the same plan without talking to the others.
import SeggerRandom

/// Which tiles each rank trains on, step by step.
public enum ShardPlan {
    /// The epoch's sequence of global batches (indices into the sorted tile list), as PyTorch's
    /// `DistributedSampler` + `DataLoader` make them: a seeded shuffle that depends only on `seed` and
    /// `epoch`, padded to a multiple of `ranks` by repeating tiles from the start of the permutation
    /// (as `DistributedSampler` does; nothing is padded with one rank), then cut into batches of
    /// `globalBatch`. The last batch is smaller when the padded epoch does not divide evenly (still a
    /// multiple of `ranks`, so every rank gets its share), or dropped when `dropLast`. A `globalBatch`
    /// above the tile count makes one batch of every tile.
    ///
    /// Tile order does not depend on the rank count, so runs with different rank counts and the same
    /// global batch size train on the same batches whenever the tile count is a multiple of every
    /// rank count involved (no padding).
    public static func globalBatches(tileCount: Int, globalBatch: Int, ranks: Int, seed: UInt64, epoch: Int,
                                     dropLast: Bool) -> [[Int]] {
        precondition(globalBatch >= 1, "globalBatch must be at least 1")
        precondition(ranks >= 1, "ranks must be at least 1")
        precondition(tileCount >= 0)
        guard tileCount > 0 else { return [] }
        var order = permutation(count: tileCount, seed: seed, epoch: epoch)
        let padded = (tileCount + ranks - 1) / ranks * ranks
        var k = 0
        while order.count < padded {  // wraps around when there are fewer tiles than ranks
            order.append(order[k % tileCount])
            k += 1
        }
        var batches: [[Int]] = []
        var start = 0
        while start < padded {
            let end = min(start + globalBatch, padded)
            if end - start < globalBatch && dropLast { break }
            batches.append(Array(order[start..<end]))
            start = end
        }
        return batches
    }

    /// Number of global batches `globalBatches` returns, without building them.
    public static func batchCount(tileCount: Int, globalBatch: Int, ranks: Int, dropLast: Bool) -> Int {
        guard tileCount > 0, globalBatch >= 1, ranks >= 1 else { return 0 }
        let padded = (tileCount + ranks - 1) / ranks * ranks
        return padded / globalBatch + (dropLast || padded % globalBatch == 0 ? 0 : 1)
    }

    /// A seeded permutation of 0..<count: Fisher–Yates on the epoch's shuffle stream
    /// (`RandomStream.epochShuffle`) under `seed`.
    public static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var order = Array(0..<count)
        var rng = SplitMix64(.epochShuffle(epoch: epoch), seed: seed)
        rng.shuffle(&order)
        return order
    }

    /// Splits one global batch over `ranks` ranks, balanced by `cost` (longest-processing-time
    /// greedy), every rank getting the same number of tiles when the batch divides evenly; a
    /// deterministic function of its inputs, so every rank computes the same split.
    ///
    /// `costs` is indexed by tile index (`costs[batch[k]]`), e.g. a tile's edge count. When the batch
    /// does not divide evenly, ranks hold ⌊n/ranks⌋ or ⌈n/ranks⌉ tiles. Steps: tiles by cost descending
    /// (ties: earlier batch position first) each go to the least-loaded rank that still has room (ties:
    /// lower rank); then pairwise swaps between the most-loaded rank and another rank are applied while
    /// they lower that pair's maximum. Each rank's tiles keep their order in `batch`, so `ranks == 1`
    /// returns `[batch]`.
    ///
    /// `equalCounts: false` drops the equal tile counts (for a loss that does not depend on how the batch
    /// is split: the global mean): besides swaps, the refinement also moves single tiles off the
    /// most-loaded rank (so the result is never worse than the equal-count split it starts from). Over
    /// tiles whose sizes spread 40-fold (a slide) a rank that drew the largest tile then takes fewer of
    /// the others (docs/scaling.md has the balance this buys). A move never empties a rank (it would not
    /// lower the maximum), so every rank keeps a tile when the batch has at least `ranks`.
    public static func split(_ batch: [Int], costs: [Double], ranks: Int, equalCounts: Bool = true) -> [[Int]] {
        precondition(ranks >= 1, "ranks must be at least 1")
        let n = batch.count
        let cost = batch.map { costs[$0] }
        precondition(!cost.contains { $0.isNaN }, "tile cost is NaN")
        let base = n / ranks, extra = n % ranks  // `extra` ranks take base + 1 tiles
        let order = (0..<n).sorted { a, b in cost[a] != cost[b] ? cost[a] > cost[b] : a < b }

        var owner = [Int](repeating: 0, count: n)      // batch position → rank
        var load = [Double](repeating: 0, count: ranks)
        var held = [Int](repeating: 0, count: ranks)
        var extraUsed = 0
        for p in order {
            var best = -1
            for r in 0..<ranks {
                let room = held[r] < base || (held[r] == base && extraUsed < extra)
                if room && (best < 0 || load[r] < load[best]) { best = r }
            }
            if held[best] == base { extraUsed += 1 }
            owner[p] = best
            held[best] += 1
            load[best] += cost[p]
        }

        // Refinement: each accepted swap (or move) lowers the most-loaded rank and leaves its partner
        // below the old maximum, so the sorted load vector decreases and the loop ends. Swaps first (the
        // equal-count split); with free counts, then swaps and moves from there (never worse than it).
        func refine(moves: Bool) {
            var rounds = 0
            while rounds < 4 * n + 4 {
                rounds += 1
                var top = 0
                for r in 1..<ranks where load[r] > load[top] { top = r }
                var bestPair: (Int, Int)? = nil
                var bestMove: (Int, Int)? = nil   // (tile position, to rank)
                var bestMax = load[top]
                for a in 0..<n where owner[a] == top {
                    for b in 0..<n where owner[b] != top && cost[b] < cost[a] {
                        let d = cost[a] - cost[b]
                        let pairMax = max(load[top] - d, load[owner[b]] + d)
                        if pairMax < bestMax { bestMax = pairMax; bestPair = (a, b); bestMove = nil }
                    }
                    if moves {
                        for r in 0..<ranks where r != top {
                            let pairMax = max(load[top] - cost[a], load[r] + cost[a])
                            if pairMax < bestMax { bestMax = pairMax; bestMove = (a, r); bestPair = nil }
                        }
                    }
                }
                let other: Int
                if let (a, r) = bestMove {
                    owner[a] = r
                    other = r
                } else if let (a, b) = bestPair {
                    other = owner[b]
                    owner[a] = other
                    owner[b] = top
                } else {
                    break
                }
                load[top] = 0; load[other] = 0  // recomputed from scratch: no drift from += / -=
                for p in 0..<n where owner[p] == top || owner[p] == other { load[owner[p]] += cost[p] }
            }
        }
        refine(moves: false)
        if !equalCounts { refine(moves: true) }

        var result = [[Int]](repeating: [], count: ranks)
        for p in 0..<n { result[owner[p]].append(batch[p]) }
        return result
    }
}

extension ShardPlan {
    /// Spreads whole work items over `ranks` by cost, once (prediction's tiles): largest first, each to
    /// the least-loaded rank (ties: lower rank; equal costs: lower index first). Returns the rank of
    /// each item; a pure function of its inputs, so every rank computes the same assignment.
    public static func assign(costs: [Double], ranks: Int) -> [Int] {
        precondition(ranks >= 1, "ranks must be at least 1")
        precondition(!costs.contains { $0.isNaN }, "cost is NaN")
        let order = costs.indices.sorted { costs[$0] != costs[$1] ? costs[$0] > costs[$1] : $0 < $1 }
        var load = [Double](repeating: 0, count: ranks)
        var owner = [Int](repeating: 0, count: costs.count)
        for i in order {
            var best = 0
            for r in 1..<ranks where load[r] < load[best] { best = r }
            owner[i] = best
            load[best] += costs[i]
        }
        return owner
    }
}
