import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Testing

/// What a peer's agent accepts as interest: every filter its broker serves, and only adverts
/// newer than the ones it already has.
@Suite("peer adverts", .serialized, .timeLimit(.minutes(2)))
struct PeerAdvertTests {
    @Test("a $share//x subscriber on B (empty group, which Mosquitto 2.0.11 accepts) gets a message published on A")
    func emptyShareGroupCrosses() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let sub = try await mesh.subscriber("b", id: "empty-group", to: "$share//x")
            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("x", "to the empty group", qos: 1)
            let got = try await sub.waitForMessages(1)
            #expect(got.map(\.text) == ["to the empty group"])
            #expect(got.first?.topic == "x")
            #expect(mesh.metric(agent: "b", "mesh_log_lines_unparsed_total") == 0)
            sub.close(); pub.close()
        }
    }

    /// What agent A last applied of node `node`, as it mirrors it on its own broker.
    static func mirrored(_ reader: ControlReader, viewer: String, node: String) -> InterestAdvert? {
        guard let m = reader.latest("$mesh/\(viewer)/peers/\(node)/subscriptions"), !m.payload.isEmpty else { return nil }
        return try? InterestAdvertCodec.decode(m.payload, expectedNode: node)
    }

    @Test("a client re-publishing B's retained advert with a lower, or an equal, seq does not shrink routing on A; deleting it still removes B")
    func staleAdvertIgnored() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let peerB = mesh.brokers[1].endpoint
            let sub = try await mesh.subscriber("b", id: "victim", to: "s/#")
            let onB = try await ControlReader(port: mesh.brokers[1].port)
            let onA = try await ControlReader(port: mesh.brokers[0].port)
            try await waitUntil(timeout: .seconds(10), "the retained advert of b") { (try? onB.advert(of: "b")) != nil }
            let real = try #require(try onB.advert(of: "b"))
            try #require(real.seq >= 1 && real.filters["s/#"] != nil)

            // No ACL on test brokers: any client may write $mesh/b/subscriptions on B.
            let evil = try await mesh.client("b", id: "evil")
            for stale in [InterestAdvert(node: "b", seq: real.seq - 1, filters: [:]),
                          InterestAdvert(node: "b", seq: real.seq, filters: ["elsewhere/#": 1])] {
                try evil.publish("$mesh/b/subscriptions", bytes: InterestAdvertCodec.encode(stale), qos: 1, retain: true)
            }
            // Barrier: A's link reads B's control topics in order, so once A mirrors this first
            // advert of a new node it has read the two before it.
            try evil.publish("$mesh/zz/subscriptions", bytes: InterestAdvertCodec.encode(InterestAdvert(node: "zz", seq: 1, filters: [:])),
                             qos: 1, retain: true)
            try await evil.waitForAcks()
            try await waitUntil(timeout: .seconds(10), "a to mirror node zz") { Self.mirrored(onA, viewer: "a", node: "zz") != nil }

            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("s/1", "after the stale adverts", qos: 1)
            #expect(try await sub.waitForMessages(1).map(\.text) == ["after the stale adverts"])
            #expect(Self.mirrored(onA, viewer: "a", node: "b") == real)
            #expect(mesh.metric(agent: "a", "mesh_adverts_stale_total", peer: peerB) == 2)
            #expect(mesh.agents[0].logTail().contains("stale advert ignored"))

            // Deleting the retained advert still withdraws the node.
            try evil.publish("$mesh/b/subscriptions", bytes: [], qos: 1, retain: true)
            try evil.publish("$mesh/zz/subscriptions", bytes: [], qos: 1, retain: true)
            try await evil.waitForAcks()
            try await waitUntil(timeout: .seconds(10), "a to withdraw node b") {
                mesh.metric(agent: "a", "mesh_peer_subscriptions", peer: peerB) == 0
            }
            for c in [sub, evil, pub] { c.close() }
            onA.close(); onB.close()
        }
    }

    @Test("a peer agent restarted without its state starts its seq over, and A still applies its new interest")
    func peerRestartedWithoutState() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let peerB = mesh.brokers[1].endpoint
            // Some adverts, so that B's seq is well above where a fresh agent starts.
            let churn = try await mesh.client("b", id: "churn")
            for i in 0..<4 {
                try await churn.subscribe("churn/\(i)", qos: 0)
                try await mesh.waitForFilter("churn/\(i)", on: "b")
            }
            churn.close()
            try await mesh.waitForInterest(of: "b") { $0.isEmpty }
            let onA = try await ControlReader(port: mesh.brokers[0].port)
            try await waitUntil(timeout: .seconds(10), "a's retained view") { onA.seq(seenBy: "a", of: "b") != nil }
            let applied = try #require(onA.seq(seenBy: "a", of: "b"))

            let agentB = mesh.agents[1]
            #expect(await agentB.stop() == 0)
            try FileManager.default.removeItem(atPath: agentB.stateDirectory + "/state.json")
            try agentB.start()
            try await agentB.waitUntilUp()
            let sub = try await mesh.client("b", id: "after-restart")
            try await sub.subscribe("w/#", qos: 1)
            let onB = try await ControlReader(port: mesh.brokers[1].port)
            try await waitUntil(timeout: .seconds(10), "b to advertise w/#") { (try? onB.advert(of: "b"))?.filters["w/#"] != nil }
            let restarted = try #require(try onB.advert(of: "b"))
            try #require(restarted.seq < applied, "the premise: B's seq started over (\(restarted.seq) vs \(applied))")

            try await waitUntil(timeout: .seconds(10), "a to apply b's advert \(restarted.seq)") {
                Self.mirrored(onA, viewer: "a", node: "b")?.filters["w/#"] != nil
            }
            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("w/1", "after b restarted", qos: 1)
            #expect(try await sub.waitForMessages(1).map(\.text) == ["after b restarted"])
            #expect(mesh.metric(agent: "a", "mesh_adverts_stale_total", peer: peerB) == 0)
            for c in [sub, pub] { c.close() }
            onA.close(); onB.close()
        }
    }
}
