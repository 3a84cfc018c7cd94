import ArgumentParser
import Foundation
import MeshHarness

extension MosquittoMesh {
    /// Failover measured through HAProxy (issue 3): constant-rate QoS 1 publishers and
    /// persistent subscribers through the load balancer, a broker killed with kill -9
    /// (and, in the netns topology, the MASTER load balancer), reported per second.
    struct BenchFailover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "failover",
            abstract: "Kill a broker (and a load balancer) under load and measure what it costs.",
            discussion: """
            Loopback (default): starts --nodes brokers with agents and HAProxy (client-id stickiness, agent-check)
            on 127.0.0.1, kills broker --kill with kill -9 at --kill-at seconds.
            Network namespaces: examples/ha-netns/run.sh builds two broker hosts, two HAProxy+keepalived hosts
            with a floating IP and a client host, and runs this command with --netns DIR inside the client host;
            it kills a broker at --kill-at and the MASTER load balancer (HAProxy and keepalived, kill -9) at --lb-kill-at.
            Partition (--partition, root): every broker and agent in a network namespace of its own (NetnsMesh,
            10.77.0.0/24) behind HAProxy on loopback; at --partition-at node --cut is cut off from its peers (packets
            dropped silently, its clients stay connected to it), at --heal-at the cut ends.
            --persistent-sessions (loopback, 3+ nodes): subscribers subscribe on their first connect only (half MQTT 3.1.1,
            half 5) and the agents adopt the killed broker's sessions (--adopt-after, HAProxy runtime API); the table adds the
            loss window kill → adoption. --restart-at restarts the killed broker from its persistence.
            Exit status 0 whether or not the targets were met, unless --require-targets.
            """
        )

        @Option(help: "Brokers in the loopback mesh (2-5; default 2, with --partition 3).")
        var nodes: Int?
        @Option(help: "Publishers (each its own MQTT connection).")
        var publishers = 4
        @Option(help: "Persistent-session subscribers, each subscribed to every publisher's topic.")
        var subscribers = 4
        @Option(help: "Messages per second per publisher (QoS 1).")
        var rate = 50
        @Option(help: "Seconds of constant-rate publishing.")
        var duration = 20.0
        @Option(name: .customLong("kill-at"), help: "Seconds after the start to kill -9 a broker.")
        var killAt = 6.0
        @Option(help: "Loopback: node name of the broker to kill (a, b, …).")
        var kill = "a"
        @Option(name: .customLong("lb-kill-at"), help: "Netns: seconds after the start to kill -9 the MASTER load balancer.")
        var lbKillAt = 13.0
        @Option(help: "Directory written by examples/ha-netns/run.sh (topology.env); runs against that topology.")
        var netns: String?
        @Option(help: "Write the per-second rows as CSV here.")
        var csv: String?
        @Option(help: "Write the timeline picture (SVG) here.")
        var svg: String?
        @Option(help: "Write a JSON summary here.")
        var json: String?
        @Option(help: "Loopback working directory (configs, logs). Default: a new temporary directory.")
        var dir: String?
        @Flag(name: .customLong("require-targets"), help: "Exit 1 when a target is missed.")
        var requireTargets = false
        @Flag(help: "Partition instead of kills: cut node --cut off from its peers (needs root and ip netns).")
        var partition = false
        @Option(name: .customLong("partition-at"), help: "Partition: seconds after the start to cut the node off.")
        var partitionAt = 6.0
        @Option(name: .customLong("heal-at"), help: "Partition: seconds after the start to end the cut.")
        var healAt = 16.0
        @Option(help: "Partition: node to cut off (default: the last node).")
        var cut: String?

        private var nodeCount: Int { nodes ?? (partition ? 3 : 2) }
        private var nodeNames: [String] { (0..<nodeCount).map { String(UnicodeScalar(UInt8(ascii: "a") + UInt8($0))) } }
        @Flag(name: .customLong("persistent-sessions"), help: "Loopback: subscribers subscribe once and rely on their session; the agents adopt the killed broker's sessions (needs --nodes 3 or more).")
        var persistentSessions = false
        @Option(name: .customLong("adopt-after"), help: "With --persistent-sessions: the agents' --adopt-after, seconds.")
        var adoptAfter = 5.0
        @Option(name: .customLong("restart-at"), help: "Loopback: seconds after the start to restart the killed broker from its persistence.")
        var restartAt: Double?

        func validate() throws {
            guard (2...5).contains(nodeCount) else { throw ValidationError("invalid --nodes '\(nodeCount)': expected 2-5") }
            guard (1...50).contains(publishers) else { throw ValidationError("invalid --publishers '\(publishers)': expected 1-50") }
            guard (1...50).contains(subscribers) else { throw ValidationError("invalid --subscribers '\(subscribers)': expected 1-50") }
            guard (1...2000).contains(rate) else { throw ValidationError("invalid --rate '\(rate)': expected 1-2000 msg/s per publisher") }
            guard (2...300).contains(duration) else { throw ValidationError("invalid --duration '\(duration)': expected 2-300 s") }
            // Message ids wrap at 65535 per client; acknowledgements are matched by id.
            guard Double(rate) * duration * 1.1 < 65000 else { throw ValidationError("--rate x --duration '\(Int(Double(rate) * duration))' is too many messages per publisher: keep it under 59000") }
            if partition {
                guard netns == nil else { throw ValidationError("--partition builds its own namespaces: drop --netns") }
                guard partitionAt > 0 && partitionAt < healAt && healAt < duration else {
                    throw ValidationError("invalid --partition-at '\(partitionAt)' / --heal-at '\(healAt)': expected 0 < partition-at < heal-at < --duration")
                }
                guard nodeNames.contains(cut ?? nodeNames.last!) else { throw ValidationError("invalid --cut '\(cut ?? "")': expected one of \(nodeNames.joined(separator: ", "))") }
                return
            }
            guard killAt > 0 && killAt < duration else { throw ValidationError("invalid --kill-at '\(killAt)': expected between 0 and --duration") }
            if persistentSessions {
                guard netns == nil else { throw ValidationError("--persistent-sessions runs on loopback only") }
                guard nodeCount >= 3 else { throw ValidationError("invalid --nodes '\(nodeCount)': --persistent-sessions needs 3 or more (the survivors must be a majority to adopt)") }
                guard adoptAfter > 0 && adoptAfter < 60 else { throw ValidationError("invalid --adopt-after '\(adoptAfter)': expected 0-60 s") }
            }
            if let restartAt {
                guard netns == nil, restartAt > killAt, restartAt < duration else { throw ValidationError("invalid --restart-at '\(restartAt)': expected between --kill-at and --duration (loopback)") }
            }
            if netns != nil {
                guard lbKillAt > killAt && lbKillAt < duration else { throw ValidationError("invalid --lb-kill-at '\(lbKillAt)': expected between --kill-at and --duration") }
            } else {
                let names = nodeNames
                guard names.contains(kill) else { throw ValidationError("invalid --kill '\(kill)': expected one of \(names.joined(separator: ", "))") }
            }
        }

        func run() async throws {
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
            if requireTargets && !targets.met { throw ExitCode(1) }
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
            let names = nodeNames
            let nodes = nodeCount
            let directory = dir ?? MeshCluster.temporaryDirectory("bench-failover")
            let runtime = Network.freePort()
            let cluster = MeshCluster(nodes: names, directory: directory,
                                      nodeArguments: persistentSessions ? MeshCluster.adoptionArguments(nodes: names, runtimePort: runtime, adoptAfter: adoptAfter) : [:])
            let lb = cluster.makeLoadBalancer(balance: "leastconn", runtimePort: runtime)
            say("loopback: \(nodes) brokers + agents + HAProxy (leastconn, client-id stickiness, agent-check) in \(directory)"
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
                return (FailoverAnalysis(recording), "mosquitto-mesh failover, loopback: \(nodes) brokers behind HAProxy, \(publishers)×\(rate) msg/s QoS 1"
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
            if let reason = NetnsMesh.unavailableReason { throw ValidationError("--partition: \(reason)") }
            let names = nodeNames
            let victim = cut ?? names.last!
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
}

/// Prints a line at once (stdout may be a pipe to the netns script).
private func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
