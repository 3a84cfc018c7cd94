import Foundation
import MeshHarness
import Mosquitto
import Synchronization
import Testing

/// A peer that goes silent without a reset (its broker frozen with SIGSTOP: the kernel keeps
/// the connection open and even takes data, nothing answers) — the loopback stand-in for a
/// partition that drops packets (the network-namespace variants are in `PartitionTests`).
@Suite("peer liveness", .serialized, .timeLimit(.minutes(3)))
struct PeerLivenessTests {
    /// Monotonic seconds.
    static func now() -> Double { monotonicSeconds() }

    static func linkUp(_ mesh: MeshCluster, agent: String, peer: String) -> Double? {
        mesh.metric(agent: agent, "mesh_peer_link_up", peer: mesh.brokers[mesh.index(of: peer)].endpoint)
    }

    @Test("a silent peer is declared down within --peer-timeout, back within 2 s of the heal; a QoS 1 stream loses nothing and duplicates nothing")
    func silentPeer() async throws {
        try await withMesh(["a", "b", "c"]) { mesh in
            let subB = try await mesh.subscriber("b", id: "live-sub-b", to: "live/#")
            let subC = try await mesh.subscriber("c", id: "live-sub-c", to: "live/#")
            let pub = try await mesh.client("a", id: "live-pub")
            defer { subB.close(); subC.close(); pub.close() }

            // A steady QoS 1 stream from A (~400 msg/s) for the whole test.
            let sent = Atomic<Int>(0)
            let stop = Atomic<Bool>(false)
            let stream = Task.detached {
                while !stop.load(ordering: .relaxed) {
                    let i = sent.load(ordering: .relaxed)
                    try? pub.publish("live/\(i % 7)", "m-\(i)", qos: 1)
                    sent.store(i + 1, ordering: .relaxed)
                    try? await Task.sleep(for: .microseconds(2500))
                }
            }
            try await waitUntil(timeout: .seconds(10), "the stream to reach both subscribers") {
                subB.messages.count > 200 && subC.messages.count > 200
            }

            let brokerB = try #require(mesh.brokers[mesh.index(of: "b")].pid)
            kill(brokerB, SIGSTOP)
            var thawed = false
            defer { if !thawed { kill(brokerB, SIGCONT) } }
            let cut = Self.now()
            let cAtCut = subC.messages.count, sentAtCut = sent.load(ordering: .relaxed)
            try await waitUntil(timeout: .seconds(15), "agent a to declare its link to b down") {
                Self.linkUp(mesh, agent: "a", peer: "b") == 0
            }
            let detected = Self.now() - cut
            // The operator sees it: inspect on A's broker lists A's link to B as down, since when.
            // (The view is republished within a second of a change: poll, bounded.)
            let downLine = "a → \(mesh.brokers[mesh.index(of: "b")].endpoint): down for"
            var picture = ""
            for _ in 0..<20 where !picture.contains(downLine) {
                picture = try await OperationsTests.cli(["inspect", "--broker", mesh.brokers[mesh.index(of: "a")].endpoint]).1
            }
            // Isolation: C keeps receiving at the stream's rate while B is silent.
            try await waitUntil(timeout: .seconds(5), "a second more of stream") { sent.load(ordering: .relaxed) > sentAtCut + 400 }
            let cRate = Double(subC.messages.count - cAtCut) / Double(sent.load(ordering: .relaxed) - sentAtCut)
            kill(brokerB, SIGCONT)
            thawed = true
            let heal = Self.now()
            try await waitUntil(timeout: .seconds(15), "agent a's link to b back") { Self.linkUp(mesh, agent: "a", peer: "b") == 1 }
            let back = Self.now() - heal
            stop.store(true, ordering: .relaxed)
            _ = await stream.value
            try await pub.waitForAcks()
            let total = sent.load(ordering: .relaxed)
            for sub in [subB, subC] {
                try await waitUntil(timeout: .seconds(30), "every message at \(sub.client.configuration.clientID) (\(Set(sub.messages.map(\.text)).count) of \(total))") {
                    Set(sub.messages.map(\.text)).count >= total
                }
            }
            let duplicatesB = subB.messages.count - Set(subB.messages.map(\.text)).count
            let duplicatesC = subC.messages.count - Set(subC.messages.map(\.text)).count
            let dropped = mesh.metric(agent: "b", "mesh_duplicates_dropped_total") ?? -1
            print("silent peer: detected in \(detected) s, link back \(back) s after the heal, C received \(cRate) of the stream during the cut, \(total) sent, duplicates at B \(duplicatesB) (agent b dropped \(dropped) resent copies), at C \(duplicatesC)")
            #expect(picture.contains(downLine), "inspect does not show the link down:\n\(picture)")
            #expect(detected <= 3.2, "detection took \(detected) s (the link must be down within --peer-timeout; 0.2 s for reading metrics)")
            #expect(back <= 2.5, "reconnect took \(back) s after the heal")
            #expect(cRate >= 0.9, "the healthy peer got \(cRate) of the stream during the cut")
            #expect(duplicatesB == 0)
            #expect(duplicatesC == 0)
            #expect((mesh.metric(agent: "a", "mesh_peer_silent_total", peer: mesh.brokers[1].endpoint) ?? 0) >= 1)
        }
    }

    @Test("what a dead peer holds is bounded by --max-pending and a full, dead peer does not slow the others")
    func boundedHolding() async throws {
        try await withMesh(["a", "b", "c"], agentArguments: ["--max-pending", "300"]) { mesh in
            let subB = try await mesh.subscriber("b", id: "hold-sub-b", to: "hold/#")
            let subC = try await mesh.subscriber("c", id: "hold-sub-c", to: "hold/#")
            let pub = try await mesh.client("a", id: "hold-pub")
            defer { subB.close(); subC.close(); pub.close() }

            let brokerB = try #require(mesh.brokers[mesh.index(of: "b")].pid)
            kill(brokerB, SIGSTOP)
            var thawed = false
            defer { if !thawed { kill(brokerB, SIGCONT) } }
            try await waitUntil(timeout: .seconds(15), "agent a to declare its link to b down") {
                Self.linkUp(mesh, agent: "a", peer: "b") == 0
            }
            let n = 3000
            let start = Self.now()
            for i in 0..<n { try pub.publish("hold/x", "h-\(i)", qos: 1) }
            try await subC.waitForMessages(n, timeout: .seconds(30))
            let elapsed = Self.now() - start
            let peerB = mesh.brokers[1].endpoint
            let held = mesh.metric(agent: "a", "mesh_peer_pending_messages", peer: peerB) ?? -1
            let dropped = mesh.metric(agent: "a", "mesh_forward_dropped_total", peer: peerB) ?? -1
            print("bounded holding: \(n) messages to C in \(elapsed) s with B dead; held for B \(held), dropped for B \(dropped)")
            #expect(elapsed < 10, "a dead, full peer slowed the healthy one: \(elapsed) s for \(n) messages")
            #expect(held <= 300)
            #expect(dropped >= Double(n - 300))
            kill(brokerB, SIGCONT)
            thawed = true
            try await waitUntil(timeout: .seconds(15), "agent a's link to b back") { Self.linkUp(mesh, agent: "a", peer: "b") == 1 }
            // What was held arrives, once; what was dropped was counted.
            try await waitUntil(timeout: .seconds(15), "the held messages at B") {
                Set(subB.messages.map(\.text)).count >= n - Int(dropped)
            }
            #expect(subB.messages.count == Set(subB.messages.map(\.text)).count, "duplicates at B")
            #expect(Set(subB.messages.map(\.text)).count == n - Int(dropped))
        }
    }
}
