import Foundation
import MeshHarness

/// Publishers on A, one subscriber on B: what one crossing costs. Per QoS, a run at full
/// speed (delivered msg/s) and a run paced at 10k msg/s (latency p50/p99/p99.9, from the
/// send time in the payload).
struct BenchCross {
    var publishers = 4
    var perPublisher = 25_000
    var pacedRate = 10_000.0
    var pacedCount = 50_000

    init(quick: Bool) {
        if quick { publishers = 2; perPublisher = 500; pacedCount = 2_000 }
    }

    func run() async throws -> BenchSection {
        var section = BenchSection(scenario: "cross", columns: ["delivered_msg_s", "delivered", "expected", "p50_ms", "p99_ms", "p999_ms", "inter_broker_bytes"])
        for qos: Int32 in [0, 1] {
            let variant = "qos\(qos)"
            try await section.measureEverySetup(variant: variant, nodes: 2, label: "cross") { try await measure($0, qos: qos) }
            let r = section.ratio("msg/s \(variant)", "delivered_msg_s", variant: variant)
            section.target("mesh delivered msg/s \(variant) ≥ \(qos == 0 ? "0.45" : "0.65")× bridge", r, atLeast: qos == 0 ? 0.45 : 0.65)
            section.target("mesh delivered \(variant) (%)", section.meshDeliveredPercent(variant), atLeast: 100)
            if let m = section.row(.mesh, variant)?.metrics, let b = section.row(.bridge, variant)?.metrics {
                section.target("mesh p99 − bridge p99 at \(Int(pacedRate)) msg/s, \(variant) (ms)", (m["p99_ms"] ?? 0) - (b["p99_ms"] ?? 0), atMost: 1)
            }
        }
        return section
    }

    private func measure(_ t: BenchTopology, qos: Int32) async throws -> [String: Double] {
        let label = "cross \(t.setup.rawValue) qos\(qos)"
        let a = t.port(node: 0), b = t.port(node: 1)

        // Full speed.
        let expected = publishers * perPublisher
        let tracker = DeliveryTracker(expected: expected)
        let topic = "cross/q\(qos)/throughput"
        let sub = try await makeSubscriber("cross-sub", port: b, tracker: tracker, filter: topic, qos: qos, deliverableFrom: [a], label: label)
        defer { sub.close() }
        var pubs: [HarnessClient] = []
        defer { pubs.forEach { $0.close() } }
        for k in 0..<publishers {
            let c = try HarnessClient(clientID: "cross-pub-\(k)", port: a, record: false)
            try await c.connect()
            pubs.append(c)
        }
        let (seconds, _, bytes) = try await runLoad(label: label, topology: t, publishers: pubs, topics: [topic], qos: qos,
                                                 perPublisher: perPublisher, tracker: tracker, expected: expected)

        // Paced, for latency.
        let pacedTracker = DeliveryTracker(expected: pacedCount)
        let pacedTopic = "cross/q\(qos)/paced"
        let pacedSub = try await makeSubscriber("cross-sub-paced", port: b, tracker: pacedTracker, filter: pacedTopic, qos: qos,
                                                deliverableFrom: [a], label: label)
        defer { pacedSub.close() }
        let pacedSent = BenchCounter()
        let progress = BenchProgress { "[\(label) paced \(Int(pacedRate))/s] sent \(pacedSent.count)/\(pacedCount) delivered \(pacedTracker.received)" }
        let paced = LoadPublisher(client: pubs[0], topics: [pacedTopic], qos: qos, count: pacedCount, firstIndex: 0, rate: pacedRate)
        try await paced.run(progress: pacedSent)
        await pacedTracker.waitForAll()
        progress.finish()
        let h = pacedTracker.histogram
        return [
            "delivered_msg_s": Double(tracker.received) / seconds,
            "delivered": Double(tracker.received + pacedTracker.received),
            "expected": Double(expected + pacedCount),
            "duplicates": Double(tracker.duplicates + pacedTracker.duplicates),
            "p50_ms": Double(h.valueAtPercentile(50)) / 1000,
            "p99_ms": Double(h.valueAtPercentile(99)) / 1000,
            "p999_ms": Double(h.valueAtPercentile(99.9)) / 1000,
            "inter_broker_bytes": Double(bytes),
        ]
    }
}
