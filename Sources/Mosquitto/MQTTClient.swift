import CMosquitto
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// What a client reports back. Every closure runs on the client's own libmosquitto loop
/// thread, one at a time, so a handler must be quick and must not block on another
/// client's callbacks.
public struct ClientEvents: Sendable {
    /// CONNACK arrived. `reasonCode` 0 is success; `sessionPresent` tells whether a
    /// persistent session was resumed.
    public var connected: @Sendable (_ reasonCode: Int32, _ sessionPresent: Bool) -> Void = { _, _ in }
    /// The connection is gone; `rc` 0 means we asked for it. libmosquitto reconnects by
    /// itself unless we disconnected.
    public var disconnected: @Sendable (_ rc: Int32) -> Void = { _ in }
    /// A message arrived; it borrows libmosquitto's memory for the duration of the call.
    public var message: @Sendable (_ message: ReceivedMessage) -> Void = { _ in }
    /// A publish finished: QoS 0 written, QoS 1 PUBACK, QoS 2 PUBCOMP (or refused, rc ≥ 0x80).
    public var published: @Sendable (_ mid: Int32, _ reasonCode: Int32) -> Void = { _, _ in }
    /// The broker acknowledged a QoS 1/2 publish (not called for a QoS 0 write): proof that
    /// the connection carries traffic both ways.
    public var acknowledged: (@Sendable () -> Void)? = nil
    /// SUBACK with the granted QoS (or failure codes ≥ 0x80) per filter.
    public var subscribed: @Sendable (_ mid: Int32, _ granted: [Int32]) -> Void = { _, _ in }
    /// libmosquitto's own warnings and errors (failed connects, TLS handshake failures), which
    /// no other callback reports. Nil: not collected. Collected only while the connection is
    /// down: with a log callback set, libmosquitto formats a line for every packet.
    public var libraryLog: (@Sendable (_ isError: Bool, _ message: String) -> Void)? = nil
    /// Runs on the loop thread at every turn of the loop: after each wake (`wakeLoop`), each
    /// batch of packets read, and at least once a second. For work that must happen on that
    /// thread, between messages. Nil: nothing.
    public var loopTurn: (@Sendable () -> Void)? = nil

    public init() {}
}

/// One MQTT connection over libmosquitto, with its own loop thread and automatic
/// reconnect. It owns the `struct mosquitto *` and the callback context and frees both
/// exactly once, in `close()`.
///
/// The client runs libmosquitto in its non-threaded mode, driven by `ClientLoop`'s thread.
/// libmosquitto's publish and subscribe calls take its own locks in that mode
/// too, so another thread (a link's loop thread) may publish on this client: the packet is
/// written from the caller's thread, and the loop, woken by an eventfd, finishes any write
/// that could not complete. That is why this type can be shared between the loop threads
/// of several links.
public final class MQTTClient: @unchecked Sendable {
    public let configuration: ClientConfiguration
    private let handle: OpaquePointer
    private let context: Unmanaged<CallbackContext>
    private let state = Mutex(LifeState.created)
    /// QoS 1/2 publishes handed to libmosquitto and not yet acknowledged by the broker.
    private let outstanding = Atomic<Int>(0)
    /// Payload bytes of those counted (settled with the ledger, like `outstanding`).
    private let outstandingByteCount = Atomic<Int>(0)
    private let connectedFlag = Atomic<Bool>(false)
    private let aliasMaximum = Atomic<Int>(0)
    /// Tells a QoS 1/2 acknowledgement from a QoS 0 write completion by packet id (both come
    /// through `on_publish`); `outstanding` moves only on acknowledgements.
    private let ledger = Mutex(PublishLedger())
    private let loop: ClientLoop

    private enum LifeState { case created, started, closed }

    public init(configuration: ClientConfiguration, events: ClientEvents) throws(MosquittoError) {
        _ = MosquittoLibrary.initialised
        self.configuration = configuration
        let context = CallbackContext(events: events)
        let unmanaged = Unmanaged.passRetained(context)
        guard let handle = mosquitto_new(configuration.clientID, configuration.cleanStart, unmanaged.toOpaque()) else {
            unmanaged.release()
            throw MosquittoError(code: Int32(MOSQ_ERR_NOMEM.rawValue), operation: "create client \(configuration.clientID)")
        }
        self.handle = handle
        self.context = unmanaged
        loop = ClientLoop(handle: handle, reconnectDelay: configuration.reconnectDelay, onTurn: events.loopTurn,
                          turnInterval: configuration.loopTurnInterval, connectTimeout: configuration.connectTimeout)
        context.owner = WeakClient(self)
        do {
            try configure()
        } catch {
            mosquitto_destroy(handle)
            unmanaged.release()
            throw error
        }
    }

