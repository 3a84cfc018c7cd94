import Foundation
import MeshHarness

/// `bench failover` (issue 3): constant-rate QoS 1 publishers and persistent subscribers
/// through the load balancer, a broker killed with kill -9 (and, in the netns topology, the
/// MASTER load balancer) or a node cut off from its peers, reported per second. The CLI
/// parses and checks the options; this runs the chosen topology and writes the report.
package struct FailoverBench: Sendable {
    /// Loopback and partition: the node names (a, b, …).
    package var nodes: [String]
    package var publishers = 4
    package var subscribers = 4
    package var rate = 50
    package var duration = 20.0
    package var killAt = 6.0
    package var kill = "a"
    package var lbKillAt = 13.0
    /// Directory written by examples/ha-netns/run.sh: run against that topology.
    package var netns: String?
    package var dir: String?
    /// A partition instead of kills: node `cut` cut off from its peers at `partitionAt` s,
    /// healed at `healAt` s.
    package var partition = false
    package var partitionAt = 6.0
    package var healAt = 16.0
    package var cut = ""
    package var persistentSessions = false
    package var adoptAfter = 5.0
    package var restartAt: Double?
    /// Where to write the per-second rows (CSV), the timeline (SVG) and the summary (JSON).
    package var csv: String?
    package var svg: String?
    package var json: String?

    package init(nodes: [String]) { self.nodes = nodes }

    /// Runs, prints the table, summary and targets, writes the files; returns whether every target was met.
    package func run() async throws -> Bool {
        let analysis: FailoverAnalysis
        let title: String
        if partition {
            (analysis, title) = try await runPartition()
        } else if let netns {
            (analysis, title) = try await runNetns(directory: netns)
        } else {
            (analysis, title) = try await runLoopback()
        }
        say("\n" + FailoverOutput.table(analysis, clients: publishers + subscribers))
        say(FailoverOutput.summary(analysis))
        let targets = FailoverOutput.targets(analysis)
        say(targets.text)
        if let csv { try FailoverOutput.csv(analysis).write(toFile: csv, atomically: true, encoding: .utf8); say("CSV: \(csv)") }
        if let svg { try FailoverOutput.svg(analysis, title: title).write(toFile: svg, atomically: true, encoding: .utf8); say("SVG: \(svg)") }
        if let json { try FailoverOutput.json(analysis).write(to: URL(fileURLWithPath: json)); say("JSON: \(json)") }
        return targets.met
    }

    private func basePlan(host: String, port: Int32) -> FailoverPlan {
        var plan = FailoverPlan(host: host, port: port)
        plan.publishers = publishers
        plan.subscribers = subscribers
        plan.rate = rate
        plan.duration = .milliseconds(Int64(duration * 1000))
        return plan
    }

    private func runLoopback() async throws -> (FailoverAnalysis, String) {
        let names = nodes
        let directory = dir ?? MeshCluster.temporaryDirectory("bench-failover")
        let runtime = Network.freePort()
        let cluster = MeshCluster(nodes: names, directory: directory,
                                  nodeArguments: persistentSessions ? MeshCluster.adoptionArguments(nodes: names, runtimePort: runtime, adoptAfter: adoptAfter) : [:])
        let lb = cluster.makeLoadBalancer(balance: "leastconn", runtimePort: runtime)
        say("loopback: \(names.count) brokers + agents + HAProxy (leastconn, client-id stickiness, agent-check) in \(directory)"
            + (persistentSessions ? "; persistent sessions (subscribe once), adoption after \(adoptAfter) s" : ""))
        do {
            try await cluster.start()
            try await lb.start()
            let victim = cluster.brokers[names.firstIndex(of: kill)!]
            var plan = basePlan(host: "127.0.0.1", port: lb.port)
            let admin = lb.admin
            plan.locate = { try admin.stuckClients(backend: HAProxyProcess.backendName) }
            plan.faults = [FailoverFault(kind: .broker, label: "kill -9 broker \(kill)", at: .milliseconds(Int64(killAt * 1000)),
                                         server: kill) { await victim.kill9() }]
            if let restartAt {
                plan.faults.append(FailoverFault(kind: .restart, label: "restart broker \(kill)", at: .milliseconds(Int64(restartAt * 1000))) {
                    try await victim.start()
                })
            }
            if persistentSessions {
                plan.persistentSessions = true
                let survivorPorts = cluster.brokers.filter { $0 !== victim }.map(\.port)
                let lost = kill
                plan.adoptions = { try await SessionDirectoryProbe.adoptions(from: lost, ports: survivorPorts).mapValues(\.time) }
            }
            let recording = try await FailoverRunner.run(plan) { say($0) }
            await lb.stop()
            await cluster.stop()
            return (FailoverAnalysis(recording), "mosquitto-mesh failover, loopback: \(names.count) brokers behind HAProxy, \(publishers)×\(rate) msg/s QoS 1"
                    + (persistentSessions ? ", \(subscribers) persistent sessions (subscribe once), adoption after \(adoptAfter) s" : ""))
        } catch {
            await lb.stop()
            await cluster.stop()
            throw error
        }
    }

    /// A node cut off from its peers while clients on every node keep publishing and
    /// subscribing through HAProxy (on loopback, in the root namespace, reaching each
    /// node over its access link, which the cut leaves alone).
    private func runPartition() async throws -> (FailoverAnalysis, String) {
        let names = nodes
        let victim = cut
        let directory = dir ?? MeshCluster.temporaryDirectory("bench-partition")
        let mesh = NetnsMesh(nodes: names, directory: directory)
        let lb = HAProxyProcess(directory: directory + "/haproxy",
                                backends: mesh.nodes.map { .init(name: $0.name, port: NetnsMesh.mqttPort, agentPort: NetnsMesh.healthPort, host: $0.accessAddress) },
                                balance: "leastconn")
        say("partition: \(names.count) nodes in network namespaces (\(directory)) behind HAProxy; cut \(victim) off at \(partitionAt) s, heal at \(healAt) s")
        do {
            try await mesh.start()
            try await lb.start()
            var plan = basePlan(host: "127.0.0.1", port: lb.port)
            let admin = lb.admin
            plan.locate = { try admin.stuckClients(backend: HAProxyProcess.backendName) }
            let others = names.filter { $0 != victim }
            // After the heal: every link to and from the node is up and nothing is
            // pending or held for it any more (the backlog has crossed).
            let backlogDelivered: @Sendable () -> Bool = {
                others.allSatisfy { o in
                    let m = mesh.metrics(o) ?? [:]
                    let label = "{peer=\"\(mesh.node(victim).peerLabel)\"}"
                    return m["mesh_peer_link_up" + label] == 1 && (m["mesh_peer_pending_messages" + label] ?? 0) == 0
                        && (m["mesh_peer_held_messages" + label] ?? 0) == 0
                } && (mesh.metrics(victim).map { m in others.allSatisfy { m["mesh_peer_link_up{peer=\"\(mesh.node($0).peerLabel)\"}"] == 1 } } ?? false)
            }
            plan.faults = [
                FailoverFault(kind: .partition, label: "cut \(victim) off", at: .milliseconds(Int64(partitionAt * 1000)),
                              observe: .init(label: "\(victim) answers drain", target: 5) { mesh.health(victim) == "drain" }) {
                    try await mesh.partition(victim)
                },
                FailoverFault(kind: .heal, label: "heal \(victim)", at: .milliseconds(Int64(healAt * 1000)),
                              observe: .init(label: "links up, backlog for \(victim) delivered", condition: backlogDelivered)) {
                    try await mesh.heal(victim)
                },
            ]
            let recording = try await FailoverRunner.run(plan) { say($0) }
            await lb.stop()
            await mesh.stop()
            return (FailoverAnalysis(recording),
                    "mosquitto-mesh failover, netns partition: \(names.count) brokers behind HAProxy, \(victim) cut off \(Int(partitionAt))–\(Int(healAt)) s, \(publishers)×\(rate) msg/s QoS 1")
        } catch {
            await lb.stop()
            await mesh.stop()
            throw error
        }
    }

    private func runNetns(directory: String) async throws -> (FailoverAnalysis, String) {
        let topo = try FailoverNetnsTopology(directory: directory)
        say("netns: clients → floating IP \(topo.host):\(topo.port); kill broker \(topo.brokerServer) at \(killAt) s, MASTER \(topo.masterName) at \(lbKillAt) s")
        var plan = basePlan(host: topo.host, port: topo.port)
        let admin = HAProxyAdmin(socketPath: topo.masterAdminSocket)
        plan.locate = { try admin.stuckClients(backend: "mosquitto") }
        let brokerPIDs = topo.brokerPIDs, masterPIDs = topo.masterPIDs
        plan.faults = [
            FailoverFault(kind: .broker, label: "kill -9 broker \(topo.brokerServer)", at: .milliseconds(Int64(killAt * 1000)),
                          server: topo.brokerServer) { for p in brokerPIDs { Glibc.kill(p, SIGKILL) } },
            FailoverFault(kind: .loadBalancer, label: "kill -9 MASTER \(topo.masterName)", at: .milliseconds(Int64(lbKillAt * 1000)),
                          observe: .init(label: "floating IP on the BACKUP", condition: { topo.floatingIPOnBackup() })) {
                for p in masterPIDs { Glibc.kill(p, SIGKILL) }
            },
        ]
        let recording = try await FailoverRunner.run(plan) { say($0) }
        return (FailoverAnalysis(recording), "mosquitto-mesh failover, netns: 2 brokers, HAProxy+keepalived MASTER/BACKUP, \(publishers)×\(rate) msg/s QoS 1")
    }
}

/// Prints a line at once (stdout may be a pipe to the netns script).
private func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
