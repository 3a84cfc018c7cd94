import Foundation

/// N brokers, each with an agent, fully meshed on loopback: the unit of every integration
/// test, the README's demo and the benchmarks.
public final class MeshCluster: Sendable {
    public let brokers: [BrokerProcess]
    public let agents: [AgentProcess]
    public let directory: String

    /// - Parameters:
    ///   - nodes: node ids, e.g. ["a", "b", "c"].
    ///   - basePort: when given, broker i listens on basePort + i (stable ports for demos).
    ///   - nodeArguments: extra agent arguments for one node (after `agentArguments`).
    public init(nodes: [String], directory: String, brokerOptions: BrokerProcess.Options = .init(), agentArguments: [String] = [],
                basePort: Int32? = nil, nodeArguments: [String: [String]] = [:]) {
        self.directory = directory
        let brokers = nodes.enumerated().map { i, node in
            var options = brokerOptions
            if let basePort { options.port = basePort + Int32(i) }
            return BrokerProcess(name: node, directory: "\(directory)/broker-\(node)", options: options)
        }
        self.brokers = brokers
        agents = nodes.indices.map { i in
            AgentProcess(nodeID: nodes[i], local: brokers[i],
                         peers: brokers.indices.filter { $0 != i }.map { brokers[$0].endpoint },
                         stateDirectory: "\(directory)/agent-\(nodes[i])", extraArguments: agentArguments + (nodeArguments[nodes[i]] ?? []))
        }
    }

    /// Starts every broker, then every agent, and waits until all agents report `up`.
    public func start() async throws {
        for b in brokers { try await b.start() }
        for a in agents { try a.start() }
        for a in agents { try await a.waitUntilUp() }
    }

    /// HAProxy in front of every broker, with agent-check against each agent. Its servers are
    /// named after the nodes.
    public func makeLoadBalancer(port: Int32? = nil, balance: String = "roundrobin", runtimePort: Int32? = nil) -> HAProxyProcess {
        HAProxyProcess(directory: directory + "/haproxy",
                       backends: agents.map { .init(name: $0.nodeID, port: $0.local.port, agentPort: $0.healthPort) },
                       balance: balance, port: port, runtimePort: runtimePort)
    }

    /// Per-node agent arguments for session adoption behind the harness's HAProxy (whose runtime
    /// API will listen on `runtimePort`): pass as `nodeArguments`, then `makeLoadBalancer(runtimePort:)`.
    public static func adoptionArguments(nodes: [String], runtimePort: Int32, adoptAfter: Double) -> [String: [String]] {
        Dictionary(uniqueKeysWithValues: nodes.map { node in
            (node, ["--haproxy-runtime", "127.0.0.1:\(runtimePort)", "--haproxy-server", node,
                    "--haproxy-backend", HAProxyProcess.backendName, "--adopt-after", String(adoptAfter)])
        })
    }

    /// Selects the agent ↔ peer-broker connections (agent i's process → broker j's port,
    /// j ≠ i) in a socket snapshot: what crosses between nodes in a real deployment.
    public func isInterBroker(_ c: TCPConnection) -> Bool {
        for (i, agent) in agents.enumerated() where agent.pid == c.pid {
            return brokers.indices.contains { $0 != i && brokers[$0].port == c.remotePort }
        }
        return false
    }

    public func stop() async {
        for a in agents { await a.stop() }
        for b in brokers { await b.stop() }
    }

    /// A fresh temporary directory for one scenario.
    public static func temporaryDirectory(_ label: String) -> String {
        let base = ProcessInfo.processInfo.environment["MESH_TEST_TMP"] ?? NSTemporaryDirectory()
        let path = "\(base)/mesh-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