    deinit {
        close()
    }

    private func configure() throws(MosquittoError) {
        let c = configuration
        let version: Int32 = c.protocolVersion == .v5 ? Int32(mesh_protocol_v5) : Int32(mesh_protocol_v311)
        try check(mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, version), "set protocol version")
        if c.protocolVersion == .v5 {
            try check(mosquitto_int_option(handle, MOSQ_OPT_RECEIVE_MAXIMUM, Int32(c.receiveMaximum)), "set receive maximum")
            try check(mosquitto_int_option(handle, MOSQ_OPT_SEND_MAXIMUM, Int32(c.sendMaximum)), "set send maximum")
        }
        // Nagle would hold small forwarded messages back; latency matters more here.
        try check(mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1), "set TCP_NODELAY")
        try check(mosquitto_reconnect_delay_set(handle, c.reconnectDelay.min, c.reconnectDelay.max, true), "set reconnect delay")
        if c.username != nil || c.password != nil {
            try check(mosquitto_username_pw_set(handle, c.username, c.password), "set username/password")
        }
        if let tls = c.tls {
            try check(mosquitto_tls_set(handle, tls.caFile, tls.caPath, tls.certFile, tls.keyFile, nil), "configure TLS (CA \(tls.caFile ?? tls.caPath ?? "-"), cert \(tls.certFile ?? "-"))")
            try check(mosquitto_tls_opts_set(handle, 1, tls.version, nil), "set TLS options (version \(tls.version ?? "default"))")
            if tls.insecure {
                try check(mosquitto_tls_insecure_set(handle, true), "set TLS insecure")
            }
        }
        if let will = c.will {
            let rc = will.payload.withUnsafeBytes {
                mosquitto_will_set_v5(handle, will.topic, Int32($0.count), $0.baseAddress, will.qos, will.retain, nil)
            }
            try check(rc, "set will on \(will.topic)")
        }
        mosquitto_connect_v5_callback_set(handle, mqttOnConnect)
        mosquitto_disconnect_v5_callback_set(handle, mqttOnDisconnect)
        mosquitto_message_v5_callback_set(handle, mqttOnMessage)
        mosquitto_publish_v5_callback_set(handle, mqttOnPublish)
        mosquitto_subscribe_v5_callback_set(handle, mqttOnSubscribe)
        if context.takeUnretainedValue().events.libraryLog != nil {
            mosquitto_log_callback_set(handle, mqttOnLog)
        }
    }

    /// Connects and starts the loop thread. If the broker is not reachable yet the loop
    /// keeps retrying in the background (the error is returned for logging only).
    @discardableResult
    public func start() throws(MosquittoError) -> MosquittoError? {
        try state.withLock { (s: inout LifeState) throws(MosquittoError) in
            guard s == .created else { throw MosquittoError(code: Int32(MOSQ_ERR_INVAL.rawValue), operation: "start \(configuration.clientID): already started") }
            s = .started
        }
        var firstError: MosquittoError?
        var props: OpaquePointer?
        defer { mosquitto_property_free_all(&props) }
        if configuration.protocolVersion == .v5 && configuration.sessionExpiry > 0 {
            try check(mosquitto_property_add_int32(&props, Int32(mesh_prop_session_expiry_interval), configuration.sessionExpiry), "set session expiry")
        }
        let rc: Int32
        if configuration.connectTimeout != nil && props == nil {
            // Never blocks: the loop thread watches the attempt (`ClientLoop`).
            loop.connectAttemptStarted()
            rc = mosquitto_connect_bind_async(handle, configuration.host, configuration.port, configuration.keepalive, nil)
        } else {
            rc = mosquitto_connect_bind_v5(handle, configuration.host, configuration.port, configuration.keepalive, nil, props)
        }
        if rc != Int32(MOSQ_ERR_SUCCESS.rawValue) {
            // Not fatal: the loop thread reconnects with backoff.
            firstError = MosquittoError(code: rc, operation: "connect \(configuration.endpoint)")
            // Only a malformed request is final; refused, unreachable or a failed TLS
            // handshake may heal (broker restarts, certificate rotated): keep retrying.
            if rc == Int32(MOSQ_ERR_INVAL.rawValue) { throw firstError! }
        }
        loop.start(name: "mqtt \(configuration.clientID)")
        return firstError
    }

    /// Wakes the loop thread, which then runs `ClientEvents.loopTurn`.
    public func wakeLoop() { loop.wakeForTurn() }

    /// Whether the last CONNACK succeeded and no disconnect has been seen since.
    public var isConnected: Bool { connectedFlag.load(ordering: .acquiring) }

    /// The local IP address of this client's socket — the address this host uses on the route
    /// to the broker — or nil without a socket. Read afresh each time (a reconnect may take
    /// another route); the socket number is read without libmosquitto's lock, so a reconnect
    /// in the same instant can give nil or a stale answer: callers retry later.
    public var socketLocalHost: String? {
        let fd = mosquitto_socket(handle)
        guard fd >= 0 else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(storage.ss_family) {
        case AF_INET:
            var a = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr } }
            guard inet_ntop(AF_INET, &a, &text, socklen_t(text.count)) != nil else { return nil }
        case AF_INET6:
            var a = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr } }
            guard inet_ntop(AF_INET6, &a, &text, socklen_t(text.count)) != nil else { return nil }
        default:
            return nil
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// How many topic aliases the broker accepts from this client (its last CONNACK's Topic
    /// Alias Maximum; 0 if it sent none). Valid from the `connected` event on.
    public var brokerTopicAliasMaximum: Int { aliasMaximum.load(ordering: .relaxed) }

    /// QoS 1/2 messages handed over and not yet acknowledged by the broker.
    public var outstandingPublishes: Int { outstanding.load(ordering: .relaxed) }
    /// Their payload bytes.
    public var outstandingBytes: Int { outstandingByteCount.load(ordering: .relaxed) }

    private static let errno = Int32(MOSQ_ERR_ERRNO.rawValue)
    private static let connectionLost = Int32(MOSQ_ERR_CONN_LOST.rawValue)
    private static let tlsError = Int32(MOSQ_ERR_TLS.rawValue)
    private static let notConnected = Int32(MOSQ_ERR_NO_CONN.rawValue)

    /// Publishes from borrowed memory (the forwarding hot path). Accepted by libmosquitto
    /// (`PublishOutcome.isAccepted`): counted as outstanding until acknowledged.
    @inline(__always)
    public func publish(topic: BorrowedTopic, payload: UnsafeRawBufferPointer, qos: Int32, retain: Bool,
                        properties: PropertyList?) -> PublishOutcome {
        let rc = publish(topic: topic.start, payload: payload, qos: qos, retain: retain, properties: properties?.pointer)
        return PublishOutcome.of(rc, qos: qos)
    }

    /// As above, for a topic held in a Swift string (no copy if the string is native).
    public func publish(topic: String, payload: UnsafeRawBufferPointer, qos: Int32, retain: Bool,
                        properties: PropertyList?) -> PublishOutcome {
        let rc = topic.withCString { publish(topic: $0, payload: payload, qos: qos, retain: retain, properties: properties?.pointer) }
        return PublishOutcome.of(rc, qos: qos)
    }

    /// Returns the libmosquitto rc, with a write that failed on a connection that just broke
    /// reported as `MOSQ_ERR_NO_CONN` (the message is kept if QoS 1/2). Public only for the
    /// load benchmark's pre-built C topics (0: sent); everything else takes a `PublishOutcome`.
    @inline(__always)
    public func publish(topic: UnsafePointer<CChar>, payload: UnsafeRawBufferPointer, qos: Int32, retain: Bool,
                         properties: OpaquePointer?) -> Int32 {
        // Counted before the call so backpressure sees it at once; settled by the ledger after.
        if qos > 0 { outstanding.add(1, ordering: .relaxed) }
        var mid: Int32 = 0
        var rc = mosquitto_publish_v5(handle, &mid, topic, Int32(payload.count), payload.baseAddress, qos, retain, properties)
        loop.wakeIfNeeded()
        if rc == Self.errno || rc == Self.connectionLost || rc == Self.tlsError {
            // The message was accepted and the immediate write failed: the connection just
            // broke. Like NO_CONN: QoS 1/2 stays queued and is resent after the reconnect.
            rc = Self.notConnected
        }
        if PublishOutcome.of(rc, qos: qos).isAccepted {
            let counted = ledger.withLock { $0.published(mid: UInt16(truncatingIfNeeded: mid), qos: qos, bytes: payload.count) }
            if qos > 0 && !counted { outstanding.subtract(1, ordering: .relaxed) }
            if counted { outstandingByteCount.add(payload.count, ordering: .relaxed) }
        } else if qos > 0 {
            outstanding.subtract(1, ordering: .relaxed)
        }
        return rc
    }

    /// Convenience publish for the control plane and tests: throws unless accepted.
    public func publish(topic: String, payload: [UInt8], qos: Int32 = 1, retain: Bool = false,
                        properties: PropertyList? = nil) throws(MosquittoError) {
        let rc = topic.withCString { t in
            payload.withUnsafeBytes { p in
                publish(topic: t, payload: p, qos: qos, retain: retain, properties: properties?.pointer)
            }
        }
        if PublishOutcome.of(rc, qos: qos).isAccepted { return }
        try check(rc, "publish \(topic) to \(configuration.endpoint)")
    }

    public struct SubscribeOptions: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let noLocal = SubscribeOptions(rawValue: Int32(mesh_sub_opt_no_local))
        public static let retainAsPublished = SubscribeOptions(rawValue: Int32(mesh_sub_opt_retain_as_published))
        public static let sendRetainNever = SubscribeOptions(rawValue: Int32(mesh_sub_opt_send_retain_never))
    }

    /// Subscribes one filter; returns the message id that the SUBACK event will carry.
    @discardableResult
    public func subscribe(_ filter: String, qos: Int32, options: SubscribeOptions = []) throws(MosquittoError) -> Int32 {
        var mid: Int32 = 0
        let rc: Int32
        if configuration.protocolVersion == .v5 {
            rc = mosquitto_subscribe_v5(handle, &mid, filter, qos, options.rawValue, nil)
        } else {
            rc = mosquitto_subscribe(handle, &mid, filter, qos)
        }
        loop.wakeIfNeeded()
        try check(rc, "subscribe \(filter) on \(configuration.endpoint)")
        return mid
    }

    @discardableResult
    public func unsubscribe(_ filter: String) throws(MosquittoError) -> Int32 {
        var mid: Int32 = 0
        try check(mosquitto_unsubscribe(handle, &mid, filter), "unsubscribe \(filter) on \(configuration.endpoint)")
        loop.wakeIfNeeded()
        return mid
    }

    /// Sends DISCONNECT (after everything queued before it) and stops auto-reconnect.
    /// The loop thread keeps running until `close()`.
    public func disconnect() {
        loop.requestDisconnect()
    }

    /// Stops automatic reconnects without disconnecting: when the broker ends this
    /// connection (a session takeover), the client stays down.
    public func stopReconnecting() {
        loop.stopReconnecting()
    }

    /// Drops the connection without a DISCONNECT, as a crashed client would (tests of what
    /// a broker does with an abrupt close); no reconnect follows. `isConnected` turns false
    /// once the loop thread has seen the loss.
    public func abort() {
        loop.abortConnection()
    }

    /// Closes the connection as a broken network would (no DISCONNECT, no Will suppressed) and
    /// reconnects as after any loss: for a link that has gone silent (a partition that drops
    /// packets without a reset keeps the socket looking healthy for minutes).
    public func dropConnection() {
        loop.dropConnection()
    }

    /// Waits (bounded) until every QoS 1/2 publish has been acknowledged. Returns whether it drained.
    public func waitForOutstandingPublishes(timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while outstandingPublishes > 0 {
            if clock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// Disconnects, joins the loop thread and frees the client. Idempotent. Must not be
    /// called from one of this client's own callbacks.
    public func close() {
        let previous = state.withLock { s -> LifeState in
            let p = s
            s = .closed
            return p
        }
        switch previous {
        case .closed:
            return
        case .started:
            loop.requestDisconnect()
            guard loop.stop() else {
                // The loop thread is stuck in a blocking connect and still uses the handle:
                // leave both to the process's exit rather than free them under it.
                return
            }
        case .created:
            break
        }
        mosquitto_destroy(handle)
        context.release()
    }

    /// `close()` for async code: the loop thread's join (up to ~5 s when the loop is stuck in
    /// a reconnect) happens on a thread of its own, so the cooperative pool's few threads go
    /// on running other tasks meanwhile. Returns once the client is closed.
    public func closeAsync() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let thread = Thread { [self] in
                close()
                done.resume()
            }
            thread.name = "mqtt-close"
            thread.start()
        }
    }

    // Called from the C thunks.
    /// Returns whether the client was connected before (a disconnect of a connection that
    /// never got its CONNACK — a failed non-blocking connect — is not reported as one).
    @discardableResult
    fileprivate func noteConnected(_ ok: Bool, topicAliasMaximum: Int? = nil) -> Bool {
        if let topicAliasMaximum { aliasMaximum.store(topicAliasMaximum, ordering: .relaxed) }
        if ok { loop.connected() }
        return connectedFlag.exchange(ok, ordering: .acquiringAndReleasing)
    }
    /// Returns whether it was the acknowledgement of a QoS 1/2 publish.
    @discardableResult
    fileprivate func notePublished(mid: Int32) -> Bool {
        if let bytes = ledger.withLock({ $0.acknowledgedSize(mid: UInt16(truncatingIfNeeded: mid)) }) {
            outstanding.subtract(1, ordering: .relaxed)
            outstandingByteCount.subtract(bytes, ordering: .relaxed)
            return true
        }
        return false
    }
}

