import Foundation
import Logging
import MeshCore
import Mosquitto
import Synchronization

/// Persistent sessions survive the loss of their broker (the agent's side of
/// `SessionDirectory`).
///
/// - **Reads** every peer's session directory (`$mesh/<node>/sessions/<shard>`) and reach
///   report (`$mesh/<node>/reach`); **publishes** its own reach report: which peer brokers its
///   links cannot reach, since when.
/// - **Holds** (with `--haproxy-runtime`): the moment a node's broker becomes unreachable, the
///   ids of its adoptable sessions get a hold in HAProxy's stick table (`gpt0` = an epoch
///   deadline the shipped frontend refuses CONNECTs before): otherwise those clients would be
///   back on a survivor in about a second, with an empty session, before anyone could adopt
///   theirs — and a connected client is never taken over.
/// - **Adopts**: once the node's broker has been unreachable for `--adopt-after` seconds from
///   here and, as they report, from every live agent, with a majority of the configured nodes
///   live (`AdoptionRule`), each of its sessions is created by exactly one survivor — the
///   rendezvous owner of its client id among the live nodes: connect with that id and clean
///   start 0 (MQTT 5: session expiry `--adopted-session-expiry`), subscribe every filter at
///   its QoS, disconnect; then point the id's stick-table entry at this broker. Never a client
///   that is connected, or has a session, on a live node: such ids are skipped and judged
///   again every second for a minute. The adoption's connect is not announced
///   (`ClientPresence.beginAdopting`), and it counts as older than any real connect, so a
///   client connecting anywhere ends the adopted copy, not the reverse.
/// - **Releases**: when this node comes back, each offline session here that another node's
///   directory lists as adopted from this node after this session's last connect is ended the
///   takeover way (`TakeoverService.release`): the client now lives there.
final class AdoptionService: Sendable {
    /// One peer link as the adoption rules need it.
    struct PeerState: Sendable {
        var endpoint: String
        var nodes: [String]
        var up: Bool
        var downSince: Double?
    }

    /// A lost node's adoption, as it went here.
    struct Round: Sendable {
        /// When its broker became unreachable from here, and when the survivors agreed it was lost.
        var unreachableSince: Double
        var lostAt: Double
        var adopted = 0
        var done: Set<String> = []
        var skipped: [String: String] = [:]
        var attempts: [String: Int] = [:]
        var failed: Set<String> = []
        var lastAdoption: Int64?
        var running = false
        var lastPass: Double = 0
        var finished = false
    }

    struct State {
        var remote = RemoteSessions()
        var reach: [String: ReachReport] = [:]
        /// Peer links never seen up, by endpoint: since when (a fallback for `downSince`).
        var firstSeenDown: [String: Double] = [:]
        var publishedReach: [String: Int64]?
        var reachDirty = true
        /// Nodes whose clients this agent holds at HAProxy: the ids held.
        var held: [String: [String]] = [:]
        var rounds: [String: Round] = [:]
        /// Sessions this node adopted, by client id (saved in `<state-dir>/adoptions.json`).
        var adopted: [String: SharedSession.Adoption] = [:]
        var adoptedDirty = false
        /// Local sessions that another node adopted from this one: id → (adopter, time).
        var releaseCandidates: [String: (node: String, time: Int64)] = [:]
        var serverIDs: [String: Int] = [:]
        var adoptionsDirty = true
    }

    /// Retry window of a round: skipped and failed ids are judged again every `passInterval`
    /// for this long after the node was declared lost.
    static let retryWindow: Double = 60
    static let passInterval: Double = 1
    static let attemptsPerSession = 3
    static let concurrency = 8
    static let turn: Duration = .milliseconds(100)
    static let connectTimeout: Duration = .seconds(5)
    static let holdMargin: Double = 15

