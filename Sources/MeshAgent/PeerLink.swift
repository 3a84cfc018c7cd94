import Foundation
import Logging
import MeshCore
import Mosquitto
import Synchronization

/// The agent's client connection to one peer broker: it reads the peer's retained
/// interest (`$mesh/+/subscriptions`) into the routing table and carries forwarded
/// messages (`forward/<topic>`) to that broker.
final class PeerLink: Sendable {
    let index: Int
    let endpoint: Endpoint
    let client: MQTTClient
    let metrics: PeerMetrics
    private let routing: RoutingTable
    private let logger: Logger
    private let ownNodeID: String
    /// What this link accepted of the nodes it reads: their filters (persisted across
    /// restarts) and the `seq` an advert must beat (in memory; see `AdvertFloor`).
    private let nodes: Mutex<Known>
    private let barrierMID = Atomic<Int32>(-1)
    private let syncedOnce = Atomic<Bool>(false)
    private let everConnected = Atomic<Bool>(false)
    private let rejectThrottle = LogThrottle()
    private let staleThrottle = LogThrottle()
    private let restartThrottle = LogThrottle()
    private let selfThrottle = LogThrottle(first: 1, every: 100)
    private let onInterestChange: @Sendable () -> Void
    /// Republishes what this link reads onto the local broker under
    /// `$mesh/<own node>/peers/<node>/…`, so any one broker shows the whole mesh.
    private let mirror: @Sendable (_ topic: String, _ payload: [UInt8]) -> Void
    /// A node's client connects (`.connected`) or presence (`.presence`) read on this peer
    /// broker (`TakeoverService`); returns whether the payload was usable.
    private let onClients: @Sendable (_ kind: ControlTopic.Kind, _ node: String, _ payload: UnsafeRawBufferPointer, _ metrics: PeerMetrics) -> Bool
    /// One shard of a node's session directory (`$mesh/<node>/sessions/<shard>`), or its
    /// deletion (empty payload): `AdoptionService`.
    private let onSessionShard: @Sendable (_ node: String, _ shard: Int, _ payload: UnsafeRawBufferPointer, _ metrics: PeerMetrics) -> Void
    /// Mirrored topics and payloads, kept so a reconnected local broker gets them again.
    /// Never held across a publish (`PeerMirrors`).
    private let mirrors = Mutex(PeerMirrors())
    /// Topic aliases on this link with the property list each is sent with. Used by the local
    /// link's thread (forwards) and this link's loop thread (connect, disconnect).
    private let aliases = Mutex(TopicAliases<PropertyList>(makeList: { alias throws(MosquittoError) in try PropertyList.topicAlias(alias) }))
    private let configuredAliases: Int
    private let forwardPrefix: String
    /// Liveness: monotonic seconds of the last packet read on this link and of the last
    /// heartbeat sent; the link's loop thread checks them at every turn.
    private let lastHeard = Atomic<Int64>(0)
    private let lastHeartbeat = Atomic<Int64>(0)
    /// Silence after which the link is declared down: the timeout less one heartbeat interval
    /// and one loop turn, so that the link is down within `--peer-timeout` of the moment the
    /// peer went silent (the last heartbeat heard may be an interval old by then, and the
    /// check runs once per turn). At the default 3 s: 2.25 s, four heartbeats missed.
    private let silenceLimitNanos: Int64
    private let heartbeatIntervalNanos: Int64
    private let heartbeatTopic: String
    /// When the link went down (seconds since 1970, bit pattern; 0: up or never connected).
    private let downSinceBits = Atomic<UInt64>(0)
    /// Number of the next QoS 1/2 forward on this link: the receiving agent drops one it has
    /// already seen (resent after a reconnect because its acknowledgement was lost).
    let forwardSequence = Atomic<UInt64>(1)
    /// Whether this peer's agent advertises an origin token (`InterestAdvert.origin`): it
    /// never forwards a message marked with this agent's token, so `--delivery direct` may
    /// publish to its broker directly. False until its advert says so.
    let acceptsDirect = Atomic<Bool>(false)
    /// Whether the peer's agent has read this agent run's token: its view, published by its
    /// current run (the view's own token is the one its advert gives), lists this node with
    /// this run's token. Until then a direct delivery would look like a client's message to it
    /// and be forwarded again (a duplicate at other brokers): forwards stay prefixed.
    let peerKnowsOurToken = Atomic<Bool>(false)
    /// `<node>.<run>:`: which agent run numbered the forwards (`forwardSequence` restarts with
    /// it), ready for the number to be appended.
    let sequenceSource: String
    /// `--delivery direct` on this agent.
    private let directDelivery: Bool
    /// This agent run's origin token.
    private let ownOriginToken: String
    private let silenceThrottle = LogThrottle()
    private let backlogWarned = Atomic<Bool>(false)
    /// Per node advertising at this peer: its own links' endpoints → up (from its view).
    private let peerLinksSeen = Mutex<[String: [String: Bool]]>([:])
    /// The nodes at this peer reported to reach each endpoint now (while this link is up).
    func nodesReaching(_ endpoint: String) -> [String] {
        guard isConnected else { return [] }
        return peerLinksSeen.withLock { seen in seen.filter { $0.value[endpoint] == true }.map(\.key).sorted() }
    }
    /// Set by the agent each second: nodes that reach this peer while this link is down.
    let reachableVia = Mutex<[String]>([])

