import Foundation
import MeshHarness
import Mosquitto
import Synchronization

/// One MQTT connection of a bench client, from CONNACK to the disconnect event.
public struct ConnectionEpoch: Sendable {
    public var connectedAt: UInt64
    public var disconnectedAt: UInt64?
    /// The broker resumed the client's persistent session (CONNACK session-present).
    public var sessionPresent: Bool
    /// When the subscription was in place on this connection: the CONNACK time if the
    /// session was resumed, else the SUBACK time of the re-subscription.
    public var subscribedAt: UInt64?
}

extension [ConnectionEpoch] {
    /// A disconnect event ends the open epoch (libmosquitto may report one disconnect twice).
    mutating func endLast(at time: UInt64 = monotonicNanos()) {
        if let last = indices.last, self[last].disconnectedAt == nil { self[last].disconnectedAt = time }
    }
}

extension ClientConfiguration {
    /// Both failover clients: reconnect every second, and a 10 s keepalive so a dead
    /// connection is noticed within the run.
    static func failover(clientID: String, host: String, port: Int32) -> ClientConfiguration {
        var c = ClientConfiguration(clientID: clientID, host: host, port: port)
        c.reconnectDelay = (1, 1)
        c.keepalive = 10
        return c
    }
}

/// A constant-rate QoS 1 publisher that records, per message, when it was published and
/// when (and on which connection) the broker acknowledged it.
///
/// Acknowledgements are matched by message id. `MQTTClient.publish` does not return the
/// id, but libmosquitto 2.0 generates ids from a per-client counter (1, 2, … 65535, 1, …)
/// on every `mosquitto_publish` call, connected or not, and this client never subscribes,
/// so the n-th publish call (from one task) gets id `(n % 65535) + 1`. The id is kept in a
/// map filled before the call, and an acknowledgement for an id that is not pending is
/// counted in `unmatchedAcks` so a broken assumption shows instead of skewing results.
public final class FailoverPublisher: Sendable {
    public let index: Int
    public let clientID: String
    public let topic: String
    let client: MQTTClient

    struct State {
        var epochs: [ConnectionEpoch] = []
        var publishedAt: [UInt64] = []
        var ackedAt: [UInt64] = []
        /// Index into `epochs` of the connection that carried the PUBACK; -1 if none.
        var ackEpoch: [Int32] = []
        var pendingByMid: [Int32: Int] = [:]
        var calls = 0
        var unmatchedAcks = 0
        var refusedAcks = 0
    }
    let state = Mutex(State())

    public init(index: Int, clientID: String, topic: String, host: String, port: Int32, capacity: Int) throws {
        self.index = index
        self.clientID = clientID
        self.topic = topic
        var c = ClientConfiguration.failover(clientID: clientID, host: host, port: port)
        c.cleanStart = true
        let box = HarnessBox<FailoverPublisher>()
        var events = ClientEvents()
        events.connected = { rc, present in
            guard rc == 0 else { return }
            box.value?.state.withLock { $0.epochs.append(ConnectionEpoch(connectedAt: monotonicNanos(), sessionPresent: present)) }
        }
        events.disconnected = { _ in box.value?.state.withLock { $0.epochs.endLast() } }
        events.published = { mid, reason in box.value?.acknowledged(mid: mid, reason: reason) }
        client = try MQTTClient(configuration: c, events: events)
        state.withLock {
            $0.publishedAt.reserveCapacity(capacity)
            $0.ackedAt.reserveCapacity(capacity)
            $0.ackEpoch.reserveCapacity(capacity)
        }
        box.value = self
    }

    private func acknowledged(mid: Int32, reason: Int32) {
        let now = monotonicNanos()
        state.withLock { s in
            guard let seq = s.pendingByMid.removeValue(forKey: mid) else { s.unmatchedAcks += 1; return }
            guard seq >= 0 else { return } // a probe or marker
            if reason >= 0x80 { s.refusedAcks += 1; return }
            s.ackedAt[seq] = now
            s.ackEpoch[seq] = Int32(s.epochs.count - 1)
        }
    }

