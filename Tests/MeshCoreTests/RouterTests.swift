import Testing
@testable import MeshCore

@Suite("Router")
struct RouterTests {
    /// Peer 0 wants sensors, peer 1 wants everything non-$, peer 2 only a shared group, peer 3 nothing.
    static func router() -> Router {
        var router = Router()
        router.setInterest(peer: 0, node: "n0", filters: ["sensors/+/temp": 2])
        router.setInterest(peer: 1, node: "n1", filters: ["#": 1])
        router.setInterest(peer: 2, node: "n2", filters: ["$share/g/jobs/#": 1])
        router.addPeer(3)
        return router
    }

    @Test(arguments: [
        ("sensors/k/temp", false, RouteDecision.forward(peers: [0, 1])),
        ("sensors/k/hum", false, .forward(peers: [1])),
        // Peer 1 wants it anyway; group g has members only at peer 2, which is added for it.
        ("jobs", false, .forwardShared(peers: [1, 2], shared: .init(chosen: 1, extraCopies: 0))),
        ("jobs/a/b", false, .forwardShared(peers: [1, 2], shared: .init(chosen: 1, extraCopies: 0))),
        ("anything", true, .forward(peers: [0, 1, 2, 3])),
        ("$SYS/broker/uptime", false, .ignored(.dollarTopic)),
        ("$SYS/broker/uptime", true, .ignored(.dollarTopic)),
        ("$mesh/n0/subscriptions", true, .ignored(.dollarTopic)),
        ("forward/sensors/k/temp", false, .republishLocally(topic: "sensors/k/temp")),
        ("forward/sensors/k/temp", true, .republishLocally(topic: "sensors/k/temp")),
        ("forward//", false, .republishLocally(topic: "/")),
        ("forward/forward/x", false, .republishLocally(topic: "forward/x")),
        ("forward/", false, .ignored(.emptyForwardedTopic)),
        ("forward/$SYS/x", false, .ignored(.dollarTopic)),
        ("forward/a/+", false, .ignored(.invalidForwardedTopic)),
        ("forward/a/#", false, .ignored(.invalidForwardedTopic)),
        ("forward/a\u{0}", false, .ignored(.invalidForwardedTopic)),
        ("forward", false, .forward(peers: [1])),
        ("forwardx/y", false, .forward(peers: [1])),
        ("Forward/y", false, .forward(peers: [1])),
    ])
    func decisions(_ topic: String, _ retained: Bool, _ expected: RouteDecision) {
        #expect(Self.router().route(topic: topic, retained: retained) == expected)
    }

    @Test func noPeersMeansNotWanted() {
        let router = Router()
        #expect(router.route(topic: "a", retained: false) == .notWanted)
        #expect(router.route(topic: "a", retained: true) == .notWanted)
        #expect(router.knownPeers.isEmpty)
    }

    @Test func unmatchedIsNotWanted() {
        var router = Router()
        router.setInterest(peer: 5, node: "n", filters: ["a/b": 1])
        #expect(router.route(topic: "a/c", retained: false) == .notWanted)
        #expect(router.route(topic: "a/b", retained: false) == .forward(peers: [5]))
    }

    @Test func customPrefix() {
        let router = Router(forwardPrefix: "mesh-fwd/")
        #expect(router.forwardPrefix == "mesh-fwd/")
        #expect(router.route(topic: "mesh-fwd/x", retained: false) == .republishLocally(topic: "x"))
    }

    /// A `$share` filter is a group (name and match filter), not ordinary interest in its filter.
    @Test func sharedFiltersAreGroupsNotOrdinaryInterest() {
        var router = Router()
        router.setInterest(peer: 0, node: "n", filters: ["$share/g1/a/+": 2, "$share/g2/a/+": 3, "a/+": 1, "bad/#/x": 1, "z": 0])
        #expect(router.interest(ofPeer: 0).filters == ["a/+": 1])
        #expect(router.sharedGroups(ofPeer: 0).members == [SharedGroup(name: "g1", filter: "a/+"): 2, SharedGroup(name: "g2", filter: "a/+"): 3])
        #expect(router.snapshot(ofPeer: 0).filterCount == 3)
        // The ordinary subscriber takes it there; each group there gets that one copy.
        #expect(router.route(topic: "a/b", retained: false) == .forward(peers: [0]))
    }

