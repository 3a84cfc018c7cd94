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
        try await section.measureEverySetup(variant: variant, nodes: nodes, label: "locality") { try await measure($0) }
        let speed = section.ratio("msg/s", "delivered_msg_s", variant: variant)
        let bytes = section.ratio("inter-broker bytes", "inter_broker_bytes", variant: variant)
        section.target("mesh delivered msg/s ≥ 1.5× bridge", speed, atLeast: 1.5)
        section.target("inter-broker bytes ≤ 0.15× bridge", bytes, atMost: 0.15)
        section.target("mesh delivered (%)", section.meshDeliveredPercent(variant), atLeast: 100)
        return section
    }

    private func measure(_ t: BenchTopology) async throws -> [String: Double] {
        let n = nodes
        // Every tenth message goes to the next node's subscriber.
        return try await runPerNodeQoS1Load(name: "locality", label: "locality \(t.setup.rawValue)", topology: t, nodes: n, perPublisher: perPublisher,
                                            filter: { "region/\($0)/+" }, topic: { "region/\($0)/m" },
                                            deliverableFrom: { [t.port(node: $0), t.port(node: ($0 + n - 1) % n)] }) { i, m in m % 10 == 9 ? (i + 1) % n : i }
    }
}
