import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Testing

/// One client id, one connection, across the mesh: a client id that connects on B while it
/// is connected (or holds a session) on A ends A's connection the way Mosquitto's own
/// takeover would, and the newer connection is never the one ended.
@Suite("client takeover across the mesh", .serialized, .timeLimit(.minutes(3)))
struct ClientTakeoverTests {
    enum Variant: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// Clean start on both brokers.
        case clean
        /// A persistent session (clean start 0, expiry 1 h) on both brokers, as a real
        /// persistent client reconnects.
        case persistent
        var testDescription: String { rawValue }
    }

    @Test("same client id on A then B: A's connection is closed within 2 s, the client on B keeps working, nothing is forwarded to A for it",
          arguments: Variant.allCases)
    func secondConnectionWins(variant: Variant) async throws {
        try await withMesh(["a", "b"]) { mesh in
            let persistent = variant == .persistent
            let expiry: UInt32 = persistent ? 3600 : 0
            // The spy on A sees forwards too.
            let spy = try await mesh.spy(on: "a")
            let markerSub = try await mesh.client("a", id: "marker-sub")
            try await markerSub.subscribe("marker/#", qos: 1)

            let old = try await mesh.client("a", id: "roamer", cleanStart: !persistent, sessionExpiry: expiry)
            // A second process with the same id or a stale connection does not come back by itself.
            old.client.stopReconnecting()
            try await old.subscribe("roam/#", qos: 1)
            try await mesh.waitForInterest(of: "a") { $0["roam/#"] == 1 && $0["marker/#"] == 1 }

            let new = try await mesh.client("b", id: "roamer", cleanStart: !persistent, sessionExpiry: expiry)
            new.client.stopReconnecting()
            let clock = ContinuousClock()
            let connectedOnB = clock.now
            try await waitUntil(timeout: .seconds(2), "the connection on A to be closed") { !old.client.isConnected }
            print("takeover (\(variant)): A's connection closed \(clock.now - connectedOnB) after the connect on B")
            #expect(new.client.isConnected)

            // The client on B works: it subscribes and gets what is published on A and on B.
            try await new.subscribe("roam/#", qos: 1)
            // A's session is gone with its filters, and B has read that.
            try await mesh.waitForInterest(of: "a") { $0["roam/#"] == nil && $0["marker/#"] == 1 }
            try await mesh.waitForFilter("roam/#", on: "b")
            spy.clearMessages()
            let pubA = try await mesh.client("a", id: "pub-a")
            let pubB = try await mesh.client("b", id: "pub-b")
            try pubA.publish("roam/from-a", "a", qos: 1)
            try pubB.publish("roam/from-b", "b", qos: 1)
            try await pubA.waitForAcks()
            try await pubB.waitForAcks()
            let got = try await new.waitForMessages(2)
            #expect(Set(got.map(\.text)) == ["a", "b"])
            // What it publishes reaches A; published after roam/from-b on B, it crosses behind
            // anything B's agent would have forwarded to A for the roamer.
            try new.publish("marker/from-roamer", "m", qos: 1)
            try await markerSub.waitForMessages(1)
            try await spy.waitForMessages(1) { $0.topic == "forward/marker/from-roamer" }
            let forwardedForIt = spy.messages.filter { $0.topic.hasPrefix("forward/roam/") }
            #expect(forwardedForIt.isEmpty, "forwarded to A after the takeover: \(forwardedForIt.map(\.topic))")

            try await mesh.waitForMetric(agent: "a", "mesh_client_takeovers_total", 1)
            #expect((mesh.metric(agent: "b", "mesh_client_takeovers_total") ?? 0) == 0)
            #expect(new.client.isConnected && !old.client.isConnected)
            for c in [spy, markerSub, old, new, pubA, pubB] { c.close() }
        }
    }

    @Test("the newer connection is never the one ended: X on A, X on B, X again on A — B's is ended, A's newest stays")
    func newerConnectionSurvives() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let first = try await mesh.client("a", id: "flip")
            first.client.stopReconnecting()
            let second = try await mesh.client("b", id: "flip")
            second.client.stopReconnecting()
            try await waitUntil(timeout: .seconds(2), "the first connection (A) to be closed") { !first.client.isConnected }
            let third = try await mesh.client("a", id: "flip")
            third.client.stopReconnecting()
            try await waitUntil(timeout: .seconds(2), "the second connection (B) to be closed") { !second.client.isConnected }
            // Barrier: a later connect on B has been announced to A and read there, so A has
            // judged everything B announced before it.
            let received = mesh.metric(agent: "a", "mesh_client_connects_received_total") ?? 0
            let marker = try await mesh.client("b", id: "flip-marker")
            try await waitUntil(timeout: .seconds(5), "A to read B's announcement of the marker") {
                (mesh.metric(agent: "a", "mesh_client_connects_received_total") ?? 0) > received
            }
            #expect(third.client.isConnected, "the newest connection was ended")
            try await mesh.waitForMetric(agent: "a", "mesh_client_takeovers_total", 1)
            try await mesh.waitForMetric(agent: "b", "mesh_client_takeovers_total", 1)
            for c in [first, second, third, marker] { c.close() }
        }
    }

    @Test("an announced connect older than the local one ends nothing; a newer one ends it")
    func judgedByConnectTime() async throws {
        try await withMesh(["a", "b"]) { mesh in
            // A's own announcements, as its peers read them.
            let listener = try HarnessClient(clientID: "mosquitto-mesh/test-listener", port: mesh.brokers[0].port)
            try await listener.connect()
            try await listener.subscribe(ControlTopic.connected(node: "a"), qos: 1)
            let local = try await mesh.client("a", id: "timed")
            local.client.stopReconnecting()
            let announced = try await listener.waitForMessages(1) { m in
                (try? ConnectAnnouncementCodec.decode(m.payload, expectedNode: "a"))?.connects.contains { $0.clientID == "timed" } == true
            }
            let announcement = try ConnectAnnouncementCodec.decode(announced[0].payload, expectedNode: "a")
            let localTime = try #require(announcement.connects.first { $0.clientID == "timed" }).time
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            #expect(abs(now - localTime) < 5000, "announced time \(localTime) is not near now \(now)")

            // Announcements as B's agent would publish them (test brokers have no ACL).
            let injector = try HarnessClient(clientID: "mosquitto-mesh/test-injector", port: mesh.brokers[1].port)
            try await injector.connect()
            func announce(_ time: Int64) async throws {
                let received = mesh.metric(agent: "a", "mesh_client_connects_received_total") ?? 0
                let payload = ConnectAnnouncementCodec.encode(ConnectAnnouncement(
                    node: "b", connects: [ClientConnect(clientID: "timed", time: time, cleanStart: true, protocolLevel: 5)]))
                try injector.publish(ControlTopic.connected(node: "b"), bytes: payload, qos: 1)
                try await waitUntil(timeout: .seconds(5), "A to read the announcement") {
                    (mesh.metric(agent: "a", "mesh_client_connects_received_total") ?? 0) > received
                }
            }
            try await announce(localTime - 10_000)
            #expect(local.client.isConnected, "a connection newer than the announced one was ended")
            #expect((mesh.metric(agent: "a", "mesh_client_takeovers_total") ?? 0) == 0)
            try await announce(localTime + 10_000)
            try await waitUntil(timeout: .seconds(2), "the older local connection to be closed") { !local.client.isConnected }
            try await mesh.waitForMetric(agent: "a", "mesh_client_takeovers_total", 1)
            for c in [listener, local, injector] { c.close() }
        }
    }

    @Test("a persistent session left offline on A is ended when its client id connects on B", arguments: [true, false])
    func offlineSessionEnded(cleanOnB: Bool) async throws {
        try await withMesh(["a", "b"]) { mesh in
            let old = try await mesh.subscriber("a", id: "left", to: "left/#", cleanStart: false, sessionExpiry: 3600)
            try await old.disconnect(waitingUpTo: .seconds(5))
            old.close()
            // The session stays on A (offline) and keeps its filters.
            try await mesh.waitForFilter("left/#", on: "a")
            let new = try await mesh.client("b", id: "left", cleanStart: cleanOnB, sessionExpiry: cleanOnB ? 0 : 3600)
            try await mesh.waitForFilter("left/#", on: "a", present: false)
            try await mesh.waitForMetric(agent: "a", "mesh_client_sessions_ended_total", 1)
            #expect((mesh.metric(agent: "a", "mesh_client_takeovers_total") ?? 0) == 0)
            // The broker agrees: resuming the id on A finds no session.
            new.close()
            let probe = try HarnessClient(clientID: "left", port: mesh.brokers[0].port, cleanStart: false, sessionExpiry: 3600)
            try await probe.connect()
            #expect(!probe.sessionPresent, "the session on A survived")
            probe.close()
        }
    }
    @Test("a connect on B missed while A's agent was down is caught from B's presence when A's agent is back")
    func missedConnectCaughtFromPresence() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let old = try await mesh.subscriber("a", id: "mover", to: "mover/#", cleanStart: false, sessionExpiry: 3600)
            try await old.disconnect(waitingUpTo: .seconds(5))
            old.close()
            // A's agent is away while the client reconnects on B: B's announcement reaches nobody.
            #expect(await mesh.agents[0].stop() == 0)
            let new = try await mesh.client("b", id: "mover", cleanStart: false, sessionExpiry: 3600)
            let reader = try await ControlReader(port: mesh.brokers[1].port)
            try await waitUntil(timeout: .seconds(5), "B's presence to list the client") {
                guard let m = reader.latest(ControlTopic.presence(node: "b")),
                      let p = try? PresenceSnapshotCodec.decode(m.payload, expectedNode: "b") else { return false }
                return p.online["mover"] != nil
            }
            reader.close()
            try mesh.agents[0].start()
            try await mesh.agents[0].waitUntilUp()
            // A's agent reads B's retained presence and ends the stale session on A.
            try await mesh.waitForFilter("mover/#", on: "a", present: false)
            try await mesh.waitForMetric(agent: "a", "mesh_client_sessions_ended_total", 1)
            #expect(mesh.metric(agent: "a", "mesh_client_presence_takeovers_total") == 1)
            #expect(new.client.isConnected)
            new.close()
        }
    }

    @Test("inspect --client shows where a client id is connected, from any broker")
    func inspectShowsClientPresence() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let c = try await mesh.client("b", id: "kitchen sensor")
            // A's agent mirrors B's presence onto A's broker.
            let reader = try await ControlReader(port: mesh.brokers[0].port)
            try await waitUntil(timeout: .seconds(5), "A's broker to mirror B's presence") {
                guard let m = reader.latest(ControlTopic.mirror(of: "a", node: "b", kind: .presence)),
                      let p = try? PresenceSnapshotCodec.decode(m.payload, expectedNode: "b") else { return false }
                return p.online["kitchen sensor"] != nil
            }
            reader.close()
            let (code, out) = try await OperationsTests.cli(["inspect", "--broker", mesh.brokers[0].endpoint, "--json", "--client", "kitchen sensor"])
            #expect(code == 0, "\(out)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "\(out)")
            let client = try #require(json["client"] as? [String: Any], "\(out)")
            let connected = try #require(client["connected"] as? [String: NSNumber], "\(out)")
            #expect(Array(connected.keys) == ["b"])
            let nodes = try #require(json["nodes"] as? [String: [String: Any]])
            #expect((nodes["b"]?["clients"] as? [String: Any])?["online"] as? Int == 1, "\(out)")
            let (_, text) = try await OperationsTests.cli(["inspect", "--broker", mesh.brokers[0].endpoint, "--client", "kitchen sensor"])
            #expect(text.contains("client 'kitchen sensor' is connected on b since"), "\(text)")
            let (_, none) = try await OperationsTests.cli(["inspect", "--broker", mesh.brokers[0].endpoint, "--client", "nobody"])
            #expect(none.contains("client 'nobody' is not connected on any node"), "\(none)")
            c.close()
        }
    }
}

extension MeshCluster {
    /// Waits (bounded) until a counter of `node`'s agent reads exactly `value`. The counter is
    /// bumped when the takeover job has finished, a moment after the client saw its connection go.
    func waitForMetric(agent node: String, _ name: String, _ value: Double, timeout: Duration = .seconds(5)) async throws {
        try await waitUntil(timeout: timeout, "\(name) of \(node) to be \(value) (is \(metric(agent: node, name) ?? -1))") {
            self.metric(agent: node, name) == value
        }
    }
}