/// Breaks the retain cycle client → context → client.
final class WeakClient: @unchecked Sendable {
    weak var client: MQTTClient?
    init(_ client: MQTTClient) { self.client = client }
}

/// The userdata libmosquitto passes back to every callback.
final class CallbackContext: @unchecked Sendable {
    let events: ClientEvents
    // Set once during init, before the loop thread starts; read-only afterwards.
    var owner: WeakClient?
    init(events: ClientEvents) { self.events = events }
}

@inline(__always)
private func context(_ obj: UnsafeMutableRawPointer?) -> CallbackContext? {
    guard let obj else { return nil }
    return Unmanaged<CallbackContext>.fromOpaque(obj).takeUnretainedValue()
}

// C callbacks: plain functions (not closures in main.swift, which would be
// MainActor-isolated and trap on the loop thread).
private func mqttOnConnect(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ rc: Int32, _ flags: Int32, _ props: OpaquePointer?) {
    guard let ctx = context(obj) else { return }
    if rc == 0 && ctx.events.libraryLog != nil {
        // Connected: stop libmosquitto formatting a log line per packet (hot path).
        mosquitto_log_callback_set(mosq, nil)
    }
    ctx.owner?.client?.noteConnected(rc == 0, topicAliasMaximum: Int(mesh_topic_alias_maximum(props)))
    ctx.events.connected(rc, (flags & 1) != 0)
}

