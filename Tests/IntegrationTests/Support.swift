import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Testing

/// Agent arguments every test mesh gets from the environment: `MESH_TEST_DELIVERY=direct`
/// runs the suites that use `withMesh` with `--delivery direct` (CI runs a selection so).
let environmentAgentArguments: [String] = ProcessInfo.processInfo.environment["MESH_TEST_DELIVERY"].map { ["--delivery", $0] } ?? []

/// Runs `body` against a fresh mesh of real brokers and agents, and always tears it down.
/// `nodeArguments`: extra agent arguments for single nodes.
func withMesh(_ nodes: [String], label: String = #function, brokerOptions: BrokerProcess.Options = .init(),
              agentArguments: [String] = [], nodeArguments: [String: [String]] = [:],
              _ body: (MeshCluster) async throws -> Void) async throws {
    let dir = MeshCluster.temporaryDirectory(label.filter { $0.isLetter || $0.isNumber })
    let cluster = MeshCluster(nodes: nodes, directory: dir, brokerOptions: brokerOptions,
                              agentArguments: environmentAgentArguments + agentArguments, nodeArguments: nodeArguments)
    do {
        try await cluster.start()
        try await body(cluster)
    } catch {
        for a in cluster.agents { print("--- agent \(a.nodeID) log ---\n\(a.logTail())") }
        await cluster.stop()
        throw error
    }
    await cluster.stop()
    try? FileManager.default.removeItem(atPath: dir)
}

/// Runs `body` against a fresh mesh behind a real HAProxy (`balance`; its runtime API on
/// `runtimePort` if given), started after the mesh, and always stops HAProxy then the mesh;
/// the agents' logs are printed when it fails. Agents get only `nodeArguments` (no
/// environment arguments: what HAProxy sees is the test's own set-up).
func withMeshBehindHAProxy(_ nodes: [String], label: String = #function, balance: String, runtimePort: Int32? = nil,
                           nodeArguments: [String: [String]] = [:],
                           _ body: (MeshCluster, HAProxyProcess) async throws -> Void) async throws {
    let dir = MeshCluster.temporaryDirectory(label.filter { $0.isLetter || $0.isNumber })
    let cluster = MeshCluster(nodes: nodes, directory: dir, nodeArguments: nodeArguments)
    let lb = cluster.makeLoadBalancer(balance: balance, runtimePort: runtimePort)
    do {
        try await cluster.start()
        try await lb.start()
        try await body(cluster, lb)
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

/// Reads the retained `$mesh/...` control topics of one broker, as an operator would with
/// `mosquitto_sub -t '$mesh/#'`. Its client id carries the mesh prefix, so it never counts
/// as interest itself.
final class ControlReader: Sendable {
    let client: HarnessClient

    init(port: Int32) async throws {
        client = try HarnessClient(clientID: "mosquitto-mesh/test-reader-\(UInt32.random(in: 0...UInt32.max))", port: port)
        try await client.connect()
        try await client.subscribe("$mesh/#", qos: 1)
    }

    func latest(_ topic: String) -> HarnessClient.Message? { client.messages(on: topic).last }

    func advert(of node: String) throws -> InterestAdvert? {
        guard let m = latest(ControlTopic.subscriptions(node: node)) else { return nil }
        return try InterestAdvertCodec.decode(m.payload, expectedNode: node)
    }

    func view(of node: String) -> MeshView? {
        guard let m = latest(ControlTopic.view(node: node)) else { return nil }
        return MeshView.decode(m.payload)
    }

    func stats(of node: String) -> [String: Int]? {
        guard let m = latest(ControlTopic.stats(node: node)) else { return nil }
        return MeshStatsCodec.decode(m.payload)
    }

    /// The advert sequence number that `viewer` last read for `node`.
    func seq(seenBy viewer: String, of node: String) -> UInt64? {
        view(of: viewer)?.peers.lazy.compactMap { $0.nodes[node]?.seq }.first
    }

    func close() { client.close() }
}

extension MeshCluster {
    /// One sample of agent `node`'s `/metrics`, e.g. `mesh_forwarded_by_alias_total{peer="…"}`.
    func metric(agent node: String, _ name: String, peer: String? = nil) -> Double? {
        agents[index(of: node)].metric(peer.map { "\(name){peer=\"\($0)\"}" } ?? name)
    }

    func index(of node: String) -> Int { agents.firstIndex { $0.nodeID == node }! }

    /// Waits until `node`'s advert satisfies `condition` on its own broker, then until every
    /// other agent has read that advert (or a later one). Event-driven: no fixed sleeps.
    func waitForInterest(of node: String, timeout: Duration = .seconds(10),
                         _ condition: @escaping @Sendable ([String: Int]) -> Bool) async throws {
        let i = index(of: node)
        let own = try await ControlReader(port: brokers[i].port)
        defer { own.close() }
        var seq: UInt64 = 0
        try await waitUntil(timeout: timeout, "advert of \(node) to match") {
            guard let a = try? own.advert(of: node), condition(a.filters) else { return false }
            return true
        }
        seq = try own.advert(of: node)!.seq
        for j in agents.indices where j != i {
            let reader = try await ControlReader(port: brokers[j].port)
            defer { reader.close() }
            let viewer = agents[j].nodeID
            let target = seq
            try await waitUntil(timeout: timeout, "\(viewer) to read advert \(target) of \(node)") {
                (reader.seq(seenBy: viewer, of: node) ?? 0) >= target
            }
        }
    }

    func waitForFilter(_ filter: String, on node: String, present: Bool = true) async throws {
        try await waitForInterest(of: node) { filters in (filters[filter] != nil) == present }
    }

    /// A client on `node` subscribed to `filter`, returned once every agent has read the
    /// advert that carries it: from then on a message published anywhere must reach it.
    func subscriber(_ node: String, id: String, to filter: String, qos: Int32 = 1, cleanStart: Bool = true,
                    sessionExpiry: UInt32 = 0, protocolVersion: ClientConfiguration.ProtocolVersion = .v5) async throws -> HarnessClient {
        let c = try await client(node, id: id, cleanStart: cleanStart, sessionExpiry: sessionExpiry, protocolVersion: protocolVersion)
        try await c.subscribe(filter, qos: qos)
        try await waitForFilter(filter, on: node)
        return c
    }

    /// A client on `node` that sees every message the broker takes in (`#` at QoS 2). Its
    /// mesh-prefixed id keeps it out of the interest, so it attracts no traffic itself.
    func spy(on node: String) async throws -> HarnessClient {
        let c = try HarnessClient(clientID: "mosquitto-mesh/spy", port: brokers[index(of: node)].port)
        try await c.connect()
        try await c.subscribe("#", qos: 2)
        return c
    }

    func client(_ node: String, id: String, cleanStart: Bool = true, sessionExpiry: UInt32 = 0,
                protocolVersion: ClientConfiguration.ProtocolVersion = .v5) async throws -> HarnessClient {
        let c = try HarnessClient(clientID: id, port: brokers[index(of: node)].port, cleanStart: cleanStart,
                                  sessionExpiry: sessionExpiry, protocolVersion: protocolVersion)
        try await c.connect()
        return c
    }
}
