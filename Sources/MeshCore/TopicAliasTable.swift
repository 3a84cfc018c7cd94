/// The MQTT v5 topic aliases one peer link has set up on the peer broker.
///
/// A forwarded message carries `forward/<topic>`; with an alias the topic goes over the
/// inter-broker link once and every later message on it carries two bytes instead (the
/// `seed` benchmark's `forward/test_1/499` shrinks each crossing PUBLISH by 17 bytes).
///
/// Aliases are handed to the first `capacity` distinct topics and never reassigned while
/// the link lives: libmosquitto resends unacknowledged QoS 1/2 messages as they were built
/// (alias only, no topic) after a reconnect, and a reassigned alias would deliver such a
/// resend under another topic. For the same reason the table survives reconnects: the
/// link re-announces every alias (`connected`) before libmosquitto resends anything.
public struct TopicAliasTable: Sendable {
    public enum Use: Equatable, Sendable {
        /// No alias: send the topic.
        case none
        /// Send the topic together with this alias (sets it up on the peer).
        case announce(UInt16)
        /// Send only this alias (the peer knows it).
        case alias(UInt16)
    }

    /// How many aliases the peer broker accepts (its CONNACK's Topic Alias Maximum, capped
    /// by configuration); 0 turns aliases off. Aliases above it are kept but not used.
    public private(set) var capacity: Int
    /// topic → alias, for the life of the link: an alias is never forgotten or given to
    /// another topic (numbers are dense, 1...count).
    private var aliases: [String: UInt16] = [:]
    /// Aliases whose setting-up message did not go out: the next use sends the topic again.
    private var unannounced: Set<UInt16> = []
    /// Whether aliases in `aliases` are known to the peer on the current connection. While
    /// the link is down or reconnecting nothing is sent by alias.
    public private(set) var isEstablished = false

    public init(capacity: Int = 0) {
        self.capacity = max(0, min(capacity, Int(UInt16.max)))
    }

    /// Aliases handed out so far (usable or not).
    public var count: Int { aliases.count }

    /// How to send the next message on `topic`.
    public mutating func use(for topic: String) -> Use {
        guard isEstablished else { return .none }
        if let alias = aliases[topic] {
            guard Int(alias) <= capacity else { return .none }
            if unannounced.remove(alias) != nil { return .announce(alias) }
            return .alias(alias)
        }
        guard let alias = nextAlias else { return .none }
        aliases[topic] = alias
        return .announce(alias)
    }

    /// The alias `topic` can be sent by on the current connection, if any (nil while it
    /// still has to be announced).
    public func alias(of topic: String) -> UInt16? {
        guard isEstablished, let alias = aliases[topic], Int(alias) <= capacity, !unannounced.contains(alias) else { return nil }
        return alias
    }

    /// The alias the next new topic would get, if the table has room.
    public var nextAlias: UInt16? {
        isEstablished && aliases.count < capacity ? UInt16(aliases.count + 1) : nil
    }

    /// The message that was to set up `alias` was not sent (refused locally): the next
    /// message on its topic carries the topic again.
    public mutating func announcementFailed(_ alias: UInt16) {
        if Int(alias) <= aliases.count { unannounced.insert(alias) }
    }

    /// The link went down: send topics until the next connection is set up.
    public mutating func connectionLost() { isEstablished = false }

    /// A connection is up and the peer accepts `peerMaximum` aliases. Every alias within
    /// that maximum is returned, to be announced before anything is resent (or sent by alias)
    /// on this connection. Aliases above a lowered maximum stay in the table unused
    /// (`unusable`: a resend that used one is refused by the peer until its maximum is raised
    /// again — logged by the caller); their numbers are never handed to another topic.
    public mutating func connected(peerMaximum: Int, configuredMaximum: Int) -> (announce: [(topic: String, alias: UInt16)], unusable: Int) {
        capacity = max(0, min(peerMaximum, configuredMaximum, Int(UInt16.max)))
        isEstablished = true
        unannounced.removeAll()
        let usable = aliases.filter { Int($0.value) <= capacity }
        return (usable.map { ($0.key, $0.value) }.sorted { $0.alias < $1.alias }, aliases.count - usable.count)
    }
}
