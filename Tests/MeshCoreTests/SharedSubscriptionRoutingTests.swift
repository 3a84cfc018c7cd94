import Testing
@testable import MeshCore

/// Shared subscription groups across the mesh: each message once per group where that is
/// possible, extra copies counted where it is not. Checked case by case (the decision table
/// of docs/architecture.md) and against an independent model of Mosquitto's delivery over
/// random meshes.
@Suite("Router: shared subscriptions")
struct SharedSubscriptionRoutingTests {
    static let g = SharedGroup(name: "g", filter: "jobs/#")

    /// Peers 0, 1, 2 as nodes b, c, d; `members` have group g, `ordinary` an ordinary `jobs/#`.
    static func router(local: Bool, members: Set<Int>, ordinary: Set<Int> = [], balance: SharedBalance = .roundRobin) -> Router {
        var router = Router(sharedBalance: balance)
        for peer in 0..<3 {
            var filters: [String: Int] = [:]
            if members.contains(peer) { filters["$share/g/jobs/#"] = 1 }
            if ordinary.contains(peer) { filters["jobs/#"] = 1 }
            router.setInterest(peer: peer, node: ["b", "c", "d"][peer], filters: filters)
        }
        router.setLocalInterest(local ? ["$share/g/jobs/#": 2, "other": 1] : ["other": 1])
        return router
    }

    static func shared(_ peers: [Int], chosen: Int, extra: Int) -> RouteDecision {
        .forwardShared(peers: peers, shared: .init(chosen: chosen, extraCopies: extra))
    }

    /// The decision table (docs/architecture.md, "Shared subscriptions").
    @Test(arguments: [
        // The publishing broker has members: it delivered; nothing crosses for the group.
        (true, [0, 1], [], false, RouteDecision.notWanted),
        // No local member: exactly one peer with members (round robin's first turn: the lowest).
        (false, [1, 2], [], false, shared([1], chosen: 1, extra: 0)),
        (false, [2], [], false, shared([2], chosen: 1, extra: 0)),
        // An ordinary subscriber takes it to a broker with members anyway: that copy serves.
        (false, [0, 1], [1], false, .forward(peers: [1])),
        // ... to a broker without members: one member broker is still added.
        (false, [1], [0], false, shared([0, 1], chosen: 1, extra: 0)),
        // Forced copies: local members plus an ordinary subscriber at a member broker.
        (true, [0], [0], false, shared([0], chosen: 0, extra: 1)),
        // Ordinary subscribers at two member brokers: one copy each.
        (false, [0, 1, 2], [0, 1], false, shared([0, 1], chosen: 0, extra: 1)),
        (true, [0, 1, 2], [0, 1, 2], false, shared([0, 1, 2], chosen: 0, extra: 3)),
        // Nobody has members: the groups change nothing.
        (false, [], [1], false, .forward(peers: [1])),
        // Retained: every broker gets it (and stores it); each with members delivers once.
        (true, [0, 2], [], true, shared([0, 1, 2], chosen: 0, extra: 2)),
        (false, [1], [], true, .forward(peers: [0, 1, 2])),
        (true, [], [], true, .forward(peers: [0, 1, 2])),
    ])
    func decisionTable(_ local: Bool, _ members: [Int], _ ordinary: [Int], _ retained: Bool, _ expected: RouteDecision) {
        let router = Self.router(local: local, members: Set(members), ordinary: Set(ordinary))
        #expect(router.route(topic: "jobs/1", retained: retained) == expected)
        // A topic outside the group's filter: the groups play no part.
        #expect(router.route(topic: "other", retained: false) == .notWanted)
    }

