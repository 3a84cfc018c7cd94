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
