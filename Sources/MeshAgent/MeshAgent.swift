import Foundation
import Logging
import MeshCore
import Mosquitto
import ServiceLifecycle
import Synchronization

/// One mosquitto-mesh agent: the links to its own broker and to every peer broker, the
/// node's interest, and the advert/state loop. A `Service`: `run()` returns after a
/// graceful shutdown has drained what the agent holds.
public final class MeshAgent: Service, Sendable {
    /// The configuration the agent started with; the peer set can change (`updatePeers`).
    public let configuration: AgentConfiguration
    public let metrics: MeshMetrics
    private let logger: Logger
    private let saver: StateSaver?
    private let interest: NodeInterest
    private let routing: RoutingTable
    private let peerLinks = PeerDirectory()
    private let nextPeerIndex = Atomic<Int>(0)
    private let savedPeerInterest: [String: [String: [String: Int]]]
    private let signal: @Sendable () -> Void
    private let localLink: LocalLink
    private let controlLink: ControlLink
    private let changes: AsyncStream<Void>
    private let changesContinuation: AsyncStream<Void>.Continuation
    private let stopping = Atomic<Bool>(false)
    /// Opens once `run` has started the links (see `waitUntilLinksStarted`).
    private let linksStarted = Gate()
    private let lastView = Mutex<MeshView?>(nil)
    /// Lets the state saver's snapshot closure reach the agent once it exists.
    private let agentBox = WeakBox<MeshAgent>()
    /// One client id, one connection, across the mesh.
    private let takeover: TakeoverService
    /// Links to every node learned from the peers (nil with `--discovery off`).
    private let discovery: DiscoveryService?
    /// Persistent sessions shared with the peers, and adopted from a lost node.
    private let directory: SessionDirectoryService
    private let adoption: AdoptionService

    public init(configuration: AgentConfiguration, logger: Logger) throws {
        try configuration.validate()
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.nodeID)"
        self.logger = logger
        metrics = MeshMetrics()

        var restored: PersistedState?
        var store: StateStore?
        if let dir = configuration.stateDirectory {
            store = try StateStore(directory: dir)
            restored = try store!.load()
            if let r = restored, r.nodeID != configuration.nodeID {
                throw ConfigurationError(key: "node-id", value: configuration.nodeID,
                                         reason: "state directory \(dir) belongs to node '\(r.nodeID)'; use another --state-dir")
            }
        }
        let table = restored?.sessions ?? SessionTable(excludedClientIDPrefix: configuration.clientIDPrefix)
        let takeoverBox = WeakBox<TakeoverService>()
        let directoryBox = WeakBox<SessionDirectoryService>()
        interest = NodeInterest(table: table, seq: restored?.seq ?? 0, metrics: metrics, logger: logger,
                                grace: configuration.sessionGrace, uncertainLimit: configuration.maxUncertainSessions,
                                appearanceHorizon: configuration.replayWindow,
                                onEvent: { event, line in
                                    takeoverBox.value?.observeLocal(event, line: line)
                                    directoryBox.value?.observe(event)
                                })
        takeover = TakeoverService(configuration: configuration, interest: interest, metrics: metrics, logger: logger)
        takeoverBox.value = takeover
        adoption = AdoptionService(configuration: configuration, interest: interest, takeover: takeover, metrics: metrics, logger: logger)
        let adopter = adoption
        let sharer = SessionDirectoryService(node: configuration.nodeID, interest: interest, metrics: metrics, logger: logger,
                                             adoption: { adopter.adoption(of: $0) })
        directory = sharer
        adopter.directory.withLock { $0 = sharer }
        directoryBox.value = sharer
        let linesMayBeLost = restored?.linesMayBeLost(now: Date().timeIntervalSince1970, lineLifetime: ControlLink.lineLifetime) ?? false
        if let r = restored {
            logger.info("state restored", metadata: ["sessions": "\(r.sessions.sessions.count)", "filters": "\(r.sessions.interest.count)", "seq": "\(r.seq)"])
        }
        routing = RoutingTable(forwardPrefix: configuration.forwardPrefix, sharedBalance: configuration.sharedBalance)
        // A group with members here gets every message published here from this broker: the
        // router must not add another copy — and must know at once when the last one leaves.
        interest.onSharedMembersChange { [routing] members in routing.setLocalInterest(members) }
        (changes, changesContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let continuation = changesContinuation
        signal = { continuation.yield() }
        savedPeerInterest = restored?.peerInterest ?? [:]
        let links = peerLinks
        let interest = interest
        let takeover = takeover
        let directory = directory
        let adoption = adoption
        localLink = try LocalLink(configuration: configuration, routing: routing, metrics: metrics, logger: logger,
                                  onInterestChange: signal,
                                  onConnected: { [signal, takeover] in
                                      // The broker may have lost retained messages: republish the advert, presence and mirrors.
                                      interest.markDirty()
                                      takeover.markPresenceDirty()
                                      directory.markRepublish()
                                      adoption.markRepublish()
                                      for link in links.links.withLock({ Array($0.values) }) { link.republishMirrors() }
                                      signal()
                                  })
        let forwarding = localLink
        controlLink = try ControlLink(configuration: configuration, interest: interest, metrics: metrics,
                                      brokerStartedAt: restored?.brokerStartedAt, linesMayBeLost: linesMayBeLost, logger: logger,
                                      onInterestChange: signal,
                                      onBrokerRestartVerdict: { forwarding.brokerRestartVerdict($0) })
        if let store {
            let metrics = metrics
            let failureLogger = logger
            saver = StateSaver(store: store, snapshot: { [agentBox] in
                agentBox.value?.encodedState(cleanStop: false)
            }, onFailure: { error in
                metrics.stateSaveFailures.increment()
                failureLogger.error("saving state failed", metadata: ["error": "\(error)"])
            })
        } else {
            saver = nil
        }
        discovery = configuration.discovery
            ? try DiscoveryService(configuration: configuration, links: peerLinks, remembered: savedPeerInterest, logger: logger,
                                   apply: { [agentBox] peers in try await agentBox.value?.updatePeers(peers) })
            : nil
        for endpoint in configuration.peers {
            let link = try makePeerLink(endpoint)
            peerLinks.links.withLock { $0[endpoint] = link }
        }
        agentBox.value = self
    }

