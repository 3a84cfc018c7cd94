/// The local broker's sessions as the agent knows them from its log, and the
/// node's interest derived from them.
///
/// Mosquitto restores a persistent session's subscriptions on reconnect
/// *without logging them*, drops them on a clean reconnect without
/// unsubscribe lines, and never logs an MQTT 5 session's expiry interval, so
/// the agent models sessions, not just sums of subscribe/unsubscribe lines.
///
/// The rule: **interest is never under-estimated.** Wherever the log cannot
/// tell — an MQTT 5 session that may or may not outlive its connection, a line
/// the broker cut, a line that reads several ways, a session whose
/// subscriptions were never logged — the table keeps the larger picture
/// (`#` where nothing narrower is safe) and says so in its counts; it lets go
/// only on evidence (`census`) or after a bounded grace (`sweep`).
///
/// The table is `Codable` so the agent can persist it and survive its own restart.
public struct SessionTable: Sendable, Equatable, Codable {
    /// What the log says about how long a session outlives its connection.
    public enum Lifetime: String, Sendable, Equatable, Codable {
        /// MQTT 3.1/3.1.1 clean session: gone when the connection ends.
        case endsAtDisconnect
        /// MQTT 3.1/3.1.1 clean-session 0: stays until "Expiring client …" or a clean reconnect.
        case survivesDisconnect
        /// MQTT 5 (the session expiry interval is not logged), or a session whose connect
        /// line was never seen: may or may not be gone once offline.
        case unknown
    }

    /// A moment on the table's clock: how many broker `$SYS` ticks the agent had seen, and
    /// the wall time in seconds.
    public struct Stamp: Sendable, Equatable, Codable {
        public var tick: UInt64
        public var time: Double
        public init(tick: UInt64, time: Double) {
            self.tick = tick
            self.time = time
        }
    }

    public struct Session: Sendable, Equatable, Codable {
        public var lifetime: Lifetime
        public var online: Bool
        /// Filter text as subscribed (incl. `$share/...`) → QoS.
        public var filters: [String: Int]
        /// The session may hold subscriptions the log never showed (it resumed a session the
        /// table did not know): it counts as interest in `#`.
        public var filtersUnknown = false
        /// A cut or ambiguous line may have ended this session or brought it back: it is kept,
        /// but never counted as certainly online or certainly offline.
        public var stateUncertain = false
        /// One of the mesh's own clients: tracked for the session counts, never interest.
        public var excluded = false
        /// It resumed (clean start 0) a session of unknown lifetime: if that one had no expiry,
        /// Mosquitto started it empty and these filters are more than it has.
        public var filtersMayBeStale = false
        /// When it went offline (or, for the unattributed entry, when it was last needed).
        public var offlineSince: Stamp?
        /// The table's `linkEpoch` when the session was last seen alive.
        public var epoch: UInt64 = 0

        /// Whether the session may outlive its connection.
        public var persistent: Bool { lifetime != .endsAtDisconnect }

        public init(lifetime: Lifetime, online: Bool, filters: [String: Int] = [:]) {
            self.lifetime = lifetime
            self.online = online
            self.filters = filters
        }

        /// Compatibility with callers and state files that only know persistent or not.
        public init(persistent: Bool, online: Bool, filters: [String: Int] = [:]) {
            self.init(lifetime: persistent ? .survivesDisconnect : .endsAtDisconnect, online: online, filters: filters)
        }

        /// The filters this session counts for in the node's interest.
        var contribution: Set<String> {
            if excluded { return [] }
            var set = Set(filters.keys)
            if filtersUnknown { set.insert("#") }
            return set
        }

