import Foundation
import Mosquitto
import Synchronization

/// An ordinary MQTT client for tests and benchmarks: it records what it receives and lets
/// the caller wait for events (connected, SUBACK, N messages) with a bounded timeout
/// instead of sleeping.
public final class HarnessClient: Sendable {
    public struct Message: Sendable, Equatable {
        public var topic: String
        public var payload: [UInt8]
        public var qos: Int32
        public var retain: Bool
        public var userProperties: [[String]]
        public var contentType: String?
        public var responseTopic: String?
        public var correlationData: [UInt8]?
        public var messageExpiry: UInt32?
        public var text: String { String(decoding: payload, as: UTF8.self) }
    }

    private struct State {
        var connects = 0
        var lastSessionPresent = false
        var lastConnectCode: Int32 = -1
        var subacks: [Int32: [Int32]] = [:]
        var messages: [Message] = []
        var acked = 0
    }

    public let client: MQTTClient
    private let state = Mutex(State())
    private let recordMessages: Bool
    private let onMessage: (@Sendable (ReceivedMessage) -> Void)?

    /// - Parameters:
    ///   - record: keep every message (tests); benchmarks pass false and use `onMessage`.
    public init(clientID: String, port: Int32, host: String = "127.0.0.1", cleanStart: Bool = true,
                sessionExpiry: UInt32 = 0, protocolVersion: ClientConfiguration.ProtocolVersion = .v5,
                username: String? = nil, password: String? = nil, tls: ClientConfiguration.TLS? = nil,
                record: Bool = true, onMessage: (@Sendable (ReceivedMessage) -> Void)? = nil,
                onSubscribed: (@Sendable (_ mid: Int32) -> Void)? = nil) throws {
        var c = ClientConfiguration(clientID: clientID, host: host, port: port)
        c.cleanStart = cleanStart
        c.sessionExpiry = sessionExpiry
        c.protocolVersion = protocolVersion
        c.username = username
        c.password = password
        c.tls = tls
        c.reconnectDelay = (1, 1)
        recordMessages = record
        self.onMessage = onMessage
        let box = HarnessBox<HarnessClient>()
        var events = ClientEvents()
        events.connected = { rc, present in box.value?.state.withLock { s in
            s.lastConnectCode = rc
            if rc == 0 { s.connects += 1; s.lastSessionPresent = present }
        } }
        events.subscribed = { mid, granted in
            box.value?.state.withLock { $0.subacks[mid] = granted }
            // On the loop thread, the moment the SUBACK is read: a test can act "right after".
            onSubscribed?(mid)
        }
        events.published = { _, _ in box.value?.state.withLock { $0.acked += 1 } }
        events.message = { m in box.value?.received(m) }
        client = try MQTTClient(configuration: c, events: events)
        box.value = self
    }

    private func received(_ m: ReceivedMessage) {
        onMessage?(m)
        guard recordMessages else { return }
        let message = Message(topic: m.topic, payload: m.payloadBytes, qos: m.qos, retain: m.retain,
                              userProperties: m.userProperties.map { [$0.0, $0.1] },
                              contentType: m.stringProperty(PropertyID.contentType),
                              responseTopic: m.stringProperty(PropertyID.responseTopic),
                              correlationData: m.correlationData,
                              messageExpiry: m.int32Property(PropertyID.messageExpiryInterval))
        state.withLock { $0.messages.append(message) }
    }

    /// Connects and waits for the CONNACK (bounded).
    public func connect(timeout: Duration = .seconds(10)) async throws {
        let before = state.withLock { $0.connects }
        try client.start()
        try await waitUntil(timeout: timeout, "connect \(client.configuration.clientID)") { self.state.withLock { $0.connects > before } }
    }

    /// Waits for the next successful (re)connect after `count` connects were seen.
    public func waitForConnects(_ count: Int, timeout: Duration) async throws {
        try await waitUntil(timeout: timeout, "reconnect") { self.state.withLock { $0.connects >= count } }
    }

    public var connectCount: Int { state.withLock { $0.connects } }
    public var sessionPresent: Bool { state.withLock { $0.lastSessionPresent } }

    /// Subscribes and waits for the SUBACK; throws if the broker refused.
    public func subscribe(_ filter: String, qos: Int32 = 1, options: MQTTClient.SubscribeOptions = [],
                          timeout: Duration = .seconds(10)) async throws {
        let mid = try client.subscribe(filter, qos: qos, options: options)
        try await waitUntil(timeout: timeout, "SUBACK for \(filter)") { self.state.withLock { $0.subacks[mid] != nil } }
        let granted = state.withLock { $0.subacks[mid] ?? [] }
        if granted.contains(where: { $0 >= 0x80 }) { throw HarnessError("subscription to \(filter) refused: \(granted)") }
    }