    struct Known {
        /// node → advertised filters, as last accepted from this peer.
        var filters: [String: [String: Int]]
        /// node → the last accepted advert `seq` (also shown in the agent's view).
        var floor = AdvertFloor()
    }

    /// How a forward on this link sends its topic, decided per message.
    typealias TopicUse = TopicAliases<PropertyList>.Use

    /// User property of the empty messages that set up an alias again after a reconnect;
    /// the receiving agent drops them.
    static let aliasAnnouncementMarker = UserPropertyKey("mesh:alias")

    init(index: Int, endpoint: Endpoint, configuration: AgentConfiguration, routing: RoutingTable,
         metrics: PeerMetrics, initialNodes: [String: [String: Int]], logger: Logger,
         onInterestChange: @escaping @Sendable () -> Void,
         mirror: @escaping @Sendable (_ topic: String, _ payload: [UInt8]) -> Void,
         onClients: @escaping @Sendable (_ kind: ControlTopic.Kind, _ node: String, _ payload: UnsafeRawBufferPointer, _ metrics: PeerMetrics) -> Bool = { _, _, _, _ in false },
         onSessionShard: @escaping @Sendable (_ node: String, _ shard: Int, _ payload: UnsafeRawBufferPointer, _ metrics: PeerMetrics) -> Void = { _, _, _, _ in }) throws(MosquittoError) {
        self.index = index
        self.endpoint = endpoint
        self.routing = routing
        self.metrics = metrics
        self.ownNodeID = configuration.nodeID
        self.onInterestChange = onInterestChange
        self.mirror = mirror
        self.onClients = onClients
        self.onSessionShard = onSessionShard
        configuredAliases = configuration.topicAliasesPerPeer
        forwardPrefix = configuration.forwardPrefix
        let turn = max(50, min(250, configuration.peerTimeout * 1000 / 8))
        heartbeatIntervalNanos = Int64(configuration.peerTimeout * 1e9 / 6)
        silenceLimitNanos = Int64(configuration.peerTimeout * 1e9) - heartbeatIntervalNanos - Int64(turn * 1e6)
        heartbeatTopic = ControlTopic.heartbeat(node: configuration.nodeID)
        sequenceSource = "\(configuration.nodeID).\(configuration.runID):"
        directDelivery = configuration.delivery == .direct
        ownOriginToken = configuration.originToken
        var log = logger
        log[metadataKey: "peer"] = "\(endpoint)"
        self.logger = log
        nodes = Mutex(Known(filters: initialNodes))

        var cc = ClientConfiguration(clientID: configuration.peerClientID(endpoint), host: endpoint.host, port: endpoint.port)
        cc.keepalive = configuration.keepalive
        // Clean session: everything this link needs is retained (interest) or sent by us.
        cc.cleanStart = true
        cc.username = configuration.peerSecurity.username
        cc.password = configuration.peerSecurity.password
        cc.tls = configuration.peerSecurity.tls
        // A silent partition must not hold the link's thread in a blocking connect for minutes:
        // attempts are non-blocking, started over every second until one is answered.
        cc.connectTimeout = min(1.5, configuration.peerTimeout)
        cc.reconnectDelay = (1, 1)
        cc.loopTurnInterval = Int32(turn)
        let box = WeakBox<PeerLink>()
        var events = ClientEvents()
        events.connected = { rc, _ in box.value?.connected(rc) }
        events.disconnected = { rc in box.value?.disconnected(rc) }
        events.message = { m in box.value?.message(m) }
        events.subscribed = { mid, granted in box.value?.subscribed(mid, granted) }
        events.loopTurn = { box.value?.checkLiveness() }
        // An acknowledgement proves the link carries traffic as well as a heartbeat does.
        events.acknowledged = { box.value?.heard() }
        events.libraryLog = LogThrottle.libraryLog(self.logger, link: "peer link")
        client = try MQTTClient(configuration: cc, events: events)
        box.value = self
    }

