import ArgumentParser
import Foundation
import MeshBench
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
            if partition, let reason = NetnsMesh.unavailableReason { throw ValidationError("--partition: \(reason)") }
            var bench = FailoverBench(nodes: nodeNames)
            bench.publishers = publishers
            bench.subscribers = subscribers
            bench.rate = rate
            bench.duration = duration
            bench.killAt = killAt
            bench.kill = kill
            bench.lbKillAt = lbKillAt
            bench.netns = netns
            bench.dir = dir
            bench.partition = partition
            bench.partitionAt = partitionAt
            bench.healAt = healAt
            bench.cut = cut ?? nodeNames.last!
            bench.persistentSessions = persistentSessions
            bench.adoptAfter = adoptAfter
            bench.restartAt = restartAt
            bench.csv = csv
            bench.svg = svg
            bench.json = json
            let met = try await bench.run()
            if requireTargets && !met { throw ExitCode(1) }
        }
    }
}
