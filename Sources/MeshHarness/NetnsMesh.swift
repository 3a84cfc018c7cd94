import Foundation

/// N mesh nodes (a real mosquitto and a real agent each), every node a network namespace of
/// its own, so that links between nodes can be cut the way networks fail: packets vanish,
/// with no reset and no link going down (issue 14, partitions).
///
/// ```
///   root namespace (test process, clients) ── access veth per node, never cut ──┐
///                                                                                 │
///   mmp<pid>-<k>-a: eth0 10.77.0.11/25 ─┐                 acc0 10.77.0.130/30 ◄──┘
///   mmp<pid>-<k>-b: eth0 10.77.0.12/25 ─┼─ bridge br0 in mmp<pid>-<k>-sw (the "switch")
///   mmp<pid>-<k>-c: eth0 10.77.0.13/25 ─┘
/// ```
///
/// Agents reach each other only through the switch (`--peer <mesh address>:1883`). Clients,
/// the health (agent-check) and metrics listeners are reached from the root namespace over
/// a separate access link per node (10.77.0.128/25, one /30 each), which partitions never
/// touch: a node cut off from the mesh keeps its own clients (they are on its side of the
/// cut), so a test can still subscribe on it and read its `drain` during the cut. One veth
/// from the root into the switch, as in examples/ha-netns, would be cut together with the
/// node and hide both.
///
/// Cutting happens in the switch, never in the nodes (a drop on a host's own egress is
/// reported to its sockets). This kernel has no `netem` and no `prio` qdisc (nor
/// iptables/nft), so on each switch port that must not pass some sources an HTB root sends
/// their packets (u32 filter on the source address) to a class whose queue is
/// `pfifo limit 0`, which drops everything; other traffic goes straight through. Cutting a
/// node off drops every source on its port and its address on every other port; a pairwise
/// cut only the two. Neighbour entries are permanent, so no ARP failure turns a cut into a
/// fast "no route to host": packets just stop arriving.
///
/// Everything it creates (processes by pid, namespaces, veths) is removed by `stop()`, also
/// after a failed `start()`; namespaces left by a killed test process (their pid is gone)
/// are removed by the next `start()`.
public final class NetnsMesh: Sendable {
    public struct Node: Sendable {
        public let name: String
        public let index: Int
        public let namespace: String
        /// On the switch: what peers use.
        public let meshAddress: String
        /// On the access link: what clients, health and metrics probes from the root namespace use.
        public let accessAddress: String
        /// The root namespace's end of the access link.
        public let rootInterface: String
        public let rootAddress: String
        /// This node's port on the switch bridge.
        public let switchPort: String
        public let directory: String
        /// The `peer` label other agents' metrics use for this node.
        public var peerLabel: String { "\(meshAddress):\(NetnsMesh.mqttPort)" }
        public var agentLogPath: String { directory + "/agent.log" }
        public var brokerLogPath: String { directory + "/broker/mosquitto.log" }
    }

    /// Each node has its own network namespace, so fixed ports cannot collide with anything.
    public static let mqttPort: Int32 = 1883
    public static let healthPort: Int32 = 18830
    public static let metricsPort: Int32 = 9883
    static let namespacePrefix = "mmp\(getpid())"

    public let nodes: [Node]
    public let switchNamespace: String
    public let directory: String
    public let agentArguments: [String]
    public let startsAgents: Bool
    private let brokers: [ProcessSlot]
    private let agents: [ProcessSlot]
    private let cuts = LockedValue(Cuts())

    /// Which cuts are in place, and which drop filters the switch carries for them.
    struct Cuts: Sendable {
        /// An unordered pair of node indices.
        struct Pair: Hashable, Sendable {
            let low: Int, high: Int
            init(_ a: Int, _ b: Int) { (low, high) = (min(a, b), max(a, b)) }
        }
        var isolated: Set<Int> = []
        var pairs: Set<Pair> = []
        /// Switch port (node index) → source node indices whose packets it drops now.
        var installed: [Int: Set<Int>] = [:]

