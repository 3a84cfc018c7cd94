import Foundation
import Logging
import MeshCore
import Mosquitto
import Synchronization

/// The agent's persistent-session forwarding connection to its own broker. It takes every
/// message (`#`, no-local, retain-as-published, QoS 2) and either forwards it to the peers
/// that want it or, when it arrived under the forward prefix, republishes it locally. (The
/// broker's log is read by `ControlLink`, so interest never waits behind forwarding.)
/// Everything here runs on this client's loop thread.
final class LocalLink: Sendable {
    /// v5 user property that marks a forwarded copy of a retained message (the copy under
    /// `forward/` is never retained itself). Removed before the local republish.
    static let retainMarker = UserPropertyKey("mesh:retained")
    /// v5 user property numbering a QoS 1/2 forward on its link: `<node>.<run>:<n>` with `n`
    /// in base 36 (short: it crosses with every such forward).
    static let sequenceMarker = UserPropertyKey("mesh:n")
    /// User properties in this namespace belong to the mesh: never passed on from a client.
    static let reservedPrefix = UserPropertyKey("mesh:")

    let client: MQTTClient
    private let configuration: AgentConfiguration
    private let routing: RoutingTable
    private let metrics: MeshMetrics
    private let logger: Logger
    /// `forward/<topic>` for each forward; used only on this link's loop thread.
    private let topicBuffer: TopicPrefixBuffer
    private let everConnected = Atomic<Bool>(false)
    /// The forwarding session was missing on reconnect: a takeover unless the control link's
    /// next uptime tick shows a broker restart.
    private let sessionLossPending = Atomic<Bool>(false)
    private let onInterestChange: @Sendable () -> Void
    private let onConnected: @Sendable () -> Void
    private let dropThrottle = LogThrottle()
    private let republishThrottle = LogThrottle()
    private let replay: ForwardReplay
    /// Forwards already republished, by sender (`ForwardSequence`); used only on this link's
    /// loop thread (republishing happens nowhere else).
    private let sequences = LoopConfined(ForwardSequence())
    private let duplicateThrottle = LogThrottle()

