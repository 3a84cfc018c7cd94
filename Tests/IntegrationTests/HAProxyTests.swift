import Foundation
import MeshHarness
import Testing

/// The load balancer in front of the mesh, as configured by deploy/haproxy/haproxy.cfg:
/// client-id stickiness and the agent's agent-check answers. Which broker a client landed
/// on is read from HAProxy's own stick table (admin socket), never guessed.
@Suite("HAProxy", .serialized, .timeLimit(.minutes(3)))
struct HAProxyTests {
    enum PublisherPlacement: String, CaseIterable, Sendable { case sameBroker, otherBroker }

    @Test("a persistent session reconnecting through HAProxy gets its queued QoS 1 messages and session-present",
          arguments: PublisherPlacement.allCases)
    func persistentSessionThroughHAProxy(placement: PublisherPlacement) async throws {
        try await withMesh(["a", "b"]) { mesh in
            let lb = mesh.makeLoadBalancer(balance: "roundrobin")
            try await lb.start()
            do {
                let admin = lb.admin
                let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
                let subID = "ps-sub-\(tag)"

                let sub = try HarnessClient(clientID: subID, port: lb.port, cleanStart: false, sessionExpiry: 3600)
                try await sub.connect()
                try await sub.subscribe("ps/\(tag)/#", qos: 1)
                let home = try await stuckServer(of: subID, admin)
                try await mesh.waitForFilter("ps/\(tag)/#", on: home)
                sub.disconnect()
                try await waitUntil(timeout: .seconds(10), "subscriber to disconnect") { !sub.client.isConnected }
                sub.close()

                // A publisher on the wanted broker: new ids alternate (roundrobin); bounded tries.
                var publisher: HarnessClient?
                for attempt in 0..<10 where publisher == nil {
                    let id = "ps-pub-\(tag)-\(attempt)"
                    let candidate = try HarnessClient(clientID: id, port: lb.port)
                    try await candidate.connect()
                    let server = try await stuckServer(of: id, admin)
                    if (server == home) == (placement == .sameBroker) { publisher = candidate } else { candidate.close() }
                }
                let pub = try #require(publisher, "no publisher landed on the \(placement.rawValue) within 10 connections")
                let count = 20
                for i in 0..<count { try pub.publish("ps/\(tag)/x", "\(i)", qos: 1) }
                try await pub.waitForAcks()
                pub.close()

                let back = try HarnessClient(clientID: subID, port: lb.port, cleanStart: false, sessionExpiry: 3600)
                try await back.connect()
                #expect(try admin.stuckClients(backend: HAProxyProcess.backendName)[subID] == home, "stickiness sent the client elsewhere")
                #expect(back.sessionPresent, "session-present after reconnecting through HAProxy")
                let got = try await back.waitForMessages(count, timeout: .seconds(15))
                #expect(got.map(\.text) == (0..<count).map(String.init), "queued messages in order")
                back.close()
            } catch {
                await lb.stop()
                throw error
            }
            await lb.stop()
        }
    }

