import Foundation
import MeshHarness

/// 2, 3 and 5 nodes, one subscriber and one publisher per node; each publisher sends its
/// messages round robin to every node's subscriber, so (N−1)/N of them must cross. Shows
/// how inter-broker bytes and throughput grow with N (the bridge is a star).
struct BenchScale {
    var sizes = [2, 3, 5]
    var perPublisher = 20_000

    init(quick: Bool) {
        if quick { sizes = [2]; perPublisher = 300 }
    }

    func run() async throws -> BenchSection {
        var section = BenchSection(scenario: "scale", columns: ["delivered_msg_s", "delivered", "expected", "duplicates", "inter_broker_bytes", "bytes_per_msg"])
        for n in sizes {
            let variant = "n=\(n)"
            for setup in BenchSetup.allCases {
                let metrics = try await BenchTopology.with(setup, nodes: n, label: "scale\(n)") { try await measure($0, nodes: n) }
                section.rows.append(BenchRow(scenario: "scale", variant: variant, setup: setup.rawValue, metrics: metrics))
            }
            section.ratio("msg/s \(variant)", "delivered_msg_s", variant: variant)
            section.ratio("bytes \(variant)", "inter_broker_bytes", variant: variant)
        }
        return section
    }

    private func measure(_ t: BenchTopology, nodes n: Int) async throws -> [String: Double] {
        let label = "scale n=\(n) \(t.setup.rawValue)"
        let expected = n * perPublisher
        let tracker = DeliveryTracker(expected: expected)
        var clients: [HarnessClient] = []
        defer { clients.forEach { $0.close() } }
        let topics = (0..<n).map { "scale/\($0)/m" }
        for i in 0..<n {
            let sub = try await makeSubscriber("scale-sub-\(i)", port: t.port(node: i), tracker: tracker)
            try await sub.subscribe("scale/\(i)/#", qos: 1)
            clients.append(sub)
        }
        for i in 0..<n {
            try await waitUntilDeliverable(topic: topics[i], ports: (0..<n).map { t.port(node: $0) }, tracker: tracker, label: label)
        }
        var pubs: [HarnessClient] = []
        for i in 0..<n {
            let c = try HarnessClient(clientID: "scale-pub-\(i)", port: t.port(node: i), record: false)
            try await c.connect()
            pubs.append(c)
        }
        clients += pubs
        return try await runQoS1Load(label: label, topology: t, publishers: pubs, topics: topics, perPublisher: perPublisher,
                                     tracker: tracker, expected: expected) { i, m in (m + i + 1) % n }
    }
}
