import Foundation
import Logging
import MeshCore
import Synchronization

/// The local node's interest: the broker's sessions as reconstructed from its log, and
/// the advert sequence. Fed from the control link's loop thread, read by the advert
/// publisher and the state saver; all state behind one lock, held only for pure work.
final class NodeInterest: Sendable {
    struct State {
        var table: SessionTable
        var seq: UInt64
        var dirty: Bool = true
        var changes: UInt64 = 0
        /// Log lines received since the last `$SYS` tick, and in the ticks before (newest
        /// first): a busy log connection may be lagging, which census must not trust.
        var linesThisTick = 0
        var linesRecentTicks: [Int] = [0, 0]
        /// The latest `$SYS/broker/clients/disconnected` and `…/connected` values.
        var disconnected: Int?
        var connected: Int?
        /// The table as it stood at the last uptime tick, judged at the next one against the
        /// counts of that update (which arrive between the two ticks).
        var censusSnapshot: SessionTable.CensusSnapshot?
        /// When the log link last subscribed: sockets opened before it were not logged.
        var logLinkUpAt: Double = 0
        /// Filters that entered the interest within `appearanceHorizon` → when (ms since 1970):
        /// the adverts' `since`, from which peers replay what this node's new subscribers missed.
        var appeared: [String: (millis: UInt64, adverts: Int)] = [:]
    }

    /// At most this many `since` entries per advert (the newest): a subscribe storm must not
    /// make every advert as large as the interest. Older new filters get no replay.
    static let maximumSinceEntries = 4096

    /// Mosquitto closes a socket that sends no CONNECT after 1.5 × its default keepalive
    /// (60 s), checking every 5 s: after this long every open socket was accepted while the
    /// log link was reading.
    static let unloggedSocketLifetime: Double = 96

    /// Lines per tick above which the log connection may be lagging behind its in-flight
    /// window (65535: the receive maximum libmosquitto announces, which Mosquitto uses for
    /// v5 clients); only then could a `$SYS` count (QoS 0) overtake log lines (QoS 1).
    static let laggingLinesPerTick = 30_000

    private let state: Mutex<State>
    private let parser = LogLineParser()
    private let metrics: MeshMetrics
    private let logger: Logger
    private let grace: Double
    private let uncertainLimit: Int
    private let unparsedThrottle = LogThrottle()
    private let truncatedThrottle = LogThrottle()
    private let ambiguousThrottle = LogThrottle()
    private let releaseThrottle = LogThrottle()
    private let sharedHandler = Mutex<(@Sendable ([String: Int]) -> Void)?>(nil)
    /// Seconds a new filter is announced with its `since` (the replay window); 0: never.
    private let appearanceHorizon: Double
    /// Sees every event after the table applied it, under the lock (in log order): client
    /// presence for takeovers across the mesh (`TakeoverService`).
    private let onEvent: (@Sendable (BrokerLogEvent, UnsafeRawBufferPointer) -> Void)?

    init(table: SessionTable, seq: UInt64, metrics: MeshMetrics, logger: Logger,
         grace: Double = 86_400, uncertainLimit: Int = 100_000, appearanceHorizon: Double = 0,
         onEvent: (@Sendable (BrokerLogEvent, UnsafeRawBufferPointer) -> Void)? = nil) {
        var table = table
        table.recordsAppearances = appearanceHorizon > 0
        self.appearanceHorizon = appearanceHorizon
        // Stamps taken before the first `$SYS` tick carry the time the agent started.
        table.advance(to: .init(tick: table.clock.tick, time: Date().timeIntervalSince1970))
        state = Mutex(State(table: table, seq: seq))
        self.metrics = metrics
        self.logger = logger
        self.grace = grace
        self.uncertainLimit = uncertainLimit
        self.onEvent = onEvent
        metrics.localFilters.set(table.interest.count)
        metrics.localSessions.set(table.clientSessions)
    }

