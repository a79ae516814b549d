// Disjoint sets over 0..<n: the connected components of one rank's share of the transcript graph.

/// Union–find with path halving; a union links the larger root under the smaller, so a set's root is
/// its smallest element (the components do not depend on the order of unions).
public struct UnionFind: Sendable {
    private var parent: [Int32]

    public init(count: Int) {
        precondition(count < Int(Int32.max))
        parent = (0..<Int32(count)).map { $0 }
    }

    public var count: Int { parent.count }

    /// The root (smallest element) of i's set.
    public mutating func find(_ i: Int) -> Int {
        var x = Int32(i)
        while parent[Int(x)] != x {
            let p = parent[Int(x)]
            parent[Int(x)] = parent[Int(p)]
            x = parent[Int(x)]
        }
        return Int(x)
    }

    /// Joins the sets of a and b; true when they were apart.
    @discardableResult
    public mutating func union(_ a: Int, _ b: Int) -> Bool {
        let ra = find(a), rb = find(b)
        if ra == rb { return false }
        if ra < rb { parent[rb] = Int32(ra) } else { parent[ra] = Int32(rb) }
        return true
    }
}