    /// Joins the routing table (with the interest last saved for this peer, so messages are
    /// routed before the link has resynchronised) and connects.
    func start() {
        routing.add(self)
        for (node, filters) in knownNodes {
            metrics.remoteFilters.set(routing.setInterest(peer: index, node: node, filters: filters))
        }
        client.startInBackground(logger: logger, link: "peer link")
    }

    /// Whether the retained interest of this peer has been read at least once since start.
    var hasSynced: Bool { syncedOnce.load(ordering: .acquiring) }
    var isConnected: Bool { client.isConnected }

    var knownNodes: [String: [String: Int]] { nodes.withLock { $0.filters } }

    /// What this link knows, for `$mesh/<node>/view`.
    var view: PeerView {
        let result = nodes.withLock { known in
            var result: [String: PeerView.Node] = [:]
            for (node, filters) in known.filters {
                result[node] = PeerView.Node(seq: known.floor.seq(of: node), filters: filters.count, origin: routing.origin(of: node))
            }
            return result
        }
        let down = downSinceBits.load(ordering: .relaxed)
        let via = reachableVia.withLock { $0 }
        var view = PeerView(endpoint: endpoint.description, connected: isConnected, downSince: down == 0 ? nil : Double(bitPattern: down),
                            reachableVia: via.isEmpty ? nil : via, nodes: result)
        if deliversDirect { view.direct = true }
        return view
    }

    /// Whether forwards to this peer go to its broker directly (`--delivery direct`, and its
    /// agent advertises an origin token).
    var deliversDirect: Bool {
        directDelivery && acceptsDirect.load(ordering: .relaxed) && peerKnowsOurToken.load(ordering: .relaxed)
    }

    /// Whether one more QoS 1/2 forward of `bytes` would pass the per-peer limits.
    @inline(__always)
    func isFull(adding bytes: Int, maxMessages: Int, maxBytes: Int) -> Bool {
        let held = client.outstandingPublishes
        guard held > 0 else { return false } // one message, however large, always fits
        return held >= maxMessages || client.outstandingBytes + bytes > maxBytes
    }

    // MARK: liveness

    /// The package's monotonic clock (`Mosquitto.monotonicNanos`), signed for differences.
    private static func monotonicNanos() -> Int64 { Int64(bitPattern: Mosquitto.monotonicNanos()) }

    private func heard() { lastHeard.store(Self.monotonicNanos(), ordering: .relaxed) }