        private enum CodingKeys: String, CodingKey {
            case lifetime, persistent, online, filters, filtersUnknown, stateUncertain, excluded, filtersMayBeStale, offlineSince, epoch
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let lifetime = try c.decodeIfPresent(Lifetime.self, forKey: .lifetime) {
                self.lifetime = lifetime
            } else {
                // State files written before lifetimes existed: persistent or clean.
                self.lifetime = try c.decode(Bool.self, forKey: .persistent) ? .survivesDisconnect : .endsAtDisconnect
            }
            online = try c.decode(Bool.self, forKey: .online)
            filters = try c.decode([String: Int].self, forKey: .filters)
            filtersUnknown = try c.decodeIfPresent(Bool.self, forKey: .filtersUnknown) ?? false
            stateUncertain = try c.decodeIfPresent(Bool.self, forKey: .stateUncertain) ?? false
            excluded = try c.decodeIfPresent(Bool.self, forKey: .excluded) ?? false
            filtersMayBeStale = try c.decodeIfPresent(Bool.self, forKey: .filtersMayBeStale) ?? false
            offlineSince = try c.decodeIfPresent(Stamp.self, forKey: .offlineSince)
            epoch = try c.decodeIfPresent(UInt64.self, forKey: .epoch) ?? 0
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(lifetime, forKey: .lifetime)
            try c.encode(online, forKey: .online)
            try c.encode(filters, forKey: .filters)
            if filtersUnknown { try c.encode(true, forKey: .filtersUnknown) }
            if stateUncertain { try c.encode(true, forKey: .stateUncertain) }
            if excluded { try c.encode(true, forKey: .excluded) }
            if filtersMayBeStale { try c.encode(true, forKey: .filtersMayBeStale) }
            try c.encodeIfPresent(offlineSince, forKey: .offlineSince)
            if epoch != 0 { try c.encode(epoch, forKey: .epoch) }
        }
    }

    /// What the broker's `$SYS/broker/clients/…` counters said for one update.
    public struct Census: Sendable, Equatable {
        /// `$SYS/broker/clients/disconnected`: sessions by id minus sockets (Mosquitto
        /// 2.0.11 computes `by_id − by_sock`, so it can be negative while sockets wait for
        /// their CONNECT).
        public var disconnected: Int
        /// `$SYS/broker/clients/connected`: sockets, including ones that have not sent CONNECT.
        public var connected: Int

        public init(disconnected: Int, connected: Int) {
            self.disconnected = disconnected
            self.connected = connected
        }
    }

    /// The table as it stood at one broker update (taken when that update's uptime tick
    /// arrives; judged against that update's counts, which arrive after it).
    public struct CensusSnapshot: Sendable, Equatable {
        /// Offline sessions certain to exist (lifetime survives, state not in doubt).
        var certainOffline = 0
        /// Sessions certainly online.
        var certainOnline = 0
        /// Sockets the log showed accepted and not yet a session.
        var pendingSockets = 0
        /// Whether `pendingSockets` can be trusted: every socket open now was accepted after
        /// the log link subscribed (Mosquitto closes a socket that sends no CONNECT within
        /// 1.5 × its default keepalive of 60 s).
        var pendingSocketsComplete = false
        /// Offline sessions of unknown lifetime, with the stamp they went offline at.
        var uncertain: [(id: String, since: Stamp)] = []

        public static func == (l: CensusSnapshot, r: CensusSnapshot) -> Bool {
            l.certainOffline == r.certainOffline && l.certainOnline == r.certainOnline && l.pendingSockets == r.pendingSockets
                && l.pendingSocketsComplete == r.pendingSocketsComplete
                && l.uncertain.map(\.id) == r.uncertain.map(\.id) && l.uncertain.map(\.since) == r.uncertain.map(\.since)
        }
    }

    /// Sessions let go of by `census` and `sweep`, for the agent's counters.
    public struct Released: Sendable, Equatable {
        public var byEvidence = 0
        public var byGrace = 0
        public var byLimit = 0
        public var changedInterest = false
        public init() {}
    }

    /// Key of the entry that holds interest no session can be named for (a cut subscribe
    /// line whose client cannot be told). MQTT client ids cannot contain U+0000.
    public static let unattributedKey = "\u{0}unattributed"
    /// How many forgotten ids (released without proof that they ended) are remembered, so a
    /// session that comes back is known to have subscriptions the table no longer has.
    public static let forgottenLimit = 10_000

