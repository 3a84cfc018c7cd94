import Foundation
import Logging
import MeshCore
import Mosquitto
import Synchronization

/// The agent's second connection to its own broker: the control plane. It reads the broker's
/// log (who subscribes to what), `$SYS/broker/uptime` (the table's clock, and the only
/// evidence of a broker restart a client cannot fake) and the broker's session counts (the
/// evidence that lets go of MQTT 5 sessions that ended).
///
/// It is separate from the forwarding connection so that log lines are never stuck behind
/// forwarding backpressure (a slow peer makes the forwarding link stop reading), and so its
/// persistent session queues log lines while the agent restarts. Everything here runs on
/// this client's loop thread.
final class ControlLink: Sendable {
    static let logTopicPrefix = "$SYS/broker/log/"
    static let uptimeTopic = "$SYS/broker/uptime"
    static let disconnectedTopic = "$SYS/broker/clients/disconnected"
    static let connectedTopic = "$SYS/broker/clients/connected"
    /// Mosquitto gives `$SYS/broker/log` messages a 20 s expiry: a log session that was away
    /// longer than this (with a margin) may have lost lines.
    static let lineLifetime: Double = 15

    let client: MQTTClient
    private let clientID: String
    private let interest: NodeInterest
    private let metrics: MeshMetrics
    private let logger: Logger
    private let restartDetector: Mutex<BrokerRestartDetector>
    private let everConnected = Atomic<Bool>(false)
    /// The log session was found missing on connect: decided at the next uptime tick
    /// (a broker restart explains it; otherwise someone took the agent's client id).
    private let sessionLossPending = Atomic<Bool>(false)
    /// Wall time the connection went down (0 while up), to notice lines that expired.
    private let downSince = Mutex<Double>(0)
    private let logSubscriptionMID = Atomic<Int32>(-1)
    private let logReadingFlag = Atomic<Bool>(false)
    private let onInterestChange: @Sendable () -> Void
    private let onBrokerRestartVerdict: @Sendable (_ restarted: Bool) -> Void

    /// - Parameters:
    ///   - linesMayBeLost: the agent starts from state saved by a run that did not stop
    ///     cleanly, or long ago: lines in between may be gone, so the table is widened at once.
    ///   - onBrokerRestartVerdict: called at each uptime tick with whether the broker
    ///     restarted (the forwarding link uses it to tell a takeover of its own session).
    init(configuration: AgentConfiguration, interest: NodeInterest, metrics: MeshMetrics, brokerStartedAt: Double?,
         linesMayBeLost: Bool, logger: Logger, onInterestChange: @escaping @Sendable () -> Void,
         onBrokerRestartVerdict: @escaping @Sendable (_ restarted: Bool) -> Void) throws(MosquittoError) {
        self.interest = interest
        self.clientID = configuration.controlClientID
        self.metrics = metrics
        self.logger = logger
        self.onInterestChange = onInterestChange
        self.onBrokerRestartVerdict = onBrokerRestartVerdict
        restartDetector = Mutex(BrokerRestartDetector(startedAt: brokerStartedAt))
        if linesMayBeLost {
            // Before the first advert goes out: the saved table may lack what was applied after
            // it was written (a crash) or logged while the agent was away too long.
            logger.warning("the saved session table may miss log lines (the last run did not stop cleanly, or stopped long ago); sessions online then now count as '#'")
            _ = interest.linesLost()
        }

        // Persistent: log lines queue while the agent restarts. The receive maximum stays at
        // 65535: Mosquitto 2.0.11 over-sends beyond a v5 client's receive maximum once its
        // backlog exceeds it (fixed in 2.0.13), and libmosquitto then drops the connection with
        // a protocol error — a smaller window only makes that sooner.
        let cc = configuration.localClientConfiguration(clientID: configuration.controlClientID)
        let box = WeakBox<ControlLink>()
        var events = ClientEvents()
        events.connected = { rc, present in box.value?.connected(rc, sessionPresent: present) }
        events.disconnected = { rc in box.value?.disconnected(rc) }
        events.message = { m in box.value?.message(m) }
        events.subscribed = { mid, _ in box.value?.subscribed(mid) }
        events.libraryLog = LogThrottle.libraryLog(logger, link: "control link")
        client = try MQTTClient(configuration: cc, events: events)
        box.value = self
    }

    var brokerStartedAt: Double? { restartDetector.withLock { $0.startedAt } }

