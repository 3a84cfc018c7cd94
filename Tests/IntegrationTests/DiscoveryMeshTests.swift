import Foundation
import MeshCore
import MeshHarness
import Testing

/// Discovery from one peer, with real brokers and agents: nodes that each know one other
/// node become a full mesh, forgotten nodes age out, and a returning node is found again.
@Suite("discovery", .serialized, .timeLimit(.minutes(3)))
struct DiscoveryMeshTests {
    /// Brokers and agents started by hand (each agent with its own peer list); always stopped.
    final class Fleet: Sendable {
        let brokers: [BrokerProcess]
        let agents: [AgentProcess]
        let directory: String

        init(nodes: [String], peers: (Int) -> [Int], extraArguments: [String] = [], label: String) {
            let directory = MeshCluster.temporaryDirectory(label)
            self.directory = directory
            let brokers = nodes.map { BrokerProcess(name: $0, directory: "\(directory)/broker-\($0)") }
            self.brokers = brokers
            agents = nodes.indices.map { i in
                AgentProcess(nodeID: nodes[i], local: brokers[i], peers: peers(i).map { brokers[$0].endpoint },
                             stateDirectory: "\(directory)/agent-\(nodes[i])", extraArguments: extraArguments)
            }
        }

        func start() async throws {
            for b in brokers { try await b.start() }
            for a in agents { try a.start() }
            for a in agents { try await a.waitUntilUp() }
        }

        func stop() async {
            for a in agents { await a.stop() }
            for b in brokers { await b.stop() }
        }

        /// The connected links in agent `i`'s retained view: endpoint → the nodes behind it.
        func links(of i: Int, reader: ControlReader) -> [String: [String]] {
            guard let view = reader.view(of: agents[i].nodeID) else { return [:] }
            var out: [String: [String]] = [:]
            for p in view.peers where p.connected { out[p.endpoint] = p.nodes.keys.sorted() }
            return out
        }

        func run(_ body: (Fleet) async throws -> Void) async throws {
            do {
                try await start()
                try await body(self)
            } catch {
                for a in agents { print("--- agent \(a.nodeID) log ---\n\(a.logTail())") }
                await stop()
                throw error
            }
            await stop()
        }
    }

    @Test("5 nodes, each knowing only the previous one: within seconds each has 4 links, one per node, and messages cross between any two")
    func chainBecomesFullMesh() async throws {
        let names = ["n0", "n1", "n2", "n3", "n4"]
        let fleet = Fleet(nodes: names, peers: { $0 == 0 ? [] : [$0 - 1] }, label: "discovery-chain")
        let clock = ContinuousClock()
        try await fleet.run { fleet in
            let started = clock.now
            var opened: [ControlReader] = []
            for b in fleet.brokers { opened.append(try await ControlReader(port: b.port)) }
            let readers = opened
            defer { for r in readers { r.close() } }
            // Every node: 4 connected links, leading to the 4 other nodes, one each.
            try await waitUntil(timeout: .seconds(15), "every node to link to the 4 others") {
                names.indices.allSatisfy { i in
                    let links = fleet.links(of: i, reader: readers[i])
                    let nodes = links.values.flatMap { $0 }
                    return links.count == 4 && Set(nodes) == Set(names).subtracting([names[i]]) && nodes.count == 4
                }
            }
            let converged = started.duration(to: clock.now)
            print("discovery: 5-node chain became a full mesh in \(converged) after the last agent was up")
            #expect(converged < .seconds(10))

            // One subscriber per node; every node publishes to every other node's subscriber.
            var subs: [HarnessClient] = []
            for (i, b) in fleet.brokers.enumerated() {
                let s = try HarnessClient(clientID: "sub-\(names[i])", port: b.port)
                try await s.connect()
                try await s.subscribe("d/\(names[i])", qos: 1)
                subs.append(s)
            }
            // Each subscription must have reached every other agent's routing (its view shows the advert).
            for (i, name) in names.enumerated() {
                let own = readers[i]
                try await waitUntil(timeout: .seconds(10), "advert of \(name) with its filter") {
                    (try? own.advert(of: name))??.filters["d/\(name)"] != nil
                }
                let target = try #require(try own.advert(of: name)).seq
                for j in names.indices where j != i {
                    try await waitUntil(timeout: .seconds(10), "\(names[j]) to read advert \(target) of \(name)") {
                        (readers[j].seq(seenBy: names[j], of: name) ?? 0) >= target
                    }
                }
            }
            var pubs: [HarnessClient] = []
            for (i, b) in fleet.brokers.enumerated() {
                let p = try HarnessClient(clientID: "pub-\(names[i])", port: b.port)
                try await p.connect()
                for (j, to) in names.enumerated() where j != i { try p.publish("d/\(to)", "from \(names[i])", qos: 1) }
                pubs.append(p)
            }
            for (i, s) in subs.enumerated() {
                try await s.waitForMessages(4, timeout: .seconds(10))
                let expected = Set(names.filter { $0 != names[i] }.map { "from \($0)" })
                // A moment for a duplicate (two links to one node) to show, bounded by a marker
                // from each publisher that was sent after its message.
                for p in pubs.indices where p != i { try pubs[p].publish("d/\(names[i])", "marker \(names[p])", qos: 1) }
                try await s.waitForMessages(8, timeout: .seconds(10))
                let texts = s.messages.map(\.text).filter { $0.hasPrefix("from ") }
                #expect(Set(texts) == expected, "\(names[i]) got \(texts)")
                #expect(texts.count == 4, "\(names[i]) got duplicates: \(texts)")
            }
            for c in subs + pubs { c.close() }
        }
    }