    /// What Mosquitto 2.0.11 accepts as a share beyond the spec: `$share//x` serves `x`;
    /// `$share/g` and `$share/g/` serve nothing, and route nothing.
    @Test func sharesWithEmptyGroupOrFilter() {
        var router = Router()
        router.setInterest(peer: 0, node: "n", filters: ["$share//x": 1, "$share/+/y": 1])
        router.setInterest(peer: 1, node: "m", filters: ["$share/g": 1, "$share/g/": 2])
        #expect(router.route(topic: "x", retained: false) == .forwardShared(peers: [0], shared: .init(chosen: 1, extraCopies: 0)))
        #expect(router.route(topic: "y", retained: false) == .forwardShared(peers: [0], shared: .init(chosen: 1, extraCopies: 0)))
        for topic in ["g", "/", "//", "g/x", "x/"] {
            #expect(router.route(topic: topic, retained: false) == .notWanted, "\(topic)")
        }
    }

    @Test func twoNodesAtOnePeer() {
        var router = Router()
        router.setInterest(peer: 0, node: "x", filters: ["a": 1, "shared": 1])
        router.setInterest(peer: 0, node: "y", filters: ["b": 2, "shared": 4])
        #expect(router.interest(ofPeer: 0).filters == ["a": 1, "b": 2, "shared": 5])
        // Replacing x's interest keeps y's.
        router.setInterest(peer: 0, node: "x", filters: ["c": 1])
        #expect(router.interest(ofPeer: 0).filters == ["b": 2, "c": 1, "shared": 4])
        #expect(router.route(topic: "a", retained: false) == .notWanted)
        #expect(router.route(topic: "b", retained: false) == .forward(peers: [0]))
        router.removeNode(peer: 0, node: "y")
        #expect(router.interest(ofPeer: 0).filters == ["c": 1])
        router.removeNode(peer: 0, node: "x")
        #expect(router.interest(ofPeer: 0).isEmpty)
        #expect(router.knownPeers == [0])                        // still known: gets retained
        #expect(router.route(topic: "r", retained: true) == .forward(peers: [0]))
        router.removeNode(peer: 0, node: "never")                // no-op
        router.removeNode(peer: 9, node: "x")                    // no-op, does not add a peer
        #expect(router.knownPeers == [0])
    }

    @Test func threeNodesRemoveMiddle() {
        var router = Router()
        router.setInterest(peer: 1, node: "x", filters: ["a": 1])
        router.setInterest(peer: 1, node: "y", filters: ["a": 1, "b": 1])
        router.setInterest(peer: 1, node: "z", filters: ["c/#": 1])
        router.removeNode(peer: 1, node: "y")
        #expect(router.interest(ofPeer: 1).filters == ["a": 1, "c/#": 1])
    }

    @Test func removePeer() {
        var router = Self.router()
        router.removePeer(1)
        #expect(router.knownPeers == [0, 2, 3])
        #expect(router.route(topic: "sensors/k/hum", retained: false) == .notWanted)
        #expect(router.route(topic: "x", retained: true) == .forward(peers: [0, 2, 3]))
        #expect(router.interest(ofPeer: 1).isEmpty)
        router.removePeer(42)
        #expect(router.knownPeers == [0, 2, 3])
    }

    @Test func peersStaySortedWhateverTheOrderAdded() {
        var router = Router()
        for peer in [7, 2, 9, 0, 2, 5] { router.addPeer(peer) }
        router.setInterest(peer: 4, node: "n", filters: ["#": 1])
        router.setInterest(peer: 1, node: "n", filters: ["#": 1])
        #expect(router.knownPeers == [0, 1, 2, 4, 5, 7, 9])
        #expect(router.route(topic: "t", retained: false) == .forward(peers: [1, 4]))
    }

    @Test func setInterestReplacesPreviousInterest() {
        var router = Router()
        router.setInterest(peer: 0, node: "n", filters: ["old": 1])
        router.setInterest(peer: 0, node: "n", filters: ["new": 1])
        #expect(router.route(topic: "old", retained: false) == .notWanted)
        #expect(router.route(topic: "new", retained: false) == .forward(peers: [0]))
        router.setInterest(peer: 0, node: "n", filters: [:])
        #expect(router.route(topic: "new", retained: false) == .notWanted)
    }

    @Test func dollarFiltersCanMatchDollarButRouterNeverForwardsThem() {
        var router = Router()
        router.setInterest(peer: 0, node: "n", filters: ["$SYS/#": 1])
        #expect(router.interest(ofPeer: 0).matches("$SYS/x"))
        #expect(router.route(topic: "$SYS/x", retained: false) == .ignored(.dollarTopic))
    }