    private func makePeerLink(_ endpoint: Endpoint) throws(MosquittoError) -> PeerLink {
        try PeerLink(index: nextPeerIndex.add(1, ordering: .relaxed).oldValue, endpoint: endpoint,
                     configuration: configuration, routing: routing, metrics: metrics.peer(endpoint.description),
                     initialNodes: savedPeerInterest[endpoint.description] ?? [:], logger: logger,
                     onInterestChange: signal,
                     mirror: { [localLink] topic, payload in
                         // Not connected: `republishMirrors` sends the current state on connect.
                         guard localLink.client.isConnected else { return }
                         localLink.publishControl(topic: topic, payload: payload, retain: true)
                     },
                     onClients: { [takeover, discovery, adoption] kind, node, payload, metrics in
                         switch kind {
                         case .view: return discovery?.observeView(via: endpoint, node: node, payload: payload) ?? false
                         case .connected: return takeover.handleAnnouncement(node: node, payload: payload, peerMetrics: metrics)
                         case .presence: return takeover.handlePresence(node: node, payload: payload, peerMetrics: metrics)
                         case .reach: return adoption.handleReach(node: node, payload: payload, peerMetrics: metrics)
                         default: return false
                         }
                     },
                     onSessionShard: { [adoption] node, shard, payload, metrics in
                         adoption.handleShard(node: node, shard: shard, payload: payload, peerMetrics: metrics)
                     })
    }

    /// The current peer links, in the order they were added.
    private var peers: [PeerLink] { peerLinks.links.withLock { $0.values.sorted { $0.index < $1.index } } }

    /// Applies a new peer set (SIGHUP): new peers are connected and synchronised, removed
    /// peers stop receiving at once and are drained (bounded) before their link closes.
    /// Links to peers in both sets are untouched, so nothing in flight to them is disturbed.
    public func updatePeers(_ endpoints: [Endpoint]) async throws {
        var check = configuration
        check.peers = endpoints
        try check.validate()
        let wanted = Set(endpoints)
        let (added, removed): ([PeerLink], [PeerLink]) = try peerLinks.links.withLock { links throws(MosquittoError) in
            var added: [PeerLink] = []
            for e in endpoints where links[e] == nil {
                let link = try makePeerLink(e)
                links[e] = link
                added.append(link)
            }
            let removed = links.filter { !wanted.contains($0.key) }.map(\.value)
            for r in removed { links[r.endpoint] = nil }
            return (added, removed)
        }
        for link in removed {
            routing.remove(link)
            link.clearMirrors()
        }
        for link in added { link.start() }
        if !added.isEmpty || !removed.isEmpty {
            logger.notice("peer set changed", metadata: ["added": "\(added.map(\.endpoint.description))", "removed": "\(removed.map(\.endpoint.description))"])
        }
        for link in removed {
            if !(await link.client.waitForOutstandingPublishes(timeout: configuration.drainTimeout)) {
                logger.error("removed peer did not acknowledge everything before the drain timeout", metadata: ["peer": "\(link.endpoint)", "unacknowledged": "\(link.client.outstandingPublishes)"])
            }
            await link.close()
        }
        signal()
    }

