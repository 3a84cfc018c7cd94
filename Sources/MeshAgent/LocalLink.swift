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
    static let retainMarker = "mesh:retained"
    /// User properties in this namespace belong to the mesh: never passed on from a client.
    static let reservedPrefix = "mesh:"

    let client: MQTTClient
    private let configuration: AgentConfiguration
    private let routing: RoutingTable
    private let metrics: MeshMetrics
    private let logger: Logger
    private let topicBuffer: ForwardTopicBuffer
    private let everConnected = Atomic<Bool>(false)
    /// The forwarding session was missing on reconnect: a takeover unless the control link's
    /// next uptime tick shows a broker restart.
    private let sessionLossPending = Atomic<Bool>(false)
    private let onInterestChange: @Sendable () -> Void
    private let onConnected: @Sendable () -> Void
    private let dropThrottle = LogThrottle()
    private let republishThrottle = LogThrottle()

    init(configuration: AgentConfiguration, routing: RoutingTable, metrics: MeshMetrics, logger: Logger,
         onInterestChange: @escaping @Sendable () -> Void,
         onConnected: @escaping @Sendable () -> Void) throws(MosquittoError) {
        self.configuration = configuration
        self.routing = routing
        self.metrics = metrics
        self.logger = logger
        self.onInterestChange = onInterestChange
        self.onConnected = onConnected
        topicBuffer = ForwardTopicBuffer(prefix: configuration.forwardPrefix)

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
        let libraryThrottle = LogThrottle(first: 5, every: 100)
        events.libraryLog = { [logger] isError, message in
            guard isError, libraryThrottle.shouldLog().0 else { return }
            logger.warning("local link: \(message)")
        }
        client = try MQTTClient(configuration: cc, events: events)
        box.value = self
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
        if m.topicPointer.pointee == 0x24 /* "$" */ {
            controlMessage(m)
            return
        }
        let topic = m.topic
        switch routing.route(topic: topic, retained: m.retain) {
        case .forward(let targets):
            forward(m, topic: topic, to: targets)
        case .forwardShared(let targets, let shared):
            if shared.chosen > 0 { metrics.sharedForwards.increment(by: shared.chosen) }
            if shared.extraCopies > 0 { metrics.sharedExtraCopies.increment(by: shared.extraCopies) }
            forward(m, topic: topic, to: targets)
        case .republishLocally:
            republish(m)
        case .notWanted:
            metrics.notWanted.increment()
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

    private func forward(_ m: ReceivedMessage, topic: String, to targets: [PeerLink]) {
        let topicLength = m.topicLength
        let forwardTopic = topicBuffer.prefixed(m.topicPointer, length: topicLength)
        let hasProperties = m.retain || m.properties != nil
        // libmosquitto sends only the first property of a list it did not build itself
        // (received lists are not "client generated"), so properties are always copied.
        // A retained message crosses as a non-retained copy that carries the marker.
        let copied = hasProperties ? forwardProperties(m, alias: nil) : nil
        for peer in targets {
            if m.qos > 0 && !waitForRoom(peer) {
                peer.metrics.dropped.increment()
                logDrop(peer, reason: "peer unreachable and \(configuration.maxPendingPerPeer) messages already held for it")
                continue
            }
            // Topic alias: the topic crosses once per link, then two bytes per message.
            let use = peer.topicUse(for: topic)
            let sendTopic = use.byAliasOnly ? topicBuffer.emptyTopic : forwardTopic
            var properties = copied?.pointer
            var perPeer: PropertyList?
            if let alias = use.alias {
                // The alias must go out with this message (with the topic, it sets the alias
                // up), even if copying the message's own properties failed (logged).
                perPeer = hasProperties ? forwardProperties(m, alias: alias.number) : nil
                properties = perPeer?.pointer ?? alias.list.pointer
            }
            // `use` holds the link's cached alias list alive until the publish has copied it.
            let rc = withExtendedLifetime((use, perPeer)) {
                peer.client.publish(topic: sendTopic, payload: m.payload, qos: m.qos, retain: false, properties: properties)
            }
            let outcome = MQTTClient.outcome(rc, qos: m.qos)
            if outcome != .dropped {
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
                logDrop(peer, reason: MosquittoError(code: rc, operation: "forward").description)
            }
        }
        withExtendedLifetime(copied) {}
    }

    /// The properties a forwarded copy carries: the message's own (copied), the retained
    /// marker, and the link's topic alias if one is given. Nil only if copying failed (logged;
    /// the message then goes without them).
    private func forwardProperties(_ m: ReceivedMessage, alias: UInt16?) -> PropertyList? {
        do {
            var ignored = false
            // A client's own `mesh:` user properties are dropped: the receiving agent would
            // take them for its markers (retained copy, alias announcement).
            let list = try Self.reservedPrefix.withCString { prefix throws(MosquittoError) in
                try PropertyList.copyForRepublish(m.properties, strippingMarker: nil, reservedPrefix: prefix, markerFound: &ignored)
            }
            if m.retain { try list.addUserProperty(Self.retainMarker, "1") }
            if let alias { try list.addTopicAlias(alias) }
            return list
        } catch {
            logger.error("could not copy a message's properties for forwarding; sending it without them", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Backpressure: while a connected peer holds too many unacknowledged forwards, stop
    /// reading from the local broker (it queues for our persistent session) rather than
    /// buffer without bound. Returns false only if the peer is unreachable and full.
    private func waitForRoom(_ peer: PeerLink) -> Bool {
        let limit = configuration.maxPendingPerPeer
        var waited = 0
        while peer.client.outstandingPublishes >= limit {
            if !peer.client.isConnected && waited > 1000 { return false }
            usleep(1000)
            waited += 1
        }
        return true
    }

    private func logDrop(_ peer: PeerLink, reason: String) {
        let (log, n) = dropThrottle.shouldLog()
        if log {
            logger.error("message not forwarded", metadata: ["peer": "\(peer.endpoint)", "reason": "\(reason)", "occurrence": "\(n)"])
        }
    }

    private func republish(_ m: ReceivedMessage) {
        if m.payload.isEmpty && m.properties != nil && !m.retain,
           PeerLink.aliasAnnouncementMarker.withCString({ PropertyList.hasUserProperty(m.properties, named: $0) }) {
            // A peer link set up a topic alias again after reconnecting: not a message.
            metrics.aliasAnnouncements.increment()
            return
        }
        let prefixLength = topicBuffer.prefixLength
        let localTopic = m.topicPointer + prefixLength
        var retain = false
        var properties: PropertyList?
        if m.properties != nil {
            var copyError: MosquittoError?
            properties = LocalLink.retainMarker.withCString { marker in
                Self.reservedPrefix.withCString { prefix in
                    do throws(MosquittoError) {
                        return try PropertyList.copyForRepublish(m.properties, strippingMarker: marker, reservedPrefix: prefix, markerFound: &retain)
                    } catch {
                        copyError = error
                        return nil
                    }
                }
            }
            if let copyError {
                metrics.republishFailed.increment()
                logger.error("forwarded message's properties unusable; dropped", metadata: ["error": "\(copyError)"])
                return
            }
        }
        let rc = client.publish(topic: localTopic, payload: m.payload, qos: m.qos, retain: retain, properties: properties?.pointer)
        if MQTTClient.accepted(rc, qos: m.qos) {
            metrics.republished.increment()
        } else {
            metrics.republishFailed.increment()
            let (log, n) = republishThrottle.shouldLog()
            if log {
                logger.error("local republish failed", metadata: ["error": "\(MosquittoError(code: rc, operation: "republish"))", "occurrence": "\(n)"])
            }
        }
        withExtendedLifetime(properties) {}
    }

    func publishControl(topic: String, payload: [UInt8], retain: Bool) {
        do {
            try client.publish(topic: topic, payload: payload, qos: 1, retain: retain)
        } catch {
            logger.warning("control publish failed", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }
}
