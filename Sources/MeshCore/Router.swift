/// What to do with one message the agent received from its local broker.
public enum RouteDecision: Equatable, Sendable {
    /// Arrived under the forward prefix: strip it and publish locally, never forward again.
    case republishLocally(topic: String)
    /// Sorted peer indexes whose interest matches (all known peers if retained).
    case forward(peers: [Int])
    /// No peer wants it.
    case notWanted
    case ignored(IgnoreReason)
}

/// Why a message is neither forwarded nor republished.
public enum IgnoreReason: String, Sendable, Equatable {
    /// `$`-topics (`$SYS`, `$mesh`, …) are per-broker and never cross the mesh,
    /// also when they arrive as `forward/$…`.
    case dollarTopic
    /// Exactly the forward prefix, nothing after it.
    case emptyForwardedTopic
    /// The remainder after the prefix is not a publishable topic name (wildcards, NUL, too long).
    case invalidForwardedTopic
}

/// The forwarding decision for one message, given each peer's interest.
///
/// Pure state machine: the agent's peer links feed it interest, the local
/// link asks it per message, and the agent performs the decision. Every
/// message crosses at most one hop because anything under `forwardPrefix`
/// is only ever republished locally.
public struct Router: Sendable {
    /// Interest at one peer: per advertising node, plus the union the hot path matches against.
    struct PeerState: Sendable {
        var peer: Int
        var nodes: [String: SubscriptionTree] = [:]
        var union = SubscriptionTree()
    }

    public let forwardPrefix: String
    /// Sorted by peer index, so `route` produces sorted output without sorting.
    private var peers: [PeerState] = []

    public init(forwardPrefix: String = "forward/") {
        self.forwardPrefix = forwardPrefix
    }

    /// Peer indexes known to the router, sorted.
    public var knownPeers: [Int] { peers.map(\.peer) }

    /// A known peer with no interest yet (it still receives retained messages).
    public mutating func addPeer(_ peer: Int) {
        _ = slot(for: peer)
    }

    /// Forgets a peer entirely (its link was removed from the configuration).
    public mutating func removePeer(_ peer: Int) {
        peers.removeAll { $0.peer == peer }
    }

    /// A peer link (index = position in the `--peer` list) reports the
    /// interest of `node` as read on that peer's broker. Replaces that node's
    /// previous interest at the peer. Filters are as advertised: `$share/g/f`
    /// counts as interest in `f` (counts are summed when several map to the
    /// same match filter); invalid filters and non-positive counts are skipped.
    public mutating func setInterest(peer: Int, node: String, filters: [String: Int]) {
        var matchForm: [String: Int] = [:]
        matchForm.reserveCapacity(filters.count)
        for (text, count) in filters where count > 0 {
            guard let filter = try? TopicFilter(validating: text) else { continue }
            let (sum, overflow) = matchForm[filter.matchFilter, default: 0].addingReportingOverflow(count)
            matchForm[filter.matchFilter] = overflow ? Int.max : sum
        }
        let tree = SubscriptionTree(filters: matchForm)
        let index = slot(for: peer)
        let old = peers[index].nodes.updateValue(tree, forKey: node)
        if peers[index].nodes.count == 1 {
            // One node at this peer (the usual case): the union *is* its tree, shared copy-on-write.
            peers[index].union = tree
        } else {
            if let old { old.forEachFilter { peers[index].union.remove($0, count: $1) } }
            for (filter, count) in matchForm { peers[index].union.insert(filter, count: count) }
        }
    }

    /// `node` no longer advertises at `peer` (its retained advert was deleted).
    public mutating func removeNode(peer: Int, node: String) {
        guard let index = peers.firstIndex(where: { $0.peer == peer }),
              let old = peers[index].nodes.removeValue(forKey: node) else { return }
        switch peers[index].nodes.count {
        case 0: peers[index].union = SubscriptionTree()
        case 1: peers[index].union = peers[index].nodes.first!.value
        default: old.forEachFilter { peers[index].union.remove($0, count: $1) }
        }
    }

    /// The union of the interest of all nodes at `peer` (empty if unknown).
    public func interest(ofPeer peer: Int) -> SubscriptionTree {
        peers.first { $0.peer == peer }?.union ?? SubscriptionTree()
    }

    /// Decides what to do with a message the local broker delivered.
    ///
    /// Retained messages go to every known peer whatever its interest, so a
    /// subscriber arriving later elsewhere still gets the last value.
    /// `$`-topics are never forwarded. Topics under `forwardPrefix` are
    /// republished locally with the prefix removed (ignored if the remainder
    /// is empty, starts with `$`, or is not a valid topic name).
    public func route(topic: String, retained: Bool) -> RouteDecision {
        if topic.utf8.starts(with: forwardPrefix.utf8) {
            let remainder = String(Substring(topic.utf8.dropFirst(forwardPrefix.utf8.count)))
            if remainder.isEmpty { return .ignored(.emptyForwardedTopic) }
            if Topic.isDollarTopic(remainder) { return .ignored(.dollarTopic) }
            do {
                try Topic.validateName(remainder)
            } catch {
                return .ignored(.invalidForwardedTopic)
            }
            return .republishLocally(topic: remainder)
        }
        if Topic.isDollarTopic(topic) { return .ignored(.dollarTopic) }
        if peers.isEmpty { return .notWanted }
        if retained { return .forward(peers: knownPeers) }
        var wanted: [Int] = []
        for state in peers where state.union.matches(topic) {
            wanted.append(state.peer)
        }
        return wanted.isEmpty ? .notWanted : .forward(peers: wanted)
    }

    /// Index of `peer` in `peers`, inserting it in sorted position if new.
    private mutating func slot(for peer: Int) -> Int {
        var low = 0, high = peers.count
        while low < high {
            let mid = (low + high) / 2
            if peers[mid].peer < peer { low = mid + 1 } else { high = mid }
        }
        if low < peers.count && peers[low].peer == peer { return low }
        peers.insert(PeerState(peer: peer), at: low)
        return low
    }
}
