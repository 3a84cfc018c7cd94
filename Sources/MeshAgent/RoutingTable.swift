import MeshCore
import Synchronization

/// The forwarding decision with its targets resolved to live links.
enum Routed {
    case forward([PeerLink])
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
    }

    private let state: Mutex<State>

    init(forwardPrefix: String) {
        state = Mutex(State(router: Router(forwardPrefix: forwardPrefix)))
    }

    @inline(__always)
    func route(topic: String, retained: Bool) -> Routed {
        state.withLock { s in
            switch s.router.route(topic: topic, retained: retained) {
            case .forward(let peers): return .forward(peers.compactMap { s.links[$0] })
            case .republishLocally: return .republishLocally
            case .notWanted: return .notWanted
            case .ignored(let reason): return .ignored(reason)
            }
        }
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

    func setInterest(peer: Int, node: String, filters: [String: Int]) -> Int {
        state.withLock {
            $0.router.setInterest(peer: peer, node: node, filters: filters)
            return $0.router.interest(ofPeer: peer).filterCount
        }
    }

    func removeNode(peer: Int, node: String) -> Int {
        state.withLock {
            $0.router.removeNode(peer: peer, node: node)
            return $0.router.interest(ofPeer: peer).filterCount
        }
    }

    var links: [PeerLink] { state.withLock { $0.links.values.sorted { $0.index < $1.index } } }
}
