import Foundation
import Histogram
import MeshHarness
import Mosquitto
import Synchronization

/// The payload every load message carries: kind byte (`D` data, `P` probe), the message's
/// global index (UInt32 LE), the send time (UInt64 LE, monotonic ns), then padding to
/// `size` bytes. A global index lets one tracker count losses and duplicates exactly.
enum BenchPayload {
    static let size = 100

    static func make() -> [UInt8] { [UInt8](repeating: 0x2E, count: size) }

    @inline(__always)
    static func stamp(_ buffer: inout [UInt8], kind: UInt8, index: UInt32, time: UInt64 = monotonicNanos()) {
        buffer.withUnsafeMutableBytes { raw in
            raw[0] = kind
            raw.storeBytes(of: index.littleEndian, toByteOffset: 1, as: UInt32.self)
            raw.storeBytes(of: time.littleEndian, toByteOffset: 5, as: UInt64.self)
        }
    }

    @inline(__always)
    static func read(_ payload: UnsafeRawBufferPointer) -> (kind: UInt8, index: UInt32, time: UInt64)? {
        guard payload.count >= 13 else { return nil }
        return (payload[0], UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 1, as: UInt32.self)),
                UInt64(littleEndian: payload.loadUnaligned(fromByteOffset: 5, as: UInt64.self)))
    }
}

/// Counts what subscribers received: distinct messages (a bitset over the global index),
/// duplicates, latency (µs, hdrhistogram), first/last receive time, and probes.
final class DeliveryTracker: Sendable {
    struct State {
        var seen: [UInt64]
        var received = 0
        var duplicates = 0
        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
        var firstReceive: UInt64 = 0
        var lastReceive: UInt64 = 0
        var probes = Set<UInt32>()
    }

    let expected: Int
    private let state: Mutex<State>

    init(expected: Int) {
        self.expected = expected
        state = Mutex(State(seen: [UInt64](repeating: 0, count: expected / 64 + 1)))
    }

    func record(_ payload: UnsafeRawBufferPointer) {
        let now = monotonicNanos()
        guard let (kind, index, sent) = BenchPayload.read(payload) else { return }
        state.withLock { s in
            if kind == UInt8(ascii: "P") {
                s.probes.insert(index)
                return
            }
            guard Int(index) < expected else { return }
            let word = Int(index) / 64, bit = UInt64(1) << UInt64(index % 64)
            if s.seen[word] & bit != 0 {
                s.duplicates += 1
                return
            }
            s.seen[word] |= bit
            s.received += 1
            if s.firstReceive == 0 { s.firstReceive = now }
            s.lastReceive = now
            _ = s.histogram.record(now > sent ? (now - sent) / 1000 : 0)
        }
    }

    var received: Int { state.withLock { $0.received } }
    var duplicates: Int { state.withLock { $0.duplicates } }
    var lastReceive: UInt64 { state.withLock { $0.lastReceive } }
    var histogram: Histogram<UInt64> { state.withLock { $0.histogram } }
    func hasProbe(_ id: UInt32) -> Bool { state.withLock { $0.probes.contains(id) } }

