import MeshCore
import Synchronization

/// The shared `Router`: written by peer links when a peer's interest changes, read by
/// the forwarder for every message. Decide under the lock, act outside it.
final class RoutingTable: Sendable {
    private let router: Mutex<Router>

    init(forwardPrefix: String, peerCount: Int) {
        var r = Router(forwardPrefix: forwardPrefix)
        for i in 0..<peerCount { r.addPeer(i) }
        router = Mutex(r)
    }

    @inline(__always)
    func route(topic: String, retained: Bool) -> RouteDecision {
        router.withLock { $0.route(topic: topic, retained: retained) }
    }

    func setInterest(peer: Int, node: String, filters: [String: Int]) -> Int {
        router.withLock {
            $0.setInterest(peer: peer, node: node, filters: filters)
            return $0.interest(ofPeer: peer).filterCount
        }
    }

    func removeNode(peer: Int, node: String) -> Int {
        router.withLock {
            $0.removeNode(peer: peer, node: node)
            return $0.interest(ofPeer: peer).filterCount
        }
    }

    func interest(ofPeer peer: Int) -> SubscriptionTree {
        router.withLock { $0.interest(ofPeer: peer) }
    }
}