    /// Client ids with this prefix are the mesh's own and never count as interest
    /// (otherwise the agent's own `#` would make every node want everything).
    public let excludedClientIDPrefix: String
    public private(set) var sessions: [String: Session] = [:]
    /// Filter text (as subscribed) → number of sessions holding it. Maintained
    /// incrementally on every event; only recomputed when decoding.
    public private(set) var interest: [String: Int] = [:]
    /// Whether filters entering `interest` are kept for `takeAppeared` (off by default, so a
    /// table nobody drains does not grow).
    public var recordsAppearances: Bool {
        get { appeared.on }
        set { appeared.on = newValue }
    }
    private var appeared = Appearances()

    /// Filters that entered `interest`, waiting for the caller: bookkeeping about the table,
    /// not part of its value (two tables with the same sessions are equal whatever is here).
    struct Appearances: Sendable, Equatable {
        var on = false
        var filters: [String] = []
        static func == (_: Appearances, _: Appearances) -> Bool { true }
    }
    /// Whether the table holds every session the broker has. False after a connect line
    /// was cut, a session was forgotten without proof, or when the agent starts beside a
    /// broker it has no saved state for; a resumed session the table does not know then
    /// counts as `#`.
    public private(set) var everyClientKnown = true
    /// Incremented each time the agent's log connection comes back; sessions seen alive
    /// since carry it (a broker restart in between forgot the others' clean sessions).
    public private(set) var linkEpoch: UInt64 = 0
    /// The table's clock: the last stamp the agent gave it.
    public private(set) var clock = Stamp(tick: 0, time: 0)
    /// Ids released without proof that their session ended (bounded; see `forgottenLimit`).
    public private(set) var forgotten: Set<String> = []
    /// Sockets accepted that have not become a session yet, as far as the log tells (a missed
    /// close only makes it larger, which `census` takes as less room to release). Not saved.
    public private(set) var pendingSockets = 0
    /// The id Mosquitto logs for a connection that ends before its CONNECT.
    static let unknownClientID = "<unknown>"

    public init(excludedClientIDPrefix: String = "mosquitto-mesh/", everyClientKnown: Bool = true) {
        self.excludedClientIDPrefix = excludedClientIDPrefix
        self.everyClientKnown = everyClientKnown
    }

    /// Whether `id` has a session here: used by the log parser to resolve
    /// lines where ids and filters containing spaces are ambiguous.
    public func isKnownClient(_ id: String) -> Bool {
        sessions[id] != nil
    }

    /// Whether `id` is one of the mesh's own clients.
    public func isExcluded(_ id: String) -> Bool {
        !excludedClientIDPrefix.isEmpty && id.utf8.starts(with: excludedClientIDPrefix.utf8)
    }

    /// Sessions whose filters may be more than the broker's: offline ones kept although they
    /// may have ended (unknown lifetime), and ones that resumed such a session.
    public var uncertainSessions: Int {
        sessions.values.reduce(0) { count, s in
            guard !s.excluded else { return count }
            return count + (((s.lifetime == .unknown || s.stateUncertain) && !s.online) || s.filtersMayBeStale ? 1 : 0)
        }
    }

    /// Sessions that count as `#` because their subscriptions are not all known.
    public var unknownFilterSessions: Int {
        sessions.values.reduce(0) { $0 + ($1.filtersUnknown && !$1.excluded ? 1 : 0) }
    }

    /// Client sessions (the mesh's own and the unattributed entry left out).
    public var clientSessions: Int {
        sessions.reduce(0) { $0 + ($1.value.excluded || $1.key == Self.unattributedKey ? 0 : 1) }
    }

    /// Moves the table's clock (ticks and time only grow).
    public mutating func advance(to stamp: Stamp) {
        clock = Stamp(tick: max(clock.tick, stamp.tick), time: max(clock.time, stamp.time))
    }