    /// Waits until everything expected arrived, or nothing new arrived for `stall`, or
    /// `timeout` passed. Returns how many arrived.
    @discardableResult
    func waitForAll(stall: Duration = .seconds(10), timeout: Duration = .seconds(300)) async -> Int {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var last = -1
        var lastChange = clock.now
        while clock.now < deadline {
            let n = received
            if n >= expected { return n }
            if n != last { last = n; lastChange = clock.now }
            if clock.now - lastChange > stall { return n }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return received
    }
}

/// A subscriber that feeds a tracker (no per-message copies beyond the tracker's work).
func makeSubscriber(_ id: String, port: Int32, tracker: DeliveryTracker) async throws -> HarnessClient {
    let c = try HarnessClient(clientID: id, port: port, record: false) { m in tracker.record(m.payload) }
    try await c.connect()
    return c
}

/// The same, subscribed to `filter` and waited on until `filter` (a topic name) is
/// deliverable from each of `ports`. Closed again if that fails.
func makeSubscriber(_ id: String, port: Int32, tracker: DeliveryTracker, filter: String, qos: Int32,
                    deliverableFrom ports: [Int32], label: String) async throws -> HarnessClient {
    let c = try await makeSubscriber(id, port: port, tracker: tracker)
    do {
        try await c.subscribe(filter, qos: qos)
        try await waitUntilDeliverable(topic: filter, ports: ports, tracker: tracker, label: label)
        return c
    } catch {
        c.close()
        throw error
    }
}

/// Publishes until `tracker` has seen a probe from each of `ports` on `topic`: the
/// subscription is in place and (for bridge and mesh) interest has crossed. Probe
/// payloads are ignored by the delivery counts.
func waitUntilDeliverable(topic: String, ports: [Int32], tracker: DeliveryTracker, label: String,
                          timeout: Duration = .seconds(20)) async throws {
    for (k, port) in Set(ports).sorted().enumerated() {
        let id = UInt32(k) + 1_000_000 * UInt32.random(in: 1...4000)
        let prober = try HarnessClient(clientID: "bench-probe-\(label)-\(k)-\(UInt32.random(in: 0...UInt32.max))", port: port, record: false)
        defer { prober.close() }
        try await prober.connect()
        var payload = BenchPayload.make()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while !tracker.hasProbe(id) {
            guard clock.now < deadline else { throw BenchError("\(label): \(topic) not deliverable from port \(port) within \(timeout)") }
            BenchPayload.stamp(&payload, kind: UInt8(ascii: "P"), index: id)
            try prober.client.publish(topic: topic, payload: payload, qos: 0)
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// One load publisher: `count` messages on topics chosen by `topicIndex`, QoS `qos`, at most
/// `window` unacknowledged (QoS > 0), optionally paced at `rate` msg/s. Indexes are
/// `firstIndex ..< firstIndex + count`. Bounded by `timeout`.
struct LoadPublisher: Sendable {
    var client: HarnessClient
    var topics: [String]
    var topicIndex: @Sendable (Int) -> Int = { _ in 0 }
    var qos: Int32
    var count: Int
    var firstIndex: Int
    var window = 1000
    var rate: Double?

    func run(progress: BenchCounter, timeout: Duration = .seconds(300)) async throws {
        let cTopics = topics.map { strdup($0)! }
        defer { cTopics.forEach { free($0) } }
        var payload = BenchPayload.make()
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: timeout)
        let batch = rate.map { max(1, Int($0 / 1000)) } ?? 64
        var i = 0
        while i < count {
            if let rate {
                // Pacing: batches on a 1 ms grid, so the rate holds without a sleep per message.
                let due = start.advanced(by: .nanoseconds(Int64(Double(i) / rate * 1e9)))
                if due > clock.now { try await Task.sleep(until: due, clock: clock) }
            }
            if qos > 0 {
                while client.client.outstandingPublishes >= window {
                    guard clock.now < deadline else { throw BenchError("publisher \(client.client.configuration.clientID): acknowledgements stalled") }
                    try await Task.sleep(for: .microseconds(500))
                }
            }
            let end = min(count, i + batch)
            let before = i
            while i < end {
                BenchPayload.stamp(&payload, kind: UInt8(ascii: "D"), index: UInt32(firstIndex + i))
                let rc = payload.withUnsafeBytes { p in
                    client.client.publish(topic: cTopics[topicIndex(i)], payload: p, qos: qos, retain: false, properties: nil)
                }
                guard rc == 0 else { throw BenchError("publish failed rc=\(rc) on \(client.client.configuration.clientID)") }
                i += 1
            }
            progress.add(i - before)
            guard clock.now < deadline else { throw BenchError("publisher \(client.client.configuration.clientID) over time after \(i) of \(count)") }
            if rate == nil { await Task.yield() }
        }
        if qos > 0 { try await client.waitForAcks(timeout: .seconds(120)) }
    }
}

/// A shared counter for the progress line.
final class BenchCounter: Sendable {
    private let value = Atomic<Int>(0)
    func add(_ n: Int) { value.add(n, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// The line that shows a run is alive: rewritten in place on a terminal, one line every
/// few seconds otherwise (CI logs).
final class BenchProgress: Sendable {
    private let task: LockedValue<Task<Void, Never>?> = LockedValue(nil)

    init(_ line: @escaping @Sendable () -> String) {
        let tty = isatty(2) != 0
        task.value = Task {
            var ticks = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(500))
                ticks += 1
                if tty {
                    FileHandle.standardError.write(Data("\r\u{1B}[K  \(line())".utf8))
                } else if ticks % 6 == 0 {
                    FileHandle.standardError.write(Data("  \(line())\n".utf8))
                }
            }
        }
    }

    func finish() {
        task.value?.cancel()
        if isatty(2) != 0 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// Status lines between phases, on stderr so stdout carries only the report.
package func benchSay(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// One timed load phase: every publisher sends `perPublisher` messages at `qos` (topic
/// chosen by `topicIndex(publisher, message)`); returns how long delivery took, how long
/// the publishers took (until their last message was acknowledged), and the bytes that
/// crossed between brokers meanwhile. Shared by every throughput scenario.
func runLoad(label: String, topology t: BenchTopology, publishers pubs: [HarnessClient], topics: [String], qos: Int32,
             perPublisher: Int, tracker: DeliveryTracker, expected: Int,
             topicIndex: @escaping @Sendable (_ publisher: Int, _ message: Int) -> Int = { _, _ in 0 })
    async throws -> (seconds: Double, publishSeconds: Double, bytes: UInt64) {
    let sent = BenchCounter()
    let progress = BenchProgress { "[\(label)] sent \(sent.count)/\(expected) delivered \(tracker.received)" }
    let before = try await SocketCounters.snapshot()
    let start = monotonicNanos()
    try await withThrowingTaskGroup(of: Void.self) { group in
        for (i, c) in pubs.enumerated() {
            let p = LoadPublisher(client: c, topics: topics, topicIndex: { topicIndex(i, $0) }, qos: qos,
                                  count: perPublisher, firstIndex: i * perPublisher)
            group.addTask { try await p.run(progress: sent) }
        }
        try await group.waitForAll()
    }
    let published = monotonicNanos()
    await tracker.waitForAll()
    progress.finish()
    let bytes = try await t.interBrokerBytes(since: before)
    return (Double(max(tracker.lastReceive, start + 1) - start) / 1e9, Double(published - start) / 1e9, bytes)
}

/// The QoS 1 load of `scale` and `locality`, with their figures: on each of `n` nodes a
/// subscriber `<name>-sub-i` on `filter(i)` and a publisher `<name>-pub-i`; once every
/// node's topic `topic(i)` is deliverable from `deliverableFrom(i)`, publisher i sends
/// `perPublisher` messages, message m to `topic(topicIndex(i, m))`.
func runPerNodeQoS1Load(name: String, label: String, topology t: BenchTopology, nodes n: Int, perPublisher: Int,
                        filter: (Int) -> String, topic: (Int) -> String, deliverableFrom: (Int) -> [Int32],
                        topicIndex: @escaping @Sendable (_ publisher: Int, _ message: Int) -> Int) async throws -> [String: Double] {
    let expected = n * perPublisher
    let tracker = DeliveryTracker(expected: expected)
    var clients: [HarnessClient] = []
    defer { clients.forEach { $0.close() } }
    let topics = (0..<n).map(topic)
    for i in 0..<n {
        let sub = try await makeSubscriber("\(name)-sub-\(i)", port: t.port(node: i), tracker: tracker)
        clients.append(sub)
        try await sub.subscribe(filter(i), qos: 1)
    }
    for i in 0..<n {
        try await waitUntilDeliverable(topic: topics[i], ports: deliverableFrom(i), tracker: tracker, label: label)
    }
    var pubs: [HarnessClient] = []
    for i in 0..<n {
        let c = try HarnessClient(clientID: "\(name)-pub-\(i)", port: t.port(node: i), record: false)
        clients.append(c)
        try await c.connect()
        pubs.append(c)
    }
    let (seconds, _, bytes) = try await runLoad(label: label, topology: t, publishers: pubs, topics: topics, qos: 1,
                                             perPublisher: perPublisher, tracker: tracker, expected: expected, topicIndex: topicIndex)
    return [
        "delivered_msg_s": Double(tracker.received) / seconds,
        "delivered": Double(tracker.received),
        "expected": Double(expected),
        "duplicates": Double(tracker.duplicates),
        "inter_broker_bytes": Double(bytes),
        "bytes_per_msg": Double(bytes) / Double(max(1, tracker.received)),
    ]
}
