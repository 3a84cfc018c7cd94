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
    /// by configuration); 0 turns aliases off.
    public private(set) var capacity: Int
    private var aliases: [String: UInt16] = [:]
    /// Whether aliases in `aliases` are known to the peer on the current connection. While
    /// the link is down or reconnecting nothing is sent by alias.
    public private(set) var isEstablished = false

    public init(capacity: Int = 0) {
        self.capacity = max(0, min(capacity, Int(UInt16.max)))
    }

    public var count: Int { aliases.count }

    /// How to send the next message on `topic`.
    public mutating func use(for topic: String) -> Use {
        guard isEstablished else { return .none }
        if let alias = aliases[topic] { return .alias(alias) }
        guard aliases.count < capacity else { return .none }
        let alias = UInt16(aliases.count + 1)
        aliases[topic] = alias
        return .announce(alias)
    }

    /// The alias `topic` already has on the current connection, if any.
    public func alias(of topic: String) -> UInt16? {
        isEstablished ? aliases[topic] : nil
    }

    /// The alias the next new topic would get, if the table has room.
    public var nextAlias: UInt16? {
        isEstablished && aliases.count < capacity ? UInt16(aliases.count + 1) : nil
    }

    /// The link went down: send topics until the next connection is set up.
    public mutating func connectionLost() { isEstablished = false }

    /// A connection is up and the peer accepts `peerMaximum` aliases. Every alias that still
    /// fits is kept and returned, to be announced before anything is resent (or sent by
    /// alias) on this connection. Aliases above a lowered maximum are forgotten: a resend
    /// that used one is refused by the peer (`lost` > 0, logged by the caller).
    public mutating func connected(peerMaximum: Int, configuredMaximum: Int) -> (announce: [(topic: String, alias: UInt16)], lost: Int) {
        capacity = max(0, min(peerMaximum, configuredMaximum, Int(UInt16.max)))
        isEstablished = true
        let kept = aliases.filter { Int($0.value) <= capacity }
        let lost = aliases.count - kept.count
        aliases = kept
        // Aliases are dense (1...count): the kept ones are 1...capacity when some were lost
        // (the table is then full), all of them otherwise; `use` continues at count + 1.
        return (kept.map { ($0.key, $0.value) }.sorted { $0.alias < $1.alias }, lost)
    }
}