    /// The `$share/…` filters of the sessions that are members for sure: online, or offline
    /// with a session known to outlive its connection (the broker queues for it), and nothing
    /// uncertain about them. An agent does not forward to other brokers for a group with
    /// members here, so this must never be more than the truth: less only costs a copy.
    /// O(sessions).
    public func certainSharedFilters() -> [String: Int] {
        var result: [String: Int] = [:]
        for session in sessions.values where !session.excluded && !session.stateUncertain && !session.filtersMayBeStale
            && (session.online || session.lifetime == .survivesDisconnect) {
            for filter in session.filters.keys where filter.utf8.starts(with: Self.sharePrefix.utf8) {
                result[filter, default: 0] += 1
            }
        }
        return result
    }

    /// Whether an event may change `certainSharedFilters` (checked before applying it).
    public func mayChangeSharedMembers(_ event: BrokerLogEvent) -> Bool {
        func holds(_ id: String) -> Bool {
            sessions[id]?.filters.keys.contains { $0.utf8.starts(with: Self.sharePrefix.utf8) } ?? false
        }
        switch event {
        case .subscribed(_, _, let filter), .unsubscribed(_, let filter):
            return filter.utf8.starts(with: Self.sharePrefix.utf8)
        case .connected(let id, _, _, _, _), .disconnected(let id, _), .takenOver(let id), .expired(let id):
            return holds(id)
        case .ambiguous, .truncated:
            return interest.keys.contains { $0.utf8.starts(with: Self.sharePrefix.utf8) }
        case .socketOpened:
            return false
        }
    }

    static let sharePrefix = "$share/"

