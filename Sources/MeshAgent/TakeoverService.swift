import Foundation
import Logging
import MeshCore
import Mosquitto
import Synchronization

/// One client id, one connection, across the mesh (the agent's side of `ClientPresence`).
///
/// - Announces every client connect its broker logs on `$mesh/<node>/connected` (batched,
///   non-retained, QoS 1); peer links read `$mesh/+/connected` on every peer broker.
/// - Judges each connect a peer announces against its own broker's client of that id
///   (`TakeoverRule`): the older connection or session gives way.
/// - Ends it the way Mosquitto's takeover does: it connects to its own broker *with the
///   client's id* (MQTT 3.1.1, clean session), which closes the old connection and discards its
///   session, and disconnects at once. Discarding the session is deliberate even when the new
///   connect resumed a session elsewhere: the client now lives on the other broker, and a
///   session left here would queue and attract forwards for nobody (issue 12 will migrate
///   sessions instead).
///
/// The takeover connection is a real clean session of that id, so the session table reads its
/// connect and disconnect lines as they are (the session and its filters end); only the
/// announcement of it is held back (`ClientPresence.Fingerprint`), or peers would end the
/// client's real connection in turn.
final class TakeoverService: Sendable {
    /// The takeover connection's keepalive: part of how its log line is told from the client's.
    static let keepalive: Int32 = 47
    /// Takeover connections open at once.
    static let concurrency = 8
    /// Takeovers waiting (beyond this, new ones are refused, counted and logged).
    static let queueLimit = 100_000
    /// Connects waiting to be announced (beyond this, dropped, counted and logged).
    static let announceLimit = 100_000
    /// A takeover not done within this long (e.g. the local broker stays down) is given up.
    static let jobLifetime: Duration = .seconds(300)
    static let connectTimeout: Duration = .seconds(5)

    /// End this node's client of `connect.clientID`, older than `connect` on `node` (judged
    /// again just before).
    struct Job: Sendable {
        var connect: ClientConnect
        var node: String
        var queuedAt: ContinuousClock.Instant
        /// Not a takeover: the offline session here was adopted on `node` while this node was
        /// lost (`AdoptionService`); ended if it is still offline, counted as released.
        var release = false
    }

    private let configuration: AgentConfiguration
    private let interest: NodeInterest
    private let metrics: MeshMetrics
    private let logger: Logger
    private let presence: Mutex<ClientPresence>
    private let announcements = Mutex<[ClientConnect]>([])
    /// Waiting takeovers, oldest first from `head` (taken from the front without shifting).
    private let jobs = Mutex<(items: [Job], head: Int)>(([], 0))
    private let announceSignal: AsyncStream<Void>.Continuation
    private let announceStream: AsyncStream<Void>
    private let jobSignal: AsyncStream<Void>.Continuation
    private let jobStream: AsyncStream<Void>
    private let takeoverThrottle = LogThrottle()
    private let failureThrottle = LogThrottle()
    private let rejectThrottle = LogThrottle()
    private let overflowThrottle = LogThrottle()
    private let releaseThrottle = LogThrottle()
    /// The client ids each peer's latest presence snapshot lists as connected (for adoption:
    /// a client connected anywhere is never taken over).
    private let peerPresence = Mutex<[String: Set<String>]>([:])