    public func connect(timeout: Duration) async throws {
        try client.start()
        try await waitUntil(timeout: timeout, "publisher \(clientID) to connect") { self.isConnected }
    }

    public var isConnected: Bool { client.isConnected }

    /// Publishes the next numbered message: `<publisher> <seq> <monotonic ns>`.
    public func publishNext() throws {
        let now = monotonicNanos()
        let (seq, mid) = state.withLock { s -> (Int, Int32) in
            let seq = s.publishedAt.count
            s.publishedAt.append(now)
            s.ackedAt.append(0)
            s.ackEpoch.append(-1)
            let mid = Int32(s.calls % 65535) + 1
            s.calls += 1
            s.pendingByMid[mid] = seq
            return (seq, mid)
        }
        _ = mid
        try client.publish(topic: topic, payload: Array("\(index) \(seq) \(now)".utf8), qos: 1)
    }

    /// A QoS 1 message outside the numbered stream (readiness probe, end marker).
    public func publishExtra(topic: String, text: String) throws {
        state.withLock { s in
            let mid = Int32(s.calls % 65535) + 1
            s.calls += 1
            s.pendingByMid[mid] = -1
        }
        try client.publish(topic: topic, payload: Array(text.utf8), qos: 1)
    }

    public var publishedCount: Int { state.withLock { $0.publishedAt.count } }
    public var outstanding: Int { client.outstandingPublishes }
    public func close() { client.close() }

    /// What this publisher recorded, frozen for analysis.
    public var record: PublisherRecord {
        state.withLock { s in
            PublisherRecord(index: index, clientID: clientID, epochs: s.epochs, publishedAt: s.publishedAt, ackedAt: s.ackedAt,
                            ackEpoch: s.ackEpoch, unmatchedAcks: s.unmatchedAcks, refusedAcks: s.refusedAcks)
        }
    }
}

/// A subscriber with a persistent session (clean start false, long session expiry). When
/// the broker answers a reconnect without its session (it landed on another broker
/// because its own died), it subscribes again, from the CONNACK callback — unless
/// `resubscribe` is false: then, like many real clients, it subscribes on its first connect
/// only and relies on its session ever after.
public final class FailoverSubscriber: Sendable {
    public let index: Int
    public let clientID: String
    public let filter: String
    let client: MQTTClient
    private let publishers: Int
    private let resubscribe: Bool

    struct State {
        var epochs: [ConnectionEpoch] = []
        var pendingSubscribe: Int32?
        /// Per publisher, per sequence number: how many copies arrived and when the first did.
        var counts: [[UInt16]]
        var firstAt: [[UInt64]]
        var deliveries: [Delivery] = []
        var extras: [String] = []
        var subscribedOnce = false
    }
    let state: Mutex<State>

    /// - Parameters:
    ///   - protocolVersion: MQTT 5 (clean start 0, session expiry 1 h) or 3.1.1 (clean session 0).
    public init(index: Int, clientID: String, filter: String, host: String, port: Int32, publishers: Int, capacity: Int,
                resubscribe: Bool = true, protocolVersion: ClientConfiguration.ProtocolVersion = .v5) throws {
        self.index = index
        self.clientID = clientID
        self.filter = filter
        self.publishers = publishers
        self.resubscribe = resubscribe
        state = Mutex(State(counts: Array(repeating: [], count: publishers), firstAt: Array(repeating: [], count: publishers)))
        var c = ClientConfiguration.failover(clientID: clientID, host: host, port: port)
        c.cleanStart = false
        c.protocolVersion = protocolVersion
        c.sessionExpiry = protocolVersion == .v5 ? 3600 : 0
        let box = HarnessBox<FailoverSubscriber>()
        var events = ClientEvents()
        events.connected = { rc, present in
            guard rc == 0 else { return }
            box.value?.connected(sessionPresent: present)
        }
        events.disconnected = { _ in box.value?.state.withLock { $0.epochs.endLast() } }
        events.subscribed = { mid, granted in
            let now = monotonicNanos()
            box.value?.state.withLock { s in
                guard mid == s.pendingSubscribe, granted.allSatisfy({ $0 < 0x80 }), let last = s.epochs.indices.last else { return }
                s.epochs[last].subscribedAt = now
                s.pendingSubscribe = nil
            }
        }
        events.message = { m in box.value?.received(topic: m.topic, payload: m.payloadBytes) }
        client = try MQTTClient(configuration: c, events: events)
        state.withLock { s in
            for p in 0..<publishers {
                s.counts[p] = Array(repeating: 0, count: capacity)
                s.firstAt[p] = Array(repeating: 0, count: capacity)
            }
            s.deliveries.reserveCapacity(capacity * publishers)
        }
        box.value = self
    }