    private let configuration: AgentConfiguration
    private let interest: NodeInterest
    private let takeover: TakeoverService
    private let metrics: MeshMetrics
    private let logger: Logger
    private let state: Mutex<State>
    private let runtimes: [HAProxyRuntime]
    private let stateFile: String?
    private let rejectThrottle = LogThrottle()
    private let runtimeThrottle = LogThrottle()
    private let failureThrottle = LogThrottle()
    /// Set once the directory service exists (it reads adoption records from here).
    let directory = Mutex<SessionDirectoryService?>(nil)
    /// The agent is stopping: adoption passes under way stop at their next batch.
    private let stopping = Atomic<Bool>(false)

    func finish() { stopping.store(true, ordering: .relaxed) }

    init(configuration: AgentConfiguration, interest: NodeInterest, takeover: TakeoverService, metrics: MeshMetrics, logger: Logger) {
        self.configuration = configuration
        self.interest = interest
        self.takeover = takeover
        self.metrics = metrics
        self.logger = logger
        runtimes = configuration.haproxyRuntime.map { HAProxyRuntime(endpoint: $0, backend: configuration.haproxyBackend) }
        stateFile = configuration.stateDirectory.map { $0 + "/adoptions.json" }
        var s = State()
        if let path = stateFile, let data = FileManager.default.contents(atPath: path),
           let saved = try? JSONDecoder().decode([String: SharedSession.Adoption].self, from: data) {
            s.adopted = saved
        }
        state = Mutex(s)
    }

    static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    /// The adoption record of a local session (published in this node's directory).
    func adoption(of id: String) -> SharedSession.Adoption? { state.withLock { $0.adopted[id] } }

    // MARK: what peers publish (peer links' threads)

    func handleShard(node: String, shard: Int, payload: UnsafeRawBufferPointer, peerMetrics: PeerMetrics) {
        let own = configuration.nodeID
        if payload.isEmpty {
            state.withLock { s in
                for id in s.remote.remove(node: node, shard: shard) where s.releaseCandidates[id]?.node == node { s.releaseCandidates[id] = nil }
            }
            return
        }
        let decoded: SessionShard
        do {
            decoded = try SessionShardCodec.decode(payload, expectedNode: node, expectedShard: shard)
        } catch {
            peerMetrics.advertsRejected.increment()
            rejectThrottle.log(.warning, to: logger, "session directory shard rejected", metadata: ["node": "\(node)", "shard": "\(shard)", "reason": "\(error.reason)"])
            return
        }
        state.withLock { s in
            for id in s.remote.apply(decoded) {
                if let a = s.remote.session(id, on: node)?.adopted, a.from == own {
                    s.releaseCandidates[id] = (node, a.time)
                } else if s.releaseCandidates[id]?.node == node {
                    s.releaseCandidates[id] = nil
                }
            }
        }
    }

    @discardableResult
    func handleReach(node: String, payload: UnsafeRawBufferPointer, peerMetrics: PeerMetrics) -> Bool {
        if payload.isEmpty {
            state.withLock { $0.reach[node] = nil }
            return true
        }
        do {
            let r = try ReachReportCodec.decode(payload, expectedNode: node)
            state.withLock { $0.reach[node] = r }
            return true
        } catch {
            peerMetrics.advertsRejected.increment()
            return false
        }
    }

    /// The local broker (re)connected: publish the reach report and the adoptions again.
    func markRepublish() {
        state.withLock {
            $0.reachDirty = true
            $0.adoptionsDirty = true
        }
    }

    // MARK: the loop

    /// What the loop needs of the agent.
    struct Access: Sendable {
        var peers: @Sendable () -> [PeerState]
        var control: TakeoverService.ControlAccess
        /// Publishes a retained control message on the local broker; false when its link is down.
        var publish: @Sendable (_ topic: String, _ payload: [UInt8]) -> Bool
    }

    func loop(_ access: Access) async {
        var nextSlow = 0.0
        while !Task.isCancelled {
            let now = Date().timeIntervalSince1970
            tick(access, now: now, slow: now >= nextSlow)
            if now >= nextSlow { nextSlow = now + 1 }
            try? await Task.sleep(for: Self.turn)
        }
    }

