// The model's work buffers sized once, at start-up, for the largest tiles of the run.
//
// The buffers grow to the largest tile seen so far. Over a slide whose tile sizes spread 40-fold, the
// largest tile may come at any step of an epoch, and the resident memory then jumps mid-run (and an
// out-of-memory, if any, comes hours in). One forward and backward pass on the largest tiles before the
// first step grows every buffer to its final size: the run's memory is reached, and visible, at start-up.
import Foundation
import SeggerDistributed
import SeggerModel
import SeggerTiles

extension Trainer {
    /// Runs forward and backward (gradients scaled by 0, weights untouched) on the training tiles of
    /// largest cost and of most label pairs, and forward on the validation tile of largest cost (tiles
    /// with label pairs only: the others are never computed). The gradient buffer is left holding zeros,
    /// which the first step overwrites.
    func reserveForLargestTiles() throws {
        var order: [String] = []
        var backward: [String: Bool] = [:]
        func pick(_ set: TileSet, by key: (Int) -> Double, withBackward: Bool) {
            let usable = set.labelCounts.indices.filter { set.labelCounts[$0] > 0 }
            guard let i = usable.max(by: { key($0) < key($1) }) else { return }
            let path = set.paths[i]
            if backward[path] == nil { order.append(path) }
            backward[path] = (backward[path] ?? false) || withBackward
        }
        pick(train, by: { self.train.costs[$0] }, withBackward: true)
        pick(train, by: { Double(self.train.labelCounts[$0]) }, withBackward: true)
        if let v = val { pick(v, by: { v.costs[$0] }, withBackward: false) }
        for path in order {
            let tile: Tile
            do { tile = try Tile.read(path: path, options: stepReadOptions) } catch {
                throw RankError("rank \(comm.rank): cannot read \(path) (it validated at start-up): \(error)")
            }
            _ = model.forward(tile)
            if backward[path] == true { model.backward(lossScale: 0) }
        }
    }
}