    /// Logs once when the backlog passes half a limit, and once when it is back under a quarter.
    func checkBacklog(maxMessages: Int, maxBytes: Int) {
        let held = client.outstandingPublishes, bytes = client.outstandingBytes
        metrics.pending.set(held)
        metrics.heldBytes.set(bytes)
        let high = held * 2 > maxMessages || bytes * 2 > maxBytes
        let low = held * 4 < maxMessages && bytes * 4 < maxBytes
        if high && !backlogWarned.exchange(true, ordering: .relaxed) {
            logger.warning("backlog for this peer passed half its limit; beyond the limit messages for it are dropped and counted",
                           metadata: ["held_messages": "\(held)", "held_bytes": "\(bytes)", "max_pending": "\(maxMessages)", "max_pending_bytes": "\(maxBytes)", "connected": "\(isConnected)"])
        } else if low && backlogWarned.exchange(false, ordering: .relaxed) {
            logger.notice("backlog for this peer back under a quarter of its limit", metadata: ["held_messages": "\(held)", "held_bytes": "\(bytes)"])
        }
    }

    /// Every turn of this link's loop: a heartbeat several times per timeout, and a link that
    /// heard nothing for the whole timeout (a partition that drops packets silently keeps the
    /// socket looking healthy until TCP gives up, minutes later) is dropped and reconnected.
    private func checkLiveness() {
        guard client.isConnected else { return }
        let now = Self.monotonicNanos()
        let heard = lastHeard.load(ordering: .relaxed)
        if now - heard > silenceLimitNanos {
            metrics.silentDrops.increment()
            silenceThrottle.log(.warning, to: logger, "peer link heard nothing, not even its heartbeat, within the peer timeout: declaring it down and reconnecting",
                                metadata: ["silent_seconds": "\(Double(now - heard) / 1e9)"])
            lastHeard.store(now, ordering: .relaxed)
            client.dropConnection()
            return
        }
        if now - lastHeartbeat.load(ordering: .relaxed) >= heartbeatIntervalNanos {
            lastHeartbeat.store(now, ordering: .relaxed)
            _ = client.publish(topic: heartbeatTopic, payload: UnsafeRawBufferPointer(start: nil, count: 0), qos: 0, retain: false, properties: nil)
        }
    }

    private func connected(_ rc: Int32) {
        guard rc == 0 else {
            logger.error("peer broker refused the connection", metadata: ["reason_code": "\(rc)"])
            return
        }
        if everConnected.exchange(true, ordering: .relaxed) { metrics.reconnects.increment() }
        metrics.connected.set(1)
        lastHeard.store(Self.monotonicNanos(), ordering: .relaxed)
        downSinceBits.store(0, ordering: .relaxed)
        setUpAliases()
        logger.info("peer link up", metadata: ["topic_aliases": "\(aliases.withLock { $0.capacity })"])
        do {
            // First, so that discovery knows which node this broker is before its advert routes.
            try client.subscribe("\(ControlTopic.root)/+/\(ControlTopic.Kind.view.rawValue)", qos: 0)
            try client.subscribe("\(ControlTopic.root)/+/\(ControlTopic.Kind.subscriptions.rawValue)", qos: 1)
            try client.subscribe("\(ControlTopic.root)/+/\(ControlTopic.Kind.status.rawValue)", qos: 1)
            try client.subscribe(heartbeatTopic, qos: 0)
            try client.subscribe("\(ControlTopic.root)/+/\(ControlTopic.Kind.connected.rawValue)", qos: 1)
            try client.subscribe("\(ControlTopic.root)/+/\(ControlTopic.Kind.presence.rawValue)", qos: 1)
            try client.subscribe("\(ControlTopic.root)/+/\(ControlTopic.Kind.reach.rawValue)", qos: 1)
            try client.subscribe("\(ControlTopic.root)/+/\(ControlTopic.Kind.adoptions.rawValue)", qos: 1)
            try client.subscribe("\(ControlTopic.root)/+/\(SessionDirectory.kind)/+", qos: 1)
            // Retained messages for the subscriptions above are queued before this SUBACK,
            // so its arrival means the peer's current interest has been read.
            let mid = try client.subscribe("\(ControlTopic.root)/\(ownNodeID)/sync-barrier", qos: 0)
            barrierMID.store(mid, ordering: .releasing)
        } catch {
            logger.error("subscribing to peer control topics failed", metadata: ["error": "\(error)"])
        }
    }