    // MARK: building outside the lock (snapshot → replacing/removing → swap)

    /// `router.swap` as a function: `#expect` cannot call a mutating method.
    static func swap(_ router: inout Router, _ built: PeerInterest) -> Bool { router.swap(built) }

    @Test func aReplacementBuiltFromASnapshotTakesEffectOnlyWhenSwappedIn() {
        var router = Router()
        router.setInterest(peer: 0, node: "b", filters: ["old/#": 1])
        let snapshot = router.snapshot(ofPeer: 0)
        let built = snapshot.replacing(node: "b", filters: ["new/#": 1, "$share//x": 2])
        // Building touched neither the router nor the snapshot (the hot path keeps routing on the old tree).
        #expect(router.route(topic: "old/1", retained: false) == .forward(peers: [0]))
        #expect(router.route(topic: "new/1", retained: false) == .notWanted)
        #expect(snapshot.interest.filters == ["old/#": 1])
        #expect(built.interest.filters == ["new/#": 1])
        #expect(built.sharedGroups.members == [SharedGroup(name: "", filter: "x"): 2])
        #expect(router.sharedGroups(ofPeer: 0).isEmpty)
        #expect(Self.swap(&router, built))
        #expect(router.route(topic: "old/1", retained: false) == .notWanted)
        #expect(router.route(topic: "new/1", retained: false) == .forward(peers: [0]))
        #expect(router.route(topic: "x", retained: false) == .forwardShared(peers: [0], shared: .init(chosen: 1, extraCopies: 0)))
        #expect(snapshot.interest.filters == ["old/#": 1], "the snapshot is a value: the swap does not change it")
        #expect(router.interest(ofPeer: 0) == built.interest)
    }

    /// Two updates of one peer built at the same time (nodes x and y): the second swap is
    /// refused, and built again from the new state it keeps the first one's change.
    @Test func concurrentUpdatesOfOnePeerCannotLoseEachOther() {
        var router = Router()
        router.setInterest(peer: 0, node: "x", filters: ["x/0": 1])
        router.setInterest(peer: 0, node: "y", filters: ["y/0": 1])
        let forX = router.snapshot(ofPeer: 0).replacing(node: "x", filters: ["x/1": 1])
        let forY = router.snapshot(ofPeer: 0).replacing(node: "y", filters: ["y/1": 1])
        #expect(Self.swap(&router, forX))
        #expect(!Self.swap(&router, forY), "built from a state that no longer is")
        #expect(router.interest(ofPeer: 0).filters == ["x/1": 1, "y/0": 1], "a refused swap changes nothing")
        let rebuilt = router.snapshot(ofPeer: 0).replacing(node: "y", filters: ["y/1": 1])
        #expect(Self.swap(&router, rebuilt))
        #expect(router.interest(ofPeer: 0).filters == ["x/1": 1, "y/1": 1])
        // An update of another peer does not invalidate this peer's build.
        let forX2 = router.snapshot(ofPeer: 0).replacing(node: "x", filters: ["x/2": 1])
        router.setInterest(peer: 1, node: "z", filters: ["z": 1])
        #expect(Self.swap(&router, forX2))
        #expect(router.interest(ofPeer: 0).filters == ["x/2": 1, "y/1": 1])
        // A removal built from an old snapshot is refused as well.
        let removeY = router.snapshot(ofPeer: 0).removing(node: "y")!
        router.setInterest(peer: 0, node: "x", filters: ["x/3": 1])
        #expect(!Self.swap(&router, removeY))
        let rebuiltRemoval = router.snapshot(ofPeer: 0).removing(node: "y")!
        #expect(Self.swap(&router, rebuiltRemoval))
        #expect(router.interest(ofPeer: 0).filters == ["x/3": 1])
        #expect(router.snapshot(ofPeer: 0).removing(node: "never") == nil)
        #expect(router.snapshot(ofPeer: 7).removing(node: "x") == nil)
    }