    /// Applies one `$SYS/broker/log/...` line. Returns whether the interest changed.
    func handleLogLine(topic: String, payload: UnsafeRawBufferPointer) -> Bool {
        metrics.logLines.increment()
        var sharedMembers: [String: Int]?
        defer { if let sharedMembers { reportSharedMembers(sharedMembers) } }
        let outcome = state.withLock { s -> Result<(Bool, BrokerLogEvent?), LogParseError> in
            s.linesThisTick += 1
            do throws(LogParseError) {
                // Borrow the table for id resolution; a copy kept alive across `apply` below
                // would force copy-on-write of every session on every log line.
                guard let event = try parser.parse(topic: topic, payload: payload, isKnownClient: { s.table.isKnownClient($0) },
                                                   everyClientKnown: s.table.everyClientKnown) else {
                    return .success((false, nil))
                }
                let touchesShared = s.table.mayChangeSharedMembers(event)
                let changed = s.table.apply(event)
                if touchesShared { sharedMembers = s.table.certainSharedFilters() }
                onEvent?(event, payload)
                if changed {
                    Self.stampAppearances(&s)
                    s.dirty = true
                    s.changes &+= 1
                    metrics.localFilters.set(s.table.interest.count)
                }
                switch event {
                case .ambiguous, .truncated: return .success((changed, event))
                default: return .success((changed, nil))
                }
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let (changed, unusual)):
            if let unusual { report(unusual, topic: topic, payload: payload) }
            return changed
        case .failure(let error):
            metrics.logLinesUnparsed.increment()
            unparsedThrottle.log(.warning, to: logger, "broker log line not understood; interest unchanged", metadata: [
                "topic": "\(error.topic)", "line": "\(error.line.prefix(300))", "reason": "\(error.reason)",
            ])
            return false
        }
    }

    /// Counts and logs (throttled) a line the table could read only partly.
    private func report(_ event: BrokerLogEvent, topic: String, payload: UnsafeRawBufferPointer) {
        let line = String(decoding: payload.prefix(200), as: UTF8.self)
        switch event {
        case .truncated(let cut):
            metrics.logLinesTruncated.increment()
            truncatedThrottle.log(.warning, to: logger, "broker log line cut at its 1000-byte limit; interest kept or widened, never narrowed", metadata: [
                "topic": "\(topic)", "line_start": "\(line)", "kind": "\(cut.kind)", "readings": "\(cut.readings.count)",
            ])
        case .ambiguous(let readings):
            metrics.logLinesAmbiguous.increment()
            ambiguousThrottle.log(.warning, to: logger, "broker log line reads several ways (client ids with spaces or notice words); only added from", metadata: [
                "topic": "\(topic)", "line_start": "\(line)", "readings": "\(readings.count)",
            ])
        default:
            break
        }
    }

    /// Latest `$SYS/broker/clients/disconnected` or `…/connected` value.
    func observeCount(disconnected: Int? = nil, connected: Int? = nil) {
        state.withLock { s in
            if let disconnected { s.disconnected = disconnected }
            if let connected { s.connected = connected }
        }
    }

    /// One `$SYS` tick (each `$SYS/broker/uptime`): moves the table's clock, lets go of
    /// sessions the broker's counts prove gone, and of those past the grace or the limit.
    /// Returns whether the interest changed.
    func tick(now: Double) -> Bool {
        let (released, uncertain, unknown, sessions, filters) = state.withLock { s in
            s.table.advance(to: .init(tick: s.table.clock.tick + 1, time: now))
            let recent = s.linesThisTick
            s.linesRecentTicks = [recent] + s.linesRecentTicks.dropLast()
            s.linesThisTick = 0
            var released = SessionTable.Released()
            // The counts in hand now are those of the update the previous snapshot stood at.
            if let snapshot = s.censusSnapshot, let d = s.disconnected, let c = s.connected {
                let caughtUp = s.linesRecentTicks.allSatisfy { $0 < Self.laggingLinesPerTick }
                released = s.table.census(snapshot, counts: .init(disconnected: d, connected: c), caughtUp: caughtUp)
            }
            s.censusSnapshot = s.table.censusSnapshot(pendingSocketsComplete: now - s.logLinkUpAt >= Self.unloggedSocketLifetime)
            let swept = s.table.sweep(grace: grace, limit: uncertainLimit)
            released.byGrace += swept.byGrace
            released.byLimit += swept.byLimit
            released.changedInterest = released.changedInterest || swept.changedInterest
            if released.changedInterest {
                s.dirty = true
                s.changes &+= 1
            }
            return (released, s.table.uncertainSessions, s.table.unknownFilterSessions, s.table.clientSessions, s.table.interest.count)
        }
        metrics.sessionsUncertain.set(uncertain)
        metrics.sessionsUnknownFilters.set(unknown)
        metrics.localSessions.set(sessions)
        metrics.localFilters.set(filters)
        if released.byEvidence > 0 { metrics.sessionsReleasedByEvidence.increment(by: released.byEvidence) }
        let withoutProof = released.byGrace + released.byLimit
        if withoutProof > 0 {
            metrics.sessionsReleasedWithoutProof.increment(by: withoutProof)
            releaseThrottle.log(.warning, to: logger, "sessions of unknown lifetime released without proof that they ended; if one resumes it counts as '#'", metadata: [
                "after_grace": "\(released.byGrace)", "over_limit": "\(released.byLimit)", "grace_seconds": "\(Int(grace))",
                "limit": "\(uncertainLimit)",
            ])
        }
        return released.changedInterest
    }

