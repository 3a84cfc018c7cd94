import Foundation
import Histogram
import MeshHarness
import Mosquitto
import Synchronization

/// Subscriptions coming and going at a fixed rate: a subscriber on B takes a fresh topic,
/// a publisher on A publishes on it every half millisecond, and the time from the SUBACK
/// on B to the first message from A is what the mesh needs to learn and spread the new
/// interest (the bridge forwards everything, so for it this is plain delivery latency).
struct BenchChurn {
    var iterations = 200
    /// One new subscription per period (and the previous one's unsubscribe).
    var period: Duration = .milliseconds(100)
    var publishInterval: Duration = .microseconds(500)

    init(quick: Bool) {
        if quick { iterations = 10 }
    }

    func run() async throws -> BenchSection {
        var section = BenchSection(scenario: "churn", columns: ["p50_ms", "p99_ms", "max_ms", "iterations", "missed"])
        let variant = "\(iterations) subscriptions, \(Int(1000 / (Double(period.components.attoseconds) / 1e15)))/s"
        try await section.measureEverySetup(variant: variant, nodes: 2, label: "churn") { try await measure($0) }
        if let m = section.row(.mesh, variant)?.metrics {
            section.target("mesh p99 SUBACK → first forwarded message (ms)", m["p99_ms"], atMost: 20)
            section.target("mesh subscriptions never served", m["missed"], atMost: 0)
        }
        return section
    }

    private func measure(_ t: BenchTopology) async throws -> [String: Double] {
        let label = "churn \(t.setup.rawValue)"
        let watcher = try ChurnSubscriber(port: t.port(node: 1))
        defer { watcher.client.close() }
        try await watcher.connect()
        let publisher = try HarnessClient(clientID: "churn-pub", port: t.port(node: 0), record: false)
        defer { publisher.close() }
        try await publisher.connect()

        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var missed = 0
        let done = BenchCounter()
        let progress = BenchProgress { "[\(label)] subscriptions \(done.count)/\(iterations)" }
        defer { progress.finish() }
        let clock = ContinuousClock()
        var previous: String?
        let payload = BenchPayload.make()
        for i in 0..<iterations {
            let slot = clock.now.advanced(by: period)
            let topic = "churn/\(UInt32.random(in: 0...UInt32.max))/\(i)"
            // The publisher hammers the topic before anyone wants it.
            let stop = Atomic<Bool>(false)
            let feeder = Task { [publishInterval] in
                var next = clock.now
                let end = clock.now.advanced(by: .seconds(5))
                while !stop.load(ordering: .relaxed) && clock.now < end {
                    try? publisher.client.publish(topic: topic, payload: payload, qos: 0)
                    next = next.advanced(by: publishInterval)
                    try? await Task.sleep(until: next, clock: clock)
                }
            }
            let mid = try watcher.client.subscribe(topic, qos: 0)
            if let previous { try watcher.client.unsubscribe(previous) }
            previous = topic
            let deadline = clock.now.advanced(by: .seconds(3))
            var latency: UInt64?
            while clock.now < deadline {
                if let l = watcher.latency(mid: mid, topic: topic) { latency = l; break }
                try await Task.sleep(for: .microseconds(200))
            }
            stop.store(true, ordering: .relaxed)
            await feeder.value
            if let latency { _ = histogram.record(latency / 1000) } else { missed += 1 }
            done.add(1)
            if slot > clock.now { try await Task.sleep(until: slot, clock: clock) }
        }
        return [
            "p50_ms": Double(histogram.valueAtPercentile(50)) / 1000,
            "p99_ms": Double(histogram.valueAtPercentile(99)) / 1000,
            "max_ms": Double(histogram.max) / 1000,
            "iterations": Double(iterations),
            "missed": Double(missed),
        ]
    }
}

/// Records, in the client's own callbacks, when each SUBACK and each topic's first
/// message arrived: polling from outside would add its own delay to the figure.
final class ChurnSubscriber: Sendable {
    private struct State {
        var connected = false
        var subacks: [Int32: UInt64] = [:]
        var first: [String: UInt64] = [:]
    }

    let client: MQTTClient
    private let state = Mutex(State())

    init(port: Int32) throws {
        var c = ClientConfiguration(clientID: "churn-sub", host: "127.0.0.1", port: port)
        c.reconnectDelay = (1, 1)
        let box = HarnessBox<ChurnSubscriber>()
        var events = ClientEvents()
        events.connected = { rc, _ in box.value?.state.withLock { $0.connected = rc == 0 } }
        events.subscribed = { mid, _ in
            let now = monotonicNanos()
            box.value?.state.withLock { $0.subacks[mid] = now }
        }
        events.message = { m in
            let now = monotonicNanos()
            let topic = m.topic
            box.value?.state.withLock { s in if s.first[topic] == nil { s.first[topic] = now } }
        }
        client = try MQTTClient(configuration: c, events: events)
        box.value = self
    }

    func connect() async throws {
        try client.start()
        try await waitUntil(timeout: .seconds(10), "churn subscriber connect") { self.state.withLock { $0.connected } }
    }

    /// ns from SUBACK to the first message, once both happened.
    func latency(mid: Int32, topic: String) -> UInt64? {
        state.withLock { s in
            guard let suback = s.subacks[mid], let first = s.first[topic] else { return nil }
            return first > suback ? first - suback : 0
        }
    }
}