    /// A new list of configured peers (SIGHUP). With discovery they are its seeds and the
    /// discovered links stay; without, they are the peer set.
    public func updateSeeds(_ endpoints: [Endpoint]) async throws {
        guard let discovery else { return try await updatePeers(endpoints) }
        var check = configuration
        check.peers = endpoints
        try check.validate()
        discovery.setSeeds(endpoints)
        discovery.step()
    }

    /// The agent-check answer for HAProxy: whether clients should be sent to this broker.
    public var health: HealthState {
        if stopping.load(ordering: .relaxed) { return .down }
        guard localLink.client.isConnected else { return .drain }
        // With two or more peers, losing all of them means this node is cut off; with one
        // peer we cannot tell our partition from the peer's death, so stay up.
        if peers.count >= 2 && !peers.contains(where: { $0.isConnected }) { return .drain }
        return .up
    }

    /// Returns once `run` has started every link (the health endpoint opens then, as it
    /// always has: an agent-check port that is still closed is ignored by HAProxy), or
    /// when the waiting task is cancelled.
    public func waitUntilLinksStarted() async { await linksStarted.wait() }

    public var connectedPeers: Int { peers.filter(\.isConnected).count }

    public func run() async throws {
        logger.info("starting", metadata: ["local": "\(configuration.local)", "peers": "\(configuration.peers.map(\.description))"])
        // Mark the state as "running" at once: if this run dies before its next save, the next
        // one knows its table may miss lines, rather than take it for a clean stop or a first start.
        saver?.saveNow(encodedState(cleanStop: false))
        for peer in peers { peer.start() }
        await waitForPeerSync()
        controlLink.start()
        // The forwarding link connects once the log is being read (bounded wait), so that its
        // session is known to the session counts census relies on.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(5))
        while !controlLink.isReadingLog && clock.now < deadline && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(5))
        }
        // The local broker's shared groups as restored, before the first message is routed.
        routing.setLocalInterest(interest.sharedFilters)
        localLink.start()
        // After the forwarding link: every connection of the agent's is in the log being read.
        discovery?.start()

        linksStarted.open()

        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.advertLoop() }
            group.addTask { await self.statsLoop() }
            if let discovery { group.addTask { await discovery.run() } }
            group.addTask { [localLink, takeover, configuration] in
                await takeover.announceLoop { payload in
                    // QoS 1: held by libmosquitto while the link is down, sent after the reconnect.
                    localLink.publishControl(topic: ControlTopic.connected(node: configuration.nodeID), payload: payload, retain: false)
                }
            }
            group.addTask { [localLink, controlLink, takeover] in
                let control = controlLink.client
                await takeover.takeoverLoop(.init(
                    localLinkUp: { localLink.client.isConnected },
                    subscribe: { (try? control.subscribe($0, qos: 0)) != nil },
                    unsubscribe: { _ = try? control.unsubscribe($0) }))
            }
            group.addTask { [localLink, takeover, configuration] in
                await takeover.presenceLoop { payload in
                    guard localLink.client.isConnected else { return false }
                    localLink.publishControl(topic: ControlTopic.presence(node: configuration.nodeID), payload: payload, retain: true)
                    return true
                }
            }
            group.addTask { [localLink, directory] in
                await directory.publishLoop { topic, payload in
                    guard localLink.client.isConnected else { return false }
                    localLink.publishControl(topic: topic, payload: payload, retain: true)
                    return true
                }
            }
            group.addTask { [localLink, controlLink, adoption, peerLinks] in
                let control = controlLink.client
                await adoption.loop(.init(
                    peers: {
                        peerLinks.links.withLock { Array($0.values) }.map { link in
                            let view = link.view
                            return AdoptionService.PeerState(endpoint: view.endpoint, nodes: Array(view.nodes.keys), up: view.connected, downSince: view.downSince)
                        }
                    },
                    control: .init(
                        localLinkUp: { localLink.client.isConnected },
                        subscribe: { (try? control.subscribe($0, qos: 0)) != nil },
                        unsubscribe: { _ = try? control.unsubscribe($0) }),
                    publish: { topic, payload in
                        guard localLink.client.isConnected else { return false }
                        localLink.publishControl(topic: topic, payload: payload, retain: true)
                        return true
                    }))
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        await drainAndStop()
    }

    /// Startup gate: messages taken from the local broker before a peer's interest is
    /// known could be routed past that peer.
    private func waitForPeerSync() async {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: configuration.peerSyncTimeout)
        while !peers.allSatisfy(\.hasSynced) && clock.now < deadline && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(5))
        }
        let missing = peers.filter { !$0.hasSynced }.map(\.endpoint.description)
        if !missing.isEmpty {
            logger.warning("starting without the current interest of some peers (using what was last saved)", metadata: ["peers": "\(missing)"])
        }
    }

    /// Publishes the advert and saves state when something changed: the first change after
    /// a quiet spell goes out at once; while changes keep coming the gap between adverts
    /// grows from `advertInterval` to `advertBurstCeiling` while they come faster than one per
    /// `advertInterval` (`AdvertPacer`).
    private func advertLoop() async {
        var pacer = AdvertPacer(base: configuration.advertInterval, ceiling: configuration.advertBurstCeiling)
        var gap = pacer.interval
        for await _ in changes {
            if Task.isCancelled { break }
            publishAdvertIfNeeded()
            publishViewIfChanged()
            saver?.requestSave()
            let before = interest.changeCount
            try? await Task.sleep(for: gap)
            gap = pacer.next(changesWhileWaiting: Int(clamping: interest.changeCount &- before))
        }
    }

    private func publishAdvertIfNeeded() {
        guard localLink.client.isConnected, let advert = interest.takeAdvert(node: configuration.nodeID, origin: configuration.originToken) else { return }
        localLink.publishControl(topic: ControlTopic.subscriptions(node: configuration.nodeID), payload: InterestAdvertCodec.encode(advert), retain: true)
        metrics.advertsPublished.increment()
    }

    private func publishViewIfChanged() {
        guard localLink.client.isConnected else { return }
        var view = MeshView(node: configuration.nodeID, seq: interest.snapshot.seq, peers: peers.map(\.view),
                            time: Date().timeIntervalSince1970, advertise: discovery?.viewAdvertise)
        view.delivery = configuration.delivery.rawValue
        view.origin = configuration.originToken
        let changed = lastView.withLock { last in
            if view.sameContent(as: last) { return false }
            last = view
            return true
        }
        guard changed, let data = try? JSONEncoder.sorted.encode(view) else { return }
        localLink.publishControl(topic: ControlTopic.view(node: configuration.nodeID), payload: Array(data), retain: true)
    }

    /// Every second: peer queue gauges and the view (link states change without adverts);
    /// every `statsInterval`: the retained stats summary.
    private func statsLoop() async {
        let clock = ContinuousClock()
        var nextStats = clock.now
        var nextPrune = clock.now
        while !Task.isCancelled {
            for peer in peers { peer.checkBacklog(maxMessages: configuration.maxPendingPerPeer, maxBytes: configuration.maxPendingBytesPerPeer) }
            checkAsymmetricPartitions()
            // Every second: what the time-bounded tables hold (peers' recent connects: 10 s
            // of every connect in the mesh) stays within a second of their horizon, so their
            // size, and the capacity they keep, follows the connect rate closely.
            takeover.prune()
            metrics.heapInUse.set(ProcessMemory.heapUsage().inUseBytes)
            if clock.now >= nextPrune {
                nextPrune = clock.now.advanced(by: .seconds(5))
                // Time-bounded structures (remote connects, clean-start marks) rise and fall
                // with the connect rate; what they freed goes back to the system.
                metrics.trimMicroseconds.set(Int(ProcessMemory.returnFreePages() * 1e6))
            }
            publishViewIfChanged()
            if clock.now >= nextStats && localLink.client.isConnected {
                nextStats = clock.now.advanced(by: configuration.statsInterval)
                var summary = metrics.snapshot()
                summary["peers_connected"] = connectedPeers
                summary["time"] = Int(Date().timeIntervalSince1970)
                localLink.publishControl(topic: ControlTopic.stats(node: configuration.nodeID), payload: MeshStatsCodec.encode(summary), retain: true)
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// A peer this node cannot reach while another node reports its own link to it up: an
    /// asymmetric partition. Reported (view, gauge, one warning per change), not relayed:
    /// see docs/failover.md for why.
    private func checkAsymmetricPartitions() {
        let links = peers
        for peer in links {
            let via = peer.isConnected ? [] : Array(Set(links.flatMap { $0.nodesReaching(peer.endpoint.description) })).sorted()
            let before = peer.reachableVia.withLock { old in defer { old = via }; return old }
            peer.metrics.asymmetric.set(via.isEmpty ? 0 : 1)
            if via != before {
                if via.isEmpty {
                    if !before.isEmpty { logger.notice("asymmetric partition over", metadata: ["peer": "\(peer.endpoint)", "connected": "\(peer.isConnected)"]) }
                } else {
                    logger.warning("asymmetric partition: this node cannot reach the peer, other nodes can; messages for it are held (bounded) until the link is back",
                                   metadata: ["peer": "\(peer.endpoint)", "reachable_via": "\(via)"])
                }
            }
        }
    }

    /// What the agent remembers across restarts, as of now, encoded. The session table is
    /// encoded under its lock: a snapshot would make the next log line copy the whole table.
    private func encodedState(cleanStop: Bool) -> [UInt8] {
        var peerInterest: [String: [String: [String: Int]]] = [:]
        for peer in peers { peerInterest[peer.endpoint.description] = peer.knownNodes }
        let header = PersistedState(nodeID: configuration.nodeID, seq: 0, sessions: SessionTable(), peerInterest: peerInterest,
                                    brokerStartedAt: controlLink.brokerStartedAt, savedAt: Date().timeIntervalSince1970, cleanStop: cleanStop)
        return interest.withTable { table, seq in header.encodedJSON(sessions: table, seq: seq) }
    }

    /// Graceful stop: stop taking messages (the broker keeps queuing for our persistent
    /// session), let every peer acknowledge what we already took, then leave.
    ///
    /// The whole stop is bounded by one deadline, `drainTimeout` (10 s, below systemd's
    /// `TimeoutStopSec=30s`): local links, then every peer at once.
    private func drainAndStop() async {
        stopping.store(true, ordering: .relaxed)
        takeover.finish()
        await discovery?.close()
        adoption.finish()
        logger.info("stopping: draining")
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: configuration.drainTimeout)
        // Anything an interest change left unpublished goes out before we leave.
        publishAdvertIfNeeded()
        localLink.publishControl(topic: ControlTopic.status(node: configuration.nodeID), payload: Array("offline".utf8), retain: true)
        // Let the local broker acknowledge the status and what was republished (bounded): an
        // acknowledgement still unread at the DISCONNECT would read like a lost message.
        _ = await localLink.client.waitForOutstandingPublishes(timeout: .seconds(1))
        // DISCONNECT goes out behind the status and every republish already handed to
        // libmosquitto, so the broker takes those first; from then on it queues new
        // messages for our persistent session instead of sending them.
        localLink.client.disconnect()
        while localLink.client.isConnected && clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        let localLeft = localLink.client.outstandingPublishes
        await localLink.client.closeAsync()
        // The log connection stops last among the local ones: every line it took is applied.
        await controlLink.close()
        // Saved before waiting on peers: a stop that systemd cuts short keeps the table.
        saver?.saveFinal(encodedState(cleanStop: true))
        // Every peer drains at once, against one deadline: a dead peer costs the stop the
        // deadline once, not once per peer.
        let links = peers
        let undelivered = await withTaskGroup(of: Int.self) { group in
            for peer in links {
                group.addTask { [logger] in
                    // A peer that is down cannot acknowledge: waiting for it only delays the stop.
                    while peer.client.outstandingPublishes > 0 && peer.isConnected && clock.now < deadline {
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                    let left = peer.client.outstandingPublishes
                    guard left > 0 else { return 0 }
                    logger.error("peer did not acknowledge everything before the drain deadline", metadata: ["peer": "\(peer.endpoint)", "unacknowledged": "\(left)", "connected": "\(peer.isConnected)"])
                    return left
                }
            }
            return await group.reduce(0, +)
        }
        // Closed at once too: each close joins its loop thread, up to ~5 s for one stuck in
        // a connect, which in turn would add up past systemd's stop timeout.
        await withTaskGroup(of: Void.self) { group in
            for peer in links { group.addTask { await peer.close() } }
        }
        changesContinuation.finish()
        // Forwards a peer never acknowledged may be lost; local publishes written before the
        // DISCONNECT were taken by the broker (only their acknowledgement went unread).
        logger.info("stopped", metadata: ["unacknowledged_at_exit": "\(undelivered)", "local_written_unacknowledged": "\(localLeft)"])
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}

/// The current peer links by endpoint; a class so closures can share it.
final class PeerDirectory: Sendable {
    let links = Mutex<[Endpoint: PeerLink]>([:])
}
