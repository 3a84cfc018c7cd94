/// A trie over topic levels with reference counts, answering "does any
/// filter match this topic?" in time that grows with the topic's depth, not
/// with the number of filters (the shape of mosquitto `src/subs.c` and EMQX
/// `emqx_trie`).
///
/// Layout, chosen for ~1M filters per peer:
/// - nodes live in one flat array of 16-byte records (`Node`), addressed by
///   `UInt32` index; node 0 is the root; freed nodes are recycled;
/// - literal children of *all* nodes share one `EdgeTable` keyed by
///   (parent index, level bytes), so a node with children pays no
///   per-node dictionary header, and matching hashes the topic's bytes in
///   place without building a `String` per level;
/// - the `+` and `#` children sit in dedicated fields of the parent.
///
/// Levels compare **byte-wise**, as brokers do: `"caf\u{E9}"` and
/// `"cafe\u{301}"` are different levels even though Swift's `String ==`
/// calls them equal.
///
/// Value semantics come for free: all storage is arrays, which are
/// copy-on-write, so the struct is `Sendable` without `@unchecked`.
public struct SubscriptionTree: Sendable, Equatable {
    /// One trie node. `count` is the reference count of the filter ending
    /// here (0 = no filter ends here); child fields use 0 for "none", which
    /// is safe because the root (index 0) is never anyone's child.
    @usableFromInline
    struct Node: Sendable {
        var count: UInt32 = 0
        var plus: UInt32 = 0
        var hash: UInt32 = 0
        var literalChildren: UInt32 = 0
    }

    private var nodes: [Node] = [Node()]
    private var edges = EdgeTable()
    private var freeNodes: [UInt32] = []
    private var distinctFilters = 0

    public init() {}

    /// Builds a tree from `filter (match form) -> count`; non-positive counts are skipped.
    public init(filters: [String: Int]) {
        self.init()
        nodes.reserveCapacity(filters.count + 1)
        edges.reserveCapacity(filters.count)
        for (filter, count) in filters { insert(filter, count: count) }
    }

    /// Distinct filters with a count above zero.
    public var filterCount: Int { distinctFilters }

    public var isEmpty: Bool { distinctFilters == 0 }

    // MARK: - Mutation