    /// Applies one event; returns true if `interest` changed (so the caller republishes its advert).
    @discardableResult
    public mutating func apply(_ event: BrokerLogEvent) -> Bool {
        switch event {
        case .socketOpened:
            pendingSockets += 1
            return false

        case .connected(let id, let level, let cleanStart, _, _):
            pendingSockets = max(0, pendingSockets - 1)
            let lifetime: Lifetime = level >= 5 ? .unknown : (cleanStart ? .endsAtDisconnect : .survivesDisconnect)
            if cleanStart {
                // A clean start discards any previous session, silently.
                var fresh = Session(lifetime: lifetime, online: true)
                fresh.excluded = isExcluded(id)
                fresh.epoch = linkEpoch
                forgotten.remove(id)
                return replace(id, with: fresh)
            }
            if var session = sessions[id] {
                if session.lifetime == .endsAtDisconnect && !session.stateUncertain {
                    // Taking over a session without expiry (MQTT 3.1.1 clean): Mosquitto carries
                    // subscriptions over only from a session with an expiry, so this one starts empty.
                    var fresh = Session(lifetime: lifetime, online: true)
                    fresh.excluded = session.excluded
                    fresh.epoch = linkEpoch
                    return replace(id, with: fresh)
                }
                // Mosquitto restores the subscriptions without logging them — if the old session
                // had an expiry, which for MQTT 5 the log does not say: they may be stale.
                if session.lifetime == .unknown && !session.filters.isEmpty { session.filtersMayBeStale = true }
                session.lifetime = lifetime
                session.online = true
                session.stateUncertain = false
                session.offlineSince = nil
                session.epoch = linkEpoch
                sessions[id] = session
                return false
            }
            var session = Session(lifetime: lifetime, online: true)
            session.excluded = isExcluded(id)
            session.epoch = linkEpoch
            // A session the table does not know: new (no subscriptions) if the table knows
            // every session, otherwise it may have resumed subscriptions never logged.
            if forgotten.remove(id) != nil || !everyClientKnown { session.filtersUnknown = true }
            return replace(id, with: session)

        case .subscribed(let id, let qos, let filter):
            let created = sessions[id] == nil
            var session = sessions[id] ?? missedConnect(id)
            session.online = true
            session.offlineSince = nil
            session.epoch = linkEpoch
            if session.excluded {
                sessions[id] = session
                return false
            }
            let previous = session.filters.updateValue(qos, forKey: filter)
            let wasCounted = previous != nil || (filter == "#" && session.filtersUnknown)
            sessions[id] = session
            guard !wasCounted else { return created && session.filtersUnknown }
            addInterest(filter)
            return true

        case .unsubscribed(let id, let filter):
            guard var session = sessions[id], session.filters.removeValue(forKey: filter) != nil else { return false }
            sessions[id] = session
            if filter == "#" && session.filtersUnknown { return false }
            releaseInterest(filter)
            return true

        case .disconnected(let id, _):
            guard var session = sessions[id] else {
                if id == Self.unknownClientID { pendingSockets = max(0, pendingSockets - 1) }
                return false
            }
            if session.lifetime == .endsAtDisconnect && !session.stateUncertain {
                return replace(id, with: nil)
            }
            session.online = false
            session.offlineSince = clock
            sessions[id] = session
            return false

        case .takenOver:
            // The connect line that follows decides between resume and clean start.
            return false

        case .expired(let id):
            forgotten.remove(id)
            return replace(id, with: nil)

        case .ambiguous(let readings):
            // Only what cannot make interest smaller: subscriptions are added for every
            // reading; a reading that would end, take over or bring back a session makes
            // that session's state uncertain instead; unsubscribes are not applied.
            var changed = false
            for reading in readings {
                switch reading {
                case .subscribed:
                    changed = apply(reading) || changed
                case .connected(let id, _, _, _, _):
                    if sessions[id] == nil {
                        // It may have resumed a session we never knew of.
                        everyClientKnown = false
                    } else {
                        sessions[id]!.stateUncertain = true
                    }
                case .disconnected(let id, _), .expired(let id), .takenOver(let id):
                    sessions[id]?.stateUncertain = true
                case .unsubscribed, .ambiguous, .truncated, .socketOpened:
                    break
                }
            }
            return changed

        case .truncated(let line):
            var changed = false
            switch line.kind {
            case .subscribe:
                for reading in line.readings { changed = apply(reading) || changed }
                // The client may be one whose id was too long to show (or one the table
                // does not know): what it subscribed to can only be covered by `#`.
                if line.readings.isEmpty || !everyClientKnown { changed = holdUnattributed() || changed }
            case .connect:
                everyClientKnown = false
            case .notice:
                for reading in line.readings { sessions[reading.clientID]?.stateUncertain = true }
            case .unsubscribe:
                break
            }
            return changed
        }
    }

    /// A subscribe line from a client whose connect line was not seen (the agent started
    /// mid-session, or the line was ambiguous): its lifetime is unknown, and unless every
    /// session is known it may hold subscriptions never logged.
    private mutating func missedConnect(_ id: String) -> Session {
        var session = Session(lifetime: .unknown, online: true)
        session.excluded = isExcluded(id)
        session.epoch = linkEpoch
        if !session.excluded && (!everyClientKnown || forgotten.contains(id)) {
            forgotten.remove(id)
            session.filtersUnknown = true
            addInterest("#")
        }
        return session
    }

    /// Holds (or refreshes) the unattributed entry's `#`.
    private mutating func holdUnattributed() -> Bool {
        if var entry = sessions[Self.unattributedKey] {
            entry.offlineSince = clock
            sessions[Self.unattributedKey] = entry
            return false
        }
        var entry = Session(lifetime: .unknown, online: true)
        entry.filtersUnknown = true
        entry.offlineSince = clock
        return replace(Self.unattributedKey, with: entry)
    }

    /// The agent's log connection came back: sessions seen from now on are alive on the
    /// broker as it is now.
    public mutating func linkReconnected() {
        linkEpoch &+= 1
    }

