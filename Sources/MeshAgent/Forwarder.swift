import Foundation
import Logging
import MeshCore
import Mosquitto

/// The forwarding engine behind the local link: for each message the local broker delivers,
/// route it (`RoutingTable`), forward it to the peers that want it (topic aliases, numbering,
/// backpressure, properties copied), replay what a peer's new interest missed
/// (`ForwardReplay`), or — when it arrived under the forward prefix — drop a resend already
/// seen and republish it locally. It runs only on the local link's loop thread (the client's
/// message callback and loop turns), which is what lets its state go without a lock; the
/// confinement is checked in debug builds (`LoopConfined`).
final class Forwarder: Sendable {
    /// v5 user property that marks a forwarded copy of a retained message (the copy under
    /// `forward/` is never retained itself). Removed before the local republish.
    static let retainMarker = UserPropertyKey("mesh:retained")
    /// v5 user property numbering a QoS 1/2 forward on its link: `<node>.<run>:<n>` with `n`
    /// in base 36 (short: it crosses with every such forward).
    static let sequenceMarker = UserPropertyKey("mesh:n")
    /// User properties in this namespace belong to the mesh: never passed on from a client.
    static let reservedPrefix = UserPropertyKey("mesh:")
    /// v5 user property marking a direct delivery (`--delivery direct`): the sending agent
    /// run's origin token. The receiving agent never forwards a message whose mark is a peer's
    /// token. Subscribers of the receiving broker see it (docs/architecture.md).
    static let originMarker = UserPropertyKey("mesh:o")

    /// What changes, touched only on the local link's loop thread.
    private struct State {
        /// `forward/<topic>` for each forward.
        let topicBuffer: TopicPrefixBuffer
        /// Forwards already republished, by sender.
        var sequences = ForwardSequence()
    }

    private let state: LoopConfined<State>
    /// The local link's client: republishes go back to the local broker on it.
    private let client: MQTTClient
    /// Records each routed message and replays what a peer's new interest missed.
    private let replay: ForwardReplay
    /// Per-peer limits and the peer timeout (`room(for:)`).
    private let configuration: AgentConfiguration
    /// Decides each message's peers; hands over pending replays with the decision.
    private let routing: RoutingTable
    /// Log lines about dropped forwards, failed republishes and resends dropped as seen.
    private let throttles = (drop: LogThrottle(), republish: LogThrottle(), duplicate: LogThrottle(), origin: LogThrottle())
    private let metrics: MeshMetrics
    private let logger: Logger
    /// The forward prefix's length: cut off a forward's topic before the local republish.
    private let prefixLength: Int
    /// The forward prefix (`--forward-prefix`).
    private let forwardPrefix: String
    /// The properties of a direct delivery of a message that has none: the mark alone, built
    /// once (a publish copies its properties). Nil if that failed (logged at start).
    private let markOnly: PropertyList?

    init(client: MQTTClient, replay: ForwardReplay, configuration: AgentConfiguration, routing: RoutingTable,
         metrics: MeshMetrics, logger: Logger) {
        self.client = client
        self.replay = replay
        self.configuration = configuration
        let buffer = TopicPrefixBuffer(prefix: configuration.forwardPrefix)
        prefixLength = buffer.prefixLength
        forwardPrefix = configuration.forwardPrefix
        state = LoopConfined(State(topicBuffer: buffer))
        do {
            markOnly = try Self.marked(PropertyList(), token: configuration.originToken)
        } catch {
            logger.error("could not build the direct-delivery mark; messages without properties go prefixed", metadata: ["error": "\(error)"])
            markOnly = nil
        }
        self.routing = routing
        self.metrics = metrics
        self.logger = logger
    }