    /// Calls `body` with the byte range of each level of `bytes` ('/'-separated, empty levels included).
    @inline(__always)
    private static func forEachLevel(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Bool) {
        var start = 0
        while true {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "/") { end += 1 }
            guard body(UnsafeRawBufferPointer(rebasing: bytes[start..<end])) else { return }
            if end == bytes.count { return }
            start = end + 1
        }
    }

    /// Adds `count` references to `filter` (match form: no `$share/` prefix).
    /// Counts saturate at `UInt32.max`; non-positive counts and filters longer
    /// than MQTT's 65535 bytes (which no broker accepts) are ignored.
    public mutating func insert(_ filter: String, count: Int = 1) {
        guard count > 0, filter.utf8.count <= Topic.maximumLengthInBytes else { return }
        var filter = filter
        var current: UInt32 = 0
        filter.withUTF8 { bytes in
            Self.forEachLevel(UnsafeRawBufferPointer(bytes)) { level in
                current = child(of: current, level: level, create: true)!
                return true
            }
        }
        let old = nodes[Int(current)].count
        if old == 0 { distinctFilters += 1 }
        let added = UInt64(old) + UInt64(min(count, Int(UInt32.max)))
        nodes[Int(current)].count = UInt32(min(added, UInt64(UInt32.max)))
    }

    /// Removes up to `count` references from `filter`. Returns false if the
    /// filter was not present. The count never goes below zero; at zero the
    /// filter is gone and every node left without purpose is pruned.
    @discardableResult
    public mutating func remove(_ filter: String, count: Int = 1) -> Bool {
        guard count > 0, !isEmpty else { return false }
        var filter = filter
        return filter.withUTF8 { bytes in
            // Path of (node, parent, level) from the first level down to the filter's node.
            var path: [(node: UInt32, parent: UInt32, level: UnsafeRawBufferPointer)] = []
            var current: UInt32 = 0
            var found = true
            Self.forEachLevel(UnsafeRawBufferPointer(bytes)) { level in
                guard let next = child(of: current, level: level, create: false) else {
                    found = false
                    return false
                }
                path.append((next, current, level))
                current = next
                return true
            }
            guard found else { return false }
            let old = nodes[Int(current)].count
            guard old > 0 else { return false }
            let removed = UInt32(min(count, Int(old)))
            nodes[Int(current)].count = old - removed
            guard old == removed else { return true }

            distinctFilters -= 1
            if distinctFilters == 0 {
                self = SubscriptionTree() // release all storage at once
                return true
            }
            for step in path.reversed() {
                let node = nodes[Int(step.node)]
                guard node.count == 0, node.plus == 0, node.hash == 0, node.literalChildren == 0 else { break }
                detach(step.node, from: step.parent, level: step.level)
            }
            return true
        }
    }

    private static func isWildcard(_ level: UnsafeRawBufferPointer, _ wildcard: UInt8) -> Bool {
        level.count == 1 && level[0] == wildcard
    }

    private mutating func detach(_ node: UInt32, from parent: UInt32, level: UnsafeRawBufferPointer) {
        if Self.isWildcard(level, UInt8(ascii: "+")) {
            nodes[Int(parent)].plus = 0
        } else if Self.isWildcard(level, UInt8(ascii: "#")) {
            nodes[Int(parent)].hash = 0
        } else {
            edges.remove(parent: parent, level: level)
            nodes[Int(parent)].literalChildren -= 1
        }
        nodes[Int(node)] = Node()
        freeNodes.append(node)
    }

    /// The `+` or `#` child of `parent` (the node's `slot`), made if absent and `create`.
    private mutating func wildcardChild(of parent: UInt32, _ slot: WritableKeyPath<Node, UInt32>, create: Bool) -> UInt32? {
        let existing = nodes[Int(parent)][keyPath: slot]
        if existing != 0 || !create { return existing == 0 ? nil : existing }
        let new = allocate()
        nodes[Int(parent)][keyPath: slot] = new
        return new
    }

    private mutating func child(of parent: UInt32, level: UnsafeRawBufferPointer, create: Bool) -> UInt32? {
        if Self.isWildcard(level, UInt8(ascii: "+")) { return wildcardChild(of: parent, \.plus, create: create) }
        if Self.isWildcard(level, UInt8(ascii: "#")) { return wildcardChild(of: parent, \.hash, create: create) }
        if let existing = edges.child(of: parent, level: level) { return existing }
        guard create else { return nil }
        let new = allocate()
        edges.insert(parent: parent, level: level, child: new)
        nodes[Int(parent)].literalChildren += 1
        return new
    }

    private mutating func allocate() -> UInt32 {
        if let reused = freeNodes.popLast() { return reused }
        precondition(nodes.count < Int(UInt32.max), "SubscriptionTree: more than 4G nodes")
        nodes.append(Node())
        return UInt32(nodes.count - 1)
    }

    // MARK: - Matching

    /// True if any filter matches the topic *name* (MQTT §4.7 rules, with
    /// root-level `+`/`#` never matching `$`-topics).
    public func matches(_ topic: String) -> Bool {
        if distinctFilters == 0 { return false }
        var topic = topic
        return topic.withUTF8 { bytes in
            nodes.withUnsafeBufferPointer { nodes in
                matchAny(node: 0, bytes: bytes, start: 0, nodes: nodes)
            }
        }
    }

    /// `start` is the byte offset of the current level; `bytes.count + 1`
    /// means every level has been consumed.
    private func matchAny(node index: UInt32, bytes: UnsafeBufferPointer<UInt8>, start: Int, nodes: UnsafeBufferPointer<Node>) -> Bool {
        let node = nodes[Int(index)]
        if start > bytes.count {
            // Topic exhausted: a filter ending here matches, and so does "<here>/#" (parent match).
            return node.count > 0 || (node.hash != 0 && nodes[Int(node.hash)].count > 0)
        }
        let wildcardsAllowed = index != 0 || bytes.first != UInt8(ascii: "$")
        if wildcardsAllowed && node.hash != 0 && nodes[Int(node.hash)].count > 0 { return true }
        var end = start
        while end < bytes.count && bytes[end] != UInt8(ascii: "/") { end += 1 }
        if wildcardsAllowed && node.plus != 0
            && matchAny(node: node.plus, bytes: bytes, start: end + 1, nodes: nodes) {
            return true
        }
        if node.literalChildren > 0,
           let child = edges.child(of: index, level: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[start..<end]))),
           matchAny(node: child, bytes: bytes, start: end + 1, nodes: nodes) {
            return true
        }
        return false
    }

    /// Every filter matching `topic`, sorted; for diagnostics (`inspect`), not the hot path.
    public func matchingFilters(_ topic: String) -> [String] {
        if distinctFilters == 0 { return [] }
        var result: [String] = []
        var path: [String] = []
        var topic = topic
        topic.withUTF8 { bytes in
            collect(node: 0, bytes: bytes, start: 0, path: &path, into: &result)
        }
        return result.sorted(by: Self.byteOrder)
    }

    private func collect(node index: UInt32, bytes: UnsafeBufferPointer<UInt8>, start: Int, path: inout [String], into result: inout [String]) {
        let node = nodes[Int(index)]
        if start > bytes.count {
            if node.count > 0 { result.append(path.joined(separator: "/")) }
            if node.hash != 0 && nodes[Int(node.hash)].count > 0 { result.append((path + ["#"]).joined(separator: "/")) }
            return
        }
        let wildcardsAllowed = index != 0 || bytes.first != UInt8(ascii: "$")
        if wildcardsAllowed && node.hash != 0 && nodes[Int(node.hash)].count > 0 {
            result.append((path + ["#"]).joined(separator: "/"))
        }
        var end = start
        while end < bytes.count && bytes[end] != UInt8(ascii: "/") { end += 1 }
        if wildcardsAllowed && node.plus != 0 {
            path.append("+")
            collect(node: node.plus, bytes: bytes, start: end + 1, path: &path, into: &result)
            path.removeLast()
        }
        if node.literalChildren > 0 {
            let levelBytes = UnsafeBufferPointer(rebasing: bytes[start..<end])
            if let child = edges.child(of: index, level: UnsafeRawBufferPointer(levelBytes)) {
                let level = String(decoding: levelBytes, as: UTF8.self)
                path.append(level)
                collect(node: child, bytes: bytes, start: end + 1, path: &path, into: &result)
                path.removeLast()
            }
        }
    }

    // MARK: - Enumeration

    /// All filters with their counts. O(n); for adverts, diffs and inspection.
    public var filters: [String: Int] {
        var result: [String: Int] = [:]
        result.reserveCapacity(distinctFilters)
        forEachFilter { result[$0] = $1 }
        return result
    }

    /// Visits every filter with its count (order unspecified).
    public func forEachFilter(_ body: (String, Int) -> Void) {
        if distinctFilters == 0 { return }
        var literal: [UInt32: [(String, UInt32)]] = [:]
        edges.forEach { parent, level, child in literal[parent, default: []].append((level, child)) }
        var stack: [(node: UInt32, path: String?)] = [(0, nil)]
        while let (index, path) = stack.popLast() {
            let node = nodes[Int(index)]
            if node.count > 0, let path { body(path, Int(node.count)) }
            func extend(_ level: String) -> String { path.map { $0 + "/" + level } ?? level }
            if node.plus != 0 { stack.append((node.plus, extend("+"))) }
            if node.hash != 0 { stack.append((node.hash, extend("#"))) }
            for (level, child) in literal[index] ?? [] { stack.append((child, extend(level))) }
        }
    }

    public static func == (lhs: SubscriptionTree, rhs: SubscriptionTree) -> Bool {
        lhs.distinctFilters == rhs.distinctFilters && lhs.filters == rhs.filters
    }

    static func byteOrder(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }
}

extension SubscriptionTree: CustomStringConvertible {
    /// Filters with counts (at most 20), not the internal layout: readable in test failures and logs.
    public var description: String {
        let shown = filters.sorted { Self.byteOrder($0.key, $1.key) }.prefix(20).map { "\($0.key): \($0.value)" }
        let more = filterCount > shown.count ? ", … \(filterCount - shown.count) more" : ""
        return "SubscriptionTree([\(shown.joined(separator: ", "))\(more)])"
    }
}