    private func connected(sessionPresent: Bool) {
        let now = monotonicNanos()
        state.withLock { s in
            s.epochs.append(ConnectionEpoch(connectedAt: now, sessionPresent: sessionPresent, subscribedAt: sessionPresent ? now : nil))
        }
        guard !sessionPresent else { return }
        guard resubscribe || !state.withLock({ $0.subscribedOnce }) else { return }
        // The session is new (first connect, or its broker died): subscribe again. Allowed
        // from libmosquitto's own callback thread.
        // The SUBACK is handled on this same thread after we return, so storing the id
        // afterwards cannot race with it.
        let mid = try? client.subscribe(filter, qos: 1)
        state.withLock {
            $0.pendingSubscribe = mid
            $0.subscribedOnce = true
        }
    }

    private func received(topic: String, payload: [UInt8]) {
        let now = monotonicNanos()
        let fields = payload.split(separator: UInt8(ascii: " "))
        guard fields.count == 3, let p = Int(String(decoding: fields[0], as: UTF8.self)),
              let seq = Int(String(decoding: fields[1], as: UTF8.self)),
              let sent = UInt64(String(decoding: fields[2], as: UTF8.self)), p >= 0, p < publishers else {
            let text = String(decoding: payload, as: UTF8.self)
            state.withLock { $0.extras.append(text) }
            return
        }
        state.withLock { s in
            guard seq < s.counts[p].count else { s.extras.append("overflow \(p) \(seq)"); return }
            let duplicate = s.counts[p][seq] > 0
            s.counts[p][seq] &+= 1
            if !duplicate { s.firstAt[p][seq] = now }
            s.deliveries.append(Delivery(at: now, latency: now &- sent, duplicate: duplicate))
        }
    }

    public func connect(timeout: Duration) async throws {
        try client.start()
        try await waitUntil(timeout: timeout, "subscriber \(clientID) to connect and subscribe") { self.isSubscribed }
    }

    /// Connected, with its subscription in place on this connection.
    public var isSubscribed: Bool {
        client.isConnected && state.withLock { $0.epochs.last?.subscribedAt != nil && $0.epochs.last?.disconnectedAt == nil }
    }

    public func hasExtra(_ text: String) -> Bool { state.withLock { $0.extras.contains(text) } }
    public func close() { client.close() }

    public var record: SubscriberRecord {
        state.withLock { s in
            SubscriberRecord(index: index, clientID: clientID, epochs: s.epochs, counts: s.counts, firstAt: s.firstAt, deliveries: s.deliveries,
                             resubscribes: resubscribe)
        }
    }
}

/// One message arrival at a subscriber.
public struct Delivery: Sendable {
    public var at: UInt64
    public var latency: UInt64
    public var duplicate: Bool
}

public struct PublisherRecord: Sendable {
    public var index: Int
    public var clientID: String
    public var epochs: [ConnectionEpoch]
    public var publishedAt: [UInt64]
    public var ackedAt: [UInt64]
    public var ackEpoch: [Int32]
    public var unmatchedAcks: Int
    public var refusedAcks: Int
}

public struct SubscriberRecord: Sendable {
    public var index: Int
    public var clientID: String
    public var epochs: [ConnectionEpoch]
    public var counts: [[UInt16]]
    public var firstAt: [[UInt64]]
    public var deliveries: [Delivery]
    /// Whether it subscribes again on a connect without its session (false: first connect only).
    public var resubscribes = true
}