    /// One message from the local broker (the client's message callback).
    func message(_ m: ReceivedMessage) {
        if m.borrowedTopic.isDollarTopic {
            controlMessage(m)
            return
        }
        /// Whether it carries a mark that is not a peer's: such a message is forwarded only
        /// prefixed. Were it delivered directly with this agent's mark, two agents that do
        /// not know each other's tokens yet (both just restarted) would pass it back and forth;
        /// a prefixed forward is republished with no local echo and ends there.
        var unverifiedMark = false
        let topic = m.topic
        // A forward under the prefix never carries one (the sender drops every mesh: property
        // of the message's own): its properties are not scanned for it, which every numbered
        // forward would otherwise cost the receiving agent once more.
        if m.hasProperties, !topic.utf8.starts(with: forwardPrefix.utf8), let mark = m.userPropertyValue(Self.originMarker) {
            if routing.isPeerOrigin(mark) {
                // A peer's agent delivered it here itself; it forwarded to every other peer
                // that wanted it. Replays due meanwhile are not held back by it.
                metrics.directReceived.increment()
                let replays = routing.takeReplays()
                if !replays.isEmpty { replay.perform(replays) }
                return
            }
            // Not a peer's token: a client's mark (or a peer whose advert is not read yet).
            // Forwarded like any message, its mesh: properties dropped: a copy too many
            // rather than a message lost.
            metrics.originMarksUnverified.increment()
            unverifiedMark = true
            let (log, n) = throttles.origin.shouldLog()
            if log { logger.warning("message with an unknown origin mark forwarded as a client's", metadata: ["topic": "\(topic.prefix(200))", "occurrence": "\(n)"]) }
        }
        var replays: [ReplayRequest] = []
        let decision = routing.route(topic: topic, retained: m.retain, replays: &replays)
        // Before this message: it was routed by the interest those replays are for.
        if !replays.isEmpty { replay.perform(replays) }
        switch decision {
        case .forward(let targets):
            let properties = forward(m, topic: topic, to: targets, direct: !unverifiedMark)
            if replay.isEnabled { replay.record(m, topic: topic, sentTo: PeerSet(targets.lazy.map(\.index)), properties: properties, prefixedOnly: unverifiedMark) }
        case .forwardShared(let targets, let shared):
            if shared.chosen > 0 { metrics.sharedForwards.increment(by: shared.chosen) }
            if shared.extraCopies > 0 { metrics.sharedExtraCopies.increment(by: shared.extraCopies) }
            let properties = forward(m, topic: topic, to: targets, direct: !unverifiedMark)
            if replay.isEnabled { replay.record(m, topic: topic, sentTo: PeerSet(targets.lazy.map(\.index)), properties: properties, prefixedOnly: unverifiedMark) }
        case .republishLocally:
            republish(m)
        case .notWanted:
            metrics.notWanted.increment()
            if replay.isEnabled { replay.record(m, topic: topic, sentTo: PeerSet(), properties: nil, prefixedOnly: unverifiedMark) }
        case .ignored(let reason):
            switch reason {
            case .dollarTopic: metrics.ignoredDollar.increment()
            case .emptyForwardedTopic, .invalidForwardedTopic:
                metrics.ignoredInvalid.increment()
                let (log, n) = throttles.republish.shouldLog()
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
    /// `direct`: whether peers this agent delivers to directly may get it so.
    private func forward(_ m: ReceivedMessage, topic: String, to targets: [PeerLink], direct: Bool) -> PropertyList? {
        let forwardTopic = state.withValue { $0.topicBuffer.prefixed(m.borrowedTopic) }
        let hasProperties = m.retain || m.hasProperties
        // libmosquitto sends only the first property of a list it did not build itself
        // (received lists are not "client generated"), so properties are always copied.
        // A retained message crosses as a non-retained copy that carries the marker.
        let copied = hasProperties ? forwardProperties(m, alias: nil) : nil
        /// Own properties plus this agent's origin mark, made for the first direct peer.
        var marked: PropertyList?
        for peer in targets {
            if m.qos > 0, let full = room(for: peer, bytes: m.payload.count) {
                peer.metrics.dropped.increment()
                logDrop(peer, reason: full)
                continue
            }
            if direct && peer.deliversDirect {
                if marked == nil { marked = markedProperties(m) }
                if let marked {
                    // Under its own topic, retained as it came, no alias (a resend after a
                    // reconnect would need the alias set up again by a message subscribers
                    // would see) and no number (no agent on the other side to judge it).
                    let outcome = peer.client.publish(topic: m.borrowedTopic, payload: m.payload, qos: m.qos, retain: m.retain, properties: marked)
                    if outcome.isAccepted { peer.metrics.forwardedDirect.increment() }
                    account(outcome, to: peer, bytes: m.payload.count, byAliasOnly: false, alias: nil)
                    continue
                }
                // Unmarked it would be forwarded again by the peer's agent: prefixed instead.
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
            account(outcome, to: peer, bytes: m.payload.count, byAliasOnly: use.byAliasOnly, alias: use.alias?.number)
        }
        return m.retain ? nil : copied
    }

    /// Counts one forward's outcome (and logs a drop).
    private func account(_ outcome: PublishOutcome, to peer: PeerLink, bytes: Int, byAliasOnly: Bool, alias: UInt16?) {
        if outcome.isAccepted {
            if outcome == .sent {
                peer.metrics.forwardedMessages.increment()
                peer.metrics.forwardedBytes.increment(by: bytes)
            } else {
                // Accepted while the link is down: held for the reconnect, not forwarded yet.
                peer.metrics.held.increment()
            }
            if byAliasOnly { peer.metrics.forwardedByAlias.increment() }
        } else {
            // Not sent (and not queued): the peer never learned an alias this one set up.
            if let alias, !byAliasOnly { peer.aliasAnnouncementFailed(alias) }
            peer.metrics.dropped.increment()
            logDrop(peer, reason: outcome.failure("forward")?.description ?? "\(outcome)")
        }
    }

    /// The properties of a direct delivery: the message's own (without `mesh:` ones) and
    /// this agent run's origin mark. Nil if copying failed (logged; sent prefixed instead).
    private func markedProperties(_ m: ReceivedMessage) -> PropertyList? {
        guard m.hasProperties else { return markOnly }
        do {
            return try Self.marked(Self.ownProperties(m), token: configuration.originToken)
        } catch {
            logger.error("could not mark a message for direct delivery; sending it prefixed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// `properties` with the origin mark added.
    static func marked(_ properties: PropertyList, token: String) throws(MosquittoError) -> PropertyList {
        try properties.addUserProperty(originMarker, token)
        return properties
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
        let (log, n) = throttles.drop.shouldLog()
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
        let localTopic = m.borrowedTopic.dropping(prefixBytes: prefixLength)
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
            switch state.withValue({ $0.sequences.judge(marker) }) {
            case .new:
                break
            case .duplicate:
                // Resent by the sending agent after a reconnect; the first copy was republished.
                metrics.duplicatesDropped.increment()
                let (log, n) = throttles.duplicate.shouldLog()
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
            let (log, n) = throttles.republish.shouldLog()
            if log {
                logger.error("local republish failed", metadata: ["error": "\(outcome.failure("republish").map { "\($0)" } ?? "\(outcome)")", "occurrence": "\(n)"])
            }
        }
    }
}
