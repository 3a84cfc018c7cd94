import CoreMetrics
import Synchronization

/// One counter that is both exported through swift-metrics (Prometheus, …) and readable
/// in-process (for `$mesh/<node>/stats`, health decisions and tests).
public final class MeshCounter: Sendable {
    private let value = Atomic<Int>(0)
    private let exported: CoreMetrics.Counter

    init(_ label: String, dimensions: [(String, String)] = []) {
        exported = CoreMetrics.Counter(label: label, dimensions: dimensions)
    }

    @inline(__always)
    public func increment(by amount: Int = 1) {
        value.add(amount, ordering: .relaxed)
        exported.increment(by: Int64(amount))
    }

    public var current: Int { value.load(ordering: .relaxed) }
}

/// A gauge, likewise readable in-process.
public final class MeshGauge: Sendable {
    private let value = Atomic<Int>(0)
    private let exported: CoreMetrics.Gauge

    init(_ label: String, dimensions: [(String, String)] = []) {
        exported = CoreMetrics.Gauge(label: label, dimensions: dimensions)
    }

    public func set(_ newValue: Int) {
        value.store(newValue, ordering: .relaxed)
        exported.record(newValue)
    }

    public var current: Int { value.load(ordering: .relaxed) }
}

/// Per-peer figures: what crossed to that peer and what it holds.
public final class PeerMetrics: Sendable {
    public let peer: String
    public let forwardedMessages: MeshCounter
    public let forwardedBytes: MeshCounter
    public let dropped: MeshCounter
    /// Forwards sent by topic alias (two bytes instead of `forward/<topic>`).
    public let forwardedByAlias: MeshCounter
    public let reconnects: MeshCounter
    public let adverts: MeshCounter
    public let advertsRejected: MeshCounter
    /// Well-formed adverts refused because their `seq` is not newer than the applied one.
    public let advertsStale: MeshCounter
    public let connected: MeshGauge
    public let pending: MeshGauge
    public let remoteFilters: MeshGauge

    init(peer: String) {
        self.peer = peer
        let d = [("peer", peer)]
        forwardedMessages = MeshCounter("mesh_forwarded_messages_total", dimensions: d)
        forwardedBytes = MeshCounter("mesh_forwarded_bytes_total", dimensions: d)
        dropped = MeshCounter("mesh_forward_dropped_total", dimensions: d)
        forwardedByAlias = MeshCounter("mesh_forwarded_by_alias_total", dimensions: d)
        reconnects = MeshCounter("mesh_peer_reconnects_total", dimensions: d)
        adverts = MeshCounter("mesh_peer_adverts_total", dimensions: d)
        advertsRejected = MeshCounter("mesh_control_payloads_rejected_total", dimensions: d)
        advertsStale = MeshCounter("mesh_adverts_stale_total", dimensions: d)
        connected = MeshGauge("mesh_peer_link_up", dimensions: d)
        pending = MeshGauge("mesh_peer_pending_messages", dimensions: d)
        remoteFilters = MeshGauge("mesh_peer_subscriptions", dimensions: d)
    }
}

