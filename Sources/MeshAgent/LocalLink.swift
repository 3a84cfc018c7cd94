import Foundation
import Logging
import MeshCore
import Mosquitto
import Synchronization

/// The agent's persistent-session forwarding connection to its own broker: the connection
/// (subscribing `#` — no-local, retain-as-published, QoS 2 — on every connect, the status
/// topic, session-loss detection) and the control publishes made on it. Every message it
/// receives goes to its `Forwarder`, which forwards or republishes it on this client's loop
/// thread. (The broker's log is read by `ControlLink`, so interest never waits behind
/// forwarding.)
final class LocalLink: Sendable {
    let client: MQTTClient
    /// The forwarding engine, confined to this link's loop thread.
    private let forwarder: Forwarder
    private let configuration: AgentConfiguration
    private let metrics: MeshMetrics
    private let logger: Logger
    private let everConnected = Atomic<Bool>(false)
    /// The forwarding session was missing on reconnect: a takeover unless the control link's
    /// next uptime tick shows a broker restart.
    private let sessionLossPending = Atomic<Bool>(false)
    private let onInterestChange: @Sendable () -> Void
    private let onConnected: @Sendable () -> Void

    init(configuration: AgentConfiguration, routing: RoutingTable, metrics: MeshMetrics, logger: Logger,
         onInterestChange: @escaping @Sendable () -> Void,
         onConnected: @escaping @Sendable () -> Void) throws(MosquittoError) {
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        self.onInterestChange = onInterestChange
        self.onConnected = onConnected
        let replay = ForwardReplay(configuration: configuration, routing: routing, metrics: metrics, logger: logger)

        // While the agent is down the broker queues every message for this session, and the
        // link forwards them when it is back.
        var cc = configuration.localClientConfiguration(clientID: configuration.localClientID)
        cc.will = .init(topic: ControlTopic.status(node: configuration.nodeID), payload: Array("offline".utf8), qos: 1, retain: true)
        let box = WeakBox<LocalLink>()
        var events = ClientEvents()
        events.connected = { rc, present in box.value?.connected(rc, sessionPresent: present) }
        events.disconnected = { rc in box.value?.disconnected(rc) }
        events.message = { m in box.value?.forwarder.message(m) }
        events.subscribed = { _, granted in box.value?.subscribed(granted) }
        if replay.isEnabled { events.loopTurn = { replay.turn() } }
        events.libraryLog = LogThrottle.libraryLog(logger, link: "local link")
        client = try MQTTClient(configuration: cc, events: events)
        forwarder = Forwarder(client: client, replay: replay, configuration: configuration, routing: routing, metrics: metrics, logger: logger)
        box.value = self
        if replay.isEnabled { routing.setReplayWaker { [client] in client.wakeLoop() } }
    }

    func start() { client.startInBackground(logger: logger, link: "local link") }

    private func connected(_ rc: Int32, sessionPresent: Bool) {
        guard rc == 0 else {
            logger.error("local broker refused the connection", metadata: ["reason_code": "\(rc)"])
            return
        }
        let reconnect = everConnected.exchange(true, ordering: .relaxed)
        if reconnect { metrics.localReconnects.increment() }
        metrics.localConnected.set(1)
        logger.info("local link up", metadata: ["session_present": "\(sessionPresent)", "reconnect": "\(reconnect)"])
        do {
            try client.subscribe("#", qos: 2, options: [.noLocal, .retainAsPublished, .sendRetainNever])
            // Agents before the control link read the log on this persistent session; its
            // subscriptions survive an upgrade and would bring every log line here (at QoS 2,
            // behind forwarding backpressure) for nothing.
            _ = try client.unsubscribe("$SYS/broker/log/#")
            _ = try client.unsubscribe("$SYS/broker/uptime")
            try client.publish(topic: ControlTopic.status(node: configuration.nodeID), payload: Array("online".utf8), qos: 1, retain: true)
        } catch {
            logger.error("local subscriptions failed", metadata: ["error": "\(error)"])
        }
        if reconnect && !sessionPresent {
            // The broker restarted without persistence, or another client took our client id
            // and discarded the session (and with it what was queued for us): the control
            // link's next uptime tick tells which (`brokerRestartVerdict`).
            sessionLossPending.store(true, ordering: .relaxed)
        }
        // The broker may have lost retained messages: republish the advert.
        onConnected()
        onInterestChange()
    }

    private func disconnected(_ rc: Int32) {
        metrics.localConnected.set(0)
        if rc != 0 { logger.warning("local link down; reconnecting", metadata: ["rc": "\(rc)"]) }
    }

    private func subscribed(_ granted: [Int32]) {
        if granted.contains(where: { $0 >= 0x80 }) {
            logger.error("local broker refused a subscription (check the ACL for the mesh user)", metadata: ["granted": "\(granted)"])
        }
    }

    /// The control link's uptime tick: whether the broker restarted. A forwarding session
    /// found missing without a restart was taken by a client using the agent's id.
    func brokerRestartVerdict(_ restarted: Bool) {
        guard sessionLossPending.exchange(false, ordering: .relaxed), !restarted else { return }
        metrics.localSessionTakeovers.increment()
        logger.error("the agent's forwarding session was discarded while its broker kept running: another client connected with the agent's client id; messages queued for the agent meanwhile went to that client",
                     metadata: ["client_id": "\(configuration.localClientID)"])
    }

    func publishControl(topic: String, payload: [UInt8], retain: Bool) {
        do {
            try client.publish(topic: topic, payload: payload, qos: 1, retain: retain)
        } catch {
            logger.warning("control publish failed", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }
}
