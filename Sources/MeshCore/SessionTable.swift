/// The local broker's sessions as the agent knows them from its log, and the
/// node's interest derived from them.
///
/// Mosquitto restores a persistent session's subscriptions on reconnect
/// *without logging them*, and drops them on a clean reconnect without
/// unsubscribe lines, so the agent must model sessions, not just sum
/// subscribe/unsubscribe lines. The table is `Codable` so the agent can
/// persist it and survive its own restart.
public struct SessionTable: Sendable, Equatable, Codable {
    public struct Session: Sendable, Equatable, Codable {
        /// Survives disconnects (MQTT 3.1.1 clean session 0 / v5 clean start 0).
        public var persistent: Bool
        public var online: Bool
        /// Filter text as subscribed (incl. `$share/...`) → QoS.
        public var filters: [String: Int]

        public init(persistent: Bool, online: Bool, filters: [String: Int] = [:]) {
            self.persistent = persistent
            self.online = online
            self.filters = filters
        }
    }

    /// Client ids with this prefix are the mesh's own and never count as interest
    /// (otherwise the agent's own `#` would make every node want everything).
    public let excludedClientIDPrefix: String
    public private(set) var sessions: [String: Session] = [:]
    /// Filter text (as subscribed) → number of sessions holding it. Maintained
    /// incrementally on every event; only recomputed when decoding.
    public private(set) var interest: [String: Int] = [:]

    public init(excludedClientIDPrefix: String = "mosquitto-mesh/") {
        self.excludedClientIDPrefix = excludedClientIDPrefix
    }

    /// Whether `id` has a session here: used by the log parser to resolve
    /// lines where ids and filters containing spaces are ambiguous.
    public func isKnownClient(_ id: String) -> Bool {
        sessions[id] != nil
    }

    /// Whether events about `id` are ignored (the mesh's own clients).
    public func isExcluded(_ id: String) -> Bool {
        !excludedClientIDPrefix.isEmpty && id.utf8.starts(with: excludedClientIDPrefix.utf8)
    }

    /// Applies one event; returns true if `interest` changed (so the caller republishes its advert).
    @discardableResult
    public mutating func apply(_ event: BrokerLogEvent) -> Bool {
        guard !isExcluded(event.clientID) else { return false }
        switch event {
        case .connected(let id, _, let cleanStart, _, _):
            if cleanStart {
                // A clean start discards any previous session, silently.
                let changed = removeSession(id)
                sessions[id] = Session(persistent: false, online: true)
                return changed
            }
            if sessions[id] != nil {
                // Mosquitto restores the subscriptions without logging them.
                sessions[id]!.online = true
                sessions[id]!.persistent = true
            } else {
                sessions[id] = Session(persistent: true, online: true)
            }
            return false

        case .subscribed(let id, let qos, let filter):
            if sessions[id] == nil {
                // We missed the connect (e.g. started mid-session): assume clean.
                sessions[id] = Session(persistent: false, online: true)
            }
            sessions[id]!.online = true
            let previous = sessions[id]!.filters.updateValue(qos, forKey: filter)
            guard previous == nil else { return false }
            interest[filter, default: 0] += 1
            return true

        case .unsubscribed(let id, let filter):
            guard sessions[id]?.filters.removeValue(forKey: filter) != nil else { return false }
            releaseInterest(filter)
            return true

        case .disconnected(let id, _):
            guard let session = sessions[id] else { return false }
            if session.persistent {
                sessions[id]!.online = false
                return false
            }
            return removeSession(id)

        case .takenOver:
            // The connect line that follows decides between resume and clean start.
            return false

        case .expired(let id):
            return removeSession(id)
        }
    }

    /// The local broker restarted (it forgot clean sessions): drop clean
    /// sessions, mark persistent ones offline. Returns true if `interest` changed.
    @discardableResult
    public mutating func brokerRestarted() -> Bool {
        var changed = false
        for (id, session) in sessions {
            if session.persistent {
                sessions[id]!.online = false
            } else {
                changed = removeSession(id) || changed
            }
        }
        return changed
    }

    /// Removes a session and its filters' share of the interest; true if interest changed.
    private mutating func removeSession(_ id: String) -> Bool {
        guard let old = sessions.removeValue(forKey: id) else { return false }
        for filter in old.filters.keys { releaseInterest(filter) }
        return !old.filters.isEmpty
    }

    private mutating func releaseInterest(_ filter: String) {
        guard let count = interest[filter] else { return }
        if count <= 1 {
            interest.removeValue(forKey: filter)
        } else {
            interest[filter] = count - 1
        }
    }

    // MARK: - Codable (interest is derived, so it is recomputed rather than trusted)

    private enum CodingKeys: String, CodingKey {
        case excludedClientIDPrefix, sessions
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.excludedClientIDPrefix = try container.decode(String.self, forKey: .excludedClientIDPrefix)
        let decoded = try container.decode([String: Session].self, forKey: .sessions)
        for (id, session) in decoded where !isExcluded(id) {
            sessions[id] = session
            for filter in session.filters.keys { interest[filter, default: 0] += 1 }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(excludedClientIDPrefix, forKey: .excludedClientIDPrefix)
        try container.encode(sessions, forKey: .sessions)
    }
}
