import MeshCore
import Synchronization

/// The forwarding decision with its targets resolved to live links.
enum Routed {
    case forward([PeerLink])
    /// Forward where shared subscription groups changed the decision (`Router.route`).
    case forwardShared([PeerLink], SharedDelivery)
    case republishLocally
    case notWanted
    case ignored(IgnoreReason)
}

/// The shared `Router` and the current peer links: written when a peer's interest
/// changes or the peer set is reloaded (SIGHUP), read by the local link for every
/// message. Decide under the lock, act outside it.
final class RoutingTable: Sendable {
    private struct State {
        var router: Router
        var links: [Int: PeerLink] = [:]
        /// New interest whose replay the local link has not done yet; handed to it with the
        /// first route decision that uses that interest, so it replays before it routes.
        var replays: [ReplayRequest] = []
        /// Each shared group's round-robin turn.
        var cursors = SharedCursors()
        /// Peer agents' origin tokens by node (`InterestAdvert.origin`): the current one and
        /// the one before it, whose deliveries may still reach the broker after the peer's
        /// agent restarted (they were on their way, or waited in the broker's queue)...
        var origins: [String: (current: String?, previous: String?)] = [:]
        /// ...and all of them, for the check of a direct delivery's mark.
        var originTokens: Set<String> = []
    }

    private let state: Mutex<State>
    /// Whether `replays` is non-empty, for the local link's idle check without the lock.
    private let replaysPending = Atomic<Bool>(false)
    /// Wakes the local link's loop thread when a replay waits and no message may come.
    private let replayWaker = Mutex<(@Sendable () -> Void)?>(nil)

    init(forwardPrefix: String, sharedBalance: SharedBalance = .roundRobin) {
        state = Mutex(State(router: Router(forwardPrefix: forwardPrefix, sharedBalance: sharedBalance)))
    }

    /// Decides for one message. `replays` receives the replays due before this message (new
    /// interest this decision already uses): the caller performs them first, so a peer gets
    /// what it missed before anything routed by its new interest.
    @inline(__always)
    func route(topic: String, retained: Bool, replays: inout [ReplayRequest]) -> Routed {
        state.withLock { s in
            if !s.replays.isEmpty {
                swap(&replays, &s.replays)
                replaysPending.store(false, ordering: .relaxed)
            }
            switch s.router.route(topic: topic, retained: retained, cursors: &s.cursors) {
            case .forward(let peers): return .forward(peers.compactMap { s.links[$0] })
            case .forwardShared(let peers, let shared): return .forwardShared(peers.compactMap { s.links[$0] }, shared)
            case .republishLocally: return .republishLocally
            case .notWanted: return .notWanted
            case .ignored(let reason): return .ignored(reason)
            }
        }
    }

    /// The replays waiting, for the local link's loop when it is idle (no message to route).
    func takeReplays() -> [ReplayRequest] {
        guard replaysPending.load(ordering: .relaxed) else { return [] }
        return state.withLock { s in
            replaysPending.store(false, ordering: .relaxed)
            defer { s.replays = [] }
            return s.replays
        }
    }

    /// Who to wake when a replay is queued (the local link's loop thread).
    func setReplayWaker(_ wake: @escaping @Sendable () -> Void) {
        replayWaker.withLock { $0 = wake }
    }

    /// The live link of peer `index`.
    func link(_ index: Int) -> PeerLink? {
        state.withLock { $0.links[index] }
    }

    /// A new peer: it receives retained messages at once, and forwards once its interest is known.
    func add(_ link: PeerLink) {
        state.withLock { s in
            s.links[link.index] = link
            s.router.addPeer(link.index)
        }
    }

    /// A removed peer gets nothing more from this moment on.
    func remove(_ link: PeerLink) {
        state.withLock { s in
            s.links[link.index] = nil
            s.router.removePeer(link.index)
        }
    }

    /// The local broker's interest changed: the router keeps its shared groups. Returns
    /// whether they changed. The groups are extracted outside the lock.
    @discardableResult
    func setLocalInterest(_ filters: [String: Int]) -> Bool {
        let groups = SharedGroups(advertised: filters)
        return state.withLock { s in
            guard s.router.localSharedGroups != groups else { return false }
            s.router.setLocalShared(groups)
            return true
        }
    }

    /// Records `node`'s origin token as its latest advert gives it (nil: none, or the node left).
    func setOrigin(node: String, token: String?) {
        state.withLock { s in
            let known = s.origins[node]
            guard known?.current != token else { return }
            s.origins[node] = (token, known?.current ?? known?.previous)
            s.originTokens = Set(s.origins.values.flatMap { [$0.current, $0.previous].compactMap { $0 } })
        }
    }

    /// `node`'s current origin token (nil: none read).
    func origin(of node: String) -> String? {
        state.withLock { $0.origins[node]?.current }
    }

    /// Whether `token` is a peer agent's origin token: a message carrying it as its `mesh:o`
    /// mark was published here by that agent (`--delivery direct`) and must not be forwarded.
    func isPeerOrigin(_ token: String) -> Bool {
        state.withLock { $0.originTokens.contains(token) }
    }

    /// `node`'s interest at `peer` changed; returns the number of filters the peer now wants.
    /// `replay`: what to send the peer again for its new filters, queued in the same step as
    /// the new interest is put in place.
    func setInterest(peer: Int, node: String, filters: [String: Int], replay: ReplayRequest? = nil) -> Int {
        let count = update(peer: peer, replay: replay) { $0.replacing(node: node, filters: filters) }
        if replay != nil, let wake = replayWaker.withLock({ $0 }) { wake() }
        return count
    }

    /// `node` withdrew its interest at `peer`; returns the number of filters the peer now wants.
    func removeNode(peer: Int, node: String) -> Int {
        update(peer: peer) { $0.removing(node: node) }
    }

    /// Builds the peer's new interest outside the lock, which every forwarded message takes
    /// (a 100 000-filter advert is a tree of 100 000 filters), and swaps it in under it. If
    /// another update of the same peer got in meanwhile (a peer link applies its adverts in
    /// order on its one thread, so only if someone else updates that peer), the swap is
    /// refused and the build starts again from the new state, so neither update is lost.
    private func update(peer: Int, replay: ReplayRequest? = nil, _ build: (PeerInterest) -> PeerInterest?) -> Int {
        while true {
            let snapshot = state.withLock { $0.router.snapshot(ofPeer: peer) }
            // The snapshot holds the storage being replaced until after the swap, so it is
            // freed here, not under the lock.
            let done: Int? = withExtendedLifetime(snapshot) {
                guard let built = build(snapshot) else { return snapshot.filterCount }
                return state.withLock { s in
                    guard s.router.swap(built) else { return nil }
                    if let replay {
                        s.replays.append(replay)
                        replaysPending.store(true, ordering: .relaxed)
                    }
                    return built.filterCount
                }
            }
            if let done { return done }
        }
    }

    var links: [PeerLink] { state.withLock { $0.links.values.sorted { $0.index < $1.index } } }
}
