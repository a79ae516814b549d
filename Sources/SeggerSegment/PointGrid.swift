// The k nearest points within a radius, as scipy's `cKDTree.query(x, k, distance_upper_bound=r)` followed
// by segger's `d < r` filter gives them: Euclidean distance in float64 from float32 coordinates, only
// points strictly closer than r, nearest first. A uniform grid over the points, searched ring by ring
// outwards from the query's cell until no unseen point can be closer than the k-th found or than r.
//
// Ties: points at exactly the same distance are ordered by index (lower first), also at the k-th place.
// cKDTree orders equal distances as its tree traversal meets them, so where several points lie at the
// k-th distance exactly, the two may keep different ones (distances and the set below the k-th agree).
import Foundation

/// One neighbour: the point's index and its squared distance to the query.
public struct Neighbor: Equatable, Sendable {
    public var index: Int32
    public var distanceSquared: Double

    public init(index: Int32, distanceSquared: Double) {
        self.index = index
        self.distanceSquared = distanceSquared
    }

    /// Nearer first; equal distances by index.
    @inline(__always)
    static func precedes(_ d: Double, _ i: Int32, _ e: Neighbor) -> Bool {
        d < e.distanceSquared || (d == e.distanceSquared && i < e.index)
    }
}

/// A uniform grid over 2-D points (the first two coordinates of each row) for k-nearest queries within
/// a radius. Build once per point set; queries do not allocate when `out` has capacity k.
public struct PointGrid: Sendable {
    /// Point coordinates in float64.
    public let xs: [Double], ys: [Double]
    let originX: Double, originY: Double
    /// Side of a square cell.
    let cell: Double
    let nx: Int, ny: Int
    /// Points of cell c (row-major, c = cy·nx + cx) are `items[cellStart[c] ..< cellStart[c+1]]`, ascending.
    let cellStart: [Int32]
    let items: [Int32]

    public var count: Int { xs.count }

    /// - Parameters:
    ///   - points: row-major [count, stride] float32 coordinates (finite); columns 0 and 1 are used.
    public init(points: UnsafeBufferPointer<Float>, count: Int, stride: Int) {
        precondition(stride >= 2 && points.count >= count * stride, "PointGrid: rows of at least 2 coordinates")
        var xs = [Double](repeating: 0, count: count), ys = [Double](repeating: 0, count: count)
        for i in 0..<count {
            xs[i] = Double(points[i * stride])
            ys[i] = Double(points[i * stride + 1])
        }
        self.init(xs: xs, ys: ys)
    }

