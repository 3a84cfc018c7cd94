import CoreMetrics
import Synchronization

/// One counter that is both exported through swift-metrics (Prometheus, …) and readable
/// in-process (for `$mesh/<node>/stats`, health decisions and tests).
public final class MeshCounter: Sendable {
    private let value = Atomic<Int>(0)
    private let exported: CoreMetrics.Counter

    init(_ label: String, help: String, dimensions: [(String, String)] = []) {
        MetricHelp.register(label, help)
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

    init(_ label: String, help: String, dimensions: [(String, String)] = []) {
        MetricHelp.register(label, help)
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
    /// Messages written to the peer's connection (QoS 1/2: then acknowledged or resent).
    public let forwardedMessages: MeshCounter
    /// Payload bytes of those messages (topic, properties and MQTT framing not included).
    public let forwardedBytes: MeshCounter
    /// QoS 1/2 messages handed to the peer's link while it was down: libmosquitto holds them
    /// and sends them after the reconnect (within --max-pending); not yet forwarded.
    public let held: MeshCounter
    public let dropped: MeshCounter
    /// Forwards sent by topic alias (two bytes instead of `forward/<topic>`).
    public let forwardedByAlias: MeshCounter
    /// Forwards published on the peer broker under their own topic (`--delivery direct`).
    public let forwardedDirect: MeshCounter
    public let reconnects: MeshCounter
    public let adverts: MeshCounter
    public let advertsRejected: MeshCounter
    /// Well-formed adverts refused because their `seq` is not newer than the applied one.
    public let advertsStale: MeshCounter
    public let connected: MeshGauge
    public let pending: MeshGauge
    public let remoteFilters: MeshGauge
    public let replayed: MeshCounter
    public let silentDrops: MeshCounter
    public let heldBytes: MeshGauge
    public let asymmetric: MeshGauge
    /// Advert entries a node sent that this agent could not use as written (`ControlFormat`).
    public let advertEntriesWidened: MeshCounter

    init(peer: String) {
        self.peer = peer
        let d = [("peer", peer)]
        forwardedMessages = MeshCounter("mesh_forwarded_messages_total", help: "Messages written to this peer's connection under the forward prefix (QoS 1/2 ones are then acknowledged by the peer broker or resent).", dimensions: d)
        held = MeshCounter("mesh_forward_held_total", help: "QoS 1/2 messages handed to this peer's link while it was down: held by libmosquitto and sent after the reconnect; not counted as forwarded.", dimensions: d)
        forwardedBytes = MeshCounter("mesh_forwarded_bytes_total", help: "Payload bytes of the messages counted in mesh_forwarded_messages_total (topic, properties and MQTT framing not included).", dimensions: d)
        dropped = MeshCounter("mesh_forward_dropped_total", help: "Messages that should have crossed to this peer and did not: QoS 0 while the link was down, or --max-pending / --max-pending-bytes already held for it (at once while the link is down, after --peer-timeout while it is up). Logged, throttled.", dimensions: d)
        forwardedDirect = MeshCounter("mesh_forwarded_direct_total", help: "Forwards published on this peer's broker under their own topic with this agent's origin mark (--delivery direct); also counted in mesh_forwarded_messages_total.", dimensions: d)
        forwardedByAlias = MeshCounter("mesh_forwarded_by_alias_total", help: "Forwards sent by MQTT v5 topic alias (two bytes instead of the topic).", dimensions: d)
        reconnects = MeshCounter("mesh_peer_reconnects_total", help: "Reconnects of the link to this peer broker.", dimensions: d)
        adverts = MeshCounter("mesh_peer_adverts_total", help: "Interest adverts applied from this peer.", dimensions: d)
        advertsRejected = MeshCounter("mesh_control_payloads_rejected_total", help: "Control payloads from this peer that did not decode; the last good interest is kept.", dimensions: d)
        advertsStale = MeshCounter("mesh_adverts_stale_total", help: "Adverts refused because their seq is not newer than the one applied for that node.", dimensions: d)
        connected = MeshGauge("mesh_peer_link_up", help: "1 while the link to this peer broker is connected.", dimensions: d)
        pending = MeshGauge("mesh_peer_pending_messages", help: "QoS 1/2 forwards held for this peer: sent and not yet acknowledged, or waiting for its link to come back (limit --max-pending; beyond it they are dropped and counted).", dimensions: d)
        remoteFilters = MeshGauge("mesh_peer_subscriptions", help: "Distinct filters this peer's nodes advertise.", dimensions: d)
        silentDrops = MeshCounter("mesh_peer_silent_total", help: "Times this peer link heard nothing, not even its own heartbeat, for --peer-timeout and was dropped and reconnected (a partition that drops packets silently).", dimensions: d)
        asymmetric = MeshGauge("mesh_peer_asymmetric_partition", help: "1 while this node's link to the peer is down and another node reports its own link to that peer up (an asymmetric partition).", dimensions: d)
        heldBytes = MeshGauge("mesh_peer_pending_bytes", help: "Payload bytes of the forwards counted in mesh_peer_pending_messages (limit --max-pending-bytes).", dimensions: d)
        advertEntriesWidened = MeshCounter("mesh_advert_entries_widened_total", help: "Entries of this peer's adverts this agent could not use as written (a filter it cannot parse, an odd count, a format it does not read): the interest was widened to cover them, never narrowed. Logged, throttled.", dimensions: d)
        replayed = MeshCounter("mesh_replayed_messages_total", help: "Messages sent to this peer again because its advert of a new filter came after they passed (the subscribe race); also counted in mesh_forwarded_messages_total or mesh_forward_held_total.", dimensions: d)
    }
}

/// Every figure the agent keeps. Counters only go up; a drop is never silent.
public final class MeshMetrics: Sendable {
    public let notWanted = MeshCounter("mesh_not_forwarded_messages_total", help: "Local messages no peer wanted (no matching subscriber elsewhere).")
    public let republished = MeshCounter("mesh_republished_messages_total", help: "Messages that arrived from a peer under the forward prefix and were republished locally.")
    public let republishFailed = MeshCounter("mesh_republish_failed_total", help: "Forwarded messages that could not be republished locally (logged).")
    public let ignoredDollar = MeshCounter("mesh_ignored_dollar_messages_total", help: "$-topic messages on the forwarding link: never forwarded.")
    public let ignoredInvalid = MeshCounter("mesh_ignored_invalid_forward_total", help: "Messages under the forward prefix with an unusable topic: dropped and logged.")
    /// Empty messages a peer link sent only to set up a topic alias after a reconnect.
    public let aliasAnnouncements = MeshCounter("mesh_alias_announcements_received_total", help: "Empty messages a peer sent only to set up a topic alias again after reconnecting.")
    /// Forwards to a peer that only a shared subscription group wanted (chosen so the group gets the message once).
    public let sharedForwards = MeshCounter("mesh_shared_forwards_total", help: "Forwards to a peer that no ordinary subscriber wanted, chosen so that a $share group with members only elsewhere gets the message once.")
    /// Deliveries to shared groups beyond one per group that the mesh could not avoid.
    public let sharedExtraCopies = MeshCounter("mesh_shared_extra_copies_total", help: "Copies of local messages that $share groups get beyond one per group: a group with members on several brokers the message must reach anyway (ordinary subscribers there, or a retained message, which goes to every broker) gets one copy per such broker.")
    public let logLines = MeshCounter("mesh_log_lines_total", help: "Broker log lines read by the control link.")
    public let logLinesUnparsed = MeshCounter("mesh_log_lines_unparsed_total", help: "Broker log lines that should carry interest but were not understood (logged, throttled).")
    public let advertsPublished = MeshCounter("mesh_adverts_published_total", help: "Interest adverts published for this node.")
    public let localReconnects = MeshCounter("mesh_local_reconnects_total", help: "Reconnects of the forwarding link to the local broker.")
    /// Reconnects of the control link (the one that reads the broker's log).
    public let controlReconnects = MeshCounter("mesh_control_reconnects_total", help: "Reconnects of the control link (the one that reads the broker's log).")
    public let brokerRestarts = MeshCounter("mesh_local_broker_restarts_total", help: "Restarts of the local broker, told by $SYS/broker/uptime going back.")
    public let stateSaveFailures = MeshCounter("mesh_state_save_failures_total", help: "Failed writes of the state file (logged).")
    public let localConnected = MeshGauge("mesh_local_link_up", help: "1 while the forwarding link to the local broker is connected.")
    public let localFilters = MeshGauge("mesh_local_subscriptions", help: "Distinct filters this node advertises.")
    public let localSessions = MeshGauge("mesh_local_sessions", help: "Client sessions in the agent's table (updated every broker tick).")
    /// The allocator's bytes in use, beside RSS: a flat heap under a rising RSS is the allocator.
    /// How long the last return of free pages to the system took (microseconds).
    public let trimMicroseconds = MeshGauge("mesh_process_trim_microseconds", help: "How long the agent's last return of free heap pages to the system took (glibc malloc_trim, every 5 s), in microseconds: the pause it puts on allocations meanwhile.")
    public let heapInUse = MeshGauge("mesh_process_heap_bytes", help: "Bytes the agent's allocator has handed out and not had back (glibc mallinfo2: in-use arena chunks plus mapped blocks; updated every second). Freed memory the allocator keeps counts in the process's RSS but not here.")
    /// Log lines the broker cut at its 1000-byte limit: read only for what cannot shrink interest.
    public let logLinesTruncated = MeshCounter("mesh_log_lines_truncated_total", help: "Log lines the broker cut at its 1000-byte limit: read only for what cannot make interest smaller.")
    /// Log lines that read several ways (ids holding spaces or a notice's words): only added from.
    public let logLinesAmbiguous = MeshCounter("mesh_log_lines_ambiguous_total", help: "Log lines that read several ways (client ids holding spaces or a notice's words): only added from.")
    /// Sessions whose filters may be more than the broker's: offline ones kept although they may
    /// have ended (MQTT 5: the expiry is not logged), online ones that resumed such a session.
    public let sessionsUncertain = MeshGauge("mesh_sessions_uncertain", help: "Sessions whose filters may be more than the broker's: offline MQTT 5 sessions kept although they may have ended, and sessions that resumed one.")
    /// Sessions (and unattributed cut lines) that count as `#`: their subscriptions are not all known.
    public let sessionsUnknownFilters = MeshGauge("mesh_sessions_unknown_filters", help: "Sessions (and cut lines no session can be named for) counted as '#' because their subscriptions are not all known.")
    /// Uncertain sessions let go because the broker's own session count proved them gone.
    public let sessionsReleasedByEvidence = MeshCounter("mesh_sessions_released_by_evidence_total", help: "Sessions of unknown lifetime let go because the broker's own session count proved them gone.")
    /// Uncertain sessions let go without proof, after --session-grace or beyond --max-uncertain-sessions.
    public let sessionsReleasedWithoutProof = MeshCounter("mesh_sessions_released_without_proof_total", help: "Sessions of unknown lifetime let go without proof, after --session-grace or beyond --max-uncertain-sessions (a later resume counts as '#').")
    /// The agent's own log or forwarding session was found gone while its broker kept running:
    /// someone connected with the agent's client id.
    public let localSessionTakeovers = MeshCounter("mesh_local_session_takeovers_total", help: "Times the agent's own log or forwarding session was found gone while its broker kept running (a client used the agent's id).")
    /// Times log lines may have been lost (log session taken over, or down longer than the lines live).
    public let logLinesLost = MeshCounter("mesh_log_lines_lost_total", help: "Times log lines may have been lost (log session taken over, down longer than lines live, or an unclean stop): interest was widened.")
    /// Messages a peer's agent published on the local broker (direct delivery), not forwarded.
    public let directReceived = MeshCounter("mesh_direct_deliveries_received_total", help: "Messages a peer's agent published on the local broker under their own topic (--delivery direct there), recognised by its origin mark and not forwarded again.")
    /// Origin marks that name no peer agent's token: forwarded like a client's message.
    public let originMarksUnverified = MeshCounter("mesh_origin_marks_unverified_total", help: "Messages carrying a mesh:o mark that is not a known peer agent's token (a client's, or a peer's advert not read yet): forwarded as a client's message (its mesh: properties dropped); a peer's delivery among them may reach other brokers twice.")
    public let duplicatesDropped = MeshCounter("mesh_duplicates_dropped_total", help: "Forwarded messages that arrived a second time (resent by a peer's agent after a link cut whose acknowledgement was lost) and were not republished.")
    public let replayWindowExceeded = MeshCounter("mesh_replay_window_exceeded_total", help: "Replays that reached back past what the replay buffer still held (--replay-window or --replay-max-bytes): a message published after the subscriber's SUBACK may have been missed (logged, throttled).")
    public let replayEvictedEarly = MeshCounter("mesh_replay_evicted_early_total", help: "Messages let go from the replay buffer before --replay-window ran out because --replay-max-bytes was reached.")
    public let replayBufferBytes = MeshGauge("mesh_replay_buffer_bytes", help: "Bytes held by the replay buffer (payloads, topics, properties and bookkeeping).")
    public let replayBufferMessages = MeshGauge("mesh_replay_buffer_messages", help: "Messages held by the replay buffer.")
    /// Client connections on this broker closed because the same id connected later on another node.
    public let clientTakeovers = MeshCounter("mesh_client_takeovers_total", help: "Client connections on this broker closed because the same client id connected later on another node (their sessions ended with them; one log line each, throttled).")
    /// Offline sessions on this broker ended because their id connected later on another node.
    public let clientSessionsEnded = MeshCounter("mesh_client_sessions_ended_total", help: "Offline client sessions on this broker ended because their client id connected later on another node (messages queued for them are discarded).")
    public let clientTakeoverFailures = MeshCounter("mesh_client_takeover_failures_total", help: "Client connections or sessions that should have been ended here (their id connected later on another node) and could not be: both stay (logged).")
    public let clientConnectsAnnounced = MeshCounter("mesh_client_connects_announced_total", help: "Client connects on this broker announced to the peers on $mesh/<node>/connected.")
    public let clientConnectsUnannounced = MeshCounter("mesh_client_connects_unannounced_total", help: "Client connects on this broker not announced because too many were waiting (logged): a duplicate elsewhere is not ended for them.")
    public let clientPresenceTakeovers = MeshCounter("mesh_client_presence_takeovers_total", help: "Takeovers started from a peer's presence snapshot rather than an announcement: the connect there had not been announced to this agent (link down, agent restart).")
    public let clientsOnline = MeshGauge("mesh_clients_online", help: "Client connections on this broker as last published in $mesh/<node>/presence.")
    public let clientConnectsReceived = MeshCounter("mesh_client_connects_received_total", help: "Client connects announced by peers and judged against this broker's clients.")
    public let sessionsAdopted = MeshCounter("mesh_sessions_adopted_total", help: "Persistent sessions of a lost node created on this broker (clean start 0, the lost node's filters at their QoS) so that their clients find them here (one log line per adoption batch).")
    public let sessionsReleased = MeshCounter("mesh_sessions_released_total", help: "Offline sessions on this broker ended after it came back because another node had adopted them while it was lost (what was queued for them here is discarded; logged).")
    public let sessionAdoptionFailures = MeshCounter("mesh_session_adoption_failures_total", help: "Sessions this node should have adopted and could not (local broker refused or unreachable, a subscription refused, the client raced in; logged).")
    public let sessionAdoptionsSkipped = MeshCounter("mesh_session_adoptions_skipped_total", help: "Adoptions not done because the client was connected, or had a session, on a live node (never taken over; tried again for a while).")
    public let sessionsHeld = MeshCounter("mesh_sessions_held_total", help: "Client ids of a lost node held at HAProxy (stick-table gpt0) until their sessions are adopted.")
    public let haproxyRuntimeFailures = MeshCounter("mesh_haproxy_runtime_failures_total", help: "Commands to an HAProxy runtime API that failed or were refused (logged).")
    public let directorySessions = MeshGauge("mesh_session_directory_sessions", help: "Persistent sessions this node shares on $mesh/<node>/sessions/<shard>.")
    public let directoryShardsPublished = MeshCounter("mesh_session_directory_shards_published_total", help: "Shards of this node's session directory published (a shard is republished only when it changed, at most once a second).")
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
            "replay_window_exceeded": replayWindowExceeded.current,
            "duplicates_dropped": duplicatesDropped.current,
            "shared_forwards": sharedForwards.current,
            "shared_extra_copies": sharedExtraCopies.current,
            "client_takeovers": clientTakeovers.current,
            "client_sessions_ended": clientSessionsEnded.current,
            "client_takeover_failures": clientTakeoverFailures.current,
            "sessions_adopted": sessionsAdopted.current,
            "sessions_released": sessionsReleased.current,
            "session_adoption_failures": sessionAdoptionFailures.current,
        ]
        var forwarded = 0, forwardedBytes = 0, dropped = 0, rejected = 0, stale = 0, reconnects = 0, replayed = 0
        for p in peers {
            replayed += p.replayed.current
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
        s["replayed"] = replayed
        return s
    }
}

/// What each exported metric counts, for the `# HELP` lines of `/metrics` (swift-metrics has
/// no place for help text, so it is kept here, beside the definitions, and added on output).
public enum MetricHelp {
    private static let texts = Mutex<[String: String]>([:])

    static func register(_ name: String, _ help: String) {
        texts.withLock { $0[name] = help }
    }

    public static func text(of name: String) -> String? { texts.withLock { $0[name] } }

    /// Adds a `# HELP name text` line before each `# TYPE name …` line of a Prometheus page
    /// that has none, for every metric with a registered text.
    public static func annotate(_ page: [UInt8]) -> [UInt8] {
        let known = texts.withLock { $0 }
        let text = String(decoding: page, as: UTF8.self)
        var lines: [Substring] = []
        var previous: Substring = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE "), !previous.hasPrefix("# HELP ") {
                let name = line.dropFirst(7).prefix { $0 != " " }
                if let help = known[String(name)] { lines.append(Substring("# HELP \(name) \(help)")) }
            }
            lines.append(line)
            previous = line
        }
        let out = lines.joined(separator: "\n")
        return Array(out.utf8)
    }
}
