/// How a client's connection ended, as far as the broker log tells.
///
/// Only `clean` vs the rest matters for sessions today (every reason ends
/// the connection the same way), but keeping the reason lets operators see
/// *why* interest changed.
public enum DisconnectReason: String, Sendable, Equatable {
    case clean, closed, keepaliveTimeout, malformedPacket, other
}

/// One broker log line that matters for interest tracking.
///
/// The session table consumes these; the parser produces them. Keeping the
/// event as a plain value lets tests feed sessions without any log text.
public enum BrokerLogEvent: Equatable, Sendable {
    /// `protocolLevel` is mosquitto's own protocol number as logged:
    /// 1 = MQTT 3.1, 2 = MQTT 3.1.1, 5 = MQTT 5.
    case connected(clientID: String, protocolLevel: Int, cleanStart: Bool, keepalive: Int, username: String?)
    case subscribed(clientID: String, qos: Int, filter: String)
    case unsubscribed(clientID: String, filter: String)
    case disconnected(clientID: String, reason: DisconnectReason)
    /// "Client dup already connected, closing old connection." — no disconnect
    /// line follows for the old connection; the next connect line decides.
    case takenOver(clientID: String)
    /// "Expiring client X due to timeout." — a persistent session is gone.
    case expired(clientID: String)
    /// "New connection from <addr> on port <n>." — a socket that has not sent CONNECT yet
    /// (Mosquitto counts it against its offline sessions until it does).
    case socketOpened
    /// A line that can be read several ways (ids and filters may contain spaces and a
    /// notice's own words): every reading still possible. The session table applies only
    /// what cannot make anyone's interest smaller.
    case ambiguous([BrokerLogEvent])
    /// A line the broker cut at its 999-byte limit (see `TruncatedLine`).
    case truncated(TruncatedLine)

    /// The client id the event is about ("" for `.ambiguous` and `.truncated`, which are
    /// about several possible clients, and for `.socketOpened`).
    public var clientID: String {
        switch self {
        case .connected(let id, _, _, _, _), .subscribed(let id, _, _), .unsubscribed(let id, _),
             .disconnected(let id, _), .takenOver(let id), .expired(let id):
            return id
        case .ambiguous, .truncated, .socketOpened:
            return ""
        }
    }
}

/// What is left of a log line that Mosquitto cut: the kind of line, and the readings of the
/// visible part that name a client the table knows. A subscribe reading carries a filter
/// that covers whatever the cut one was (`a/b/c…` → `a/b/#`). The real client may also be
/// one whose id was too long to show, which no reading can name.
public struct TruncatedLine: Equatable, Sendable {
    public enum Kind: Equatable, Sendable { case subscribe, unsubscribe, connect, notice }
    public var kind: Kind
    public var readings: [BrokerLogEvent]

    public init(kind: Kind, readings: [BrokerLogEvent]) {
        self.kind = kind
        self.readings = readings
    }
}
