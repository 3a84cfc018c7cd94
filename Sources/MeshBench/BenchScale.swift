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
            try await section.measureEverySetup(variant: variant, nodes: n, label: "scale\(n)") { try await measure($0, nodes: n) }
            section.ratio("msg/s \(variant)", "delivered_msg_s", variant: variant)
            section.ratio("bytes \(variant)", "inter_broker_bytes", variant: variant)
        }
        return section
    }

    private func measure(_ t: BenchTopology, nodes n: Int) async throws -> [String: Double] {
        try await runPerNodeQoS1Load(name: "scale", label: "scale n=\(n) \(t.setup.rawValue)", topology: t, nodes: n, perPublisher: perPublisher,
                                     filter: { "scale/\($0)/#" }, topic: { "scale/\($0)/m" },
                                     deliverableFrom: { _ in (0..<n).map { t.port(node: $0) } }) { i, m in (m + i + 1) % n }
    }
}