    func start() { client.startInBackground(logger: logger, link: "control link") }

    private func connected(_ rc: Int32, sessionPresent: Bool) {
        guard rc == 0 else {
            logger.error("local broker refused the control connection", metadata: ["reason_code": "\(rc)"])
            return
        }
        let reconnect = everConnected.exchange(true, ordering: .relaxed)
        if reconnect { metrics.controlReconnects.increment() }
        let now = Date().timeIntervalSince1970
        interest.logLinkReconnected(at: now)
        let wasDown = downSince.withLock { since in defer { since = 0 }; return since }
        if reconnect && !sessionPresent { sessionLossPending.store(true, ordering: .relaxed) }
        if wasDown > 0 && now - wasDown > Self.lineLifetime {
            logger.warning("control link was down longer than log lines live; some may be lost", metadata: ["seconds": "\(Int(now - wasDown))"])
            if interest.linesLost() { onInterestChange() }
        }
        logger.info("control link up", metadata: ["session_present": "\(sessionPresent)", "reconnect": "\(reconnect)"])
        do {
            logSubscriptionMID.store(try client.subscribe(Self.logTopicPrefix + "#", qos: 1), ordering: .releasing)
            try client.subscribe(Self.uptimeTopic, qos: 0)
            try client.subscribe(Self.disconnectedTopic, qos: 0)
            try client.subscribe(Self.connectedTopic, qos: 0)
        } catch {
            logger.error("control subscriptions failed", metadata: ["error": "\(error)"])
        }
    }

    /// Whether the log has been read since the link first subscribed to it: the forwarding
    /// link connects only after, so its connect line is in the log.
    var isReadingLog: Bool { logReadingFlag.load(ordering: .acquiring) }

    private func subscribed(_ mid: Int32) {
        guard mid == logSubscriptionMID.load(ordering: .acquiring) else { return }
        // This link's own connect line was logged before it subscribed: it is online.
        interest.ownLinkOnline(clientID: clientID)
        logReadingFlag.store(true, ordering: .releasing)
    }

    private func disconnected(_ rc: Int32) {
        downSince.withLock { if $0 == 0 { $0 = Date().timeIntervalSince1970 } }
        if rc != 0 { logger.warning("control link down; reconnecting", metadata: ["rc": "\(rc)"]) }
    }

    private func message(_ m: ReceivedMessage) {
        let topic = m.topic
        if topic.hasPrefix(Self.logTopicPrefix) {
            if interest.handleLogLine(topic: topic, payload: m.payload) { onInterestChange() }
        } else if topic == Self.uptimeTopic {
            // The retained copy sent on (re)subscribing may predate a broker restart (it is
            // restored from the broker's persistence): only live ticks count.
            if !m.retain { uptime(m.payload) }
        } else if topic == Self.disconnectedTopic, let n = Self.parseCount(m.payload) {
            interest.observeCount(disconnected: n)
        } else if topic == Self.connectedTopic, let n = Self.parseCount(m.payload) {
            interest.observeCount(connected: n)
        }
    }

    private func uptime(_ payload: UnsafeRawBufferPointer) {
        guard let uptime = BrokerRestartDetector.parseUptime(payload) else { return }
        let now = Date().timeIntervalSince1970
        let restarted = restartDetector.withLock { $0.observe(uptimeSeconds: uptime, now: now) }
        var changed = false
        if restarted {
            metrics.brokerRestarts.increment()
            logger.notice("local broker restarted; forgetting sessions that did not come back")
            changed = interest.brokerRestarted() || changed
        }
        if sessionLossPending.exchange(false, ordering: .relaxed) && !restarted {
            // Our log session is gone although the broker kept running: another client used
            // our client id (or the agent restarted after a crash). Lines in between are lost.
            metrics.localSessionTakeovers.increment()
            logger.error("the agent's log session was lost while its broker kept running (another client used the agent's client id); sessions online meanwhile now count as '#'",
                         metadata: ["client_id": "\(clientID)"])
            changed = interest.linesLost() || changed
        }
        onBrokerRestartVerdict(restarted)
        changed = interest.tick(now: now) || changed
        if changed { onInterestChange() }
    }

    static func parseCount(_ payload: UnsafeRawBufferPointer) -> Int? {
        Int(String(decoding: payload, as: UTF8.self))
    }

    func close() async { await client.closeAsync() }
}