    /// The agent could not read some log lines (its log session was taken over or lost, or
    /// it crashed after applying lines it had not saved): every session online meanwhile may
    /// have subscribed to anything, and sessions may have appeared unseen — `#` for each, and
    /// an unattributed `#` until the grace has passed.
    public mutating func linesLost() -> Bool {
        everyClientKnown = false
        // Sessions that connected and subscribed unseen are not in the table at all.
        var changed = holdUnattributed()
        for (id, session) in sessions where session.online && !session.excluded && !session.filtersUnknown && id != Self.unattributedKey {
            var updated = session
            updated.filtersUnknown = true
            changed = replace(id, with: updated) || changed
        }
        return changed
    }

    /// The local broker restarted (it forgot clean sessions): sessions not seen alive since
    /// the log connection last came back end if clean, go offline otherwise. Returns true if
    /// `interest` changed.
    @discardableResult
    public mutating func brokerRestarted() -> Bool {
        var changed = false
        for (id, session) in sessions where session.epoch < linkEpoch && id != Self.unattributedKey {
            if session.lifetime == .endsAtDisconnect && !session.stateUncertain {
                changed = replace(id, with: nil) || changed
            } else if session.online {
                sessions[id]!.online = false
                sessions[id]!.offlineSince = clock
            }
        }
        return changed
    }

    /// The table as it stands now, for `census` once the counts of the broker update that
    /// this state corresponds to have arrived.
    ///
    /// Call it when an uptime tick arrives: Mosquitto queues each update's `$SYS` messages at
    /// QoS 0, uptime first, then the client counts; a log line queued before the update
    /// arrives before its uptime tick, and one queued after it arrives after its counts (as
    /// long as the log connection is not lagging past its in-flight window — `caughtUp`). So
    /// the table at the tick is exactly what that update counted.
    public func censusSnapshot(pendingSocketsComplete: Bool) -> CensusSnapshot {
        var snapshot = CensusSnapshot()
        snapshot.pendingSockets = pendingSockets
        snapshot.pendingSocketsComplete = pendingSocketsComplete
        for (id, session) in sessions where id != Self.unattributedKey && !session.stateUncertain {
            if session.online {
                snapshot.certainOnline += 1
            } else if session.lifetime == .survivesDisconnect {
                snapshot.certainOffline += 1
            } else if session.lifetime == .unknown, let since = session.offlineSince {
                snapshot.uncertain.append((id, since))
            }
        }
        return snapshot
    }

    /// Lets go of offline sessions of unknown lifetime on the broker's own evidence: when the
    /// update `snapshot` was taken at counted no more offline sessions than are certain to
    /// exist, none of the uncertain ones was alive.
    ///
    /// Offline sessions in the broker = `disconnected` + sockets still waiting for CONNECT.
    /// Those sockets are counted from the log (`New connection from …` lines) once every open
    /// socket was accepted after the log link subscribed; before that, every socket the
    /// broker has beyond the sessions known to be online is taken as one.
    public mutating func census(_ snapshot: CensusSnapshot, counts: Census, caughtUp: Bool) -> Released {
        var released = Released()
        guard caughtUp, !snapshot.uncertain.isEmpty else { return released }
        let unexplainedSockets = max(0, counts.connected - snapshot.certainOnline)
        let pending = snapshot.pendingSocketsComplete ? min(snapshot.pendingSockets, unexplainedSockets) : unexplainedSockets
        guard counts.disconnected + pending <= snapshot.certainOffline else { return released }
        for (id, since) in snapshot.uncertain {
            // Only if nothing happened to it since the snapshot (it may have come back).
            guard let session = sessions[id], !session.online, !session.stateUncertain, session.lifetime == .unknown,
                  session.offlineSince == since else { continue }
            released.changedInterest = replace(id, with: nil) || released.changedInterest
            released.byEvidence += 1
        }
        return released
    }