    @Test("a broker whose agent answers drain gets no new clients; a client stuck to it still returns to its session")
    func drainedBrokerGetsNoNewClients() async throws {
        let dir = MeshCluster.temporaryDirectory("haproxy-drain")
        // a's agent has two peers (p1, p2) that HAProxy does not balance to; killing both
        // cuts a off from the mesh, so its agent answers `drain`. b's single peer is a.
        let a = BrokerProcess(name: "a", directory: dir + "/broker-a")
        let b = BrokerProcess(name: "b", directory: dir + "/broker-b")
        let p1 = BrokerProcess(name: "p1", directory: dir + "/broker-p1")
        let p2 = BrokerProcess(name: "p2", directory: dir + "/broker-p2")
        let agentA = AgentProcess(nodeID: "a", local: a, peers: [p1.endpoint, p2.endpoint], stateDirectory: dir + "/agent-a")
        let agentB = AgentProcess(nodeID: "b", local: b, peers: [a.endpoint], stateDirectory: dir + "/agent-b")
        let lb = HAProxyProcess(directory: dir + "/haproxy", backends: [
            .init(name: "a", port: a.port, agentPort: agentA.healthPort),
            .init(name: "b", port: b.port, agentPort: agentB.healthPort),
        ], balance: "roundrobin")
        func stopAll() async {
            await lb.stop()
            for agent in [agentA, agentB] { await agent.stop() }
            for broker in [a, b, p1, p2] { await broker.stop() }
        }
        do {
            for broker in [a, b, p1, p2] { try await broker.start() }
            try agentA.start()
            try agentB.start()
            try await agentA.waitUntilUp()
            try await agentB.waitUntilUp()
            try await lb.start()
            let admin = lb.admin
            try await waitUntil(timeout: .seconds(10), "HAProxy to see both brokers up") {
                let s = (try? admin.serverStatus(backend: HAProxyProcess.backendName)) ?? [:]
                return s["a"]?.status == "UP" && s["b"]?.status == "UP"
            }

            // A persistent-session client stuck to a while a is healthy.
            let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
            var stuckID: String?
            for attempt in 0..<10 where stuckID == nil {
                let id = "drain-old-\(tag)-\(attempt)"
                let c = try HarnessClient(clientID: id, port: lb.port, cleanStart: false, sessionExpiry: 3600)
                try await c.connect()
                if try await stuckServer(of: id, admin) == "a" {
                    try await c.subscribe("drain/\(tag)", qos: 1)
                    stuckID = id
                }
                c.disconnect()
                try await waitUntil(timeout: .seconds(10), "client \(id) to disconnect") { !c.client.isConnected }
                c.close()
            }
            let oldID = try #require(stuckID, "no client landed on a within 10 connections")

            await p1.kill9()
            await p2.kill9()
            try await waitUntil(timeout: .seconds(20), "agent a to answer drain (all its peers gone)") { agentA.health == "drain" }
            #expect(agentB.health?.hasPrefix("up") == true, "b keeps its single peer a")
            try await waitUntil(timeout: .seconds(10), "HAProxy to put a in drain") {
                let s = (try? admin.serverStatus(backend: HAProxyProcess.backendName))?["a"]
                return s.map { $0.status.hasPrefix("DRAIN") || $0.weight == 0 } ?? false
            }

            var landed: [String: String] = [:]
            for i in 0..<6 {
                let id = "drain-new-\(tag)-\(i)"
                let c = try HarnessClient(clientID: id, port: lb.port)
                try await c.connect()
                landed[id] = try await stuckServer(of: id, admin)
                c.close()
            }
            #expect(landed.values.allSatisfy { $0 == "b" }, "new clients while a drains: \(landed)")

            // HAProxy's drain still admits ids stuck to a: the persistent session is there.
            let old = try HarnessClient(clientID: oldID, port: lb.port, cleanStart: false, sessionExpiry: 3600)
            try await old.connect()
            #expect(try admin.stuckClients(backend: HAProxyProcess.backendName)[oldID] == "a")
            #expect(old.sessionPresent, "the stuck client found its session on the draining broker")
            old.close()
        } catch {
            print("--- agent a log ---\n\(agentA.logTail())")
            await stopAll()
            throw error
        }
        await stopAll()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// The broker HAProxy stuck `clientID` to (waits, bounded, for the entry to appear: HAProxy
/// stores it once the connection to the server is established).
func stuckServer(of clientID: String, _ admin: HAProxyAdmin, timeout: Duration = .seconds(5)) async throws -> String {
    try await waitUntil(timeout: timeout, "HAProxy stick-table entry for \(clientID)") {
        (try? admin.stuckClients(backend: HAProxyProcess.backendName))?[clientID] != nil
    }
    return try admin.stuckClients(backend: HAProxyProcess.backendName)[clientID]!
}
