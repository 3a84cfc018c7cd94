import ArgumentParser
@preconcurrency import Dispatch
import Foundation
import MeshCore
import MeshHarness

extension MosquittoMesh {
    /// The README's first command: a whole mesh on loopback, a message crossing it, and
    /// everything left running for the operator to explore until Ctrl-C.
    struct LocalCluster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "local-cluster",
            abstract: "Start N brokers with agents and HAProxy on loopback, show a message crossing, run until Ctrl-C."
        )

        @Option(help: "Number of brokers (2-9).")
        var nodes = 3

        @Option(name: .customLong("base-port"), help: "HAProxy listens here; broker i on base-port+1+i.")
        var basePort: Int32 = 11883

        @Option(help: "Working directory (configs, logs, state). Default: a new temporary directory.")
        var dir: String?

        @Flag(help: "Exit after the demonstration instead of waiting for Ctrl-C.")
        var once = false

        func validate() throws {
            guard (2...9).contains(nodes) else { throw ValidationError("invalid --nodes '\(nodes)': expected 2-9") }
            guard (1024...65000).contains(basePort) else { throw ValidationError("invalid --base-port '\(basePort)': expected 1024-65000") }
        }

        func run() async throws {
            let names = (0..<nodes).map { String(UnicodeScalar(UInt8(ascii: "a") + UInt8($0))) }
            let directory = dir ?? MeshCluster.temporaryDirectory("local-cluster")
            let cluster = MeshCluster(nodes: names, directory: directory, basePort: basePort + 1)
            let lb = cluster.makeLoadBalancer(port: basePort)
            let interrupted = await InterruptFlag()
            do {
                say("starting \(nodes) mosquitto brokers and agents in \(directory)")
                try await cluster.start()
                for (b, a) in zip(cluster.brokers, cluster.agents) {
                    say("  broker \(b.name): 127.0.0.1:\(b.port)   agent health (agent-check): 127.0.0.1:\(a.healthPort)   log: \(a.logPath)")
                }
                try await lb.start()
                say("  HAProxy (client-id stickiness, agent-check): 127.0.0.1:\(lb.port)")
                try await demonstrate(cluster, lb)
                if once {
                    say("done (--once); stopping")
                } else {
                    say("""

                    The mesh keeps running. Try, in another terminal:
                      mosquitto_sub -p \(lb.port) -t 'demo/#' -v                 # through HAProxy
                      mosquitto_pub -p \(cluster.brokers[0].port) -t demo/hi -m 'from a'   # straight into broker a
                      mosquitto_sub -p \(cluster.brokers[0].port) -t '$mesh/#' -v     # what the agents advertise
                    Ctrl-C stops everything.
                    """)
                    await interrupted.wait()
                    say("stopping")
                }
            } catch {
                await lb.stop()
                await cluster.stop()
                throw error
            }
            await lb.stop()
            await cluster.stop()
            say("stopped cleanly")
        }

        private func demonstrate(_ cluster: MeshCluster, _ lb: HAProxyProcess) async throws {
            let subscriber = try HarnessClient(clientID: "demo-subscriber", port: lb.port)
            try await subscriber.connect()
            try await subscriber.subscribe("demo/#", qos: 1)
            let publisher = try HarnessClient(clientID: "demo-publisher", port: lb.port)
            try await publisher.connect()
            try await publisher.subscribe("demo-locate/publisher", qos: 0)
            let subNode = try await locate("demo/#", cluster)
            let pubNode = try await locate("demo-locate/publisher", cluster)
            say("subscriber connected through HAProxy, landed on broker \(subNode); publisher landed on broker \(pubNode)")
            // The publisher's agent must know the subscriber's interest before publishing.
            try await waitForInterest(of: subNode, filter: "demo/#", at: cluster)
            let text = "hello from a client on broker \(pubNode)"
            try publisher.publish("demo/hello", text, qos: 1)
            let got = try await subscriber.waitForMessages(1, timeout: .seconds(10))
            say("subscriber on broker \(subNode) received: demo/hello '\(got[0].text)'")
            // And straight from the first broker to a subscriber on the last one.
            let first = cluster.brokers.first!, last = cluster.brokers.last!
            let direct = try HarnessClient(clientID: "demo-direct", port: last.port)
            try await direct.connect()
            try await direct.subscribe("demo/direct", qos: 1)
            try await waitForInterest(of: last.name, filter: "demo/direct", at: cluster)
            let p2 = try HarnessClient(clientID: "demo-direct-pub", port: first.port)
            try await p2.connect()
            try p2.publish("demo/direct", "published on \(first.name), subscribed on \(last.name)", qos: 1)
            let got2 = try await direct.waitForMessages(1)
            say("subscriber on broker \(last.name) received: demo/direct '\(got2[0].text)'")
            for c in [subscriber, publisher, direct, p2] { c.close() }
        }

        /// Which node advertises `filter` (so: where the client holding it landed).
        private func locate(_ filter: String, _ cluster: MeshCluster) async throws -> String {
            var found: String?
            for _ in 0..<200 {
                for b in cluster.brokers {
                    let reader = try HarnessClient(clientID: "mosquitto-mesh/demo-reader", port: b.port)
                    try await reader.connect()
                    try await reader.subscribe(ControlTopic.subscriptions(node: b.name), qos: 0)
                    let messages = try? await reader.waitForMessages(1, timeout: .seconds(2))
                    reader.close()
                    if let m = messages?.last, let advert = try? InterestAdvertCodec.decode(m.payload, expectedNode: b.name),
                       advert.filters[filter] != nil {
                        found = b.name
                    }
                }
                if let found { return found }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw HarnessError("no broker advertises \(filter)")
        }

        /// Waits until every agent has read the advert of `node` that contains `filter`.
        private func waitForInterest(of node: String, filter: String, at cluster: MeshCluster) async throws {
            for b in cluster.brokers where b.name != node {
                let reader = try HarnessClient(clientID: "mosquitto-mesh/demo-view", port: b.port)
                try await reader.connect()
                try await reader.subscribe(ControlTopic.view(node: b.name), qos: 0)
                try await waitUntil(timeout: .seconds(10), "agent \(b.name) to learn \(node)'s interest") {
                    guard let m = reader.messages.last, let view = MeshView.decode(m.payload) else { return false }
                    return view.peers.contains { $0.nodes[node].map { $0.filters > 0 } ?? false }
                }
                reader.close()
            }
        }

        private func say(_ text: String) {
            FileHandle.standardOutput.write(Data((text + "\n").utf8))
        }
    }
}