    private func disconnected(_ rc: Int32) {
        aliases.withLock { $0.connectionLost() }
        metrics.connected.set(0)
        downSinceBits.store(Date().timeIntervalSince1970.bitPattern, ordering: .relaxed)
        if rc != 0 { logger.warning("peer link down; reconnecting", metadata: ["rc": "\(rc)"]) }
    }

    // MARK: topic aliases

    /// How the next forward of `topic` goes out on this link.
    ///
    /// The publish happens after the lock is released (holding it across a publish could
    /// deadlock with the connect callback, which libmosquitto runs under its callback mutex
    /// — the one a QoS 0 write takes). A reconnect in between is harmless because aliases are
    /// never forgotten or reassigned: the new connection gets every alias announced before
    /// libmosquitto resends anything; a forward written in the instant before that
    /// announcement is refused by the broker, and the next reconnect resends it after the
    /// announcement.
    @inline(__always)
    func topicUse(for topic: String) -> TopicUse {
        aliases.withLock { $0.use(for: topic) }
    }

    /// The forward that was to set up `alias` was refused locally (not sent): the next one on
    /// its topic carries the topic again.
    func aliasAnnouncementFailed(_ alias: UInt16) {
        aliases.withLock { $0.announcementFailed(alias) }
    }

    /// Runs inside libmosquitto's connect callback, before it resends what was unacknowledged:
    /// those resends may carry only an alias, so every alias still in use is set up again
    /// first (an empty QoS 0 message with the topic, the alias and a marker). The lock is held
    /// throughout so no forward by alias can get in ahead of the announcements.
    private func setUpAliases() {
        let peerMaximum = client.brokerTopicAliasMaximum
        aliases.withLock { state in
            let (announce, unusable) = state.connected(peerMaximum: peerMaximum, configuredMaximum: configuredAliases)
            for (topic, alias) in announce {
                do {
                    let list = try PropertyList.topicAlias(alias)
                    try list.addUserProperty(Self.aliasAnnouncementMarker, "1")
                    try client.publish(topic: forwardPrefix + topic, payload: [], qos: 0, retain: false, properties: list)
                } catch {
                    logger.error("could not set up a topic alias again; resends that use it will be refused by the peer", metadata: ["alias": "\(alias)", "error": "\(error)"])
                }
            }
            if unusable > 0 {
                // The broker disconnects on an alias above its maximum, and libmosquitto resends
                // an unacknowledged forward as built: if one used such an alias, this link will
                // go down on every reconnect until the maximum is raised again.
                logger.error("peer broker now accepts fewer topic aliases than this link has used; if an unacknowledged forward used one of them the peer will refuse it on every reconnect — set max_topic_alias on the peer back to at least the old value", metadata: ["unusable_aliases": "\(unusable)", "peer_maximum": "\(peerMaximum)", "aliases_in_use": "\(state.count)"])
            }
        }
    }

    private func subscribed(_ mid: Int32, _ granted: [Int32]) {
        if granted.contains(where: { $0 >= 0x80 }) {
            logger.error("peer broker refused a control subscription (check the ACL for the mesh user)", metadata: ["granted": "\(granted)"])
        }
        if mid == barrierMID.load(ordering: .acquiring) {
            if !syncedOnce.exchange(true, ordering: .releasing) {
                logger.info("peer interest synchronised", metadata: ["nodes": "\(nodes.withLock { $0.filters.keys.sorted() })"])
            }
        }
    }