        /// Port of node j → nodes whose packets must not reach j.
        func blockedSources(nodes: Int) -> [Int: Set<Int>] {
            var result: [Int: Set<Int>] = [:]
            for j in 0..<nodes {
                for i in 0..<nodes where i != j && (isolated.contains(i) || isolated.contains(j) || pairs.contains(Pair(i, j))) {
                    result[j, default: []].insert(i)
                }
            }
            return result
        }
    }

    private static let instances = LockedValue(0)

    /// - Parameters:
    ///   - nodes: node ids (lower-case letters and digits, at most 8 characters; at most 30 nodes).
    ///   - agentArguments: extra `mosquitto-mesh run` arguments for every agent.
    ///   - startsAgents: false builds only the network and the brokers (mechanism checks).
    public init(nodes names: [String], directory: String, agentArguments: [String] = [], startsAgents: Bool = true) {
        precondition(!names.isEmpty && names.count <= 30, "1-30 nodes")
        precondition(names.allSatisfy { !$0.isEmpty && $0.count <= 8 && $0.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber) } },
                     "node names: a-z0-9, 1-8 characters")
        precondition(Set(names).count == names.count, "node names must be unique")
        let k = Self.instances.withLock { n -> Int in n += 1; return n - 1 }
        let prefix = "\(Self.namespacePrefix)-\(k)"
        // Interface names are limited to 15 bytes: "mmp" + pid (≤ 7) + instance + index, base 36.
        let tag = "\(Self.namespacePrefix)\(String(k % 36, radix: 36))"
        self.directory = directory
        self.agentArguments = agentArguments
        self.startsAgents = startsAgents
        switchNamespace = "\(prefix)-sw"
        nodes = names.enumerated().map { i, name in
            Node(name: name, index: i, namespace: "\(prefix)-\(name)", meshAddress: "10.77.0.\(11 + i)",
                 accessAddress: "10.77.0.\(130 + 4 * i)", rootInterface: "\(tag)\(String(i, radix: 36))",
                 rootAddress: "10.77.0.\(129 + 4 * i)", switchPort: "n\(i)", directory: "\(directory)/\(name)")
        }
        brokers = names.map { _ in ProcessSlot() }
        agents = names.map { _ in ProcessSlot() }
    }

    public func node(_ name: String) -> Node {
        guard let n = nodes.first(where: { $0.name == name }) else { preconditionFailure("no node \(name)") }
        return n
    }

    // MARK: - Life cycle

    /// Builds the network, starts every broker, then every agent, and waits (bounded) until
    /// each agent answers `up`. On failure everything built so far is removed.
    public func start(timeout: Duration = .seconds(40)) async throws {
        do {
            await Self.removeStale()
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try await buildNetwork()
            for n in nodes { try startBroker(n) }
            for n in nodes {
                guard await Network.waitForListening(host: n.accessAddress, port: Self.mqttPort, timeout: .seconds(10)) else {
                    throw HarnessError("broker \(n.name) in \(n.namespace) did not listen within 10 s: \(tail(n.directory + "/broker/stderr.log"))")
                }
            }
            guard startsAgents else { return }
            for n in nodes { try startAgent(n) }
            for n in nodes { try await waitUntilUp(n.name, timeout: timeout) }
        } catch {
            await stop()
            throw error
        }
    }

    /// Stops everything and removes the namespaces and veths. Safe to call twice.
    public func stop() async {
        // Heal first: a stopping agent drains what it holds for its peers (bounded).
        cuts.withLock { $0.isolated = []; $0.pairs = [] }
        if (try? await applyCuts()) == nil {
            for n in nodes { _ = try? await Self.run(tc(switchNamespace, "qdisc", "del", "dev", n.switchPort, "root")) }
        }
        await withTaskGroup(of: Void.self) { group in
            for slot in agents { group.addTask { await slot.stop(grace: .seconds(15)) } }
        }
        await withTaskGroup(of: Void.self) { group in
            for slot in brokers { group.addTask { await slot.stop(grace: .seconds(5)) } }
        }
        // Whatever still runs inside our namespaces was started by us.
        for ns in nodes.map(\.namespace) + [switchNamespace] { await Self.killAll(in: ns) }
        for ns in nodes.map(\.namespace) + [switchNamespace] { _ = try? await Self.run(["/usr/sbin/ip", "netns", "del", ns]) }
        // Deleting a namespace deletes its end of each veth, and with it the root's end; be sure.
        for n in nodes where Self.rootLinkExists(n.rootInterface) { _ = try? await Self.run(["/usr/sbin/ip", "link", "del", n.rootInterface]) }
    }

    private func buildNetwork() async throws {
        let ip = "/usr/sbin/ip"
        try await Self.run([ip, "netns", "add", switchNamespace])
        try await Self.run([ip, "-n", switchNamespace, "link", "set", "lo", "up"])
        try await Self.run([ip, "-n", switchNamespace, "link", "add", "br0", "type", "bridge"])
        try await Self.run([ip, "-n", switchNamespace, "link", "set", "br0", "up"])
        for n in nodes {
            try FileManager.default.createDirectory(atPath: n.directory + "/broker", withIntermediateDirectories: true)
            try await Self.run([ip, "netns", "add", n.namespace])
            try await Self.run([ip, "-n", n.namespace, "link", "set", "lo", "up"])
            try await Self.run([ip, "link", "add", "eth0", "netns", n.namespace, "address", Self.mac(n.index),
                                "type", "veth", "peer", "name", n.switchPort, "netns", switchNamespace])
            try await Self.run([ip, "-n", n.namespace, "addr", "add", "\(n.meshAddress)/25", "dev", "eth0"])
            try await Self.run([ip, "-n", n.namespace, "link", "set", "eth0", "up"])
            try await Self.run([ip, "-n", switchNamespace, "link", "set", n.switchPort, "master", "br0", "up"])
            try await Self.run([ip, "link", "add", n.rootInterface, "type", "veth", "peer", "name", "acc0", "netns", n.namespace])
            try await Self.run([ip, "addr", "add", "\(n.rootAddress)/30", "dev", n.rootInterface])
            try await Self.run([ip, "link", "set", n.rootInterface, "up"])
            try await Self.run([ip, "-n", n.namespace, "addr", "add", "\(n.accessAddress)/30", "dev", "acc0"])
            try await Self.run([ip, "-n", n.namespace, "link", "set", "acc0", "up"])
        }
        // Permanent neighbours: a cut must not surface as an ARP failure (a local "host
        // unreachable" error) but as packets that never arrive.
        for n in nodes where nodes.count > 1 {
            let batch = n.directory + "/neighbours.batch"
            let lines = nodes.filter { $0.index != n.index }.map { "neigh replace \($0.meshAddress) lladdr \(Self.mac($0.index)) dev eth0 nud permanent" }
            try (lines.joined(separator: "\n") + "\n").write(toFile: batch, atomically: true, encoding: .utf8)
            try await Self.run([ip, "-n", n.namespace, "-batch", batch])
        }
    }

    /// Locally administered, one per node: 02:77:00:00:00:<index>.
    static func mac(_ index: Int) -> String { String(format: "02:77:00:00:00:%02x", index) }

    private func startBroker(_ n: Node) throws {
        var options = BrokerProcess.Options()
        options.port = Self.mqttPort
        // The harness's broker configuration, listening on every address of the namespace.
        let template = BrokerProcess(name: n.name, directory: n.directory + "/broker", options: options)
        let text = template.configurationText.replacingOccurrences(of: "listener \(Self.mqttPort) 127.0.0.1\n", with: "listener \(Self.mqttPort)\n")
        let conf = n.directory + "/broker/mosquitto.conf"
        try text.write(toFile: conf, atomically: true, encoding: .utf8)
        // `ip netns exec` execs the command: the pid is mosquitto's own (kill -9 reaches it).
        let child = try ChildProcess(executable: "/usr/sbin/ip", arguments: ["netns", "exec", n.namespace, options.executable, "-c", conf],
                                     logPath: n.directory + "/broker/stderr.log")
        brokers[n.index].hold(child)
    }

    /// The `mosquitto-mesh run` arguments of node `n`'s agent.
    public func agentCommand(_ n: Node) throws -> [String] {
        var args = [try AgentProcess.binaryPath(), "run", "--node-id", n.name, "--local", "127.0.0.1:\(Self.mqttPort)",
                    "--state-dir", n.directory + "/agent", "--health-listen", "0.0.0.0:\(Self.healthPort)",
                    "--metrics-listen", "0.0.0.0:\(Self.metricsPort)", "--log-level", "info"]
        for p in nodes where p.index != n.index { args += ["--peer", p.peerLabel] }
        return args + agentArguments
    }

    private func startAgent(_ n: Node) throws {
        try FileManager.default.createDirectory(atPath: n.directory + "/agent", withIntermediateDirectories: true)
        let child = try ChildProcess(executable: "/usr/sbin/ip", arguments: ["netns", "exec", n.namespace] + agentCommand(n),
                                     logPath: n.agentLogPath)
        agents[n.index].hold(child)
    }

    /// Starts a node's agent again (after `stopAgent` or `kill`, with the broker running).
    public func restartAgent(_ name: String) async throws {
        let n = node(name)
        try startAgent(n)
        try await waitUntilUp(name)
    }

    public func waitUntilUp(_ name: String, timeout: Duration = .seconds(40)) async throws {
        let n = node(name)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if let line = health(name), line.hasPrefix("up") { return }
            if let p = agents[n.index].child, !p.isRunning { throw HarnessError("agent \(name) exited: \(tail(n.agentLogPath))") }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessError("agent \(name) not up within \(timeout): \(tail(n.agentLogPath))")
    }

    // MARK: - Faults

    /// Cuts `name` off from every other node: every packet to and from it on the mesh network
    /// is dropped silently (no reset, no link down). Its access link (clients) stays.
    public func partition(_ name: String) async throws {
        let i = node(name).index
        cuts.withLock { _ = $0.isolated.insert(i) }
        try await applyCuts()
    }

    /// Ends `partition(name)` (pairwise cuts made separately stay).
    public func heal(_ name: String) async throws {
        let i = node(name).index
        cuts.withLock { _ = $0.isolated.remove(i) }
        try await applyCuts()
    }

    /// Cuts only the path between `a` and `b` (both directions); each still reaches every
    /// other node.
    public func partition(_ a: String, _ b: String) async throws {
        let (x, y) = (node(a).index, node(b).index)
        guard x != y else { throw HarnessError("cannot cut \(a) from itself") }
        cuts.withLock { _ = $0.pairs.insert(Cuts.Pair(x, y)) }
        try await applyCuts()
    }

    public func heal(_ a: String, _ b: String) async throws {
        let (x, y) = (node(a).index, node(b).index)
        cuts.withLock { _ = $0.pairs.remove(Cuts.Pair(x, y)) }
        try await applyCuts()
    }

    /// Brings every switch port's filters in line with the cuts: on the port towards node
    /// `j`, packets from each node `j` must not hear are classified (u32, source address)
    /// into an HTB class whose only queue is `pfifo limit 0`; everything else takes HTB's
    /// unshaped direct queue (`default 0`). Dropping in the switch, not in the nodes, keeps a
    /// cut invisible to both ends' TCP stacks: a qdisc drop on a host's own egress is
    /// reported to its sockets (a peer link failed with "errno" 8 s into such a cut).
    private func applyCuts() async throws {
        let (wanted, installed) = cuts.withLock { c in (c.blockedSources(nodes: nodes.count), c.installed) }
        for j in nodes.indices {
            let want = wanted[j, default: []], have = installed[j, default: []]
            guard want != have else { continue }
            let port = nodes[j].switchPort
            if want.isEmpty {
                try await Self.run(tc(switchNamespace, "qdisc", "del", "dev", port, "root"))
                cuts.withLock { $0.installed[j] = nil }
                continue
            }
            if have.isEmpty {
                try await Self.run(tc(switchNamespace, "qdisc", "add", "dev", port, "root", "handle", "1:", "htb", "default", "0"))
                try await Self.run(tc(switchNamespace, "class", "add", "dev", port, "parent", "1:", "classid", "1:2", "htb", "rate", "1mbit"))
                try await Self.run(tc(switchNamespace, "qdisc", "add", "dev", port, "parent", "1:2", "handle", "2:", "pfifo", "limit", "0"))
            }
            for i in want.subtracting(have).sorted() {
                try await Self.run(tc(switchNamespace, "filter", "add", "dev", port, "parent", "1:", "protocol", "ip", "pref", "\(10 + i)",
                                      "u32", "match", "ip", "src", "\(nodes[i].meshAddress)/32", "flowid", "1:2"))
                cuts.withLock { _ = $0.installed[j, default: []].insert(i) }
            }
            for i in have.subtracting(want).sorted() {
                try await Self.run(tc(switchNamespace, "filter", "del", "dev", port, "parent", "1:", "pref", "\(10 + i)"))
                cuts.withLock { _ = $0.installed[j]?.remove(i) }
            }
        }
    }

    private func tc(_ namespace: String, _ arguments: String...) -> [String] { ["/usr/sbin/tc", "-n", namespace] + arguments }

    /// kill -9 of the node's agent and broker (a crash of the whole node).
    public func kill(_ name: String) async {
        let n = node(name)
        agents[n.index].child?.signal(SIGKILL)
        brokers[n.index].child?.signal(SIGKILL)
        await agents[n.index].kill9()
        await brokers[n.index].kill9()
    }

    /// kill -9 of the node's agent only.
    public func killAgent(_ name: String) async { await agents[node(name).index].kill9() }

    /// SIGTERM to the node's agent; its exit code and how long the graceful stop took
    /// (SIGKILL after `grace`).
    public func stopAgent(_ name: String, grace: Duration = .seconds(60)) async -> (exitCode: Int32?, duration: Duration) {
        let clock = ContinuousClock()
        let started = clock.now
        let code = await agents[node(name).index].stop(grace: grace)
        return (code, clock.now - started)
    }

    // MARK: - Observations

    public func agentPID(_ name: String) -> pid_t? { agents[node(name).index].pid }
    public func brokerPID(_ name: String) -> pid_t? { brokers[node(name).index].pid }
    public func agentIsRunning(_ name: String) -> Bool { agents[node(name).index].isRunning }
    public func agentResidentBytes(_ name: String) -> Int? { agentPID(name).flatMap(ProcessProbe.residentBytes) }

    /// The agent-check line (`up ready`, `drain`, `down`), read over the access link.
    public func health(_ name: String) -> String? {
        Self.request(host: node(name).accessAddress, port: Self.healthPort, send: nil)?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Every sample of the agent's `GET /metrics`; nil if it does not answer.
    public func metrics(_ name: String) -> [String: Double]? {
        let host = node(name).accessAddress
        guard let text = Self.request(host: host, port: Self.metricsPort,
                                      send: "GET /metrics HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n"),
              text.hasPrefix("HTTP/1.1 200"), let body = text.range(of: "\r\n\r\n") else { return nil }
        return metricSamples(String(text[body.upperBound...]))
    }

    /// One sample, e.g. `metric("a", "mesh_peer_link_up", peer: "c")` (peer given as a node name).
    public func metric(_ name: String, _ sample: String, peer: String? = nil) -> Double? {
        metrics(name)?[peer.map { "\(sample){peer=\"\(node($0).peerLabel)\"}" } ?? sample]
    }

    public func agentLogTail(_ name: String, maxBytes: Int = 4000) -> String { tail(node(name).agentLogPath, maxBytes: maxBytes) }

    private func tail(_ path: String, maxBytes: Int = 4000) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "" }
        return String(decoding: data.suffix(maxBytes), as: UTF8.self)
    }

    /// Whether `name`'s eth0 is administratively and operationally up (a cut must not take it down).
    public func meshLinkIsUp(_ name: String) async -> Bool {
        guard let out = try? await Self.run(["/usr/sbin/ip", "-n", node(name).namespace, "-o", "link", "show", "dev", "eth0"]) else { return false }
        return out.contains("state UP") && out.contains(",UP")
    }

    public enum TCPProbe: Equatable, Sendable, CustomStringConvertible {
        case connected, refused, timedOut
        case failed(String)
        public var description: String {
            switch self {
            case .connected: "connected"
            case .refused: "refused (RST)"
            case .timedOut: "timed out (no answer)"
            case .failed(let why): "failed: \(why)"
            }
        }
    }

    /// A TCP connect from inside `from`'s namespace to `to`'s mesh address: what a peer
    /// link sees. A closed port answers with a reset unless the packets are dropped.
    public func tcpProbe(from: String, to: String, port: Int32, timeout: Int = 2) async -> TCPProbe {
        let script = "exec 3<>/dev/tcp/\(node(to).meshAddress)/\(port)"
        let args = ["/usr/sbin/ip", "netns", "exec", node(from).namespace, "/usr/bin/timeout", "\(timeout)", "/usr/bin/bash", "-c", script]
        let (code, out) = await Self.runStatus(args, timeout: .seconds(Int64(timeout) + 5))
        switch code {
        case 0: return .connected
        case 124: return .timedOut
        default: return out.contains("refused") ? .refused : .failed("exit \(code.map(String.init) ?? "?"): \(out.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// Packets the cuts have dropped so far in the switch (a check that a cut is what
    /// dropped them): the `pfifo limit 0` queues' drop counters.
    public func droppedPackets() async -> Int {
        guard let out = try? await Self.run(["/usr/sbin/tc", "-n", switchNamespace, "-s", "qdisc", "show"]) else { return 0 }
        var total = 0
        var inDropQueue = false
        for line in out.split(separator: "\n") {
            if line.hasPrefix("qdisc") { inDropQueue = line.hasPrefix("qdisc pfifo 2:"); continue }
            guard inDropQueue, let r = line.range(of: "(dropped ") else { continue }
            total += Int(line[r.upperBound...].prefix { $0.isNumber }) ?? 0
        }
        return total
    }

    // MARK: - Machine support

    /// Why this machine cannot run netns partitions, or nil when it can: root, iproute2 and
    /// tc, mosquitto, and a kernel that lets us add a namespace with the qdiscs cuts use.
    public static let unavailableReason: String? = probe()

    private static func probe() -> String? {
        guard getuid() == 0 else { return "needs root (ip netns, tc)" }
        for tool in ["/usr/sbin/ip", "/usr/sbin/tc", "/usr/sbin/mosquitto", "/usr/bin/bash", "/usr/bin/timeout"]
            where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not installed"
        }
        let ns = "\(namespacePrefix)-probe"
        guard runBlocking(["/usr/sbin/ip", "netns", "add", ns]) == 0 else { return "'ip netns add' is not permitted here" }
        defer { _ = runBlocking(["/usr/sbin/ip", "netns", "del", ns]) }
        guard runBlocking(["/usr/sbin/ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"]) == 0 else {
            return "cannot create a veth pair in a namespace"
        }
        let tc = ["/usr/sbin/tc", "-n", ns]
        guard runBlocking(tc + ["qdisc", "add", "dev", "p0", "root", "pfifo", "limit", "0"]) == 0 else { return "tc: no pfifo qdisc" }
        guard runBlocking(tc + ["qdisc", "add", "dev", "p1", "root", "handle", "1:", "htb", "default", "0"]) == 0,
              runBlocking(tc + ["class", "add", "dev", "p1", "parent", "1:", "classid", "1:10", "htb", "rate", "1mbit"]) == 0,
              runBlocking(tc + ["filter", "add", "dev", "p1", "parent", "1:", "protocol", "ip", "pref", "10", "u32",
                                "match", "ip", "dst", "10.77.0.1/32", "flowid", "1:10"]) == 0 else {
            return "tc: no htb qdisc or u32 filter (pairwise cuts need them)"
        }
        return nil
    }

    private static func runBlocking(_ args: [String]) -> Int32? {
        guard let child = try? ChildProcess(executable: args[0], arguments: Array(args.dropFirst())) else { return nil }
        for _ in 0..<500 where child.isRunning { usleep(10_000) }
        if child.isRunning { child.signal(SIGKILL); return nil }
        return child.exitCode
    }

    // MARK: - Commands

    /// Runs a command (bounded wait), returns its output; throws with the output if it failed.
    @discardableResult
    static func run(_ args: [String], timeout: Duration = .seconds(15)) async throws -> String {
        let (code, out) = await runStatus(args, timeout: timeout)
        guard code == 0 else { throw HarnessError("\(args.joined(separator: " ")) failed (exit \(code.map(String.init) ?? "none")): \(out)") }
        return out
    }

    static func runStatus(_ args: [String], timeout: Duration = .seconds(15)) async -> (Int32?, String) {
        let out = NSTemporaryDirectory() + "/mmp-cmd-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).out"
        defer { try? FileManager.default.removeItem(atPath: out) }
        guard let child = try? ChildProcess(executable: args[0], arguments: Array(args.dropFirst()), logPath: out) else { return (nil, "cannot start \(args[0])") }
        if !(await child.waitForExit(timeout: timeout)) {
            child.signal(SIGKILL)
            await child.waitForExit(timeout: .seconds(5))
            return (nil, "timed out after \(timeout)")
        }
        return (child.exitCode, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    private static func killAll(in namespace: String) async {
        guard let out = try? await run(["/usr/sbin/ip", "netns", "pids", namespace]) else { return }
        for pid in out.split(whereSeparator: \.isWhitespace).compactMap({ pid_t($0) }) { Glibc.kill(pid, SIGKILL) }
    }

    private static func rootLinkExists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: "/sys/class/net/\(name)") }

    /// Removes namespaces (and root veth ends) of earlier test processes that died without
    /// tearing down: names `mmp<pid>-…` whose pid no longer runs. Never touches live ones.
    static func removeStale() async {
        guard let list = try? await run(["/usr/sbin/ip", "netns", "list"]) else { return }
        var deadPIDs: Set<String> = []
        for line in list.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix("mmp"), let dash = name.firstIndex(of: "-") else { continue }
            let digits = name[name.index(name.startIndex, offsetBy: 3)..<dash]
            guard let pid = pid_t(digits), pid != getpid(), Glibc.kill(pid, 0) != 0, errno == ESRCH else { continue }
            deadPIDs.insert(String(digits))
            await killAll(in: name)
            _ = try? await run(["/usr/sbin/ip", "netns", "del", name])
        }
        guard !deadPIDs.isEmpty, let links = try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/net") else { return }
        for link in links where deadPIDs.contains(where: { link.hasPrefix("mmp\($0)") && link.count == "mmp\($0)".count + 2 }) {
            _ = try? await run(["/usr/sbin/ip", "link", "del", link])
        }
    }

    /// One request/answer over TCP with bounded connect, send and read times (an agent that
    /// hangs must not hang the test).
    static func request(host: String, port: Int32, send text: String?, timeout: Int = 2) -> String? {
        guard let fd = try? Network.tcpConnect(host: host, port: port, timeoutSeconds: timeout, boundingSends: true) else { return nil }
        defer { close(fd) }
        if let text {
            let bytes = Array(text.utf8)
            guard bytes.withUnsafeBytes({ Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else { return nil }
        }
        let data = Network.readToEnd(fd)
        return data.isEmpty ? nil : String(decoding: data, as: UTF8.self)
    }
}