    private func tick(_ access: Access, now: Double, slow: Bool) {
        let peers = access.peers()
        let selfUp = access.control.localLinkUp()
        var rulePeers: [AdoptionRule.Peer] = []
        var down: [String: Int64] = [:]
        let reach = state.withLock { s -> [String: ReachReport] in
            for p in peers {
                var since = p.downSince
                if p.up {
                    s.firstSeenDown[p.endpoint] = nil
                } else if since == nil {
                    since = s.firstSeenDown[p.endpoint] ?? now
                    s.firstSeenDown[p.endpoint] = since
                }
                rulePeers.append(AdoptionRule.Peer(nodes: p.nodes, linkUp: p.up, downSince: since))
                if !p.up, let since { for n in p.nodes { down[n] = Int64(since * 1000) } }
            }
            return s.reach
        }
        publishReachIfChanged(down, access)
        if configuration.adoptAfter > 0 {
            adoptIfLost(access, peers: rulePeers, selfUp: selfUp, reach: reach, now: now)
        }
        if slow {
            // Only against a reachable broker whose restart the table has taken in (a session
            // the table still thinks online is left for the next turn).
            if selfUp { releaseWhatWasAdoptedElsewhere() }
            forgetEndedAdoptions()
            saveIfNeeded()
            publishAdoptionsIfChanged(access, now: now)
        }
    }

    /// Holds and adoption rounds, from the verdict of `AdoptionRule`.
    private func adoptIfLost(_ access: Access, peers rulePeers: [AdoptionRule.Peer], selfUp: Bool, reach: [String: ReachReport], now: Double) {
        let verdict = AdoptionRule.judge(selfNode: configuration.nodeID, selfUp: selfUp, peers: rulePeers,
                                         configuredNodes: rulePeers.count + 1, reach: reach, adoptAfter: configuration.adoptAfter, now: now)
        updateHolds(verdict, now: now)
        // Rounds: a node reachable again is no longer being adopted.
        let passes = state.withLock { s -> [(String, [String])] in
            for node in s.rounds.keys where verdict.unreachable[node] == nil && !s.rounds[node]!.finished {
                s.rounds[node]!.finished = true
                s.adoptionsDirty = true
            }
            var passes: [(String, [String])] = []
            for node in verdict.lost {
                if s.rounds[node] == nil || (s.rounds[node]!.finished && s.rounds[node]!.unreachableSince != verdict.unreachable[node]) {
                    s.rounds[node] = Round(unreachableSince: verdict.unreachable[node] ?? now, lostAt: now)
                    s.adoptionsDirty = true
                    logger.notice("node lost: its broker is unreachable from every live agent; adopting the persistent sessions this node owns among the live ones",
                                  metadata: ["lost": "\(node)", "live": "\(verdict.live)", "sessions": "\(s.remote.count(of: node))",
                                             "unreachable_for_s": "\(Int(now - (verdict.unreachable[node] ?? now)))"])
                }
                guard var r = s.rounds[node], !r.finished, !r.running, now - r.lastPass >= Self.passInterval else { continue }
                if now - r.lostAt > Self.retryWindow {
                    r.finished = true
                    s.rounds[node] = r
                    s.adoptionsDirty = true
                    continue
                }
                let own = configuration.nodeID
                let candidates = s.remote.sessions(of: node).filter { session in
                    session.adoptable && !r.done.contains(session.clientID) && !r.failed.contains(session.clientID)
                        && Rendezvous.owner(of: session.clientID, among: verdict.live) == own
                }.map(\.clientID)
                r.lastPass = now
                if candidates.isEmpty {
                    if r.skipped.isEmpty { r.finished = true; s.adoptionsDirty = true }
                } else {
                    r.running = true
                    passes.append((node, candidates))
                }
                s.rounds[node] = r
            }
            return passes
        }
        for (node, ids) in passes where !stopping.load(ordering: .relaxed) {
            Task { await self.pass(node: node, ids: ids, access) }
        }
    }