    public init(xs: [Double], ys: [Double]) {
        precondition(xs.count == ys.count && xs.count < Int(Int32.max))
        let n = xs.count
        self.xs = xs
        self.ys = ys
        var lo = (x: Double.infinity, y: Double.infinity), hi = (x: -Double.infinity, y: -Double.infinity)
        for i in 0..<n {
            precondition(xs[i].isFinite && ys[i].isFinite, "PointGrid: coordinates must be finite")
            lo = (min(lo.x, xs[i]), min(lo.y, ys[i]))
            hi = (max(hi.x, xs[i]), max(hi.y, ys[i]))
        }
        if n == 0 { lo = (0, 0); hi = (0, 0) }
        let w = hi.x - lo.x, h = hi.y - lo.y
        // About one point per cell; at most ~2·√n cells along either side (points on a line); never so
        // small that cell coordinates lose precision against the coordinates' magnitude.
        let root = Double(max(n, 1)).squareRoot()
        let magnitude = max(abs(lo.x), abs(lo.y), abs(hi.x), abs(hi.y))
        var cell = max((w * h / Double(max(n, 1))).squareRoot(), max(w, h) / (2 * root + 1), magnitude * 1e-9)
        if !(cell > 0) || !cell.isFinite { cell = 1 }
        originX = lo.x
        originY = lo.y
        self.cell = cell
        nx = min(Int(w / cell) + 1, 2 * Int(root) + 2)
        ny = min(Int(h / cell) + 1, 2 * Int(root) + 2)
        var start = [Int32](repeating: 0, count: nx * ny + 1)
        var cellOf = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            let cx = min(nx - 1, Int((xs[i] - lo.x) / cell)), cy = min(ny - 1, Int((ys[i] - lo.y) / cell))
            cellOf[i] = Int32(cy * nx + cx)
            start[cy * nx + cx + 1] += 1
        }
        for c in 0..<(nx * ny) { start[c + 1] += start[c] }
        var fill = Array(start.dropLast())
        var items = [Int32](repeating: 0, count: n)
        for i in 0..<n {  // ascending index within each cell
            let c = Int(cellOf[i])
            items[Int(fill[c])] = Int32(i)
            fill[c] += 1
        }
        cellStart = start
        self.items = items
    }

    /// The cell column (or row) of a coordinate, unclamped (a query may lie outside the grid), kept
    /// within ±2^40 so that far-away queries cannot overflow.
    @inline(__always)
    private func cellIndex(_ v: Double, _ origin: Double) -> Int {
        let c = ((v - origin) / cell).rounded(.down)
        return Int(max(-0x1p40, min(0x1p40, c)))
    }

    /// The at most `k` points nearest to (`x`, `y`) with distance strictly below `radius`, nearest first
    /// (equal distances: lower index first), written into `out` (cleared first).
    public func nearest(x: Double, y: Double, k: Int, radius: Double, into out: inout [Neighbor]) {
        out.removeAll(keepingCapacity: true)
        guard k > 0, !xs.isEmpty, radius > 0 else { return }
        let r2 = radius * radius
        let cx = cellIndex(x, originX), cy = cellIndex(y, originY)
        let lastT = max(abs(cx), abs(cx - (nx - 1)), abs(cy), abs(cy - (ny - 1)))
        // Rings nearer than this do not meet the grid (a query outside it).
        var t = max(0, -cx, cx - (nx - 1), -cy, cy - (ny - 1))
        while t <= lastT {
            if t >= 1 {
                // Every point of ring t lies at least t-1 whole cells away (less a hair for rounding in
                // the cell assignment).
                let bound = (Double(t - 1) - 1e-6) * cell
                if bound >= radius { break }
                if out.count == k && bound > 0 && bound * bound > out[k - 1].distanceSquared { break }
            }
            let x0 = cx - t, x1 = cx + t, y0 = cy - t, y1 = cy + t
            let gy0 = max(y0, 0), gy1 = min(y1, ny - 1)
            if gy0 > gy1 { t += 1; continue }
            for gy in gy0...gy1 {
                let onEdgeRow = gy == y0 || gy == y1
                if onEdgeRow {
                    if x1 < 0 || x0 > nx - 1 { continue }
                    for gx in max(x0, 0)...min(x1, nx - 1) { scan(cell: gy * nx + gx, x, y, k, r2, radius, &out) }
                } else {
                    if x0 >= 0 && x0 <= nx - 1 { scan(cell: gy * nx + x0, x, y, k, r2, radius, &out) }
                    if x1 != x0 && x1 >= 0 && x1 <= nx - 1 { scan(cell: gy * nx + x1, x, y, k, r2, radius, &out) }
                }
            }
            t += 1
        }
    }

    @inline(__always)
    private func scan(cell c: Int, _ x: Double, _ y: Double, _ k: Int, _ r2: Double, _ radius: Double,
                      _ out: inout [Neighbor]) {
        var p = Int(cellStart[c])
        let end = Int(cellStart[c + 1])
        while p < end {
            let i = items[p]
            p += 1
            let dx = x - xs[Int(i)], dy = y - ys[Int(i)]
            let d2 = dx * dx + dy * dy
            // cKDTree keeps d² < r²; segger then keeps √d² < r: both, as a point must pass both there.
            guard d2 < r2, d2.squareRoot() < radius else { continue }
            if out.count == k && !Neighbor.precedes(d2, i, out[k - 1]) { continue }
            if out.count < k { out.append(Neighbor(index: i, distanceSquared: d2)) } else { out[k - 1] = Neighbor(index: i, distanceSquared: d2) }
            var j = out.count - 1
            while j > 0 && Neighbor.precedes(out[j].distanceSquared, out[j].index, out[j - 1]) {
                out.swapAt(j, j - 1)
                j -= 1
            }
        }
    }
}

/// The same answer as ``PointGrid/nearest(x:y:k:radius:into:)`` by looking at every point (for tests).
public func bruteForceNearest(xs: [Double], ys: [Double], x: Double, y: Double, k: Int, radius: Double) -> [Neighbor] {
    var all: [Neighbor] = []
    for i in xs.indices {
        let dx = x - xs[i], dy = y - ys[i]
        let d2 = dx * dx + dy * dy
        if d2 < radius * radius && d2.squareRoot() < radius { all.append(Neighbor(index: Int32(i), distanceSquared: d2)) }
    }
    all.sort { Neighbor.precedes($0.distanceSquared, $0.index, $1) }
    return Array(all.prefix(max(k, 0)))
}