    @Test("a discovered node that dies ages out after --discovery-expiry; when it comes back with its one seed, every node links to it again")
    func deadNodesAgeOutAndReturn() async throws {
        let names = ["a", "b", "c"]
        // b knows a, c knows b: a and c know each other only through discovery.
        let fleet = Fleet(nodes: names, peers: { $0 == 0 ? [] : [$0 - 1] }, extraArguments: ["--discovery-expiry", "2"],
                          label: "discovery-expiry")
        try await fleet.run { fleet in
            var opened: [ControlReader] = []
            for b in fleet.brokers { opened.append(try await ControlReader(port: b.port)) }
            let readers = opened
            defer { for r in readers { r.close() } }
            @Sendable func linkCounts() -> [Int] { names.indices.map { fleet.links(of: $0, reader: readers[$0]).count } }
            try await waitUntil(timeout: .seconds(15), "a full mesh of 3") { linkCounts() == [2, 2, 2] }
            // c goes away, broker and all.
            let clock = ContinuousClock()
            await fleet.agents[2].stop()
            await fleet.brokers[2].stop()
            let gone = clock.now
            // a and b see c's link down at once, and forget c after the expiry (2 s): a's view no
            // longer lists c's broker at all (its link was closed, not just down).
            @Sendable func listed(_ i: Int, _ endpoint: String) -> Bool {
                (readers[i].view(of: names[i])?.peers ?? []).contains { $0.endpoint == endpoint }
            }
            let cEndpoint = fleet.brokers[2].endpoint
            try await waitUntil(timeout: .seconds(15), "a and b to forget c") { !listed(0, cEndpoint) && !listed(1, cEndpoint) }
            let forgotten = gone.duration(to: clock.now)
            print("discovery: a dead node was forgotten \(forgotten) after it stopped (expiry 2 s)")
            #expect(forgotten >= .seconds(2), "forgotten before the expiry")
            #expect(fleet.agents[0].logTail().contains("discovered node forgotten"))
            // c comes back, still knowing only b: a learns it again from b.
            try await fleet.brokers[2].start()
            try fleet.agents[2].start()
            try await fleet.agents[2].waitUntilUp()
            try await waitUntil(timeout: .seconds(15), "the full mesh again") { linkCounts() == [2, 2, 2] }
        }
    }
}
