import MeshCore
import Synchronization
import Testing
@testable import MeshAgent

/// The routing table's hand-over of replays: a replay is taken with the first route decision
/// that uses the interest it belongs to, or by the idle path, never twice, never lost.
@Suite("routing table replays")
struct RoutingTableTests {
    static func request(_ filter: String) -> ReplayRequest {
        ReplayRequest(peer: 0, filters: [ReplayFilter(matchFilter: filter, since: 1)])
    }

    @Test func aReplayComesWithTheFirstDecisionThatUsesItsInterest() {
        let table = RoutingTable(forwardPrefix: "forward/")
        let woken = Atomic<Int>(0)
        table.setReplayWaker { woken.add(1, ordering: .relaxed) }
        var replays: [ReplayRequest] = []
        _ = table.route(topic: "x", retained: false, replays: &replays)
        #expect(replays.isEmpty)
        _ = table.setInterest(peer: 0, node: "b", filters: ["x": 1], replay: Self.request("x"))
        #expect(woken.load(ordering: .relaxed) == 1, "the idle loop is woken")
        _ = table.route(topic: "x", retained: false, replays: &replays)
        #expect(replays == [Self.request("x")])
        var again: [ReplayRequest] = []
        _ = table.route(topic: "x", retained: false, replays: &again)
        #expect(again.isEmpty, "taken once")
        #expect(table.takeReplays().isEmpty)
    }

    @Test func theIdlePathTakesWhatNoDecisionCarried() {
        let table = RoutingTable(forwardPrefix: "forward/")
        _ = table.setInterest(peer: 0, node: "b", filters: ["x": 1], replay: Self.request("x"))
        _ = table.setInterest(peer: 0, node: "b", filters: ["x": 1, "y": 1], replay: Self.request("y"))
        _ = table.setInterest(peer: 0, node: "b", filters: ["x": 1, "y": 1])
        #expect(table.takeReplays() == [Self.request("x"), Self.request("y")], "in order")
        #expect(table.takeReplays().isEmpty)
        var replays: [ReplayRequest] = []
        _ = table.route(topic: "y", retained: false, replays: &replays)
        #expect(replays.isEmpty)
    }

    @Test func interestCountsAreReturned() {
        let table = RoutingTable(forwardPrefix: "forward/")
        #expect(table.setInterest(peer: 0, node: "b", filters: ["x": 1, "y/#": 2]) == 2)
        #expect(table.setInterest(peer: 0, node: "c", filters: ["z": 1]) == 3, "the union of the nodes at a peer")
        #expect(table.removeNode(peer: 0, node: "b") == 1)
    }
}

/// Which direct-delivery marks count as a peer's (`RoutingTable.isPeerOrigin`): a node's
/// current token and the one before it (deliveries of its previous run may still arrive),
/// never an older one, never one nobody advertised.
@Suite("routing table origin tokens")
struct OriginTokenTests {
    @Test func currentAndPreviousTokenOfEachNode() {
        let table = RoutingTable(forwardPrefix: "forward/")
        #expect(!table.isPeerOrigin("t1"))
        table.setOrigin(node: "b", token: "t1")
        table.setOrigin(node: "c", token: "u1")
        #expect(table.isPeerOrigin("t1") && table.isPeerOrigin("u1") && !table.isPeerOrigin("x"))
        table.setOrigin(node: "b", token: "t1")  // the same advert again: nothing changes
        table.setOrigin(node: "b", token: "t2")  // b restarted
        #expect(table.isPeerOrigin("t2") && table.isPeerOrigin("t1"))
        table.setOrigin(node: "b", token: "t3")
        #expect(table.isPeerOrigin("t3") && table.isPeerOrigin("t2") && !table.isPeerOrigin("t1"))
        table.setOrigin(node: "b", token: nil)   // b left (or its agent no longer advertises one)
        #expect(!table.isPeerOrigin("t2") && table.isPeerOrigin("t3"), "the last token stays for deliveries on their way")
        #expect(table.isPeerOrigin("u1"))
    }
}
