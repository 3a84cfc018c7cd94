import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Testing

/// Persistent sessions survive the loss of their broker (issue 12): three brokers behind a
/// real HAProxy, kill -9 of one broker; the survivors adopt its persistent sessions, HAProxy
/// holds their clients until then and sends each to its adopter, which resumes it
/// (session present) with its subscriptions and what was queued since the adoption.
@Suite("sessions survive their broker", .serialized, .timeLimit(.minutes(4)))
struct SessionSurvivalTests {
    static let nodes = ["a", "b", "c"]

    /// A mesh of three with adoption on, behind HAProxy (leastconn, stickiness, holds).
    static func withAdoptingMesh(label: String = #function, adoptAfter: Double = 2,
                                 _ body: (MeshCluster, HAProxyProcess) async throws -> Void) async throws {
        let dir = MeshCluster.temporaryDirectory(label.filter { $0.isLetter || $0.isNumber })
        let runtime = Network.freePort()
        let cluster = MeshCluster(nodes: nodes, directory: dir,
                                  nodeArguments: MeshCluster.adoptionArguments(nodes: nodes, runtimePort: runtime, adoptAfter: adoptAfter))
        let lb = cluster.makeLoadBalancer(balance: "leastconn", runtimePort: runtime)
        do {
            try await cluster.start()
            try await lb.start()
            try await body(cluster, lb)
            for a in cluster.agents {
                let lines = a.logTail().split(separator: "\n").filter { $0.contains("adopt") || $0.contains("holding") || $0.contains("lost") || $0.contains("released") || $0.contains("HAProxy") }
                if !lines.isEmpty { print("--- agent \(a.nodeID): \(lines.count) adoption lines ---\n" + lines.suffix(12).joined(separator: "\n")) }
            }
        } catch {
            for a in cluster.agents { print("--- agent \(a.nodeID) log ---\n\(a.logTail())") }
            await lb.stop()
            await cluster.stop()
            throw error
        }
        await lb.stop()
        await cluster.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test("kill -9 a broker: its persistent subscribers (3.1.1 and 5) come back through HAProxy on their adopter with session present, and get what is published after")
    func adoptedSessionsResume() async throws {
        try await Self.withAdoptingMesh { mesh, lb in
            let admin = lb.admin
            var subscribers: [HarnessClient] = []
            for i in 0..<9 {
                let v5 = i % 2 == 1
                let c = try HarnessClient(clientID: "keep-\(i)", port: lb.port, cleanStart: false, sessionExpiry: v5 ? 3600 : 0,
                                          protocolVersion: v5 ? .v5 : .v311)
                try await c.connect()
                try await c.subscribe("keep/\(i)/#", qos: 1)
                subscribers.append(c)
            }
            defer { for c in subscribers { c.close() } }
            var placement: [String: String] = [:]
            for c in subscribers { placement[c.client.configuration.clientID] = try await stuckServer(of: c.client.configuration.clientID, admin) }
            let victim = Self.nodes.max { a, b in placement.values.filter { $0 == a }.count < placement.values.filter { $0 == b }.count }!
            let moved = subscribers.filter { placement[$0.client.configuration.clientID] == victim }
            let stayed = subscribers.filter { placement[$0.client.configuration.clientID] != victim }
            #expect(moved.count >= 3)
            let survivors = Self.nodes.filter { $0 != victim }
            // The survivors have read the victim's directory (its retained shards, read live).
            let victimIndex = mesh.index(of: victim)
            let reader = try await ControlReader(port: mesh.brokers[victimIndex].port)
            defer { reader.close() }
            try await waitUntil(timeout: .seconds(10), "the victim's directory to list its subscribers") {
                let listed = Set(reader.directory(of: victim).map(\.clientID))
                return moved.allSatisfy { listed.contains($0.client.configuration.clientID) }
            }
            // Every subscriber hears its topic before the kill (the mesh knows all interest).
            let pub = try await mesh.client(survivors[0], id: "keep-pub")
            defer { pub.close() }
            for (i, c) in subscribers.enumerated() {
                try pub.publish("keep/\(i)/before", "before", qos: 1)
                try await c.waitForMessages(1) { $0.text == "before" }
            }

            let connectsBefore = moved.map(\.connectCount)
            await mesh.brokers[victimIndex].kill9()
            let clock = ContinuousClock()
            let killedAt = clock.now
            // Adopted by the survivors (between them, each once), within adopt-after + a few seconds.
            try await waitUntil(timeout: .seconds(20), "the survivors to adopt \(moved.count) sessions") {
                survivors.reduce(0) { $0 + Int(mesh.metric(agent: $1, "mesh_sessions_adopted_total") ?? 0) } >= moved.count
            }
            print("adoption: \(moved.count) sessions adopted \(clock.now - killedAt) after the kill")
            for (i, c) in subscribers.enumerated() { try pub.publish("keep/\(i)/after", "after", qos: 1) }
            try await pub.waitForAcks()
            for (c, before) in zip(moved, connectsBefore) {
                try await c.waitForConnects(before + 1, timeout: .seconds(20))
                #expect(c.sessionPresent, "\(c.client.configuration.clientID) came back without its session")
                try await c.waitForMessages(1, timeout: .seconds(10)) { $0.text == "after" }
                let now = try await stuckServer(of: c.client.configuration.clientID, admin)
                #expect(survivors.contains(now))
            }
            for c in stayed { try await c.waitForMessages(1, timeout: .seconds(10)) { $0.text == "after" } }
            let adopted = survivors.reduce(0) { $0 + Int(mesh.metric(agent: $1, "mesh_sessions_adopted_total") ?? 0) }
            #expect(adopted == moved.count, "adopted \(adopted) for \(moved.count) sessions: each must be adopted exactly once")
            for s in survivors { #expect((mesh.metric(agent: s, "mesh_session_adoption_failures_total") ?? 0) == 0) }
        }
    }
}

extension ControlReader {
    /// Every session a node's own directory lists on this broker (retained shards).
    func directory(of node: String) -> [SharedSession] {
        var latest: [String: HarnessClient.Message] = [:]
        for m in client.messages where SessionDirectory.parseTopic(m.topic)?.node == node { latest[m.topic] = m }
        return latest.values.flatMap { m -> [SharedSession] in
            guard !m.payload.isEmpty, let shard = try? SessionShardCodec.decode(m.payload, expectedNode: node, expectedShard: nil) else { return [] }
            return shard.sessions
        }
    }
}