    private func publishReachIfChanged(_ down: [String: Int64], _ access: Access) {
        let due = state.withLock { s -> Bool in s.reachDirty || s.publishedReach != down }
        guard due else { return }
        let payload = ReachReportCodec.encode(ReachReport(node: configuration.nodeID, time: Self.now(), down: down))
        if access.publish(ControlTopic.reach(node: configuration.nodeID), payload) {
            state.withLock { s in
                s.publishedReach = down
                s.reachDirty = false
            }
        }
    }

    // MARK: HAProxy holds

    private func updateHolds(_ verdict: AdoptionRule.Verdict, now: Double) {
        guard !runtimes.isEmpty else { return }
        let (hold, release) = state.withLock { s -> ([(String, [String], Int64)], [String]) in
            var hold: [(String, [String], Int64)] = []
            if verdict.majority {
                for (node, since) in verdict.agreed where s.held[node] == nil {
                    let ids = s.remote.sessions(of: node).filter(\.adoptable).map(\.clientID)
                    s.held[node] = ids
                    guard !ids.isEmpty else { continue }
                    // Until the adoption should be over: adopt-after, a margin, and time for the
                    // adoptions themselves (a few hundred a second across the survivors).
                    let until = since + configuration.adoptAfter + Self.holdMargin + Double(ids.count) / 200
                    hold.append((node, ids, Int64(until.rounded(.up))))
                }
            }
            var release: [String] = []
            for (node, ids) in s.held where verdict.agreed[node] == nil {
                s.held[node] = nil
                release += ids.filter { s.rounds[node]?.done.contains($0) != true }
            }
            return (hold, release)
        }
        for (node, ids, until) in hold {
            metrics.sessionsHeld.increment(by: ids.count)
            logger.notice("peer broker unreachable from every live agent: holding its clients with persistent sessions at HAProxy until their sessions are adopted",
                          metadata: ["node": "\(node)", "clients": "\(ids.count)", "until": "\(until)"])
            runCommands(ids.compactMap { HAProxyRuntime.escapedKey($0) }.map { key in { (r: HAProxyRuntime) in [r.holdCommand(key: key, until: until)] } },
                        what: "hold")
        }
        if !release.isEmpty {
            logger.notice("peer broker reachable again (or no longer unreachable from every live agent): its clients are no longer held", metadata: ["clients": "\(release.count)"])
            runCommands(release.compactMap { HAProxyRuntime.escapedKey($0) }.map { key in { (r: HAProxyRuntime) in [r.holdCommand(key: key, until: 0)] } },
                        what: "unhold")
        }
    }

    /// Runs the commands on every load balancer, off the async pool (blocking sockets).
    private func runCommands(_ commands: [@Sendable (HAProxyRuntime) -> [String]], what: String) {
        guard !commands.isEmpty else { return }
        for runtime in runtimes {
            DispatchQueue.global().async { [self] in
                let lines = commands.flatMap { $0(runtime) }
                do {
                    let errors = try runtime.run(lines)
                    if !errors.isEmpty { runtimeFailed(runtime, what: what, reason: "\(errors.count) refused, e.g. \(errors[0])", count: errors.count) }
                } catch {
                    runtimeFailed(runtime, what: what, reason: "\(error)", count: lines.count)
                }
            }
        }
    }

    private func runtimeFailed(_ runtime: HAProxyRuntime, what: String, reason: String, count: Int) {
        metrics.haproxyRuntimeFailures.increment(by: count)
        runtimeThrottle.log(.error, to: logger, "HAProxy runtime API command failed (stick table without 'store gpt0'? see deploy/haproxy/haproxy.cfg)",
                             metadata: ["haproxy": "\(runtime.endpoint)", "what": "\(what)", "reason": "\(reason)"])
    }

