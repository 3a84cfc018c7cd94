import Foundation
import MeshAgent
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
                try await sub.disconnect(waitingUpTo: .seconds(10))
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
                try await c.disconnect(waitingUpTo: .seconds(10))
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

    /// An ordinary client that reused an agent's client id would, with a clean start, kick the
    /// agent's link and discard its session; mosquitto 2.0.11 cannot refuse an id prefix, so
    /// HAProxy does (deploy/haproxy/haproxy.cfg). Agents never connect through HAProxy.
    @Test("HAProxy closes a CONNECT carrying one of the mesh's client ids before any CONNACK; ordinary clients get through")
    func meshClientIDsRefused() async throws {
        let dir = MeshCluster.temporaryDirectory("haproxy-meshid")
        let broker = BrokerProcess(name: "b", directory: dir + "/broker-b")
        let lb = HAProxyProcess(directory: dir + "/haproxy", backends: [.init(name: "b", port: broker.port, agentPort: nil)])
        func stopAll() async {
            await lb.stop()
            await broker.stop()
        }
        do {
            try await broker.start()
            try await lb.start()
            let admin = lb.admin
            try await waitUntil(timeout: .seconds(10), "HAProxy to see the broker up") {
                (try? admin.serverStatus(backend: HAProxyProcess.backendName))?["b"]?.status == "UP"
            }
            // The ids a real agent "b" uses, from the agent's own configuration.
            let agent = AgentConfiguration(nodeID: "b", local: Endpoint(host: "127.0.0.1", port: broker.port),
                                           peers: [Endpoint(host: "192.0.2.11", port: 1883)])
            #expect(agent.clientIDPrefix == HAProxyProcess.meshClientIDPrefix, "HAProxy's rule must follow the agent's prefix")
            let meshIDs = ["mosquitto-mesh/b", agent.localClientID, agent.peerClientID(agent.peers[0])]
            let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)

            for level in [RawMQTT.v311, RawMQTT.v5] {
                for id in meshIDs {
                    #expect(RawMQTT.connect(port: lb.port, clientID: id, level: level) == .closed, "id \(id), level \(level)")
                }
                // Ordinary ids, including near misses of the prefix, reach the broker.
                for id in ["ordinary-\(tag)", "Mosquitto-Mesh/\(tag)", "mosquitto-mesh\(tag)"] {
                    #expect(RawMQTT.connect(port: lb.port, clientID: id, level: level) == .connack(0), "id \(id), level \(level)")
                }
            }

            // Real clients. One with the agent's local id is refused on every retry (HAProxy
            // counts each as a denied request) and never connects ...
            let deniedBefore = try frontendDeniedRequests(admin)
            let impostor = try HarnessClient(clientID: agent.localClientID, port: lb.port)
            try impostor.client.start()
            try await waitUntil(timeout: .seconds(10), "HAProxy to deny two connection attempts of \(agent.localClientID)") {
                ((try? frontendDeniedRequests(admin)) ?? 0) >= deniedBefore + 2
            }
            #expect(impostor.connectCount == 0, "a client with the mesh's id got a CONNACK through HAProxy")
            impostor.close()
            // ... while ordinary ones subscribe and publish to each other through it.
            let sub = try HarnessClient(clientID: "meshid-sub-\(tag)", port: lb.port)
            try await sub.connect()
            try await sub.subscribe("meshid/\(tag)", qos: 1)
            let pub = try HarnessClient(clientID: "meshid-pub-\(tag)", port: lb.port)
            try await pub.connect()
            try pub.publish("meshid/\(tag)", "ordinary", qos: 1)
            try await pub.waitForAcks()
            #expect(try await sub.waitForMessages(1).map(\.text) == ["ordinary"])
            pub.close()
            sub.close()
        } catch {
            await stopAll()
            throw error
        }
        await stopAll()
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test("deploy/haproxy/haproxy.cfg carries the harness's rule that refuses the mesh's client ids")
    func shippedConfigRefusesMeshClientIDs() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shipped = try String(contentsOf: root.appendingPathComponent("deploy/haproxy/haproxy.cfg"), encoding: .utf8)
        let lines = Set(shipped.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        for rule in HAProxyProcess.meshClientIDRejection {
            let present = lines.contains(rule.trimmingCharacters(in: .whitespaces))
            #expect(present, "missing in deploy/haproxy/haproxy.cfg: \(rule)")
        }
    }
}

/// HAProxy's count of requests its `mqtt` frontend denied (`tcp-request content reject`):
/// the `dreq` column of `show stat`.
func frontendDeniedRequests(_ admin: HAProxyAdmin) throws -> Int {
    let lines = try admin.run("show stat").split(separator: "\n")
    guard let header = lines.first, header.hasPrefix("# ") else { throw HarnessError("show stat: no header") }
    let columns = header.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false)
    guard let px = columns.firstIndex(of: "pxname"), let sv = columns.firstIndex(of: "svname"),
          let dreq = columns.firstIndex(of: "dreq") else { throw HarnessError("show stat: columns missing") }
    for line in lines.dropFirst() {
        let f = line.split(separator: ",", omittingEmptySubsequences: false)
        if f.count > dreq, f[px] == "mqtt", f[sv] == "FRONTEND" { return Int(f[dreq]) ?? 0 }
    }
    throw HarnessError("show stat: no mqtt FRONTEND row")
}

/// A hand-built CONNECT over a plain socket: the only way to see "closed without a CONNACK"
/// as such (libmosquitto just reconnects).
enum RawMQTT {
    static let v311: UInt8 = 4
    static let v5: UInt8 = 5

    enum Answer: Equatable {
        /// Closed before a single byte arrived.
        case closed
        /// A CONNACK with this return / reason code.
        case connack(UInt8)
        /// Anything else (bytes that are not a CONNACK, or no answer within the bound).
        case other(String)
    }

    /// Connects to 127.0.0.1:`port`, sends a clean-start CONNECT with `clientID` and reads the
    /// answer (bounded by `timeout` seconds).
    static func connect(port: Int32, clientID: String, level: UInt8, timeout: Int = 10) -> Answer {
        let id = Array(clientID.utf8)
        var body: [UInt8] = [0x00, 0x04] + Array("MQTT".utf8) + [level, 0x02, 0x00, 0x3c]
        if level == v5 { body.append(0x00) } // no properties
        body += [UInt8(id.count >> 8), UInt8(id.count & 0xff)] + id
        guard body.count < 128 else { return .other("client id too long for this helper") }
        let packet: [UInt8] = [0x10, UInt8(body.count)] + body

        let fd: Int32
        do throws(Network.ConnectFailure) {
            fd = try Network.tcpConnect(port: port, timeoutSeconds: timeout)
        } catch {
            return .other("\(error.call): errno \(error.errno)")
        }
        defer { close(fd) }
        guard packet.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == packet.count else { return .other("short write") }
        // CONNACK: 0x20, remaining length (one byte here), flags, return code.
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while answer.count < 4 {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return .other("read: errno \(errno) after \(answer)") }
            if n == 0 { break }
            answer += buffer[..<n]
        }
        if answer.isEmpty { return .closed }
        if answer.count >= 4, answer[0] == 0x20, answer[1] < 0x80 { return .connack(answer[3]) }
        return .other("\(answer)")
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
