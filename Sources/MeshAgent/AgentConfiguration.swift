import Foundation
import MeshCore
import Mosquitto

/// A broker address as given on the command line (`host:port`, `[v6]:port`).
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int32

    public init(host: String, port: Int32) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; the error names the bad value.
    public init(parsing text: String) throws(ConfigurationError) {
        var s = Substring(text.trimmingCharacters(in: .whitespaces))
        guard let colon = s.lastIndex(of: ":") else {
            throw ConfigurationError(key: "endpoint", value: text, reason: "expected HOST:PORT")
        }
        var host = s[..<colon]
        let portText = s[s.index(after: colon)...]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { throw ConfigurationError(key: "endpoint", value: text, reason: "empty host") }
        guard let port = Int32(portText), (1...65535).contains(port) else {
            throw ConfigurationError(key: "endpoint", value: text, reason: "port must be 1-65535")
        }
        s = host
        self.host = String(s)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Credentials and TLS for one kind of link.
public struct LinkSecurity: Sendable, Equatable {
    public var username: String?
    public var password: String?
    public var tls: ClientConfiguration.TLS?
    public init(username: String? = nil, password: String? = nil, tls: ClientConfiguration.TLS? = nil) {
        self.username = username
        self.password = password
        self.tls = tls
    }
}

/// A configuration value that is wrong, with enough context to fix it.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    public var key: String
    public var value: String
    public var reason: String
    /// Where it came from (file:line), when it came from a file.
    public var location: String?

    public init(key: String, value: String, reason: String, location: String? = nil) {
        self.key = key
        self.value = value
        self.reason = reason
        self.location = location
    }

    public var description: String {
        let prefix = location.map { "\($0): " } ?? ""
        return "\(prefix)invalid \(key) '\(value)': \(reason)"
    }
}

/// Everything one agent needs to run. Built and validated by the CLI, frozen afterwards.
public struct AgentConfiguration: Sendable {
    public var nodeID: String
    public var local: Endpoint
    public var peers: [Endpoint]
    public var stateDirectory: String?
    public var forwardPrefix: String = "forward/"
    public var localSecurity = LinkSecurity()
    public var peerSecurity = LinkSecurity()
    /// Prefix of every MQTT client id the mesh uses; such clients never count as interest.
    public var clientIDPrefix: String = "mosquitto-mesh/"
    /// Shortest gap between two interest adverts; the first change after a quiet spell
    /// goes out at once, a burst is coalesced into one more advert at the end.
    public var advertInterval: Duration = .milliseconds(20)
    /// Longest gap between two adverts while subscriptions change faster than one per
    /// `advertInterval` (a reconnect storm): the gap doubles up to this, so a storm costs a
    /// handful of snapshots instead of one every `advertInterval`.
    public var advertBurstCeiling: Duration = .milliseconds(200)
    /// How long startup waits for each peer's retained interest before it starts taking
    /// messages from the local broker (messages routed before then could miss a peer).
    public var peerSyncTimeout: Duration = .seconds(5)
    /// QoS 1/2 forwards held for one peer (sent and unacknowledged, or waiting for the link to
    /// come back) beyond which a message for it is dropped and counted: at once while the link
    /// is down, after waiting up to `peerTimeout` while it is up. At most 60 000: libmosquitto
    /// numbers what it holds with 16-bit packet ids.
    public var maxPendingPerPeer: Int = 50_000
    /// The same limit in payload bytes.
    public var maxPendingBytesPerPeer: Int = 64 * 1024 * 1024
    /// Seconds a peer link may receive nothing (its heartbeat, echoed by the peer broker, comes
    /// several times within it) before it is declared down and reconnected: a partition that
    /// silently drops packets is noticed in this time, not after TCP gives up.
    public var peerTimeout: Double = 3
    /// Topic aliases each peer link may set up on its peer broker (further capped by that
    /// broker's `max_topic_alias`, 10 by default); 0 sends every forward with its topic.
    public var topicAliasesPerPeer: Int = 64
    /// How long a graceful stop waits for peers to acknowledge what the agent holds.
    public var drainTimeout: Duration = .seconds(10)
    public var keepalive: Int32 = 30
    public var healthListen: Endpoint?
    public var metricsListen: Endpoint?
    public var statsInterval: Duration = .seconds(10)
    /// Seconds an offline session of unknown lifetime (MQTT 5) is kept when the broker's
    /// session counts cannot prove it gone.
    public var sessionGrace: Double = 86_400
    /// At most this many such sessions are kept (the oldest go first, counted).
    public var maxUncertainSessions: Int = 100_000
    /// Seconds each routed message is kept so that a peer whose advert of a new filter comes
    /// after the message still gets it (the subscribe race, `ReplayBuffer`); also how long a
    /// new filter is announced with its `since`. 0 turns replay off.
    public var replayWindow: Double = 2
    /// A replay starts this long before the moment the peer says its filter appeared: clock
    /// skew between the nodes plus the peer agent's delay in reading its broker's log.
    public var replayMargin: Double = 0.1
    /// Bytes the replay buffer may hold (payloads, topics, properties, bookkeeping); when
    /// full the oldest go first, counted.
    public var replayMaxBytes: Int = 32 * 1024 * 1024
    /// Random per agent run: what numbers forwards on peer links (`PeerLink.sequenceSource`).
    /// Five base-36 characters (26 bits): with the node id it tells this run from the node's
    /// earlier ones; it crosses with every QoS 1/2 forward, so it is kept short.
    public var runID: String = String(UInt32.random(in: 1_679_616...60_466_175), radix: 36)
    /// How a message for a `$share` group with members only on other brokers picks the one
    /// that delivers it.
    public var sharedBalance: SharedBalance = .roundRobin
    /// How a message reaches a peer broker (`--delivery`).
    public var delivery: Delivery = .prefixed
    /// The mark this agent run puts on direct deliveries, and advertises (`InterestAdvert.origin`).
    public var originToken: String = {
        var random = SystemRandomNumberGenerator()
        return OriginToken.make(using: &random)
    }()
    /// swift-log level name; applied by the CLI.
    public var logLevel: String = "info"
    /// Learn the rest of the mesh from the peers' views and the hellos other nodes' links
    /// publish here, and link to every node learned (`Discovery`); the configured peers are
    /// the seeds. Off: exactly the configured peers, as before discovery existed.
    public var discovery: Bool = true
    /// Seconds a discovered node is kept without evidence that it lives (a hello from it, a
    /// link to it that is up, a peer's view listing it connected); then its link closes.
    public var discoveryExpiry: Double = 300
    /// Where other brokers reach the local broker (`host:port`), published in the view and in
    /// every link's hello. Nil: `local` — unless that is a loopback address, which means
    /// nothing on another host; then each link announces the address its own socket uses
    /// towards that peer, with `local`'s port.
    public var advertiseAddress: Endpoint?
    /// Seconds a node's broker must be unreachable (from this agent and, as they report, from
    /// every live agent) before the survivors adopt its persistent sessions; 0: never adopt.
    /// Longer than a broker restart, or a restart's sessions would be adopted and then ended.
    public var adoptAfter: Double = 5
    /// Session expiry interval (s) of an adopted MQTT 5 session: its real one is never in the
    /// broker's log, so it is over-estimated.
    public var adoptedSessionExpiry: UInt32 = 86_400
    /// HAProxy runtime API addresses (`stats socket ipv4@host:port level operator`), one per
    /// load balancer: the agent holds a lost node's clients there until their sessions are
    /// adopted and points their stick-table entries at the adopting broker.
    public var haproxyRuntime: [Endpoint] = []
    /// This broker's `server` name in HAProxy's backend (needed with `haproxyRuntime`).
    public var haproxyServer: String?
    /// The HAProxy backend holding the client-id stick table.
    public var haproxyBackend: String = "mosquitto"