    private func message(_ m: ReceivedMessage) {
        lastHeard.store(Self.monotonicNanos(), ordering: .relaxed)
        let topic = m.topic
        if topic == heartbeatTopic { return }
        if let (node, shard) = SessionDirectory.parseTopic(topic) {
            if node != ownNodeID { onSessionShard(node, shard, m.payload, metrics) }
            return
        }
        guard let (node, kind) = ControlTopic.parse(topic) else { return }
        if node == ownNodeID {
            if kind == .view { _ = onClients(kind, node, m.payload, metrics) }
            let (log, _) = selfThrottle.shouldLog()
            if log {
                logger.error("peer broker carries this node's own control topics: --peer points at the local broker, or two agents share node id '\(node)'")
            }
            return
        }
        switch kind {
        case .subscriptions:
            if m.payload.isEmpty {
                // Retained advert deleted: the node left the mesh.
                nodes.withLock {
                    $0.filters[node] = nil
                    $0.floor.remove(node: node)
                }
                metrics.remoteFilters.set(routing.removeNode(peer: index, node: node))
                routing.setOrigin(node: node, token: nil)
                acceptsDirect.store(false, ordering: .relaxed)
                logger.info("peer node withdrew its interest", metadata: ["node": "\(node)"])
                setMirror(ControlTopic.mirror(of: ownNodeID, node: node, kind: .subscriptions), [])
                onInterestChange()
                return
            }
            let advert: InterestAdvert
            do {
                let reading = try InterestAdvertCodec.read(m.payload, expectedNode: node)
                advert = reading.advert
                if !reading.widened.isEmpty { widened(node: node, reading) }
            } catch {
                metrics.advertsRejected.increment()
                rejectThrottle.log(.warning, to: logger, "control payload rejected; keeping last good interest", metadata: [
                    "topic": "\(topic)", "reason": "\(error.reason)", "bytes": "\(m.payload.count)",
                ])
                return
            }
            // Judged and recorded under one lock; applied to routing after it. Only this
            // link's loop thread gets here, so adverts of one peer are applied in order.
            let verdict = nodes.withLock { known in
                let verdict = known.floor.judge(node: node, seq: advert.seq,
                                                sameFilters: { known.filters[node] == advert.filters },
                                                readOnSubscribe: m.retain)
                switch verdict {
                case .newer, .restarted: known.filters[node] = advert.filters
                case .repeated, .stale: break
                }
                return verdict
            }
            if case .stale = verdict {} else {
                // Before the repeated-advert return: a restarted agent may repeat its interest
                // under a new token, and its marks must be known before its deliveries arrive.
                routing.setOrigin(node: node, token: advert.origin)
                acceptsDirect.store(advert.origin != nil, ordering: .relaxed)
            }
            switch verdict {
            case .repeated:
                return
            case .stale(let accepted):
                metrics.advertsStale.increment()
                staleThrottle.log(.warning, to: logger, "stale advert ignored: its seq is not newer than the one already applied; keeping that interest", metadata: [
                    "node": "\(node)", "seq": "\(advert.seq)", "applied_seq": "\(accepted)",
                ])
                return
            case .restarted(let previous):
                restartThrottle.log(.notice, to: logger, "peer node's advert seq went back; taking it (the node restarted, or this is the retained advert read on reconnect)", metadata: [
                    "node": "\(node)", "seq": "\(advert.seq)", "previous_seq": "\(previous)",
                ])
            case .newer:
                break
            }
            // New filters come with when they appeared: the local link sends this peer what it
            // routed elsewhere since then, before anything the new interest routes.
            let replay = advert.since.isEmpty ? nil : ReplayRequest(peer: index, since: advert.since)
            metrics.remoteFilters.set(routing.setInterest(peer: index, node: node, filters: advert.filters, replay: replay))
            metrics.adverts.increment()
            setMirror(ControlTopic.mirror(of: ownNodeID, node: node, kind: .subscriptions), m.payloadBytes)
            onInterestChange()
        case .status:
            let status = String(decoding: m.payload, as: UTF8.self)
            logger.info("peer node status", metadata: ["node": "\(node)", "status": "\(status.prefix(32))"])
            if status == "online" || status == "offline" {
                // Live, not the retained copy read on (re)subscribe: the node's agent left or
                // joined its broker just now and may start its seq over (`AdvertFloor`).
                if !m.retain { nodes.withLock { $0.floor.statusSeen(node: node) } }
                setMirror(ControlTopic.mirror(of: ownNodeID, node: node, kind: .status), m.payloadBytes)
                if status == "online" && !m.retain {
                    // That node's agent has just (re)started reading its broker's log, after this
                    // link connected: one subscribe line tells it this link is one of its
                    // broker's online sessions (its session counts must know them all).
                    _ = try? client.subscribe("\(ControlTopic.root)/\(ownNodeID)/sync-barrier", qos: 0)
                }
            }
        case .stats, .hello:
            break
        case .view:
            // Which peers that node's links reach: tells an asymmetric partition (our link to a
            // peer is down while another node's is up) from a dead peer.
            let reached: [String: Bool]
            if let view = MeshView.decode(m.payload) {
                let current = view.origin != nil && view.origin == routing.origin(of: node)
                peerKnowsOurToken.store(current && view.peers.contains { $0.nodes[ownNodeID]?.origin == ownOriginToken }, ordering: .relaxed)
                reached = Dictionary(view.peers.map { ($0.endpoint, $0.connected) }, uniquingKeysWith: { $0 || $1 })
            } else {
                reached = [:]
            }
            peerLinksSeen.withLock { $0[node] = reached }
            _ = onClients(kind, node, m.payload, metrics)
        case .connected, .reach:
            _ = onClients(kind, node, m.payload, metrics)
        case .adoptions:
            setMirror(ControlTopic.mirror(of: ownNodeID, node: node, kind: .adoptions), m.payloadBytes)
        case .presence:
            let topic = ControlTopic.mirror(of: ownNodeID, node: node, kind: .presence)
            if m.payload.isEmpty {
                setMirror(topic, [])
            } else if onClients(kind, node, m.payload, metrics) {
                setMirror(topic, m.payloadBytes)
            }
        }
    }