private func mqttOnDisconnect(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ rc: Int32, _ props: OpaquePointer?) {
    guard let ctx = context(obj) else { return }
    if ctx.events.libraryLog != nil {
        // Down: collect why the reconnects fail (refused, TLS) again.
        mosquitto_log_callback_set(mosq, mqttOnLog)
    }
    // A non-blocking connect that failed ends here too: only a connection that was up is lost.
    let wasConnected = ctx.owner?.client?.noteConnected(false) ?? true
    if wasConnected { ctx.events.disconnected(rc) }
}

private func mqttOnMessage(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ msg: UnsafePointer<mosquitto_message>?, _ props: OpaquePointer?) {
    guard let ctx = context(obj), let m = msg?.pointee, let topic = m.topic else { return }
    let payload = UnsafeRawBufferPointer(start: m.payload, count: Int(m.payloadlen))
    ctx.events.message(ReceivedMessage(topicPointer: UnsafePointer(topic), payload: payload, qos: m.qos, retain: m.retain, properties: props))
}

private func mqttOnPublish(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ mid: Int32, _ reasonCode: Int32, _ props: OpaquePointer?) {
    guard let ctx = context(obj) else { return }
    if ctx.owner?.client?.notePublished(mid: mid) == true { ctx.events.acknowledged?() }
    ctx.events.published(mid, reasonCode)
}

private func mqttOnLog(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ level: Int32, _ text: UnsafePointer<CChar>?) {
    guard let ctx = context(obj), let log = ctx.events.libraryLog, let text else { return }
    let isError = level == Int32(MOSQ_LOG_ERR)
    guard isError || level == Int32(MOSQ_LOG_WARNING) else { return }
    log(isError, String(cString: text))
}

private func mqttOnSubscribe(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ mid: Int32, _ count: Int32, _ granted: UnsafePointer<Int32>?, _ props: OpaquePointer?) {
    guard let ctx = context(obj) else { return }
    let list = granted.map { Array(UnsafeBufferPointer(start: $0, count: Int(count))) } ?? []
    ctx.events.subscribed(mid, list)
}
