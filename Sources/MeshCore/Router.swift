/// What to do with one message the agent received from its local broker.
public enum RouteDecision: Equatable, Sendable {
    /// Arrived under the forward prefix: strip it and publish locally, never forward again.
    case republishLocally(topic: String)
    /// Sorted peer indexes whose interest matches (all known peers if retained).
    case forward(peers: [Int])
    /// Sorted peer indexes, where shared subscription groups changed the decision: peers
    /// added so that a group gets the message once, or copies beyond one per group that
    /// ordinary subscribers (or a retained message) force. Never returned when no `$share`
    /// group matches the topic, nor when the groups changed nothing.
    case forwardShared(peers: [Int], shared: SharedDelivery)
    /// No peer wants it.
    case notWanted
    case ignored(IgnoreReason)
}

/// What shared subscription groups did to one routing decision.
public struct SharedDelivery: Equatable, Sendable {
    /// Target peers that no ordinary subscriber wanted: each chosen so that a group with no
    /// member reached otherwise gets the message once (`mesh_shared_forwards_total`).
    public var chosen: Int
    /// Deliveries to groups beyond one per group: every broker that gets a message delivers
    /// it to one member of each of its matching groups, so a group with members on the
    /// publishing broker and on a target (or on several targets) gets one copy per such
    /// broker (`mesh_shared_extra_copies_total`).
    public var extraCopies: Int
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
        /// Ordinary (non-shared) filters of every node at the peer.
        var union = SubscriptionTree()
        var sharedNodes: [String: SharedGroups] = [:]
        /// Shared groups with members at the peer (every node's).
        var shared = SharedGroups()
        /// The node id `topic-hash` balancing scores this peer by (the same on every agent).
        var hashName = ""
        /// Stamp of the last change (unique across peers and over time), so a replacement
        /// built from an older snapshot is refused by `swap`.
        var generation: UInt64
    }

    public let forwardPrefix: String
    public let sharedBalance: SharedBalance
    /// Sorted by peer index, so `route` produces sorted output without sorting.
    private var peers: [PeerState] = []
    private var generations: UInt64 = 0
    /// The shared groups with members on the local broker: it delivers every message
    /// published on it to one member of each, so the mesh must not deliver them elsewhere.
    private var localShared = SharedGroups()
    /// Whether any group exists anywhere: the only check the hot path pays without one.
    private var anyShared = false

    public init(forwardPrefix: String = "forward/", sharedBalance: SharedBalance = .roundRobin) {
        self.forwardPrefix = forwardPrefix
        self.sharedBalance = sharedBalance
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
        refreshAnyShared()
    }

    /// The local broker's interest (filter text as subscribed → sessions), of which the
    /// router keeps the shared groups (`$share/<name>/<filter>`); everything else is skipped.
    public mutating func setLocalInterest(_ filters: [String: Int]) {
        setLocalShared(SharedGroups(advertised: filters))
    }

    /// The shared groups with members on the local broker.
    public mutating func setLocalShared(_ groups: SharedGroups) {
        localShared = groups
        refreshAnyShared()
    }

    public var localSharedGroups: SharedGroups { localShared }

    private mutating func refreshAnyShared() {
        anyShared = !localShared.isEmpty || peers.contains { !$0.shared.isEmpty }
    }

    /// A peer link (index = position in the `--peer` list) reports the
    /// interest of `node` as read on that peer's broker. Replaces that node's
    /// previous interest at the peer. Filters are as advertised: ordinary filters go into
    /// the peer's tree, `$share/<name>/<filter>` into its shared groups (the group, not
    /// `<filter>`, is what the peer wants: one copy per group); invalid filters and
    /// non-positive counts are skipped.
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
            return PeerInterest(peer: peer, basis: nil, nodes: [:], union: SubscriptionTree(), sharedNodes: [:], shared: SharedGroups())
        }
        return PeerInterest(peer: peer, basis: state.generation, nodes: state.nodes, union: state.union,
                            sharedNodes: state.sharedNodes, shared: state.shared)
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
        peers[index].sharedNodes = built.sharedNodes
        peers[index].shared = built.shared
        peers[index].hashName = built.sharedNodes.keys.min { $0.utf8.lexicographicallyPrecedes($1.utf8) } ?? ""
        peers[index].generation = generations
        refreshAnyShared()
        return true
    }

    /// The union of the ordinary (non-shared) interest of all nodes at `peer` (empty if unknown).
    public func interest(ofPeer peer: Int) -> SubscriptionTree {
        peers.first { $0.peer == peer }?.union ?? SubscriptionTree()
    }

    /// The shared groups with members at `peer` (empty if unknown).
    public func sharedGroups(ofPeer peer: Int) -> SharedGroups {
        peers.first { $0.peer == peer }?.shared ?? SharedGroups()
    }

    /// Decides what to do with a message the local broker delivered, with fresh round-robin
    /// positions (every group's first choice): for tests and diagnostics.
    public func route(topic: String, retained: Bool) -> RouteDecision {
        var cursors = SharedCursors()
        return route(topic: topic, retained: retained, cursors: &cursors)
    }

    /// Decides what to do with a message the local broker delivered.
    ///
    /// Retained messages go to every known peer whatever its interest, so a
    /// subscriber arriving later elsewhere still gets the last value.
    /// `$`-topics are never forwarded. Topics under `forwardPrefix` are
    /// republished locally with the prefix removed (ignored if the remainder
    /// is empty, starts with `$`, or is not a valid topic name).
    ///
    /// Shared groups: a group with members on the local broker already got the message
    /// from it; otherwise, if no target peer has members, one peer with members is added
    /// (`sharedBalance`, each group's turn in `cursors`). Copies beyond one per group that
    /// ordinary subscribers or a retained message force are counted in the decision.
    public func route(topic: String, retained: Bool, cursors: inout SharedCursors) -> RouteDecision {
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
        if retained {
            if anyShared { return routeShared(topic: topic, ordinary: knownPeers, retained: true, cursors: &cursors) }
            return .forward(peers: knownPeers)
        }
        var wanted: [Int] = []
        for state in peers where state.union.matches(topic) {
            wanted.append(state.peer)
        }
        if anyShared { return routeShared(topic: topic, ordinary: wanted, retained: false, cursors: &cursors) }
        return wanted.isEmpty ? .notWanted : .forward(peers: wanted)
    }

    /// Where one group has members, among the brokers a message could reach.
    private struct Members {
        var local = false
        /// Ascending (peers are visited in order).
        var peers: [Int] = []
    }

    /// The shared-group part of `route`: `ordinary` are the peers the message goes to anyway
    /// (sorted). Each broker that gets the message delivers it to one member of each of its
    /// matching groups (Mosquitto's `subs__shared_process`), so a group gets one copy per
    /// broker with members among the local broker and the targets.
    private func routeShared(topic: String, ordinary: [Int], retained: Bool, cursors: inout SharedCursors) -> RouteDecision {
        let plain: RouteDecision = ordinary.isEmpty ? .notWanted : .forward(peers: ordinary)
        var members: [SharedGroup: Members] = [:]
        if localShared.matches(topic) {
            for group in localShared.groups(matching: topic) { members[group, default: Members()].local = true }
        }
        var groupsAt: [Int: [SharedGroup]] = [:]
        var hashNames: [Int: String] = [:]
        for state in peers where state.shared.matches(topic) {
            let groups = state.shared.groups(matching: topic)
            groupsAt[state.peer] = groups
            hashNames[state.peer] = state.hashName
            for group in groups { members[group, default: Members()].peers.append(state.peer) }
        }
        if members.isEmpty { return plain }

        var targets = Set(ordinary)
        var chosen = 0
        if !retained {
            func served(_ m: Members) -> Bool { m.local || m.peers.contains(where: targets.contains) }
            // Groups with the fewest member brokers first: their choice is the most constrained.
            let open = members.filter { !served($0.value) }
                .sorted { ($0.value.peers.count, $0.key) < ($1.value.peers.count, $1.key) }
            for (group, m) in open where !served(m) {
                // A broker holding no group that is already served adds no extra copy.
                let clean = m.peers.filter { peer in
                    !(groupsAt[peer] ?? []).contains { $0 != group && served(members[$0]!) }
                }
                let candidates = clean.isEmpty ? m.peers : clean
                let pick: Int
                if candidates.count == 1 {
                    pick = candidates[0]
                } else {
                    switch sharedBalance {
                    case .roundRobin:
                        pick = candidates[Int(cursors.take(group) % UInt64(candidates.count))]
                    case .topicHash:
                        var best = candidates[0], bestScore = rendezvousScore(topic: topic, node: hashNames[best] ?? "")
                        for peer in candidates.dropFirst() {
                            let score = rendezvousScore(topic: topic, node: hashNames[peer] ?? "")
                            if score > bestScore { (best, bestScore) = (peer, score) }
                        }
                        pick = best
                    }
                }
                targets.insert(pick)
                chosen += 1
            }
        }
        var extra = 0
        for m in members.values {
            let copies = (m.local ? 1 : 0) + m.peers.count { targets.contains($0) }
            if copies > 1 { extra += copies - 1 }
        }
        if chosen == 0 && extra == 0 { return plain }
        return .forwardShared(peers: targets.sorted(), shared: SharedDelivery(chosen: chosen, extraCopies: extra))
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
    var sharedNodes: [String: SharedGroups]
    var shared: SharedGroups

    /// The union of the ordinary (non-shared) interest of every node at the peer.
    public var interest: SubscriptionTree { union }
    /// The shared groups with members at the peer.
    public var sharedGroups: SharedGroups { shared }
    /// Distinct ordinary filters plus distinct shared groups.
    public var filterCount: Int { union.filterCount + shared.count }

    /// This interest with `node`'s replaced by `filters` (as advertised; see
    /// `Router.setInterest`). O(filters), plus O(union) when other nodes advertise at the
    /// same peer (the union is copied, then patched).
    public func replacing(node: String, filters: [String: Int]) -> PeerInterest {
        var matchForm: [String: Int] = [:]
        matchForm.reserveCapacity(filters.count)
        var groups = SharedGroups()
        for (text, count) in filters where count > 0 {
            guard let filter = try? TopicFilter(validating: text) else { continue }
            if let name = filter.shareGroup {
                groups.add(SharedGroup(name: name, filter: filter.matchFilter), members: count)
                continue
            }
            let (sum, overflow) = matchForm[filter.matchFilter, default: 0].addingReportingOverflow(count)
            matchForm[filter.matchFilter] = overflow ? Int.max : sum
        }
        let tree = SubscriptionTree(filters: matchForm)
        var result = self
        result.sharedNodes[node] = groups.isEmpty ? nil : groups
        result.shared = Self.union(of: result.sharedNodes)
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
        if result.sharedNodes.removeValue(forKey: node) != nil { result.shared = Self.union(of: result.sharedNodes) }
        switch result.nodes.count {
        case 0: result.union = SubscriptionTree()
        case 1: result.union = result.nodes.first!.value
        default: old.forEachFilter { result.union.remove($0, count: $1) }
        }
        return result
    }

    /// The groups of every node at one peer (usually one node: its own groups, shared).
    static func union(of nodes: [String: SharedGroups]) -> SharedGroups {
        if nodes.count <= 1 { return nodes.first?.value ?? SharedGroups() }
        var all = SharedGroups()
        for groups in nodes.values { all.formUnion(groups) }
        return all
    }
}