    /// An advert with entries this agent could not use (a newer release's, or a broken one):
    /// applied with those entries widened, counted and logged.
    private func widened(node: String, _ reading: AdvertReading) {
        metrics.advertEntriesWidened.increment(by: max(1, reading.widened.count))
        rejectThrottle.log(.warning, to: logger, "advert entries this agent cannot use were widened (interest over-estimated, never narrowed)", metadata: [
            "node": "\(node)", "format": "\(reading.format)", "entries": "\(reading.widened.prefix(3).joined(separator: "; "))",
        ])
    }

    private func setMirror(_ topic: String, _ payload: [UInt8]) {
        publishMirrors([mirrors.withLock { $0.set(topic, payload) }])
    }

    /// Publishes every mirrored topic again (the local link has just connected; this runs in
    /// its connect callback).
    func republishMirrors() {
        publishMirrors(mirrors.withLock { $0.all() })
    }

    /// Clears this link's mirrored topics (the peer was removed from the mesh).
    func clearMirrors() {
        publishMirrors(mirrors.withLock { $0.clear() })
    }

    /// Publishes what was decided under the lock, outside it; then whatever changed meanwhile
    /// again, since its newer value may have gone out before this one.
    private func publishMirrors(_ updates: [PeerMirrors.Update]) {
        var pending = updates
        while !pending.isEmpty {
            for update in pending { mirror(update.topic, update.payload) }
            pending = mirrors.withLock { $0.superseded(pending) }
        }
    }

    func close() async { await client.closeAsync() }
}

/// A weak reference that a C-callback closure can capture before `self` exists.
final class WeakBox<T: AnyObject>: @unchecked Sendable {
    // Written once, right after init and before the client starts its loop thread.
    weak var value: T?
}