    /// This broker's server id on each load balancer (resolved once).
    private func serverID(_ runtime: HAProxyRuntime) -> Int? {
        let key = runtime.endpoint.description
        if let id = state.withLock({ $0.serverIDs[key] }) { return id }
        guard let name = configuration.haproxyServer else { return nil }
        do {
            let id = try runtime.serverID(named: name)
            state.withLock { $0.serverIDs[key] = id }
            return id
        } catch {
            runtimeFailed(runtime, what: "resolve server", reason: error.reason, count: 1)
            return nil
        }
    }

    // MARK: adoption

    enum Outcome: Sendable {
        case adopted(time: Int64, sessionExisted: Bool)
        case skipped(String)
        case failed(String)
    }

    private func pass(node: String, ids: [String], _ access: Access) async {
        var outcomes: [(String, Outcome)] = []
        // The local broker must be up and its log read up to now: a client that came back here
        // since is then in the session table.
        var ready = access.control.localLinkUp()
        if ready { ready = await takeover.logBarrier(access.control) }
        if ready {
            var index = 0
            while index < ids.count && !Task.isCancelled && !stopping.load(ordering: .relaxed) {
                let batch = Array(ids[index..<min(ids.count, index + Self.concurrency)])
                index += batch.count
                let results = await withTaskGroup(of: (String, Outcome).self) { group in
                    for id in batch { group.addTask { (id, await self.adopt(id, from: node)) } }
                    var r: [(String, Outcome)] = []
                    for await x in group { r.append(x) }
                    return r
                }
                outcomes += results
                let moved = results.compactMap { r -> String? in if case .adopted = r.1 { return r.0 } else { return nil } }
                pointHAProxy(at: moved)
            }
        } else {
            outcomes = ids.map { ($0, .failed("local broker unreachable, or its log not read")) }
        }
        var adopted = 0, skipped = 0, failed = 0, existed = 0
        var newlySkipped = 0, gaveUp: [(String, String)] = []
        state.withLock { s in
            guard var r = s.rounds[node] else { return }
            for (id, outcome) in outcomes {
                switch outcome {
                case .adopted(let time, let sessionExisted):
                    adopted += 1
                    if sessionExisted { existed += 1 }
                    r.done.insert(id)
                    r.skipped[id] = nil
                    r.adopted += 1
                    r.lastAdoption = max(r.lastAdoption ?? 0, time)
                    s.adopted[id] = SharedSession.Adoption(from: node, time: time)
                    s.adoptedDirty = true
                case .skipped(let reason):
                    skipped += 1
                    if r.skipped.updateValue(reason, forKey: id) == nil { newlySkipped += 1 }
                case .failed(let reason):
                    failed += 1
                    let n = (r.attempts[id] ?? 0) + 1
                    r.attempts[id] = n
                    if n >= Self.attemptsPerSession {
                        r.failed.insert(id)
                        r.skipped[id] = nil
                        gaveUp.append((id, reason))
                    }
                }
            }
            r.running = false
            s.rounds[node] = r
            s.adoptionsDirty = true
        }
        if adopted > 0 { metrics.sessionsAdopted.increment(by: adopted) }
        if newlySkipped > 0 { metrics.sessionAdoptionsSkipped.increment(by: newlySkipped) }
        if !gaveUp.isEmpty { metrics.sessionAdoptionFailures.increment(by: gaveUp.count) }
        if let d = directory.withLock({ $0 }) {
            for (id, o) in outcomes { if case .adopted = o { d.touch(id) } }
        }
        if adopted > 0 || failed > 0 || newlySkipped > 0 {
            let example = outcomes.first { if case .adopted = $0.1 { return false } else { return true } }
            logger.notice("adoption batch", metadata: [
                "lost": "\(node)", "adopted": "\(adopted)", "had_a_session_here_already": "\(existed)", "skipped": "\(skipped)", "failed": "\(failed)",
                "example": "\(example.map { "\($0.0.prefix(100)): \($0.1)" } ?? "-")",
            ])
        }
        for (id, reason) in gaveUp {
            failureThrottle.log(.error, to: logger, "could not adopt a lost node's session", metadata: ["client_id": "\(id.prefix(200))", "lost": "\(node)", "reason": "\(reason)"])
        }
    }

