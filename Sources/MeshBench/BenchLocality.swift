import Foundation
import MeshHarness

/// A regional fleet: 3 nodes (bridge as a star, mesh as a full mesh), each with its own
/// publisher and subscriber; 90 % of a node's messages are for its own subscriber, 10 %
/// for the next node's. The native bridge hands every message to every broker; the mesh
/// only the 10 %.
struct BenchLocality {
    var nodes = 3
    var perPublisher = 30_000

    init(quick: Bool) {
        if quick { perPublisher = 500 }
    }

    func run() async throws -> BenchSection {
        var section = BenchSection(scenario: "locality", columns: ["delivered_msg_s", "delivered", "expected", "duplicates", "inter_broker_bytes", "bytes_per_msg"])
        let variant = "\(nodes) nodes, 90 % local, QoS 1"
        for setup in BenchSetup.allCases {
            let metrics = try await BenchTopology.with(setup, nodes: nodes, label: "locality") { try await measure($0) }
            section.rows.append(BenchRow(scenario: "locality", variant: variant, setup: setup.rawValue, metrics: metrics))
        }
        let speed = section.ratio("msg/s", "delivered_msg_s", variant: variant)
        let bytes = section.ratio("inter-broker bytes", "inter_broker_bytes", variant: variant)
        section.target("mesh delivered msg/s ≥ 1.5× bridge", speed, atLeast: 1.5)
        section.target("inter-broker bytes ≤ 0.15× bridge", bytes, atMost: 0.15)
        if let m = section.row(.mesh, variant)?.metrics {
            section.target("mesh delivered (%)", 100 * (m["delivered"] ?? 0) / max(1, m["expected"] ?? 1), atLeast: 100)
        }
        return section
    }

    private func measure(_ t: BenchTopology) async throws -> [String: Double] {
        let label = "locality \(t.setup.rawValue)"
        let expected = nodes * perPublisher
        let tracker = DeliveryTracker(expected: expected)
        var clients: [HarnessClient] = []
        defer { clients.forEach { $0.close() } }
        let topics = (0..<nodes).map { "region/\($0)/m" }
        for i in 0..<nodes {
            let sub = try await makeSubscriber("locality-sub-\(i)", port: t.port(node: i), tracker: tracker)
            try await sub.subscribe("region/\(i)/+", qos: 1)
            clients.append(sub)
        }
        for i in 0..<nodes {
            try await waitUntilDeliverable(topic: topics[i], ports: [t.port(node: i), t.port(node: (i + nodes - 1) % nodes)], tracker: tracker, label: label)
        }
        var pubs: [HarnessClient] = []
        for i in 0..<nodes {
            let c = try HarnessClient(clientID: "locality-pub-\(i)", port: t.port(node: i), record: false)
            try await c.connect()
            pubs.append(c)
        }
        clients += pubs
        let n = nodes
        // Every tenth message goes to the next node's subscriber.
        return try await runQoS1Load(label: label, topology: t, publishers: pubs, topics: topics, perPublisher: perPublisher,
                                     tracker: tracker, expected: expected) { i, m in m % 10 == 9 ? (i + 1) % n : i }
    }
}