    /// The log connection came back: sessions seen from now on are alive on the broker as it is.
    func logLinkReconnected(at now: Double) {
        state.withLock { s in
            s.table.linkReconnected()
            // Counts and lines from before the gap do not line up with what follows.
            s.censusSnapshot = nil
            s.disconnected = nil
            s.connected = nil
            s.logLinkUpAt = now
        }
    }

    /// One of the agent's own links is connected although its connect line was logged before
    /// the log link subscribed: the session counts must know it is online.
    func ownLinkOnline(clientID: String) {
        state.withLock { s in
            _ = s.table.apply(.connected(clientID: clientID, protocolLevel: 5, cleanStart: false, keepalive: 0, username: nil))
        }
    }

    /// Some log lines could not be read (the log session was taken over or expired): every
    /// session online meanwhile now counts as `#`.
    func linesLost() -> Bool {
        metrics.logLinesLost.increment()
        defer { reportSharedMembers(sharedFilters) }
        return state.withLock { s in
            let changed = s.table.linesLost()
            if changed {
                Self.stampAppearances(&s)
                s.dirty = true
                s.changes &+= 1
            }
            return changed
        }
    }

    /// The local broker restarted: sessions not seen since the log link came back are gone
    /// if clean (Mosquitto forgets them) and offline otherwise.
    func brokerRestarted() -> Bool {
        defer { reportSharedMembers(sharedFilters) }
        return state.withLock { s in
            let changed = s.table.brokerRestarted()
            if changed {
                s.dirty = true
                s.changes &+= 1
            }
            return changed
        }
    }

    /// Records when the filters that just entered the interest appeared.
    private static func stampAppearances(_ s: inout State) {
        let new = s.table.takeAppeared()
        guard !new.isEmpty else { return }
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        for filter in new { s.appeared[filter] = (now, 0) }
    }

    /// The next advert if anything changed since the last one (or `force`).
    /// `origin`: this agent run's token (`InterestAdvert.origin`), in every advert.
    func takeAdvert(node: String, origin: String? = nil, force: Bool = false) -> InterestAdvert? {
        state.withLock { s in
            guard s.dirty || force else { return nil }
            s.dirty = false
            s.seq += 1
            return InterestAdvert(node: node, seq: s.seq, filters: s.table.interest, since: Self.since(&s, horizon: appearanceHorizon), origin: origin)
        }
    }

    /// The `since` entries still worth announcing: within the horizon, still wanted, and not
    /// yet in two adverts. Peers read adverts live and in order, so the first one carrying an
    /// entry is enough (the second covers an advert a peer refused); repeating every entry
    /// for the whole horizon would make a subscribe storm's adverts grow with its square.
    private static func since(_ s: inout State, horizon: Double) -> [String: UInt64] {
        guard !s.appeared.isEmpty else { return [:] }
        let oldest = UInt64(max(0, (Date().timeIntervalSince1970 - horizon) * 1000))
        s.appeared = s.appeared.filter { $0.value.millis >= oldest && $0.value.adverts < 2 && s.table.interest[$0.key] != nil }
        var chosen = s.appeared
        if chosen.count > maximumSinceEntries {
            chosen = Dictionary(uniqueKeysWithValues: chosen.sorted { $0.value.millis > $1.value.millis }.prefix(maximumSinceEntries).map { ($0.key, $0.value) })
        }
        for key in chosen.keys { s.appeared[key]?.adverts += 1 }
        return chosen.mapValues(\.millis)
    }

    /// The local `$share/…` filters of certain members (`SessionTable.certainSharedFilters`),
    /// for the router: a group with members here gets nothing forwarded, so an uncertain
    /// session must not count.
    var sharedFilters: [String: Int] { state.withLock { $0.table.certainSharedFilters() } }

    /// Who learns the local shared members the moment a log line changes them (the router):
    /// a member that left must stop holding messages back at once, not at the next advert.
    func onSharedMembersChange(_ handler: @escaping @Sendable ([String: Int]) -> Void) {
        sharedHandler.withLock { $0 = handler }
    }

    private func reportSharedMembers(_ members: [String: Int]) {
        sharedHandler.withLock { $0 }?(members)
    }

    func markDirty() { state.withLock { $0.dirty = true } }

    /// How many times the interest has changed since start (the advert pacer's clock).
    var changeCount: UInt64 { state.withLock { $0.changes } }

    var snapshot: (table: SessionTable, seq: UInt64) { state.withLock { ($0.table, $0.seq) } }

    /// Runs `body` with the table under the lock: for encoding a large table without the copy
    /// a snapshot would force on the next change.
    func withTable<T>(_ body: (SessionTable, UInt64) -> T) -> T { state.withLock { body($0.table, $0.seq) } }
}
