import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Testing

/// `--delivery direct`: forwards published on the peer broker under their own topic, marked
/// with the sending agent's origin token, never forwarded again by the receiving agent.
@Suite("direct delivery", .serialized, .timeLimit(.minutes(3)))
struct DirectDeliveryTests {
    static let direct = ["--delivery", "direct"]

    @Test("three direct nodes: every subscriber gets each message once, by the direct path, QoS 0/1/2, marked for MQTT 5 subscribers")
    func onceByTheDirectPath() async throws {
        try await withMesh(["a", "b", "c"], agentArguments: Self.direct) { mesh in
            var subs: [HarnessClient] = []
            for node in ["a", "b", "c"] {
                subs.append(try await mesh.subscriber(node, id: "sub-\(node)", to: "d/#", qos: 2))
            }
            let pub = try await mesh.client("a", id: "pub")
            let n = 60
            for i in 0..<n { try pub.publish("d/\(i % 7)", "m\(i)", qos: Int32(i % 3)) }
            for s in subs { _ = try await s.waitForMessages(n, timeout: .seconds(20)) { $0.text.hasPrefix("m") } }
            // A copy too many would arrive before this marker (same publisher, same paths, all
            // of the first copies in).
            try pub.publish("d/end", "end", qos: 2)
            for (s, node) in zip(subs, ["a", "b", "c"]) {
                _ = try await s.waitForMessages(1, timeout: .seconds(20)) { $0.text == "end" }
                let got = s.messages.filter { $0.text.hasPrefix("m") }
                #expect(got.count == n && Set(got.map(\.text)) == Set((0..<n).map { "m\($0)" }), "subscriber on \(node): \(got.count) of \(n)")
                if node != "a" {
                    // What MQTT 5 subscribers see on a receiving broker: the mark (documented).
                    #expect(got.allSatisfy { $0.userProperties.contains { $0.first == "mesh:o" } }, "subscriber on \(node)")
                }
            }
            // Delivered by A's agent on B's and C's brokers, not republished by their agents.
            for node in ["b", "c"] {
                #expect((mesh.metric(agent: "a", "mesh_forwarded_direct_total", peer: mesh.brokers[mesh.index(of: node)].endpoint) ?? 0) >= Double(n))
                #expect((mesh.metric(agent: node, "mesh_direct_deliveries_received_total") ?? 0) >= Double(n))
                #expect(mesh.metric(agent: node, "mesh_republished_messages_total") == 0)
                #expect(mesh.metric(agent: node, "mesh_origin_marks_unverified_total") == 0)
                #expect((mesh.metric(agent: "a", "mesh_forwarded_direct_total", peer: mesh.brokers[mesh.index(of: node)].endpoint) ?? 0) >= 1,
                        "the restarted agent delivers to \(node) directly again")
            }
            subs.forEach { $0.close() }; pub.close()
        }
    }

    @Test("a retained message delivered directly is stored by the peer broker: a later subscriber there gets it")
    func retainedIsStored() async throws {
        try await withMesh(["a", "b"], agentArguments: Self.direct) { mesh in
            let early = try await mesh.subscriber("b", id: "early", to: "r/#", qos: 1)
            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("r/1", "kept", qos: 1, retain: true)
            _ = try await early.waitForMessages(1)
            let late = try await mesh.client("b", id: "late")
            try await late.subscribe("r/1", qos: 1)
            let got = try await late.waitForMessages(1)
            #expect(got.first?.text == "kept" && got.first?.retain == true)
            early.close(); late.close(); pub.close()
        }
    }

    @Test("a client's own mesh:o mark does not stop its message: forwarded prefixed (never directly), counted, the mark dropped")
    func forgedMarkIsForwarded() async throws {
        try await withMesh(["a", "b"], agentArguments: Self.direct) { mesh in
            let sub = try await mesh.subscriber("b", id: "sub", to: "f/#", qos: 1)
            let pub = try await mesh.client("a", id: "forger")
            let props = PropertyList()
            var random = SystemRandomNumberGenerator()
            try props.addUserProperty("mesh:o", OriginToken.make(using: &random))
            try props.addUserProperty("k", "v")
            try pub.publish("f/x", "forged", qos: 1, properties: props)
            let got = try await sub.waitForMessages(1)
            #expect(got.first?.text == "forged")
            // Forwarded prefixed, never directly: a message with a mark that is not a peer's
            // is never delivered directly again (two agents that do not know each other's
            // tokens yet would pass it back and forth). B's agent republished it without
            // any mesh: property; the client's own property is kept.
            #expect(got.first?.userProperties == [["k", "v"]])
            #expect(mesh.metric(agent: "a", "mesh_origin_marks_unverified_total") == 1)
            #expect(mesh.metric(agent: "b", "mesh_republished_messages_total") == 1)
            #expect(mesh.metric(agent: "a", "mesh_forwarded_direct_total", peer: mesh.brokers[1].endpoint) == 0)
            sub.close(); pub.close()
        }
    }

    /// A restarted agent has a new token. Were its first direct deliveries to reach a peer
    /// before that peer read its new advert, the peer would take them for a client's and
    /// forward them again: a second copy at every other subscriber.
    @Test("an agent restarted under a stream delivers directly only once its peers know its new token: no unverified mark, no duplicate")
    func restartKeepsMarksKnown() async throws {
        try await withMesh(["a", "b", "c"], agentArguments: Self.direct) { mesh in
            let subs = [try await mesh.subscriber("b", id: "sub-b", to: "s/#"), try await mesh.subscriber("c", id: "sub-c", to: "s/#")]
            let pub = try await mesh.client("a", id: "pub")
            let total = 1500
            let stream = Task {
                for i in 0..<total {
                    try pub.publish("s/x", "\(i)", qos: 1)
                    if i % 2 == 0 { try await Task.sleep(for: .milliseconds(2)) }
                }
            }
            try await subs[1].waitForMessages(200, timeout: .seconds(20))
            let agent = mesh.agents[mesh.index(of: "a")]
            #expect(await agent.stop() == 0)
            try agent.start()
            try await agent.waitUntilUp()
            try await stream.value
            try await pub.waitForAcks()
            // Direct delivery resumes once both peers show the new token in their views.
            let reader = try await ControlReader(port: mesh.brokers[0].port)
            try await waitUntil(timeout: .seconds(15), "a's view to show direct delivery to both peers") {
                reader.view(of: "a").map { $0.peers.count == 2 && $0.peers.allSatisfy { $0.direct == true } } ?? false
            }
            reader.close()
            try pub.publish("s/x", "marker", qos: 1)
            for (s, node) in zip(subs, ["b", "c"]) {
                _ = try await s.waitForMessages(1, timeout: .seconds(30)) { $0.text == "marker" }
                let received = s.messages.compactMap { Int($0.text) }
                #expect(Set(received) == Set(0..<total), "lost at \(node): \(Set(0..<total).subtracting(received).sorted().prefix(10))")
                #expect(received.count == Set(received).count, "\(received.count - Set(received).count) duplicates at \(node)")
                #expect(mesh.metric(agent: node, "mesh_origin_marks_unverified_total") == 0)
                #expect((mesh.metric(agent: "a", "mesh_forwarded_direct_total", peer: mesh.brokers[mesh.index(of: node)].endpoint) ?? 0) >= 1,
                        "the restarted agent delivers to \(node) directly again")
            }
            subs.forEach { $0.close() }; pub.close()
        }
    }

    @Test("mixed fleet: a direct node and a prefixed one deliver both ways; the view says which")
    func mixedModes() async throws {
        try await withMesh(["a", "b"], nodeArguments: ["a": Self.direct, "b": ["--delivery", "prefixed"]]) { mesh in
            let subA = try await mesh.subscriber("a", id: "sub-a", to: "x/#"), subB = try await mesh.subscriber("b", id: "sub-b", to: "x/#")
            let pubA = try await mesh.client("a", id: "pub-a"), pubB = try await mesh.client("b", id: "pub-b")
            try pubA.publish("x/from-a", "1", qos: 1)
            try pubB.publish("x/from-b", "2", qos: 1)
            for s in [subA, subB] {
                let got = try await s.waitForMessages(2)
                #expect(Set(got.map(\.topic)) == ["x/from-a", "x/from-b"])
            }
            #expect(mesh.metric(agent: "b", "mesh_direct_deliveries_received_total") == 1)
            #expect(mesh.metric(agent: "a", "mesh_republished_messages_total") == 1)
            let reader = try await ControlReader(port: mesh.brokers[0].port)
            try await waitUntil(timeout: .seconds(10), "a's view to show direct delivery") {
                reader.view(of: "a")?.delivery == "direct" && reader.view(of: "a")?.peers.first?.direct == true
            }
            reader.close()
            for c in [subA, subB, pubA, pubB] { c.close() }
        }
    }
}