/// Every figure the agent keeps. Counters only go up; a drop is never silent.
public final class MeshMetrics: Sendable {
    public let notWanted = MeshCounter("mesh_not_forwarded_messages_total")
    public let republished = MeshCounter("mesh_republished_messages_total")
    public let republishFailed = MeshCounter("mesh_republish_failed_total")
    public let ignoredDollar = MeshCounter("mesh_ignored_dollar_messages_total")
    public let ignoredInvalid = MeshCounter("mesh_ignored_invalid_forward_total")
    /// Empty messages a peer link sent only to set up a topic alias after a reconnect.
    public let aliasAnnouncements = MeshCounter("mesh_alias_announcements_received_total")
    public let logLines = MeshCounter("mesh_log_lines_total")
    public let logLinesUnparsed = MeshCounter("mesh_log_lines_unparsed_total")
    public let advertsPublished = MeshCounter("mesh_adverts_published_total")
    public let localReconnects = MeshCounter("mesh_local_reconnects_total")
    /// Reconnects of the control link (the one that reads the broker's log).
    public let controlReconnects = MeshCounter("mesh_control_reconnects_total")
    public let brokerRestarts = MeshCounter("mesh_local_broker_restarts_total")
    public let stateSaveFailures = MeshCounter("mesh_state_save_failures_total")
    public let localConnected = MeshGauge("mesh_local_link_up")
    public let localFilters = MeshGauge("mesh_local_subscriptions")
    public let localSessions = MeshGauge("mesh_local_sessions")
    /// Log lines the broker cut at its 1000-byte limit: read only for what cannot shrink interest.
    public let logLinesTruncated = MeshCounter("mesh_log_lines_truncated_total")
    /// Log lines that read several ways (ids holding spaces or a notice's words): only added from.
    public let logLinesAmbiguous = MeshCounter("mesh_log_lines_ambiguous_total")
    /// Sessions whose filters may be more than the broker's: offline ones kept although they may
    /// have ended (MQTT 5: the expiry is not logged), online ones that resumed such a session.
    public let sessionsUncertain = MeshGauge("mesh_sessions_uncertain")
    /// Sessions (and unattributed cut lines) that count as `#`: their subscriptions are not all known.
    public let sessionsUnknownFilters = MeshGauge("mesh_sessions_unknown_filters")
    /// Uncertain sessions let go because the broker's own session count proved them gone.
    public let sessionsReleasedByEvidence = MeshCounter("mesh_sessions_released_by_evidence_total")
    /// Uncertain sessions let go without proof, after --session-grace or beyond --max-uncertain-sessions.
    public let sessionsReleasedWithoutProof = MeshCounter("mesh_sessions_released_without_proof_total")
    /// The agent's own log or forwarding session was found gone while its broker kept running:
    /// someone connected with the agent's client id.
    public let localSessionTakeovers = MeshCounter("mesh_local_session_takeovers_total")
    /// Times log lines may have been lost (log session taken over, or down longer than the lines live).
    public let logLinesLost = MeshCounter("mesh_log_lines_lost_total")
    private let peerTable = Mutex<[String: PeerMetrics]>([:])

    public init() {}

    /// The figures of one peer (created on first use; kept after a peer is removed so
    /// counters never go backwards within a process).
    public func peer(_ endpoint: String) -> PeerMetrics {
        peerTable.withLock { table in
            if let m = table[endpoint] { return m }
            let m = PeerMetrics(peer: endpoint)
            table[endpoint] = m
            return m
        }
    }

    public var peers: [PeerMetrics] { peerTable.withLock { $0.values.sorted { $0.peer < $1.peer } } }

    /// A flat summary for `$mesh/<node>/stats` and the CLI.
    public func snapshot() -> [String: Int] {
        var s: [String: Int] = [
            "not_forwarded": notWanted.current,
            "republished": republished.current,
            "republish_failed": republishFailed.current,
            "log_lines": logLines.current,
            "log_lines_unparsed": logLinesUnparsed.current,
            "adverts_published": advertsPublished.current,
            "local_reconnects": localReconnects.current,
            "local_link_up": localConnected.current,
            "local_subscriptions": localFilters.current,
            "local_sessions": localSessions.current,
            "broker_restarts": brokerRestarts.current,
            "log_lines_truncated": logLinesTruncated.current,
            "log_lines_ambiguous": logLinesAmbiguous.current,
            "sessions_uncertain": sessionsUncertain.current,
            "sessions_unknown_filters": sessionsUnknownFilters.current,
            "local_session_takeovers": localSessionTakeovers.current,
        ]
        var forwarded = 0, forwardedBytes = 0, dropped = 0, rejected = 0, stale = 0, reconnects = 0
        for p in peers {
            forwarded += p.forwardedMessages.current
            forwardedBytes += p.forwardedBytes.current
            dropped += p.dropped.current
            rejected += p.advertsRejected.current
            stale += p.advertsStale.current
            reconnects += p.reconnects.current
        }
        s["forwarded"] = forwarded
        s["forwarded_bytes"] = forwardedBytes
        s["dropped"] = dropped
        s["control_rejected"] = rejected
        s["adverts_stale"] = stale
        s["peer_reconnects"] = reconnects
        return s
    }
}
