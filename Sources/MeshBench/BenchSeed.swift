import Foundation
import MeshHarness

/// The HA-Mosquitto thesis test: 500 subscribers, subscriber i on `test_1/i`, connected
/// through HAProxy round robin (so alternately to the brokers); 25 publishers through
/// HAProxy, 3000 QoS 1 messages of 100 bytes each, all to `test_1/499`.
struct BenchSeed {
    var subscribers = 500
    var publishers = 25
    var perPublisher = 3000
    var nodes = 2

    init(quick: Bool) {
        if quick { subscribers = 20; publishers = 4; perPublisher = 200 }
    }

    func run() async throws -> BenchSection {
        var section = BenchSection(scenario: "seed", columns: ["publisher_msg_s", "delivered", "expected", "duplicates", "inter_broker_bytes", "sync_bytes", "seconds"])
        let variant = "\(subscribers) subs, \(publishers)×\(perPublisher) QoS 1"
        try await section.measureEverySetup(variant: variant, nodes: nodes, label: "seed") { try await measure($0) }
        let speed = section.ratio("publisher msg/s", "publisher_msg_s", variant: variant)
        let bytes = section.ratio("inter-broker bytes", "inter_broker_bytes", variant: variant)
        section.target("mesh publisher msg/s ≥ 0.9× bridge", speed, atLeast: 0.9)
        section.target("inter-broker bytes ≤ 0.55× bridge", bytes, atMost: 0.55)
        section.target("mesh delivered (%)", section.meshDeliveredPercent(variant), atLeast: 100)
        if let m = section.row(.mesh, variant)?.metrics {
            section.target("mesh duplicates", m["duplicates"], atMost: 0)
            section.target("syncing \(subscribers) subscriptions (KB)", (m["sync_bytes"] ?? 0) / 1000, atMost: 100)
        }
        return section
    }

    private func measure(_ t: BenchTopology) async throws -> [String: Double] {
        let lb = try await t.startLoadBalancer()
        let expected = publishers * perPublisher
        let tracker = DeliveryTracker(expected: expected)
        let target = "test_1/\(subscribers - 1)"
        var clients: [HarnessClient] = []
        defer { clients.forEach { $0.close() } }

        // Subscriptions, and what syncing them costs between brokers.
        let beforeSync = try await SocketCounters.snapshot()
        let connected = BenchCounter()
        let progress = BenchProgress { "[seed \(t.setup.rawValue)] subscribers \(connected.count)/\(subscribers)" }
        var idle: [IdleSubscriber] = []
        defer { withExtendedLifetime(idle) {} }
        for i in 0..<subscribers {
            if i == subscribers - 1 {
                let c = try await makeSubscriber("seed-sub-\(i)", port: lb.port, tracker: tracker)
                try await c.subscribe("test_1/\(i)", qos: 1)
                clients.append(c)
            } else {
                // Subscribers that receive nothing: plain sockets (see IdleSubscriber).
                idle.append(try IdleSubscriber(clientID: "seed-sub-\(i)", port: lb.port, filter: "test_1/\(i)"))
            }
            connected.add(1)
        }
        progress.finish()
        try await waitUntilDeliverable(topic: target, ports: t.brokers.map(\.port), tracker: tracker, label: "seed")
        try await t.waitForQuietLinks()
        let syncBytes = try await t.interBrokerBytes(since: beforeSync)

        // The load.
        var pubs: [HarnessClient] = []
        for k in 0..<publishers {
            let c = try HarnessClient(clientID: "seed-pub-\(k)", port: lb.port, record: false)
            try await c.connect()
            pubs.append(c)
        }
        defer { pubs.forEach { $0.close() } }
        let (_, seconds, bytes) = try await runLoad(label: "seed \(t.setup.rawValue)", topology: t, publishers: pubs, topics: [target],
                                                    qos: 1, perPublisher: perPublisher, tracker: tracker, expected: expected)
        return [
            "publisher_msg_s": Double(expected) / seconds,
            "delivered": Double(tracker.received),
            "expected": Double(expected),
            "duplicates": Double(tracker.duplicates),
            "inter_broker_bytes": Double(bytes),
            "sync_bytes": Double(syncBytes),
            "seconds": seconds,
        ]
    }
}
