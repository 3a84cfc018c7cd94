import Foundation
import Logging
import MeshCore
import Mosquitto
import Synchronization

/// Runs `Discovery` for the agent: feeds it the views the peer links read and the hellos
/// read on the local broker, announces this node on every link, and applies the peer set
/// it decides through `MeshAgent.updatePeers` (the SIGHUP path: unchanged links are never
/// touched, removed ones are drained).
///
/// Hellos are read on a connection of their own (clean session, QoS 0): they are small,
/// periodic and worthless once old, so they neither belong in the forwarding session's queue
/// nor behind the log on the control link.
final class DiscoveryService: Sendable {
    /// How often the peer set is recomputed and hellos are due: a joining node is linked
    /// within a few of these.
    static let tick: Duration = .milliseconds(250)

    private let configuration: AgentConfiguration
    private let logger: Logger
    private let links: PeerDirectory
    private let state: Mutex<Discovery>
    /// Per link endpoint: when discovery first saw it, whether it was up at the last tick,
    /// when it last carried a hello.
    private let linkState = Mutex<[Endpoint: LinkState]>([:])
    private let applying = Atomic<Bool>(false)
    private let apply: @Sendable ([Endpoint]) async throws -> Void
    private let helloInterval: Double
    private let rejectThrottle = LogThrottle()
    let client: MQTTClient
    let knownNodes: MeshGauge
    let expired: MeshCounter
    let hellosRejected: MeshCounter

    struct LinkState {
        var since: Double
        var wasConnected = false
        var lastHello: Double = -.infinity
    }

