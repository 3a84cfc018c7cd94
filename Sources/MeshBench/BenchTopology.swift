import Foundation
import MeshHarness

/// The setups every scenario compares.
package enum BenchSetup: String, CaseIterable, Codable, Sendable {
    /// One broker: every client on it; the ceiling for what one broker can do.
    case single
    /// Mosquitto's native bridge, `topic # both 2` (a star for three or more brokers).
    case bridge
    /// Our agents, full mesh, the default mode (`--delivery prefixed`).
    case mesh
    /// Our agents with `--delivery direct`.
    case meshDirect = "mesh-direct"

    /// The setups a run measures (`bench --mode`): the mesh modes asked for, after the
    /// single broker and the bridge they are compared with.
    package static let selected = LockedValue<[BenchSetup]>([.single, .bridge, .mesh])

    /// Extra agent arguments of a mesh setup.
    var agentArguments: [String] { self == .meshDirect ? ["--delivery", "direct"] : [] }
    var isMesh: Bool { self == .mesh || self == .meshDirect }
}

/// One setup's processes on loopback, started and stopped by the benchmark itself.
/// Every setup gets the same broker configuration (`brokerOptions`), so the only
/// difference is how brokers are joined.
final class BenchTopology: Sendable {
    let setup: BenchSetup
    let directory: String
    let brokers: [BrokerProcess]
    private let mesh: MeshCluster?
    private let bridge: BridgeCluster?
    private let balancer = LockedValue<HAProxyProcess?>(nil)

    /// The one tuned configuration for all setups. Mosquitto's defaults (20 in flight,
    /// 1000 queued) drop messages even on a single broker under this load; these are the
    /// values of deploy/mosquitto/mesh.conf: 1000 in flight, no queue limit (0), no byte
    /// cap, TCP_NODELAY, persistence on.
    static var brokerOptions: BrokerProcess.Options {
        var o = BrokerProcess.Options()
        o.maxInflightMessages = 1000
        o.maxQueuedMessages = 0
        o.extraConfiguration = ["set_tcp_nodelay true"]
        return o
    }

    init(setup: BenchSetup, nodes: Int, label: String) {
        self.setup = setup
        directory = MeshCluster.temporaryDirectory("bench-\(label)-\(setup.rawValue)")
        let names = (0..<nodes).map { String(UnicodeScalar(UInt8(ascii: "a") + UInt8($0))) }
        switch setup {
        case .single:
            brokers = [BrokerProcess(name: "a", directory: directory + "/broker-a", options: Self.brokerOptions)]
            mesh = nil
            bridge = nil
        case .bridge:
            let b = BridgeCluster(nodes: names, directory: directory, brokerOptions: Self.brokerOptions)
            brokers = b.brokers
            bridge = b
            mesh = nil
        case .mesh, .meshDirect:
            let m = MeshCluster(nodes: names, directory: directory, brokerOptions: Self.brokerOptions, agentArguments: setup.agentArguments)
            brokers = m.brokers
            mesh = m
            bridge = nil
        }
    }

    /// The broker that clients of node `i` use (the single broker for `single`).
    func port(node i: Int) -> Int32 { brokers[i % brokers.count].port }
    var nodeCount: Int { brokers.count }

    func start() async throws {
        switch setup {
        case .single: try await brokers[0].start()
        case .bridge: try await bridge!.start()
        case .mesh, .meshDirect: try await mesh!.start()
        }
    }

    /// HAProxy round robin over this setup's brokers (with agent-check for the mesh).
    func startLoadBalancer() async throws -> HAProxyProcess {
        let lb: HAProxyProcess
        if let mesh {
            lb = mesh.makeLoadBalancer()
        } else {
            lb = HAProxyProcess(directory: directory + "/haproxy",
                                backends: brokers.map { .init(name: $0.name, port: $0.port, agentPort: nil) })
        }
        try await lb.start()
        balancer.value = lb
        return lb
    }

    func stop() async {
        if let lb = balancer.value { await lb.stop() }
        switch setup {
        case .single: await brokers[0].stop()
        case .bridge: await bridge!.stop()
        case .mesh, .meshDirect: await mesh!.stop()
        }
    }

    /// Whether a connection carries traffic between nodes: bridge connections for the
    /// bridge, agent ↔ peer broker connections for the mesh, none for a single broker.
    func isInterBroker(_ c: TCPConnection) -> Bool {
        switch setup {
        case .single: return false
        case .bridge: return bridge!.isInterBroker(c)
        case .mesh, .meshDirect: return mesh!.isInterBroker(c)
        }
    }

    /// Inter-broker bytes since `before` (a `SocketCounters.snapshot()`).
    func interBrokerBytes(since before: [TCPConnection]) async throws -> UInt64 {
        let after = try await SocketCounters.snapshot()
        return SocketCounters.delta(from: before, to: after, where: isInterBroker)
    }

    /// Waits (bounded) until inter-broker traffic has been quiet for `quiet`: the end of a
    /// synchronisation phase, whose duration nobody announces.
    func waitForQuietLinks(quiet: Duration = .milliseconds(400), timeout: Duration = .seconds(10)) async throws {
        guard setup != .single else { return }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var last = try await SocketCounters.snapshot()
        var quietSince = clock.now
        while clock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            let now = try await SocketCounters.snapshot()
            if SocketCounters.delta(from: last, to: now, where: isInterBroker) > 0 { quietSince = clock.now }
            last = now
            if clock.now - quietSince >= quiet { return }
        }
    }

    /// CPU seconds (user + system) the agents have used so far; 0 without agents.
    func agentCPUSeconds() -> Double {
        mesh?.agents.compactMap(\.pid).reduce(0) { $0 + (ProcessProbe.cpuSeconds(pid: $1) ?? 0) } ?? 0
    }

    /// Runs `body` against a started topology and always stops it.
    static func with<R>(_ setup: BenchSetup, nodes: Int, label: String,
                        _ body: (BenchTopology) async throws -> R) async throws -> R {
        let t = BenchTopology(setup: setup, nodes: nodes, label: label)
        do {
            try await t.start()
            let r = try await body(t)
            await t.stop()
            try? FileManager.default.removeItem(atPath: t.directory)
            return r
        } catch {
            await t.stop()
            throw BenchError("\(label) \(setup.rawValue) (files kept in \(t.directory)): \(error)")
        }
    }
}

/// A benchmark step that failed, with the scenario and setup it belongs to.
package struct BenchError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