    init(configuration: AgentConfiguration, routing: RoutingTable, metrics: MeshMetrics, logger: Logger,
         onInterestChange: @escaping @Sendable () -> Void,
         onConnected: @escaping @Sendable () -> Void) throws(MosquittoError) {
        self.configuration = configuration
        self.routing = routing
        self.metrics = metrics
        self.logger = logger
        self.onInterestChange = onInterestChange
        self.onConnected = onConnected
        topicBuffer = TopicPrefixBuffer(prefix: configuration.forwardPrefix)
        let replay = ForwardReplay(configuration: configuration, routing: routing, metrics: metrics, logger: logger)
        self.replay = replay

        // While the agent is down the broker queues every message for this session, and the
        // link forwards them when it is back.
        var cc = configuration.localClientConfiguration(clientID: configuration.localClientID)
        cc.will = .init(topic: ControlTopic.status(node: configuration.nodeID), payload: Array("offline".utf8), qos: 1, retain: true)
        let box = WeakBox<LocalLink>()
        var events = ClientEvents()
        events.connected = { rc, present in box.value?.connected(rc, sessionPresent: present) }
        events.disconnected = { rc in box.value?.disconnected(rc) }
        events.message = { m in box.value?.message(m) }
        events.subscribed = { _, granted in box.value?.subscribed(granted) }
        if replay.isEnabled { events.loopTurn = { replay.turn() } }
        let libraryThrottle = LogThrottle(first: 5, every: 100)
        events.libraryLog = { [logger] isError, message in
            guard isError, libraryThrottle.shouldLog().0 else { return }
            logger.warning("local link: \(message)")
        }
        client = try MQTTClient(configuration: cc, events: events)
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

    // MARK: the hot path

    private func message(_ m: ReceivedMessage) {
        if m.borrowedTopic.isDollarTopic {
            controlMessage(m)
            return
        }
        let topic = m.topic
        var replays: [ReplayRequest] = []
        let decision = routing.route(topic: topic, retained: m.retain, replays: &replays)
        // Before this message: it was routed by the interest those replays are for.
        if !replays.isEmpty { replay.perform(replays) }
        switch decision {
        case .forward(let targets):
            let properties = forward(m, topic: topic, to: targets)
            if replay.isEnabled { replay.record(m, topic: topic, sentTo: PeerSet(targets.lazy.map(\.index)), properties: properties) }
        case .forwardShared(let targets, let shared):
            if shared.chosen > 0 { metrics.sharedForwards.increment(by: shared.chosen) }
            if shared.extraCopies > 0 { metrics.sharedExtraCopies.increment(by: shared.extraCopies) }
            let properties = forward(m, topic: topic, to: targets)
            if replay.isEnabled { replay.record(m, topic: topic, sentTo: PeerSet(targets.lazy.map(\.index)), properties: properties) }
        case .republishLocally:
            republish(m)
        case .notWanted:
            metrics.notWanted.increment()
            if replay.isEnabled { replay.record(m, topic: topic, sentTo: PeerSet(), properties: nil) }
        case .ignored(let reason):
            switch reason {
            case .dollarTopic: metrics.ignoredDollar.increment()
            case .emptyForwardedTopic, .invalidForwardedTopic:
                metrics.ignoredInvalid.increment()
                let (log, n) = republishThrottle.shouldLog()
                if log { logger.warning("forwarded message with an unusable topic dropped", metadata: ["topic": "\(topic.prefix(200))", "reason": "\(reason)", "occurrence": "\(n)"]) }
            }
        }
    }

    /// `$`-topics reach this link only if a client publishes one that `#` matches (it never
    /// matches `$`-topics, so in practice none): never forwarded.
    private func controlMessage(_ m: ReceivedMessage) {
        metrics.ignoredDollar.increment()
    }

    /// Returns the copy of the message's properties it made (nil if none), for the replay buffer.
    private func forward(_ m: ReceivedMessage, topic: String, to targets: [PeerLink]) -> PropertyList? {
        let forwardTopic = topicBuffer.prefixed(m.borrowedTopic)
        let hasProperties = m.retain || m.hasProperties
        // libmosquitto sends only the first property of a list it did not build itself
        // (received lists are not "client generated"), so properties are always copied.
        // A retained message crosses as a non-retained copy that carries the marker.
        let copied = hasProperties ? forwardProperties(m, alias: nil) : nil
        for peer in targets {
            if m.qos > 0, let full = room(for: peer, bytes: m.payload.count) {
                peer.metrics.dropped.increment()
                logDrop(peer, reason: full)
                continue
            }
            // Topic alias: the topic crosses once per link, then two bytes per message.
            let use = peer.topicUse(for: topic)
            let sendTopic = use.byAliasOnly ? BorrowedTopic.empty : forwardTopic
            var properties = copied
            if m.qos > 0 {
                // Numbered, so that the receiving agent drops a copy resent after a reconnect
                // whose first copy had arrived (its acknowledgement was lost in the cut).
                let number = peer.forwardSequence.add(1, ordering: .relaxed).oldValue
                let perPeer = forwardProperties(m, alias: use.alias?.number, sequence: peer.sequenceSource + String(number, radix: 36))
                properties = perPeer ?? use.alias?.list ?? copied
            } else if let alias = use.alias {
                // The alias must go out with this message (with the topic, it sets the alias
                // up), even if copying the message's own properties failed (logged).
                let perPeer = hasProperties ? forwardProperties(m, alias: alias.number) : nil
                properties = perPeer ?? alias.list
            }
            let outcome = peer.client.publish(topic: sendTopic, payload: m.payload, qos: m.qos, retain: false, properties: properties)
            if outcome.isAccepted {
                if outcome == .sent {
                    peer.metrics.forwardedMessages.increment()
                    peer.metrics.forwardedBytes.increment(by: m.payload.count)
                } else {
                    // Accepted while the link is down: held for the reconnect, not forwarded yet.
                    peer.metrics.held.increment()
                }
                if use.byAliasOnly { peer.metrics.forwardedByAlias.increment() }
            } else {
                // Not sent (and not queued): the peer never learned an alias this one set up.
                if let alias = use.alias, !use.byAliasOnly { peer.aliasAnnouncementFailed(alias.number) }
                peer.metrics.dropped.increment()
                logDrop(peer, reason: outcome.failure("forward")?.description ?? "\(outcome)")
            }
        }
        return m.retain ? nil : copied
    }

    /// The message's own properties as a forward carries them, without markers: a client's
    /// own `mesh:` user properties are dropped (the receiving agent would take them for its
    /// markers: retained copy, alias announcement, forward number). Throws if copying failed.
    static func ownProperties(_ m: ReceivedMessage) throws(MosquittoError) -> PropertyList {
        try PropertyList.copyForRepublish(of: m, reservedPrefix: reservedPrefix).list
    }

    /// `ownProperties` for the replay buffer; nil if copying failed (logged).
    static func copyForForward(_ m: ReceivedMessage, logger: Logger) -> PropertyList? {
        do {
            return try ownProperties(m)
        } catch {
            logger.error("could not copy a message's properties for the replay buffer; a replay sends it without them", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// The properties a forwarded copy carries: the message's own (copied), the retained
    /// marker, and the link's topic alias if one is given. Nil only if copying failed (logged;
    /// the message then goes without them).
    private func forwardProperties(_ m: ReceivedMessage, alias: UInt16?, sequence: String? = nil) -> PropertyList? {
        do {
            let list = try Self.ownProperties(m)
            if m.retain { try list.addUserProperty(Self.retainMarker, "1") }
            if let sequence { try list.addUserProperty(Self.sequenceMarker, sequence) }
            if let alias { try list.addTopicAlias(alias) }
            return list
        } catch {
            logger.error("could not copy a message's properties for forwarding; sending it without them", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Whether `peer` can hold one more QoS 1/2 forward: nil if so, else why not. While its
    /// link is down the answer is immediate (a dead peer must not slow the others); while it
    /// is up and full (a slow peer, or a partition not yet noticed) this waits, at most
    /// `--peer-timeout` — the time in which a silent peer is declared down.
    private func room(for peer: PeerLink, bytes: Int) -> String? {
        let maxMessages = configuration.maxPendingPerPeer, maxBytes = configuration.maxPendingBytesPerPeer
        guard peer.isFull(adding: bytes, maxMessages: maxMessages, maxBytes: maxBytes) else { return nil }
        let limits = "\(maxMessages) messages / \(maxBytes) bytes (--max-pending, --max-pending-bytes)"
        if !peer.client.isConnected { return "peer link down with its limit already held: \(limits)" }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int(configuration.peerTimeout * 1000)))
        while clock.now < deadline {
            usleep(500)
            if !peer.isFull(adding: bytes, maxMessages: maxMessages, maxBytes: maxBytes) { return nil }
            if !peer.client.isConnected { return "peer link went down with its limit held: \(limits)" }
        }
        return "peer acknowledged nothing for --peer-timeout with its limit held: \(limits)"
    }

    private func logDrop(_ peer: PeerLink, reason: String) {
        let (log, n) = dropThrottle.shouldLog()
        if log {
            logger.error("message not forwarded", metadata: ["peer": "\(peer.endpoint)", "reason": "\(reason)", "occurrence": "\(n)"])
        }
    }

    private func republish(_ m: ReceivedMessage) {
        if m.payload.isEmpty && m.hasProperties && !m.retain, m.hasUserProperty(PeerLink.aliasAnnouncementMarker) {
            // A peer link set up a topic alias again after reconnecting: not a message.
            metrics.aliasAnnouncements.increment()
            return
        }
        let localTopic = m.borrowedTopic.dropping(prefixBytes: topicBuffer.prefixLength)
        var retain = false
        var properties: PropertyList?
        // The forward's number (`sequenceMarker`) is read in the same pass as the copy.
        var sequence: String?
        if m.hasProperties {
            do {
                let copy = try PropertyList.copyForRepublish(of: m, stripping: Self.retainMarker, reservedPrefix: Self.reservedPrefix,
                                                             capturing: m.qos > 0 ? Self.sequenceMarker : nil)
                properties = copy.list
                retain = copy.markerFound
                sequence = copy.captured
            } catch {
                metrics.republishFailed.increment()
                logger.error("forwarded message's properties unusable; dropped", metadata: ["error": "\(error)"])
                return
            }
        }
        if let marker = sequence {
            switch sequences.withValue({ $0.judge(marker) }) {
            case .new:
                break
            case .duplicate:
                // Resent by the sending agent after a reconnect; the first copy was republished.
                metrics.duplicatesDropped.increment()
                let (log, n) = duplicateThrottle.shouldLog()
                if log { logger.notice("forwarded message received twice (resent after a link cut); the copy was dropped", metadata: ["source": "\(marker)", "occurrence": "\(n)"]) }
                return
            case .malformed:
                metrics.ignoredInvalid.increment()
            }
        }
        let outcome = client.publish(topic: localTopic, payload: m.payload, qos: m.qos, retain: retain, properties: properties)
        if outcome.isAccepted {
            metrics.republished.increment()
        } else {
            metrics.republishFailed.increment()
            let (log, n) = republishThrottle.shouldLog()
            if log {
                logger.error("local republish failed", metadata: ["error": "\(outcome.failure("republish").map { "\($0)" } ?? "\(outcome)")", "occurrence": "\(n)"])
            }
        }
    }

    func publishControl(topic: String, payload: [UInt8], retain: Bool) {
        do {
            try client.publish(topic: topic, payload: payload, qos: 1, retain: retain)
        } catch {
            logger.warning("control publish failed", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }
}