    public func unsubscribe(_ filter: String) throws { try client.unsubscribe(filter) }

    public func publish(_ topic: String, _ text: String, qos: Int32 = 1, retain: Bool = false, properties: PropertyList? = nil) throws {
        try client.publish(topic: topic, payload: Array(text.utf8), qos: qos, retain: retain, properties: properties)
    }

    public func publish(_ topic: String, bytes: [UInt8], qos: Int32 = 1, retain: Bool = false) throws {
        try client.publish(topic: topic, payload: bytes, qos: qos, retain: retain)
    }

    /// Waits until every QoS>0 publish has been acknowledged by the broker.
    public func waitForAcks(timeout: Duration = .seconds(30)) async throws {
        guard await client.waitForOutstandingPublishes(timeout: timeout) else {
            throw HarnessError("\(client.outstandingPublishes) publishes of \(client.configuration.clientID) not acknowledged within \(timeout)")
        }
    }

    public var messages: [Message] { state.withLock { $0.messages } }
    public func messages(on topic: String) -> [Message] { messages.filter { $0.topic == topic } }
    public func clearMessages() { state.withLock { $0.messages.removeAll() } }

    /// Waits until at least `count` messages satisfying `filter` arrived; returns them.
    @discardableResult
    public func waitForMessages(_ count: Int, timeout: Duration = .seconds(10),
                                where filter: @escaping @Sendable (Message) -> Bool = { _ in true }) async throws -> [Message] {
        try await waitUntil(timeout: timeout, "\(count) messages at \(client.configuration.clientID) (have \(messages.filter(filter).count))") {
            self.messages.filter(filter).count >= count
        }
        return messages.filter(filter)
    }

    public func disconnect() { client.disconnect() }

    /// Sends DISCONNECT and waits until the connection is gone (the broker has ended or
    /// kept the session by then).
    public func disconnect(waitingUpTo timeout: Duration) async throws {
        client.disconnect()
        try await waitUntil(timeout: timeout, "\(client.configuration.clientID) to disconnect") { !self.client.isConnected }
    }

    /// Closes the connection without a DISCONNECT, as a crashed client would (the broker
    /// logs "closed its connection" and keeps a persistent session), then frees the client.
    public func abruptClose(timeout: Duration = .seconds(10)) async throws {
        client.abort()
        try await waitUntil(timeout: timeout, "\(client.configuration.clientID) to see its connection dropped") { !self.client.isConnected }
        client.close()
    }
    public func close() { client.close() }
}

/// Polls a condition until it holds or the timeout passes: the harness's way to wait for
/// an event without sleeping a fixed time. `every` is for a condition that costs something
/// to check (a connection, a publish); a cheap one is checked every 5 ms.
public func waitUntil(timeout: Duration, every interval: Duration = .milliseconds(5), _ what: @autoclosure () -> String,
                      _ condition: () async throws -> Bool) async throws {
    guard try await poll(timeout: timeout, every: interval, condition) else {
        throw HarnessError("timed out after \(timeout) waiting for \(what())")
    }
}

/// Takes `sample` until `done` accepts it or the timeout passes, and returns the last one:
/// `waitUntil` for a caller that judges the outcome itself (an expectation with its own
/// message) rather than failing on the timeout. At least one sample is taken.
@discardableResult
public func poll<T>(timeout: Duration, every interval: Duration = .milliseconds(5), _ sample: () async throws -> T,
                    until done: (T) throws -> Bool) async throws -> T {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        let value = try await sample()
        if try done(value) || clock.now >= deadline { return value }
        try await Task.sleep(for: interval)
    }
}

/// `poll` of a condition: whether it held before the timeout passed.
@discardableResult
public func poll(timeout: Duration, every interval: Duration = .milliseconds(5), _ condition: () async throws -> Bool) async throws -> Bool {
    try await poll(timeout: timeout, every: interval, condition, until: { $0 })
}

/// A weak reference a callback closure can capture before `self` exists (every client
/// here and in MeshBench that hands libmosquitto callbacks to its loop thread).
package final class HarnessBox<T: AnyObject>: @unchecked Sendable {
    // Set once before the client's loop thread starts.
    package weak var value: T?
    package init() {}
}