    public init(nodeID: String, local: Endpoint, peers: [Endpoint]) {
        self.nodeID = nodeID
        self.local = local
        self.peers = peers
    }

    /// Rejects what would make the mesh misbehave, naming the value.
    public func validate() throws(ConfigurationError) {
        do { try NodeID.validate(nodeID) } catch {
            throw ConfigurationError(key: "node-id", value: nodeID, reason: error.reason)
        }
        guard !forwardPrefix.isEmpty, forwardPrefix.hasSuffix("/"), !forwardPrefix.hasPrefix("$"),
              !forwardPrefix.contains("+"), !forwardPrefix.contains("#") else {
            throw ConfigurationError(key: "forward-prefix", value: forwardPrefix, reason: "must end in '/', not start with '$', and contain no wildcards")
        }
        var seen = Set<Endpoint>()
        for peer in peers {
            guard seen.insert(peer).inserted else {
                throw ConfigurationError(key: "peer", value: peer.description, reason: "listed twice")
            }
            if peer == local {
                throw ConfigurationError(key: "peer", value: peer.description, reason: "is the local broker")
            }
        }
        if !haproxyRuntime.isEmpty && (haproxyServer ?? "").isEmpty {
            throw ConfigurationError(key: "haproxy-server", value: haproxyServer ?? "",
                                     reason: "needed with haproxy-runtime: this broker's server name in HAProxy's backend")
        }
        for name in [haproxyServer ?? "x", haproxyBackend] where name.isEmpty || name.contains(where: { $0.isWhitespace || $0 == ";" || $0 == "\\" }) {
            throw ConfigurationError(key: name == haproxyBackend ? "haproxy-backend" : "haproxy-server", value: name,
                                     reason: "must be a non-empty HAProxy name without spaces, ';' or '\\'")
        }
        guard maxPendingPerPeer > 0, maxPendingPerPeer <= Self.maximumPendingPerPeer else {
            throw ConfigurationError(key: "max-pending", value: String(maxPendingPerPeer),
                                     reason: "must be 1...\(Self.maximumPendingPerPeer) (libmosquitto numbers held messages with 16-bit packet ids)")
        }
    }

    /// The most QoS 1/2 forwards one peer link can hold with distinct packet ids, with room to spare.
    public static let maximumPendingPerPeer = 60_000

    /// The agent's client id on its local broker (persistent session: keep stable).
    public var localClientID: String { "\(clientIDPrefix)\(nodeID)/local" }
    /// The control plane's connection to the local broker (log, uptime, session counts).
    public var controlClientID: String { "\(clientIDPrefix)\(nodeID)/control" }

    /// A connection of the agent to its own broker: a persistent session that never expires
    /// (while the agent is down the broker queues what it subscribed to), the local
    /// credentials, a quick reconnect.
    func localClientConfiguration(clientID: String) -> ClientConfiguration {
        var cc = ClientConfiguration(clientID: clientID, host: local.host, port: local.port)
        cc.keepalive = keepalive
        cc.cleanStart = false
        cc.sessionExpiry = UInt32.max
        cc.username = localSecurity.username
        cc.password = localSecurity.password
        cc.tls = localSecurity.tls
        cc.reconnectDelay = (1, 2)
        return cc
    }
    /// The connection that reads other nodes' hellos on the local broker (discovery).
    public var discoveryClientID: String { "\(clientIDPrefix)\(nodeID)/discovery" }
    /// The agent's client id on a peer broker.
    public func peerClientID(_ peer: Endpoint) -> String { "\(clientIDPrefix)\(nodeID)/peer/\(peer)" }
}
