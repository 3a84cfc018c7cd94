/// One shared subscription group as Mosquitto 2.0.11 keys it: the share name *and* the
/// filter. `$share/g/a/+` and `$share/g/a/#` are two groups (`sub__add_shared` keeps groups
/// per subscription-tree node), and a message both match goes to one member of each.
public struct SharedGroup: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The share name (second level of `$share/<name>/<filter>`); may be empty or `+`.
    public let name: String
    /// What the group matches (`a/+`); empty for `$share/g` and `$share/g/`, which match nothing.
    public let filter: String

    public static func < (l: SharedGroup, r: SharedGroup) -> Bool {
        if l.filter != r.filter { return l.filter.utf8.lexicographicallyPrecedes(r.filter.utf8) }
        return l.name.utf8.lexicographicallyPrecedes(r.name.utf8)
    }

    public var description: String { "$share/\(name)/\(filter)" }
}

/// The shared groups one holder has members of (a node, or every node at one peer), with
/// the number of member subscriptions, and a tree of their filters so that the groups a
/// topic reaches are found without visiting every group.
public struct SharedGroups: Sendable, Equatable {
    /// Group → member subscriptions (above zero).
    public private(set) var members: [SharedGroup: Int] = [:]
    /// Match filter → number of groups on it, for `matches`.
    private var tree = SubscriptionTree()
    /// Match filter → the names of the groups on it.
    private var names: [String: [String]] = [:]

    public init() {}

    /// The shared groups among advertised filters (filter text as subscribed → count):
    /// `$share/<name>/<filter>` with a positive count; everything else is skipped.
    public init(advertised filters: [String: Int]) {
        for (text, count) in filters where count > 0 && text.utf8.starts(with: Self.sharePrefix.utf8) {
            guard let filter = try? TopicFilter(validating: text), let name = filter.shareGroup else { continue }
            add(SharedGroup(name: name, filter: filter.matchFilter), members: count)
        }
    }

    static let sharePrefix = "$share/"

    public var isEmpty: Bool { members.isEmpty }
    /// Distinct groups.
    public var count: Int { members.count }

    /// Adds `members` member subscriptions to `group` (saturating).
    public mutating func add(_ group: SharedGroup, members count: Int) {
        guard count > 0 else { return }
        if let existing = members[group] {
            let (sum, overflow) = existing.addingReportingOverflow(count)
            members[group] = overflow ? Int.max : sum
            return
        }
        members[group] = count
        tree.insert(group.filter)
        names[group.filter, default: []].append(group.name)
    }

    /// Every group of `other` added to these.
    public mutating func formUnion(_ other: SharedGroups) {
        for (group, count) in other.members { add(group, members: count) }
    }

    /// True if any group's filter matches `topic` (cheap: one trie walk).
    public func matches(_ topic: String) -> Bool { tree.matches(topic) }

    /// The groups whose filter matches `topic`, sorted. Allocates: for the shared path only.
    public func groups(matching topic: String) -> [SharedGroup] {
        var result: [SharedGroup] = []
        for filter in tree.matchingFilters(topic) {
            for name in names[filter] ?? [] { result.append(SharedGroup(name: name, filter: filter)) }
        }
        return result.sorted()
    }

    public static func == (l: SharedGroups, r: SharedGroups) -> Bool { l.members == r.members }
}

/// How the publishing agent picks the one peer that delivers a message to a group with
/// members on several other brokers (`--shared-balance`).
public enum SharedBalance: String, Sendable, CaseIterable {
    /// Each group's turn passes to the next member broker, message by message (Mosquitto's
    /// own rule within one broker). Per publishing agent: agents do not coordinate.
    case roundRobin = "round-robin"
    /// Highest hash of (topic, node id) among the member brokers: every agent picks the same
    /// broker for a topic, so one topic's messages reach the group through one broker, in
    /// order; a broker leaving the group moves only its own topics.
    case topicHash = "topic-hash"
}

/// Each group's round-robin position, kept by whoever owns the router (next to it, under the
/// same lock), so that `Router.route` itself stays a pure function of its input.
public struct SharedCursors: Sendable {
    var next: [SharedGroup: UInt64] = [:]
    /// Positions of groups that no longer exist are forgotten in bulk past this many (a
    /// position is only a starting point: losing it costs nothing but evenness).
    static let limit = 65_536

    public init() {}

    mutating func take(_ group: SharedGroup) -> UInt64 {
        if next.count >= Self.limit && next[group] == nil { next.removeAll(keepingCapacity: true) }
        let turn = next[group, default: 0]
        next[group] = turn &+ 1
        return turn
    }
}

/// FNV-1a (64 bit) of `topic`, a separator and `node`, finished with the SplitMix64 mixer:
/// the same on every agent and every run (Swift's `Hasher` is seeded per process).
func rendezvousScore(topic: String, node: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in topic.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
    h = (h ^ 0xFF) &* 0x100_0000_01b3 // 0xFF never occurs in UTF-8: "ab"+"c" ≠ "a"+"bc"
    for byte in node.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
    h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
    h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
    return h ^ (h >> 31)
}