    init(configuration: AgentConfiguration, interest: NodeInterest, metrics: MeshMetrics, logger: Logger) {
        self.configuration = configuration
        self.interest = interest
        self.metrics = metrics
        self.logger = logger
        let prefix = configuration.clientIDPrefix
        isMeshClient = { !prefix.isEmpty && $0.utf8.starts(with: prefix.utf8) }
        controlClientID = configuration.controlClientID
        barrierPrefix = "\(ControlTopic.root)/\(configuration.nodeID)/takeover-barrier/"
        presence = Mutex(ClientPresence(localNode: configuration.nodeID,
                                        fingerprint: .init(keepalive: Int(Self.keepalive), username: configuration.localSecurity.username)))
        (announceStream, announceSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (jobStream, jobSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The mesh's own client ids (`SessionTable.isExcluded`): never announced, never ended.
    private let isMeshClient: @Sendable (String) -> Bool
    /// The control link's id and the barrier filters it subscribes (kept: compared on every
    /// subscribe line the log brings).
    private let controlClientID: String
    private let barrierPrefix: String

    static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    // MARK: local connects (control link's thread, under the interest lock)

    /// One event of the local broker's log, already applied to the session table.
    func observeLocal(_ event: BrokerLogEvent, line: UnsafeRawBufferPointer) {
        let time: Int64
        switch event {
        case .connected: time = ClientPresence.connectTime(receivedAt: Self.now(), line: line)
        case .disconnected, .expired: time = 0
        case .subscribed(let id, _, let filter):
            if id == controlClientID { barrierLineRead(filter) }
            return
        default: return
        }
        let outcome = presence.withLock { $0.observeLocal(event, at: time, isMeshClient: isMeshClient) }
        if let connect = outcome.announce {
            let accepted = announcements.withLock { pending -> Bool in
                guard pending.count < Self.announceLimit else { return false }
                pending.append(connect)
                return true
            }
            if accepted {
                announceSignal.yield()
            } else {
                metrics.clientConnectsUnannounced.increment()
                overflowThrottle.log(.error, to: logger, "client connect not announced: too many waiting (is the local link down?)", metadata: ["client_id": "\(connect.clientID.prefix(200))"])
            }
        }
        if let t = outcome.takeover {
            // A peer announced a newer connect of this id before this line was read.
            enqueue(Job(connect: t.connect, node: t.node, queuedAt: .now))
        }
    }

    // MARK: announcements

    /// Publishes what connected, batched: the first connect after a quiet spell goes out at
    /// once, a burst within the pause becomes one message.
    func announceLoop(publish: @Sendable (_ payload: [UInt8]) -> Void) async {
        for await _ in announceStream {
            if Task.isCancelled { break }
            let batch = announcements.withLock { pending -> [ClientConnect] in
                var taken: [ClientConnect] = []
                swap(&taken, &pending)
                return taken
            }
            guard !batch.isEmpty else { continue }
            for payload in ConnectAnnouncementCodec.batches(node: configuration.nodeID, connects: batch) { publish(payload) }
            metrics.clientConnectsAnnounced.increment(by: batch.count)
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    // MARK: connects announced by peers (a peer link's thread)

    /// Returns whether the payload was an announcement.
    @discardableResult
    func handleAnnouncement(node: String, payload: UnsafeRawBufferPointer, peerMetrics: PeerMetrics) -> Bool {
        guard let announcement = decode("client connect announcement", node: node, payload: payload, peerMetrics: peerMetrics, { (p) throws(AdvertDecodeError) in
            try ConnectAnnouncementCodec.decode(p, expectedNode: node)
        }) else { return false }
        let now = Self.now()
        let decisions = withPresence { p, session in
            announcement.connects.map { p.observeRemote($0, from: node, at: now, session: session($0.clientID)) }
        }
        metrics.clientConnectsReceived.increment(by: announcement.connects.count)
        for (c, decision) in zip(announcement.connects, decisions) where decision.ends {
            enqueue(Job(connect: c, node: node, queuedAt: .now))
        }
        return true
    }

    /// A peer's presence snapshot (retained, read on subscribe and when it changes): clients
    /// connected there whose connect was not announced to this agent (the link was down, an
    /// agent restarted) are judged now. Returns whether the payload was a snapshot.
    @discardableResult
    func handlePresence(node: String, payload: UnsafeRawBufferPointer, peerMetrics: PeerMetrics) -> Bool {
        guard let snapshot = decode("presence snapshot", node: node, payload: payload, peerMetrics: peerMetrics, { (p) throws(AdvertDecodeError) in
            try PresenceSnapshotCodec.decode(p, expectedNode: node)
        }) else { return false }
        let now = Self.now()
        let takeovers = withPresence { p, session in p.reconcile(snapshot, at: now, session: session) }
        let online = Set(snapshot.online.keys)
        peerPresence.withLock { $0[node] = online }
        if !takeovers.isEmpty {
            metrics.clientPresenceTakeovers.increment(by: takeovers.count)
            logger.notice("a peer's presence names clients connected there later than here (their connects were not announced to this agent): ending them here",
                          metadata: ["node": "\(node)", "clients": "\(takeovers.count)"])
        }
        for t in takeovers { enqueue(Job(connect: t.connect, node: t.node, queuedAt: .now)) }
        return true
    }

    /// Decodes a peer's payload; one that does not decode is counted and logged (throttled)
    /// as rejected, and nil.
    private func decode<T>(_ what: String, node: String, payload: UnsafeRawBufferPointer, peerMetrics: PeerMetrics,
                           _ decode: (UnsafeRawBufferPointer) throws(AdvertDecodeError) -> T) -> T? {
        do throws(AdvertDecodeError) {
            return try decode(payload)
        } catch {
            peerMetrics.advertsRejected.increment()
            rejectThrottle.log(.warning, to: logger, "\(what) rejected", metadata: ["node": "\(node)", "reason": "\(error.reason)", "bytes": "\(payload.count)"])
            return nil
        }
    }

    /// Runs `body` on the presence with a lookup of a client's local session (mesh clients,
    /// by flag or id prefix, count as such). Table first, then presence: the lock order of
    /// `observeLocal` (called under the interest lock).
    private func withPresence<R: Sendable>(_ body: (inout ClientPresence, (String) -> (online: Bool, meshClient: Bool)?) -> R) -> R {
        let prefixCheck = isMeshClient
        return interest.withTable { table, _ in
            presence.withLock { p in
                body(&p) { id in table.sessions[id].map { (online: $0.online, meshClient: $0.excluded || prefixCheck(id)) } }
            }
        }
    }

    // MARK: presence snapshot

    /// Bytes per second a node's presence may cost each reader: a large snapshot is published
    /// less often (100 000 clients, ~4 MB: about every 40 s), a small one at most every second.
    static let presenceBytesPerSecond = 100_000
    private let presenceDirty = Atomic<Bool>(true)

    /// The local broker may have lost its retained messages: publish the snapshot again.
    func markPresenceDirty() { presenceDirty.store(true, ordering: .relaxed) }

    /// Publishes the retained presence snapshot when the clients changed, paced by its size.
    /// `publish` returns false when the local link is down (tried again later).
    func presenceLoop(publish: @Sendable (_ payload: [UInt8]) -> Bool) async {
        var published: UInt64?
        let clock = ContinuousClock()
        var notBefore = clock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            guard clock.now >= notBefore else { continue }
            let version = presence.withLock { $0.version }
            let dirty = presenceDirty.exchange(false, ordering: .relaxed)
            guard dirty || version != published else { continue }
            let now = Self.now()
            let started = clock.now
            // Built under the interest lock (the table's sessions): the control link waits meanwhile.
            let snapshot = interest.withTable { table, _ in presence.withLock { $0.snapshot(of: table, at: now) } }
            let built = clock.now - started
            let payload = PresenceSnapshotCodec.encode(snapshot)
            guard publish(payload) else {
                presenceDirty.store(true, ordering: .relaxed)
                continue
            }
            published = version
            metrics.clientsOnline.set(snapshot.online.count + snapshot.unlisted)
            // Paced by size (what readers pay) and by the time the table was held (what the
            // control link pays: at most 2 %, e.g. many offline sessions behind a small list).
            let bySize = Duration.milliseconds(payload.count * 1000 / Self.presenceBytesPerSecond)
            notBefore = clock.now.advanced(by: max(.seconds(1), bySize, built * 50))
        }
    }

    private func enqueue(_ job: Job) {
        let accepted = jobs.withLock { queue -> Bool in
            guard queue.items.count - queue.head < Self.queueLimit else { return false }
            queue.items.append(job)
            return true
        }
        if accepted {
            jobSignal.yield()
        } else {
            presence.withLock { $0.finishEnding(job.connect.clientID, at: Self.now()) }
            failed(job, reason: "too many takeovers waiting (\(Self.queueLimit))")
        }
    }

    // MARK: log barrier

    /// Barrier subscriptions handed out and read back (their subscribe line seen in the log).
    private let barriers = Mutex<(next: UInt64, read: UInt64)>((0, 0))

    private func barrierLineRead(_ filter: String) {
        guard filter.hasPrefix(barrierPrefix), let n = UInt64(filter.dropFirst(barrierPrefix.utf8.count)) else { return }
        barriers.withLock { $0.read = max($0.read, n) }
    }

    /// Waits (bounded) until the control link has read every log line the broker wrote before
    /// now: it subscribes a fresh filter on the control connection and waits for that
    /// subscribe's own log line. Only then is the session table as new as the broker, so a
    /// client that came back here (a newer connection) is not taken for the old one.
    func logBarrier(_ control: ControlAccess) async -> Bool {
        let n = barriers.withLock { b -> UInt64 in
            b.next += 1
            return b.next
        }
        let filter = barrierPrefix + String(n)
        guard control.subscribe(filter) else { return false }
        defer { control.unsubscribe(filter) }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(2))
        while barriers.withLock({ $0.read }) < n {
            if clock.now >= deadline || Task.isCancelled { return false }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return true
    }

    /// What the takeovers need of the agent's own links.
    struct ControlAccess: Sendable {
        /// The forwarding link is up (the local broker is reachable).
        var localLinkUp: @Sendable () -> Bool
        /// Subscribes / unsubscribes a filter on the control link (the one reading the log).
        var subscribe: @Sendable (String) -> Bool
        var unsubscribe: @Sendable (String) -> Void
    }

    // MARK: ending connections and sessions

    /// Runs the takeovers, at most `concurrency` at once; each batch waits for the local
    /// broker and for the log to be read up to now (`logBarrier`).
    func takeoverLoop(_ control: ControlAccess) async {
        for await _ in jobStream {
            if Task.isCancelled { break }
            while !Task.isCancelled {
                let batch = jobs.withLock { queue -> [Job] in
                    let end = min(queue.items.count, queue.head + Self.concurrency)
                    let taken = Array(queue.items[queue.head..<end])
                    queue.head = end
                    if queue.head == queue.items.count {
                        queue = ([], 0)
                    } else if queue.head > 4096 && queue.head * 2 > queue.items.count {
                        queue.items.removeFirst(queue.head)
                        queue.head = 0
                    }
                    return taken
                }
                if batch.isEmpty { break }
                // The local broker may be down (it restarted, which is often why the client
                // moved): wait for it and for its log to be read, bounded by the oldest job.
                let oldest = batch.map(\.queuedAt).min()!
                var ready = false
                while !ready && ContinuousClock.now - oldest < Self.jobLifetime && !Task.isCancelled {
                    ready = control.localLinkUp() ? await logBarrier(control) : false
                    if !ready { try? await Task.sleep(for: .milliseconds(50)) }
                }
                guard ready else {
                    for job in batch {
                        presence.withLock { $0.finishEnding(job.connect.clientID, at: Self.now()) }
                        failed(job, reason: "local broker unreachable, or its log not read")
                    }
                    continue
                }
                await withTaskGroup(of: Void.self) { group in
                    for job in batch { group.addTask { await self.run(job) } }
                }
            }
        }
    }

    private func run(_ job: Job) async {
        let id = job.connect.clientID
        defer { presence.withLock { $0.finishEnding(id, at: Self.now()) } }
        if job.release {
            await runRelease(job)
            return
        }
        // The client may have come back here since (a newer connection): judge again.
        let decision = interest.withTable { table, _ in
            presence.withLock { p in
                p.recheck(job.connect, from: job.node, session: table.sessions[id].map { (online: $0.online, meshClient: $0.excluded) })
            }
        }
        guard decision.ends else {
            logger.info("client takeover not needed any more", metadata: ["client_id": "\(id.prefix(200))", "node": "\(job.node)", "reason": "\(decision)"])
            return
        }
        switch await endLocally(id) {
        case .success:
            switch decision {
            case .endConnection: metrics.clientTakeovers.increment()
            default: metrics.clientSessionsEnded.increment()
            }
            takeoverThrottle.log(.notice, to: logger, decision == .endConnection
                ? "client id connected on another node: its older connection here was closed and its session ended"
                : "client id connected on another node: its offline session here was ended (queued messages discarded)", metadata: [
                    "client_id": "\(id.prefix(200))", "node": "\(job.node)", "connected_there_ms": "\(job.connect.time)",
                    "clean_start_there": "\(job.connect.cleanStart)",
                ])
        case .failure(let reason):
            failed(job, reason: reason)
        }
    }

    enum Outcome: Sendable { case success, failure(String) }

    // MARK: sessions adopted elsewhere (AdoptionService)

    /// Whether `id` is connected on a peer, other than `excluding`: listed in its latest presence
    /// snapshot, or announced lately. Returns that node.
    func connectedElsewhere(_ id: String, excluding: Set<String>) -> String? {
        if let r = presence.withLock({ $0.recentlyConnected(id) }), !excluding.contains(r.node) { return r.node }
        return peerPresence.withLock { p in p.first { !excluding.contains($0.key) && $0.value.contains(id) }?.key }
    }

    /// When `id` last connected here (ms; nil: not read by this agent run).
    func localConnectedAt(_ id: String) -> Int64? {
        presence.withLock { p in p.clients[id].flatMap { $0.connectedAt > 0 ? $0.connectedAt : nil } }
    }

    /// The next connect of `id` here is the agent's own adoption (`ClientPresence.beginAdopting`).
    func beginAdopting(_ id: String) {
        presence.withLock { $0.beginAdopting(id, deadline: Self.now() + 60_000) }
    }

    /// Ends this broker's offline session of `id`, which `node` adopted while this node was lost
    /// (the client will be sent there). Not if it is being ended already.
    func release(_ id: String, adoptedBy node: String, at time: Int64) {
        guard presence.withLock({ $0.beginEnding(id, at: Self.now()) }) else { return }
        enqueue(Job(connect: ClientConnect(clientID: id, time: time, cleanStart: false, protocolLevel: 0), node: node,
                    queuedAt: .now, release: true))
    }

    private func runRelease(_ job: Job) async {
        let id = job.connect.clientID
        // Only an offline session: a client that came back here is newer than the adoption, and
        // its connect (announced) ends the adopted copy instead.
        let offline = interest.withTable { table, _ in table.sessions[id].map { !$0.online && !$0.excluded } ?? false }
        guard offline else {
            logger.info("adopted session not released here: the client is connected here, or its session is gone", metadata: ["client_id": "\(id.prefix(200))", "node": "\(job.node)"])
            return
        }
        switch await endLocally(id) {
        case .success:
            metrics.sessionsReleased.increment()
            releaseThrottle.log(.notice, to: logger, "session released: it was adopted on another node while this node was lost (what was queued for it here is discarded)", metadata: [
                "client_id": "\(id.prefix(200))", "adopted_by": "\(job.node)", "adopted_at_ms": "\(job.connect.time)",
            ])
        case .failure(let reason):
            failed(job, reason: reason)
        }
    }

    /// Connects to the local broker as `id` (MQTT 3.1.1, clean session: Mosquitto closes the
    /// old connection, discards the session, sends its Will) and disconnects.
    private func endLocally(_ id: String) async -> Outcome {
        var cc = ClientConfiguration(clientID: id, host: configuration.local.host, port: configuration.local.port)
        cc.protocolVersion = .v311
        cc.cleanStart = true
        cc.keepalive = Self.keepalive
        cc.username = configuration.localSecurity.username
        cc.password = configuration.localSecurity.password
        cc.tls = configuration.localSecurity.tls
        cc.reconnectDelay = (1, 1)
        let connack = Atomic<Int32>(-1)
        var events = ClientEvents()
        events.connected = { rc, _ in connack.store(rc, ordering: .releasing) }
        let client: MQTTClient
        do {
            client = try MQTTClient(configuration: cc, events: events)
        } catch {
            return .failure("\(error)")
        }
        return await client.closing {
            let deadline = ContinuousClock.now.advanced(by: Self.connectTimeout)
            if let failure = await client.startAwaitingConnack(connack, deadline: deadline, timeout: Self.connectTimeout) { return .failure(failure) }
            await client.disconnectAwaitingClose()
            return .success
        }
    }

    private func failed(_ job: Job, reason: String) {
        metrics.clientTakeoverFailures.increment()
        failureThrottle.log(.error, to: logger, "could not end a client's connection or session here after it connected on another node; both stay", metadata: [
            "client_id": "\(job.connect.clientID.prefix(200))", "node": "\(job.node)", "reason": "\(reason)",
        ])
    }

    /// Forgets what is past (see `ClientPresence.prune`); call every few seconds.
    func prune() {
        let now = Self.now()
        interest.withTable { table, _ in
            presence.withLock { $0.prune(now: now, hasSession: { table.sessions[$0] != nil }) }
        }
    }

    func finish() {
        announceSignal.finish()
        jobSignal.finish()
    }
}