    @Test func aSwapForAPeerAddedOrRemovedSinceItsSnapshotIsRefused() {
        var router = Router()
        let unknown = router.snapshot(ofPeer: 3).replacing(node: "n", filters: ["a": 1])
        router.addPeer(3)
        #expect(!Self.swap(&router, unknown))
        #expect(router.interest(ofPeer: 3).isEmpty)
        let known = router.snapshot(ofPeer: 3).replacing(node: "n", filters: ["a": 1])
        router.removePeer(3)
        #expect(!Self.swap(&router, known))
        #expect(router.knownPeers.isEmpty)
        // Removed and added again: a new generation, so the old build still does not fit.
        router.addPeer(3)
        #expect(!Self.swap(&router, known))
        // A snapshot of an unknown peer adds it, as setInterest does.
        let rebuilt = router.snapshot(ofPeer: 4).replacing(node: "n", filters: ["b": 1])
        #expect(Self.swap(&router, rebuilt))
        #expect(router.knownPeers == [3, 4])
        #expect(router.route(topic: "b", retained: false) == .forward(peers: [4]))
    }

    /// The routing lock's hold time for a 100 000-filter advert, printed (no timed assertion):
    /// before, the whole `setInterest` ran under it; now only `snapshot` and `swap` do.
    @Test func lockHoldForA100kFilterAdvert() {
        func filters(_ range: Range<Int>) -> [String: Int] {
            var d: [String: Int] = [:]
            for k in range { d["site/\(k % 100)/area/\((k / 100) % 100)/dev/\(k)/\(k % 10 == 9 ? "#" : "temp")"] = 1 }
            return d
        }
        let n = 100_000
        let first = filters(0..<n), next = filters(n / 100..<n + n / 100)
        let clock = ContinuousClock()
        for nodes in [1] {
            var router = Router()
            router.setInterest(peer: 0, node: "b", filters: first)
            for i in 1..<nodes { router.setInterest(peer: 0, node: "n\(i)", filters: ["other/\(i)/#": 1]) }
            var copy = router
            let whole = clock.measure { copy.setInterest(peer: 0, node: "b", filters: next) }
            var snapshot: PeerInterest?
            let take = clock.measure { snapshot = router.snapshot(ofPeer: 0) }
            let built = snapshot!.replacing(node: "b", filters: next)
            var swapped = false
            let put = clock.measure { swapped = router.swap(built) }
            withExtendedLifetime(snapshot) {}
            #expect(swapped)
            #expect(router.interest(ofPeer: 0) == copy.interest(ofPeer: 0))
            #expect(router.interest(ofPeer: 0).filterCount == n + nodes - 1)
            print("routing lock held for a \(n)-filter advert, \(nodes) node(s) at the peer: before (setInterest under the lock) \(whole); now snapshot \(take) + swap \(put)")
        }
    }
}

@Suite("ControlTopic and NodeID")
struct ControlTopicTests {
    @Test func builders() {
        #expect(ControlTopic.subscriptions(node: "a") == "$mesh/a/subscriptions")
        #expect(ControlTopic.status(node: "a") == "$mesh/a/status")
        #expect(ControlTopic.stats(node: "a") == "$mesh/a/stats")
    }

    @Test(arguments: ControlTopic.Kind.allCases)
    func roundTrip(_ kind: ControlTopic.Kind) {
        let topic = "\(ControlTopic.root)/node-1/\(kind.rawValue)"
        let parsed = ControlTopic.parse(topic)
        #expect(parsed?.node == "node-1")
        #expect(parsed?.kind == kind)
    }

    @Test(arguments: [
        "$mesh/a", "$mesh/a/subscriptions/x", "$mesh//subscriptions", "$mesh/a/other", "mesh/a/status",
        "$mesh/a b/status", "$mesh/+/status", "$mesh/#/status", "x/$mesh/a/status", "", "$MESH/a/status",
        "$mesh/a/Status",
    ])
    func parseRejects(_ topic: String) {
        #expect(ControlTopic.parse(topic) == nil)
    }

    @Test(arguments: [
        ("a", true), ("node-1.eu_west", true), ("ünï", true), ("😀", true), (String(repeating: "n", count: 64), true),
        ("", false), (String(repeating: "n", count: 65), false), (String(repeating: "é", count: 33), false),
        ("a/b", false), ("a+", false), ("#", false), ("a\u{0}", false), ("a b", false), ("a\tb", false),
        ("a\nb", false), ("a\u{7F}", false), ("a\u{A0}b", false), ("a\u{200B}", false), ("a\u{2028}", false),
    ])
    func nodeIDs(_ id: String, _ valid: Bool) {
        #expect(NodeID.isValid(id) == valid)
        if !valid {
            #expect(throws: NodeIDError.self) { try NodeID.validate(id) }
        }
    }
}