    /// - Parameters:
    ///   - remembered: endpoints the last run had links to (from its saved state): tried again
    ///     as discovered nodes, so a restart whose seeds are all down still finds the mesh.
    ///   - apply: sets the agent's peer links to exactly these endpoints.
    init(configuration: AgentConfiguration, links: PeerDirectory, remembered: [String: [String: [String: Int]]], logger: Logger,
         apply: @escaping @Sendable ([Endpoint]) async throws -> Void) throws(MosquittoError) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "part"] = "discovery"
        self.logger = logger
        self.links = links
        self.apply = apply
        helloInterval = min(10, max(0.5, configuration.discoveryExpiry / 3))
        var discovery = Discovery(ownNode: configuration.nodeID, seeds: configuration.peers.map(\.description),
                                  expiry: configuration.discoveryExpiry, identifyGrace: Double(configuration.peerSyncTimeout.components.seconds) + 1,
                                  ownEndpoints: Set([configuration.local.description] + [configuration.advertiseAddress?.description].compactMap { $0 }))
        let now = Self.now()
        for (endpoint, nodes) in remembered where nodes.count == 1 && !configuration.peers.contains(where: { $0.description == endpoint }) {
            // Remembered, not configured: a candidate like any other, forgotten after the expiry
            // unless it shows signs of life.
            discovery.remember(node: nodes.keys.first!, at: endpoint, now: now)
        }
        state = Mutex(discovery)
        knownNodes = MeshGauge("mesh_discovery_nodes", help: "Nodes discovery knows besides the configured peers (learned from views, hellos or the saved state).")
        expired = MeshCounter("mesh_discovery_expired_total", help: "Discovered nodes forgotten after --discovery-expiry without a sign of life (their links closed).")
        hellosRejected = MeshCounter("mesh_discovery_payloads_rejected_total", help: "Views and hellos discovery could not read (format, node or shape); nothing learned from them.")

        var cc = ClientConfiguration(clientID: configuration.discoveryClientID, host: configuration.local.host, port: configuration.local.port)
        cc.keepalive = configuration.keepalive
        cc.cleanStart = true
        cc.username = configuration.localSecurity.username
        cc.password = configuration.localSecurity.password
        cc.tls = configuration.localSecurity.tls
        cc.reconnectDelay = (1, 2)
        let box = WeakBox<DiscoveryService>()
        var events = ClientEvents()
        events.connected = { rc, _ in box.value?.connected(rc) }
        events.message = { m in box.value?.message(m) }
        events.libraryLog = LogThrottle.libraryLog(logger, link: "discovery link")
        client = try MQTTClient(configuration: cc, events: events)
        box.value = self
    }

    private static func now() -> Double { monotonicSeconds() }

    // MARK: input

    private func connected(_ rc: Int32) {
        guard rc == 0 else { return }
        _ = try? client.subscribe("\(ControlTopic.root)/+/\(ControlTopic.Kind.hello.rawValue)", qos: 0)
    }

    private func message(_ m: ReceivedMessage) {
        guard let (node, kind) = ControlTopic.parse(m.topic), kind == .hello, node != configuration.nodeID else { return }
        do {
            let hello = try DiscoveryCodec.decodeHello(m.payload, expectedNode: node)
            state.withLock { $0.observe(hello, at: Self.now()) }
        } catch {
            rejected(m.topic, error)
        }
    }

    /// A view read by the link to `endpoint` (`PeerLink`'s control input).
    func observeView(via endpoint: Endpoint, node: String, payload: UnsafeRawBufferPointer) -> Bool {
        do {
            let view = try DiscoveryCodec.decodeView(payload, expectedNode: node)
            state.withLock { $0.observe(view, via: endpoint.description) }
            return true
        } catch {
            rejected(ControlTopic.view(node: node), error)
            return false
        }
    }

    private func rejected(_ topic: String, _ error: AdvertDecodeError) {
        hellosRejected.increment()
        rejectThrottle.log(.warning, to: logger, "discovery: payload not usable, nothing learned from it", metadata: ["topic": "\(topic)", "reason": "\(error.reason)"])
    }

    /// A new seed list (SIGHUP).
    func setSeeds(_ seeds: [Endpoint]) {
        let current = currentLinks(now: Self.now()).map(\.0)
        state.withLock { $0.setSeeds(seeds.map(\.description), links: current) }
    }

    // MARK: loop

    func start() { client.startInBackground(logger: logger, link: "discovery link") }

    /// Until cancelled: every `tick`, recompute and apply the peer set, and send hellos.
    func run() async {
        while !Task.isCancelled {
            step()
            try? await Task.sleep(for: Self.tick)
        }
    }

    private func currentLinks(now: Double) -> [(Discovery.Link, PeerLink)] {
        let peers = links.links.withLock { $0.values.sorted { $0.index < $1.index } }
        return linkState.withLock { states in
            for key in states.keys where !peers.contains(where: { $0.endpoint == key }) { states[key] = nil }
            return peers.map { peer in
                let since = states[peer.endpoint, default: LinkState(since: now)].since
                states[peer.endpoint, default: LinkState(since: now)].since = since
                let known = peer.knownNodes.keys
                return (Discovery.Link(endpoint: peer.endpoint.description, connected: peer.isConnected,
                                       knownNode: known.count == 1 ? known.first : nil, since: since), peer)
            }
        }
    }

    func step() {
        let now = Self.now()
        let current = currentLinks(now: now)
        let (decision, count) = state.withLock { d in (d.tick(links: current.map(\.0), now: now), d.knownNodes.count) }
        knownNodes.set(count)
        for (endpoint, node) in decision.added {
            logger.notice("discovered a node: linking to it", metadata: ["node": "\(node)", "endpoint": "\(endpoint)"])
        }
        for node in decision.expired {
            expired.increment()
            logger.notice("discovered node forgotten: no sign of life within the discovery expiry", metadata: ["node": "\(node)", "expiry_seconds": "\(configuration.discoveryExpiry)"])
        }
        for (endpoint, node) in decision.duplicates {
            logger.warning(node == configuration.nodeID ? "a discovered endpoint is this node's own broker: dropping the link"
                                                        : "two links lead to one node: dropping the discovered one",
                           metadata: ["node": "\(node)", "endpoint": "\(endpoint)"])
        }
        let wanted = decision.peers.compactMap { try? Endpoint(parsing: $0) }
        if Set(wanted) != Set(current.map(\.1.endpoint)), !applying.exchange(true, ordering: .acquiring) {
            let apply = apply
            let logger = logger
            Task {
                do { try await apply(wanted) } catch {
                    logger.error("discovery: could not apply the peer set", metadata: ["error": "\(error)", "peers": "\(wanted.map(\.description))"])
                }
                self.applying.store(false, ordering: .releasing)
            }
        }
        sendHellos(current.map(\.1), now: now)
    }

    /// On each link that is up: a hello when it has just come up, then every `helloInterval`.
    private func sendHellos(_ peers: [PeerLink], now: Double) {
        let topic = ControlTopic.hello(node: configuration.nodeID)
        for peer in peers {
            let connected = peer.isConnected
            let due = linkState.withLock { states -> Bool in
                guard var s = states[peer.endpoint] else { return false }
                defer { states[peer.endpoint] = s }
                let due = connected && (!s.wasConnected || now - s.lastHello >= helloInterval)
                s.wasConnected = connected
                if due { s.lastHello = now }
                return due
            }
            guard due else { continue }
            let hello = DiscoveryHello(node: configuration.nodeID, advertise: advertise(on: peer))
            _ = try? peer.client.publish(topic: topic, payload: DiscoveryCodec.encode(hello), qos: 0, retain: false)
        }
    }

    /// Where the peer behind `link` should reach this node's broker.
    func advertise(on link: PeerLink) -> String? {
        if let a = configuration.advertiseAddress { return a.description }
        guard Self.isLoopback(configuration.local.host) else { return configuration.local.description }
        guard let host = link.client.socketLocalHost else { return nil }
        return Endpoint(host: host, port: configuration.local.port).description
    }

    /// What the view says about where this node is reached: only an address that means the
    /// same on every host.
    var viewAdvertise: String? {
        if let a = configuration.advertiseAddress { return a.description }
        return Self.isLoopback(configuration.local.host) ? nil : configuration.local.description
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.") || host == "0:0:0:0:0:0:0:1"
    }

    func close() async { await client.closeAsync() }
}