    /// Mosquitto keys a group by name *and* filter: `$share/g/a/+` and `$share/g/a/#` each get
    /// one copy of `a/b`, so both need a member broker.
    @Test func sameNameOtherFilterIsAnotherGroup() {
        var router = Router()
        router.setInterest(peer: 0, node: "b", filters: ["$share/g/a/+": 1])
        router.setInterest(peer: 1, node: "c", filters: ["$share/g/a/#": 1])
        #expect(router.route(topic: "a/b", retained: false) == Self.shared([0, 1], chosen: 2, extra: 0))
        #expect(router.route(topic: "a/b/c", retained: false) == Self.shared([1], chosen: 1, extra: 0))
        // The same group at both: one of them.
        router.setInterest(peer: 1, node: "c", filters: ["$share/g/a/+": 1])
        #expect(router.route(topic: "a/b", retained: false) == Self.shared([0], chosen: 1, extra: 0))
    }

    /// Two groups whose member brokers overlap: one broker serving both is preferred to two
    /// brokers (which would give the shared one a second copy).
    @Test func oneBrokerServesSeveralGroupsWhenItCan() {
        var router = Router()
        router.setInterest(peer: 0, node: "b", filters: ["$share/g/t": 1])
        router.setInterest(peer: 1, node: "c", filters: ["$share/g/t": 1, "$share/h/t": 1])
        var cursors = SharedCursors()
        for _ in 0..<4 {
            #expect(router.route(topic: "t", retained: false, cursors: &cursors) == Self.shared([1], chosen: 1, extra: 0))
        }
    }

    @Test func roundRobinTakesTurnsPerGroup() {
        let router = Self.router(local: false, members: [0, 1, 2])
        var cursors = SharedCursors()
        var counts = [0, 0, 0]
        for i in 0..<300 {
            guard case .forwardShared(let peers, let shared) = router.route(topic: "jobs/\(i % 7)", retained: false, cursors: &cursors) else {
                Issue.record("message \(i) not forwarded for the group")
                return
            }
            #expect(peers.count == 1 && shared == .init(chosen: 1, extraCopies: 0))
            counts[peers[0]] += 1
        }
        #expect(counts == [100, 100, 100])
    }