    /// Creates one session of lost node `node` on the local broker, unless its client is
    /// connected, or has a session, on a live node.
    private func adopt(_ id: String, from node: String) async -> Outcome {
        guard let record = state.withLock({ $0.remote.session(id, on: node) }) else { return .skipped("gone from the directory") }
        if let why = reasonNotToAdopt(id, lost: node) { return .skipped(why) }
        takeover.beginAdopting(id)
        var cc = ClientConfiguration(clientID: id, host: configuration.local.host, port: configuration.local.port)
        cc.protocolVersion = record.protocolLevel >= 5 ? .v5 : .v311
        cc.cleanStart = false
        cc.sessionExpiry = record.protocolLevel >= 5 ? configuration.adoptedSessionExpiry : 0
        cc.keepalive = Int32(ClientPresence.adoptionKeepalive)
        cc.username = configuration.localSecurity.username
        cc.password = configuration.localSecurity.password
        cc.tls = configuration.localSecurity.tls
        cc.reconnectDelay = (1, 1)
        let connack = Atomic<Int32>(-1)
        let present = Atomic<Bool>(false)
        let acks = Mutex<[Int32: [Int32]]>([:])
        var events = ClientEvents()
        events.connected = { rc, p in
            present.store(p, ordering: .relaxed)
            connack.store(rc, ordering: .releasing)
        }
        events.subscribed = { mid, granted in acks.withLock { $0[mid] = granted } }
        let client: MQTTClient
        do { client = try MQTTClient(configuration: cc, events: events) } catch { return .failed("\(error)") }
        return await client.closing {
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: Self.connectTimeout)
            if let failure = await client.startAwaitingConnack(connack, deadline: deadline, timeout: Self.connectTimeout) { return .failed(failure) }
            var mids: [Int32] = []
            for (filter, qos) in record.filters.sorted(by: { $0.key < $1.key }) {
                do { mids.append(try client.subscribe(filter, qos: Int32(qos))) } catch { return .failed("subscribe \(filter): \(error)") }
            }
            while acks.withLock({ a in mids.contains { a[$0] == nil } }) {
                // Our connection taken over (the client came in meanwhile): stop before libmosquitto reconnects as it.
                if !client.isConnected { return .failed("connection lost before every SUBACK (the client may have connected here)") }
                if clock.now >= deadline || Task.isCancelled { return .failed("no SUBACK within \(Self.connectTimeout)") }
                try? await Task.sleep(for: .milliseconds(2))
            }
            let refused = acks.withLock { a in mids.filter { (a[$0] ?? []).contains { $0 >= 0x80 } }.count }
            let time = Self.now()
            await client.disconnectAwaitingClose()
            if refused > 0 {
                return .failed("the local broker refused \(refused) of \(mids.count) subscriptions (ACL?)")
            }
            if let elsewhere = takeover.connectedElsewhere(id, excluding: [node]) {
                // The client came back elsewhere while we were adopting: that connection is newer.
                takeover.release(id, adoptedBy: elsewhere, at: Int64.max)
                return .skipped("connected on \(elsewhere) during the adoption; the copy here is ended")
            }
            return .adopted(time: time, sessionExisted: present.load(ordering: .relaxed))
        }
    }

    /// Why `id` must not be adopted now (nil: adopt it).
    private func reasonNotToAdopt(_ id: String, lost: String) -> String? {
        if state.withLock({ $0.adopted[id] != nil }) { return "adopted here already" }
        let local = interest.withTable { table, _ in table.sessions[id].map { $0.online ? "connected here" : "has a session here" } }
        if let local { return local }
        if let node = takeover.connectedElsewhere(id, excluding: [lost, configuration.nodeID]) { return "connected on \(node)" }
        let holders = state.withLock { $0.remote.holders(of: id, excluding: [lost, configuration.nodeID]) }
        if let node = holders.first { return "has a session on \(node)" }
        return nil
    }

    /// Sends the adopted ids' clients to this broker: every load balancer's stick table.
    private func pointHAProxy(at ids: [String]) {
        guard !ids.isEmpty, !runtimes.isEmpty else { return }
        let keys = ids.compactMap { HAProxyRuntime.escapedKey($0) }
        for runtime in runtimes {
            DispatchQueue.global().async { [self] in
                guard let sid = serverID(runtime) else { return }
                let lines = keys.flatMap { runtime.moveCommands(key: $0, serverID: sid) }
                do {
                    let errors = try runtime.run(lines)
                    if !errors.isEmpty { runtimeFailed(runtime, what: "move", reason: "\(errors.count) refused, e.g. \(errors[0])", count: errors.count) }
                } catch {
                    runtimeFailed(runtime, what: "move", reason: "\(error)", count: keys.count)
                }
            }
        }
    }

    // MARK: after a return

    /// Ends the local sessions another node adopted from this one after their last connect here.
    private func releaseWhatWasAdoptedElsewhere() {
        let candidates = state.withLock { $0.releaseCandidates }
        guard !candidates.isEmpty else { return }
        let local = interest.withTable { table, _ in
            candidates.compactMap { id, _ -> (String, Bool)? in table.sessions[id].map { (id, $0.online) } }
        }
        var done: [String] = []
        for (id, online) in local where !online {
            let info = candidates[id]!
            if let since = takeover.localConnectedAt(id), since > info.time { continue }
            takeover.release(id, adoptedBy: info.node, at: info.time)
            done.append(id)
        }
        let present = Set(local.map(\.0))
        state.withLock { s in
            for id in done { s.releaseCandidates[id] = nil }
            // No session here (any more): nothing to release.
            for id in candidates.keys where !present.contains(id) { s.releaseCandidates[id] = nil }
        }
    }

    private func forgetEndedAdoptions() {
        let ids = state.withLock { Array($0.adopted.keys) }
        guard !ids.isEmpty else { return }
        let gone = interest.withTable { table, _ in ids.filter { table.sessions[$0] == nil } }
        guard !gone.isEmpty else { return }
        state.withLock { s in
            for id in gone { s.adopted[id] = nil }
            s.adoptedDirty = true
            s.adoptionsDirty = true
        }
    }

    private func saveIfNeeded() {
        guard let path = stateFile else { return }
        let snapshot = state.withLock { s -> [String: SharedSession.Adoption]? in
            guard s.adoptedDirty else { return nil }
            s.adoptedDirty = false
            return s.adopted
        }
        guard let snapshot, let data = try? JSONEncoder().encode(snapshot) else { return }
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            logger.error("saving adoption records failed", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    // MARK: visibility

    private func publishAdoptionsIfChanged(_ access: Access, now: Double) {
        let payload = state.withLock { s -> [UInt8]? in
            guard s.adoptionsDirty else { return nil }
            s.adoptionsDirty = false
            var w = JSONWriter()
            w.beginObject()
            w.key("node"); w.string(configuration.nodeID)
            w.key("time"); w.int(Int(Self.now()))
            w.key("adopted_sessions"); w.int(s.adopted.count)
            w.key("rounds")
            w.beginObject()
            for node in s.rounds.keys.sorted() {
                let r = s.rounds[node]!
                w.key(node)
                w.beginObject()
                w.key("unreachable_since"); w.int(Int(r.unreachableSince * 1000))
                w.key("lost_at"); w.int(Int(r.lostAt * 1000))
                w.key("adopted"); w.int(r.adopted)
                w.key("skipped"); w.int(r.skipped.count)
                w.key("failed"); w.int(r.failed.count)
                if let t = r.lastAdoption { w.key("last_adoption"); w.int(Int(t)) }
                w.key("finished"); w.bool(r.finished)
                w.endObject()
            }
            w.endObject()
            w.endObject()
            return w.bytes
        }
        guard let payload else { return }
        if !access.publish(ControlTopic.adoptions(node: configuration.nodeID), payload) {
            state.withLock { $0.adoptionsDirty = true }
        }
    }
}
