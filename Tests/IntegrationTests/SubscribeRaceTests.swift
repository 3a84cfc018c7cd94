import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Synchronization
import Testing

/// The subscribe → publish race (issue 10, part 1): a client subscribes on B, and the moment
/// its SUBACK is read a client on another broker publishes a matching message. One broker
/// always delivers it; the mesh must too, although B's advert of the new filter reaches the
/// publishing agent after the message (the agent replays it, `ReplayBuffer`).
///
/// Each round subscribes a fresh random filter (exact, `+` or `#`) on B and, from inside the
/// SUBACK callback, publishes two messages on its topic from every other broker (QoS 0 or 1
/// at random). The truth needs no model: every message is wanted exactly once, and each
/// publisher's two messages of a round in order. `MESH_RACE_SEED` replays a run.
@Suite("subscribe race", .serialized, .timeLimit(.minutes(4)))
struct SubscribeRaceTests {
    @Test("two nodes: every message published after a SUBACK arrives once, in order")
    func twoNodes() async throws {
        let outcome = try await Self.race(nodes: ["a", "b"], rounds: 1000)
        #expect(outcome.lost == 0, "\(outcome)")
        #expect(outcome.duplicates == 0, "\(outcome)")
        #expect(outcome.outOfOrder == 0, "\(outcome)")
        #expect(outcome.replayed > 0, "the race never happened: the test proves nothing (\(outcome))")
    }

    @Test("three nodes: publishers on A and C, subscriber on B")
    func threeNodes() async throws {
        let outcome = try await Self.race(nodes: ["a", "b", "c"], rounds: 1000)
        #expect(outcome.lost == 0, "\(outcome)")
        #expect(outcome.duplicates == 0, "\(outcome)")
        #expect(outcome.outOfOrder == 0, "\(outcome)")
    }

    @Test("replay off (--replay-window 0): the race loses messages")
    func replayOff() async throws {
        let outcome = try await Self.race(nodes: ["a", "b"], rounds: 200, agentArguments: ["--replay-window", "0"])
        #expect(outcome.lost > outcome.expected / 4, "the loss replay cures did not show: \(outcome)")
        #expect(outcome.replayed == 0, "\(outcome)")
    }

    struct Outcome: CustomStringConvertible {
        var seed: UInt64
        var expected = 0
        var lost = 0
        var duplicates = 0
        var outOfOrder = 0
        var replayed = 0
        var description: String {
            "seed \(seed): expected \(expected), lost \(lost), duplicates \(duplicates), out of order \(outOfOrder), replayed \(replayed)"
        }
    }

    /// Runs the rounds; the subscriber is on "b", every other node publishes.
    static func race(nodes: [String], rounds: Int, agentArguments: [String] = []) async throws -> Outcome {
        let seed = ProcessInfo.processInfo.environment["MESH_RACE_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64(UInt32.max))
        print("subscribe race \(nodes): seed \(seed) (replay with MESH_RACE_SEED=\(seed))")
        var rng = SplitMix64(seed: seed)
        let plan: [(topic: String, filter: String, qos: Int32)] = (0..<rounds).map { r in
            let w1 = "w\(Int.random(in: 0..<5, using: &rng))", w2 = "v\(Int.random(in: 0..<5, using: &rng))"
            let topic = "race/\(seed)/\(r)/\(w1)/\(w2)"
            let filter = [topic, "race/\(seed)/\(r)/+/\(w2)", "race/\(seed)/\(r)/#", "race/\(seed)/\(r)/\(w1)/+"].randomElement(using: &rng)!
            return (topic, filter, Int32.random(in: 0...1, using: &rng))
        }
        var outcome = Outcome(seed: seed)
        try await withMesh(nodes, agentArguments: agentArguments) { mesh in
            let publishers = try await nodes.filter { $0 != "b" }.asyncMap { node in
                (node, try await mesh.client(node, id: "race-pub-\(node)"))
            }
            defer { for (_, p) in publishers { p.close() } }
            let current = Atomic<Int>(-1)
            let published = Atomic<Int>(0)
            let subscriber = try HarnessClient(clientID: "race-sub", port: mesh.brokers[mesh.index(of: "b")].port,
                                               onSubscribed: { _ in
                let r = current.load(ordering: .acquiring)
                guard r >= 0 else { return }
                let round = plan[r]
                for (node, p) in publishers {
                    for k in 0..<2 { try? p.publish(round.topic, "\(r)/\(node)/\(k)", qos: round.qos) }
                }
                published.add(1, ordering: .releasing)
            })
            defer { subscriber.close() }
            try await subscriber.connect()
            for (r, round) in plan.enumerated() {
                current.store(r, ordering: .releasing)
                _ = try subscriber.client.subscribe(round.filter, qos: 1)
                try await waitUntil(timeout: .seconds(10), "round \(r) published") { published.load(ordering: .acquiring) == r + 1 }
            }
            outcome.expected = rounds * publishers.count * 2
            // Everything sent is in flight for at most a replay window plus an advert: wait for
            // all of it, or (replay off) for the stream to go quiet.
            let clock = ContinuousClock()
            var last = -1, quietSince = clock.now
            try await poll(timeout: .seconds(30), every: .milliseconds(20), { subscriber.messages.count }) { n in
                if n != last { last = n; quietSince = clock.now }
                return n >= outcome.expected || clock.now - quietSince > .seconds(5)
            }
            var seen: [String: Int] = [:]
            var lastK: [String: Int] = [:]
            for m in subscriber.messages {
                seen[m.text, default: 0] += 1
                let parts = m.text.split(separator: "/")
                guard parts.count == 3, let k = Int(parts[2]) else { continue }
                let key = "\(parts[0])/\(parts[1])"
                if let previous = lastK[key], previous >= k { outcome.outOfOrder += 1 }
                lastK[key] = k
            }
            for r in 0..<rounds {
                for (node, _) in publishers {
                    for k in 0..<2 {
                        let n = seen["\(r)/\(node)/\(k)", default: 0]
                        if n == 0 { outcome.lost += 1 } else if n > 1 { outcome.duplicates += n - 1 }
                    }
                }
            }
            for node in nodes where node != "b" {
                outcome.replayed += Int(mesh.agents[mesh.index(of: node)].metricTotal("mesh_replayed_messages_total") ?? 0)
            }
        }
        print("subscribe race \(nodes): \(outcome)")
        return outcome
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