    /// Topic hash: every agent picks the same broker for a topic (scored by node id, whatever
    /// index its peer has there), and topics spread over the member brokers.
    @Test func topicHashAgreesAcrossAgentsAndSpreads() {
        // Agent a sees b, c, d as peers 0, 1, 2; agent e sees them as peers 2, 0, 1.
        var a = Router(sharedBalance: .topicHash), e = Router(sharedBalance: .topicHash)
        for (i, node) in ["b", "c", "d"].enumerated() {
            a.setInterest(peer: i, node: node, filters: ["$share/g/jobs/#": 1])
            e.setInterest(peer: (i + 2) % 3, node: node, filters: ["$share/g/jobs/#": 1])
        }
        func chosenNode(_ router: Router, _ nodeOf: (Int) -> String, _ topic: String) -> String? {
            var cursors = SharedCursors()
            guard case .forwardShared(let peers, _) = router.route(topic: topic, retained: false, cursors: &cursors),
                  peers.count == 1 else { return nil }
            return nodeOf(peers[0])
        }
        var perNode: [String: Int] = [:]
        for i in 0..<300 {
            let topic = "jobs/\(i)"
            let byA = chosenNode(a, { ["b", "c", "d"][$0] }, topic)
            let byE = chosenNode(e, { ["c", "d", "b"][$0] }, topic)
            #expect(byA != nil && byA == byE, "\(topic)")
            // Repeatable: the same topic, the same broker.
            #expect(chosenNode(a, { ["b", "c", "d"][$0] }, topic) == byA)
            perNode[byA ?? "", default: 0] += 1
        }
        #expect(perNode.keys.sorted() == ["b", "c", "d"])
        for (node, n) in perNode { #expect(n >= 60, "\(node) got \(n) of 300 topics") }
    }

    @Test func localInterestKeepsOnlyGroups() {
        var router = Router()
        router.setLocalInterest(["a/#": 3, "$share/g/x/+": 2, "$share/h": 1, "$share": 1, "$share/k/bad/#/x": 1, "$share/z/y": 0])
        #expect(router.localSharedGroups.members == [SharedGroup(name: "g", filter: "x/+"): 2, SharedGroup(name: "h", filter: ""): 1])
        router.setLocalInterest([:])
        #expect(router.localSharedGroups.isEmpty)
    }

    @Test func groupsOfSeveralNodesAtOnePeerAndTheirRemoval() {
        var router = Router()
        router.setInterest(peer: 0, node: "x", filters: ["$share/g/t": 1, "a": 1])
        router.setInterest(peer: 0, node: "y", filters: ["$share/g/t": 2, "$share/h/t": 1])
        #expect(router.sharedGroups(ofPeer: 0).members == [SharedGroup(name: "g", filter: "t"): 3, SharedGroup(name: "h", filter: "t"): 1])
        router.removeNode(peer: 0, node: "y")
        #expect(router.sharedGroups(ofPeer: 0).members == [SharedGroup(name: "g", filter: "t"): 1])
        router.setInterest(peer: 0, node: "x", filters: ["a": 1])
        #expect(router.sharedGroups(ofPeer: 0).isEmpty)
        // No group anywhere any more: back on the plain path.
        #expect(router.route(topic: "t", retained: false) == .notWanted)
        router.setInterest(peer: 1, node: "z", filters: ["$share/g/t": 1])
        #expect(router.route(topic: "t", retained: false) == Self.shared([1], chosen: 1, extra: 0))
        router.removePeer(1)
        #expect(router.route(topic: "t", retained: false) == .notWanted)
    }

    // MARK: against a model

    /// MQTT filter matching, written independently of `SubscriptionTree` (no `$`-topics here).
    static func modelMatches(_ filter: String, _ topic: String) -> Bool {
        if filter.isEmpty { return false }
        let f = filter.split(separator: "/", omittingEmptySubsequences: false)
        let t = topic.split(separator: "/", omittingEmptySubsequences: false)
        for (i, level) in f.enumerated() {
            if level == "#" { return true }
            if i >= t.count { return false }
            if level != "+" && level != t[i] { return false }
        }
        return f.count == t.count
    }

    struct Mesh: CustomStringConvertible {
        var local: Set<SharedGroup> = []
        var ordinary: [[String]] = []
        var groups: [Set<SharedGroup>] = []
        var description: String { "local \(local.sorted()) ordinary \(ordinary) groups \(groups.map { $0.sorted() })" }
    }

    /// What the brokers do with the message if the agent sends it to `targets`: each broker that
    /// gets it (the publishing one and the targets) gives one copy to each of its matching groups.
    static func copies(_ mesh: Mesh, topic: String, targets: Set<Int>) -> [SharedGroup: Int] {
        var result: [SharedGroup: Int] = [:]
        for g in mesh.local where modelMatches(g.filter, topic) { result[g, default: 0] += 1 }
        for (peer, groups) in mesh.groups.enumerated() {
            for g in groups where modelMatches(g.filter, topic) {
                result[g, default: 0] += targets.contains(peer) ? 1 : 0
            }
        }
        return result
    }

    static func extra(_ copies: [SharedGroup: Int]) -> Int { copies.values.reduce(0) { $0 + max(0, $1 - 1) } }

    /// Random meshes of 1–4 peers with random ordinary filters and groups (names and filters
    /// drawn from small sets, so groups collide), every topic routed, checked against the
    /// model: ordinary subscribers keep every copy, every group gets at least one, the counted
    /// extra copies are what the brokers would deliver, added peers are member brokers, and
    /// wherever some choice of peers gives every group exactly one copy the router finds one.
    @Test func randomMeshesAgainstTheModel() {
        var rng = seededGenerator(0x5EED_0010) // LogLineParserTests.swift
        let ordinaryPool = ["a/b", "a/+", "a/#", "+/b", "#", "b/c", "a/b/c", "+/+"]
        let groupFilters = ["a/+", "a/#", "#", "+/b", "a/b", "b/c"]
        let topics = ["a/b", "a/c", "b/c", "a/b/c", "b/b", "x"]
        func randomGroups(_ max: Int) -> Set<SharedGroup> {
            Set((0..<Int.random(in: 0...max, using: &rng)).map { _ in
                SharedGroup(name: ["g", "h"].randomElement(using: &rng)!, filter: groupFilters.randomElement(using: &rng)!)
            })
        }
        var decisions = 0, sharedDecisions = 0, forcedExtra = 0
        for _ in 0..<1500 {
            var mesh = Mesh()
            let peerCount = Int.random(in: 1...4, using: &rng)
            mesh.local = Bool.random(using: &rng) ? randomGroups(2) : []
            for _ in 0..<peerCount {
                mesh.ordinary.append((0..<Int.random(in: 0...2, using: &rng)).map { _ in ordinaryPool.randomElement(using: &rng)! })
                mesh.groups.append(randomGroups(3))
            }
            let balance = SharedBalance.allCases.randomElement(using: &rng)!
            var router = Router(sharedBalance: balance)
            for peer in 0..<peerCount {
                var filters: [String: Int] = [:]
                for f in mesh.ordinary[peer] { filters[f, default: 0] += 1 }
                for g in mesh.groups[peer] { filters["$share/\(g.name)/\(g.filter)", default: 0] += 1 }
                router.setInterest(peer: peer, node: "n\(peer)", filters: filters)
            }
            router.setLocalInterest(Dictionary(uniqueKeysWithValues: mesh.local.map { ("$share/\($0.name)/\($0.filter)", 1) }))
            var cursors = SharedCursors()
            for topic in topics {
                for retained in [false, true] {
                    decisions += 1
                    let decision = router.route(topic: topic, retained: retained, cursors: &cursors)
                    var targets: [Int] = [], shared = SharedDelivery(chosen: 0, extraCopies: 0)
                    switch decision {
                    case .notWanted: break
                    case .forward(let peers): targets = peers
                    case .forwardShared(let peers, let s):
                        targets = peers
                        shared = s
                        sharedDecisions += 1
                        #expect(s.chosen > 0 || s.extraCopies > 0, "a shared decision that changed nothing: \(mesh)")
                    default: Issue.record("unexpected \(decision)")
                    }
                    #expect(targets == targets.sorted() && Set(targets).count == targets.count)
                    let wanted = Set((0..<peerCount).filter { p in mesh.ordinary[p].contains { Self.modelMatches($0, topic) } })
                    let required = retained ? Set(0..<peerCount) : wanted
                    let added = Set(targets).subtracting(required)
                    let context = "\(mesh) topic \(topic) retained \(retained) \(balance): \(decision)"
                    #expect(required.isSubset(of: Set(targets)), "an ordinary subscriber lost its copy: \(context)")
                    #expect(added.count == shared.chosen, "\(context)")
                    #expect(added.allSatisfy { p in mesh.groups[p].contains { Self.modelMatches($0.filter, topic) } },
                            "a peer added that has no member: \(context)")
                    let got = Self.copies(mesh, topic: topic, targets: Set(targets))
                    #expect(got.values.allSatisfy { $0 >= 1 }, "a group without its copy: \(context)")
                    #expect(Self.extra(got) == shared.extraCopies, "extra copies miscounted: \(context)")
                    // Exactly once wherever possible: the best any set of added member brokers can do.
                    let candidates = Array(Set((0..<peerCount).filter { p in
                        mesh.groups[p].contains { Self.modelMatches($0.filter, topic) }
                    }).subtracting(required))
                    var best = Int.max
                    for mask in 0..<(1 << candidates.count) {
                        var t = required
                        for (bit, p) in candidates.enumerated() where mask & (1 << bit) != 0 { t.insert(p) }
                        let c = Self.copies(mesh, topic: topic, targets: t)
                        if c.values.allSatisfy({ $0 >= 1 }) { best = min(best, Self.extra(c)) }
                        if retained { break } // nothing may be added to a retained message's targets
                    }
                    #expect(shared.extraCopies == best, "not the fewest copies possible (\(best)): \(context)")
                    if best > 0 { forcedExtra += 1 }
                }
            }
        }
        // The random meshes did exercise the shared path, including forced copies.
        #expect(sharedDecisions > decisions / 10)
        #expect(forcedExtra > 100)
    }
}
