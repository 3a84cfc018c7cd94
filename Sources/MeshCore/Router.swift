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
        /// Stamp of the last change (unique across peers and over time), so a replacement
        /// built from an older snapshot is refused by `swap`.
        var generation: UInt64
    }

    public let forwardPrefix: String
    /// Sorted by peer index, so `route` produces sorted output without sorting.
    private var peers: [PeerState] = []
    private var generations: UInt64 = 0

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
    ///
    /// Builds and swaps in one step; a caller holding a lock that the hot path also takes
    /// builds outside it instead: `snapshot(ofPeer:)`, `PeerInterest.replacing`, `swap`.
    public mutating func setInterest(peer: Int, node: String, filters: [String: Int]) {
        let swapped = swap(snapshot(ofPeer: peer).replacing(node: node, filters: filters))
        assert(swapped)
    }

    /// `node` no longer advertises at `peer` (its retained advert was deleted).
    public mutating func removeNode(peer: Int, node: String) {
        guard let built = snapshot(ofPeer: peer).removing(node: node) else { return }
        let swapped = swap(built)
        assert(swapped)
    }

    /// `peer`'s interest as it stands, to build a replacement from (outside any lock: the
    /// copy is O(1), its storage is shared copy-on-write until one side changes).
    public func snapshot(ofPeer peer: Int) -> PeerInterest {
        guard let state = peers.first(where: { $0.peer == peer }) else {
            return PeerInterest(peer: peer, basis: nil, nodes: [:], union: SubscriptionTree())
        }
        return PeerInterest(peer: peer, basis: state.generation, nodes: state.nodes, union: state.union)
    }

    /// Puts an interest built from `snapshot(ofPeer:)` in place: O(1) (the storage it
    /// replaces is freed by whoever drops the last reference, normally the builder's
    /// snapshot, outside the lock). Returns false and changes nothing if the peer's interest
    /// changed since that snapshot (another update got in first, or the peer was added or
    /// removed): build again from a fresh snapshot, or the other update would be lost.
    @discardableResult
    public mutating func swap(_ built: PeerInterest) -> Bool {
        let existing = peers.firstIndex { $0.peer == built.peer }
        guard existing.map({ peers[$0].generation }) == built.basis else { return false }
        let index = existing ?? slot(for: built.peer)
        generations += 1
        peers[index].nodes = built.nodes
        peers[index].union = built.union
        peers[index].generation = generations
        return true
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
        generations += 1
        peers.insert(PeerState(peer: peer, generation: generations), at: low)
        return low
    }
}

/// One peer's interest taken from a `Router`, and replacements built from it without the
/// router: the expensive part of an advert (a tree of every filter, and the union when
/// several nodes advertise at one peer) is done by the peer link's thread outside the
/// routing lock, which every forwarded message takes; `Router.swap` then puts it in place.
public struct PeerInterest: Sendable {
    public let peer: Int
    /// The generation of the peer state this was taken from; nil: the peer was unknown.
    let basis: UInt64?
    var nodes: [String: SubscriptionTree]
    var union: SubscriptionTree

    /// The union of the interest of every node at the peer.
    public var interest: SubscriptionTree { union }

    /// This interest with `node`'s replaced by `filters` (as advertised; see
    /// `Router.setInterest`). O(filters), plus O(union) when other nodes advertise at the
    /// same peer (the union is copied, then patched).
    public func replacing(node: String, filters: [String: Int]) -> PeerInterest {
        var matchForm: [String: Int] = [:]
        matchForm.reserveCapacity(filters.count)
        for (text, count) in filters where count > 0 {
            guard let filter = try? TopicFilter(validating: text) else { continue }
            let (sum, overflow) = matchForm[filter.matchFilter, default: 0].addingReportingOverflow(count)
            matchForm[filter.matchFilter] = overflow ? Int.max : sum
        }
        let tree = SubscriptionTree(filters: matchForm)
        var result = self
        let old = result.nodes.updateValue(tree, forKey: node)
        if result.nodes.count == 1 {
            // One node at this peer (the usual case): the union *is* its tree, shared copy-on-write.
            result.union = tree
        } else {
            if let old { old.forEachFilter { result.union.remove($0, count: $1) } }
            for (filter, count) in matchForm { result.union.insert(filter, count: count) }
        }
        return result
    }

    /// This interest without `node`'s; nil if `node` has none here.
    public func removing(node: String) -> PeerInterest? {
        guard basis != nil else { return nil }
        var result = self
        guard let old = result.nodes.removeValue(forKey: node) else { return nil }
        switch result.nodes.count {
        case 0: result.union = SubscriptionTree()
        case 1: result.union = result.nodes.first!.value
        default: old.forEachFilter { result.union.remove($0, count: $1) }
        }
        return result
    }
}