    /// Lets go, without proof, of offline sessions of unknown lifetime older than `grace`
    /// seconds, and of the oldest beyond `limit`; and of the unattributed `#` once no cut
    /// line has needed it for `grace`. Their ids are remembered (bounded) so that a session
    /// that comes back counts as `#`.
    public mutating func sweep(grace: Double, limit: Int) -> Released {
        var released = Released()
        let cutoff = clock.time - grace
        var uncertain: [(id: String, since: Double)] = []
        for (id, session) in sessions {
            if id == Self.unattributedKey {
                if let since = session.offlineSince, since.time < cutoff {
                    released.changedInterest = replace(id, with: nil) || released.changedInterest
                    released.byGrace += 1
                }
                continue
            }
            // Offline and possibly ended: unknown lifetime, or a session a cut or ambiguous line
            // may have ended (kept rather than trusted; without this it would stay for ever).
            guard session.lifetime == .unknown || session.stateUncertain, !session.online,
                  let since = session.offlineSince else { continue }
            if since.time < cutoff {
                forget(id)
                released.changedInterest = replace(id, with: nil) || released.changedInterest
                released.byGrace += 1
            } else {
                uncertain.append((id, since.time))
            }
        }
        if uncertain.count > limit {
            uncertain.sort { $0.since < $1.since }
            for entry in uncertain.prefix(uncertain.count - limit) {
                forget(entry.id)
                released.changedInterest = replace(entry.id, with: nil) || released.changedInterest
                released.byLimit += 1
            }
        }
        return released
    }

    private mutating func forget(_ id: String) {
        guard sessions[id]?.excluded != true else { return }
        if forgotten.count >= Self.forgottenLimit {
            // Too many to remember: any unknown session that resumes may be one of them.
            forgotten.removeAll()
            everyClientKnown = false
        }
        forgotten.insert(id)
    }

    /// The broker's sessions were all accounted for some other way (a fresh broker): unknown
    /// sessions can no longer appear.
    public mutating func markEveryClientKnown() {
        everyClientKnown = true
        forgotten.removeAll()
    }

    /// Replaces (or removes) a session and adjusts the interest by the difference; true if
    /// the interest changed.
    private mutating func replace(_ id: String, with new: Session?) -> Bool {
        let old = sessions[id]
        if let new { sessions[id] = new } else { sessions[id] = nil }
        let before = old?.contribution ?? []
        let after = new?.contribution ?? []
        guard before != after else { return false }
        for filter in before where !after.contains(filter) { releaseInterest(filter) }
        for filter in after where !before.contains(filter) { addInterest(filter) }
        return true
    }

    private mutating func addInterest(_ filter: String) {
        let old = interest.updateValue((interest[filter] ?? 0) + 1, forKey: filter)
        if old == nil && appeared.on { appeared.filters.append(filter) }
    }

    /// The filters that entered `interest` since the last call, in order (only while
    /// `recordsAppearances`): the agent stamps them with the time it read their line.
    public mutating func takeAppeared() -> [String] {
        defer { appeared.filters.removeAll(keepingCapacity: true) }
        return appeared.filters
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
        case excludedClientIDPrefix, sessions, everyClientKnown, linkEpoch, clock, forgotten
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.excludedClientIDPrefix = try container.decode(String.self, forKey: .excludedClientIDPrefix)
        everyClientKnown = try container.decodeIfPresent(Bool.self, forKey: .everyClientKnown) ?? true
        linkEpoch = try container.decodeIfPresent(UInt64.self, forKey: .linkEpoch) ?? 0
        clock = try container.decodeIfPresent(Stamp.self, forKey: .clock) ?? Stamp(tick: 0, time: 0)
        forgotten = try container.decodeIfPresent(Set<String>.self, forKey: .forgotten) ?? []
        let decoded = try container.decode([String: Session].self, forKey: .sessions)
        for (id, var session) in decoded {
            session.excluded = session.excluded || isExcluded(id)
            sessions[id] = session
            for filter in session.contribution { interest[filter, default: 0] += 1 }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(excludedClientIDPrefix, forKey: .excludedClientIDPrefix)
        try container.encode(sessions, forKey: .sessions)
        try container.encode(everyClientKnown, forKey: .everyClientKnown)
        try container.encode(linkEpoch, forKey: .linkEpoch)
        try container.encode(clock, forKey: .clock)
        try container.encode(forgotten, forKey: .forgotten)
    }
}
