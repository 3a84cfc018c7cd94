/// The payloads of `$mesh/<node>/view` and `$mesh/<node>/stats`, beside `ControlTopic`: the
/// agent writes them, `inspect`, `local-cluster`, the benchmarks and the tests read them, all
/// through these types. The view is written by Foundation's JSONEncoder (sorted keys) in
/// MeshAgent, which owns Foundation; it is read here with MeshCore's own JSON reader.

/// What one agent knows of the mesh, published retained on `$mesh/<node>/view` of its own
/// broker: any broker then shows the whole mesh to an operator (`inspect`), tests can wait
/// until an interest change has reached a given agent, and peers with discovery learn from
/// it which nodes this one links to (`DiscoveryCodec.decodeView` reads only `advertise` and
/// each peer's endpoint, connected flag and node ids).
public struct MeshView: Codable, Sendable, Equatable {
    public var node: String
    public var seq: UInt64
    public var peers: [PeerView]
    /// When this view was published (seconds since 1970), for "last update" in `inspect`.
    public var time: Double?
    /// Where other brokers reach this node's broker (`--advertise-address`, or `--local` when it
    /// is not loopback); read by discovery. Absent in views of releases before 0.3.
    public var advertise: String?
    /// `ControlFormat` of the payload (absent: format 1, releases up to 0.2.0).
    public var format: Int? = ControlFormat.current
    /// How this node's forwards reach its peers: `prefixed` or `direct` (`--delivery`);
    /// absent in views of releases before direct delivery (all prefixed).
    public var delivery: String?
    /// This node's agent run's origin token (`InterestAdvert.origin`): a peer reading this
    /// view knows it comes from the agent run it holds the token of, not a retained view of
    /// an earlier run. Absent in views of releases before direct delivery.
    public var origin: String?

    public init(node: String, seq: UInt64, peers: [PeerView], time: Double? = nil, advertise: String? = nil) {
        self.node = node
        self.seq = seq
        self.peers = peers
        self.time = time
        self.advertise = advertise
    }

    /// Equal apart from the time stamp: whether a new view needs publishing.
    public func sameContent(as other: MeshView?) -> Bool {
        guard let other else { return false }
        return node == other.node && seq == other.seq && peers == other.peers && advertise == other.advertise && delivery == other.delivery && origin == other.origin
    }
}

public struct PeerView: Codable, Sendable, Equatable {
    public struct Node: Codable, Sendable, Equatable {
        /// Sequence number of the last advert read (nil: restored from disk, not yet read).
        public var seq: UInt64?
        public var filters: Int
        /// The node's origin token as this agent read it from the node's advert: the node's
        /// agent delivers to this one directly only once it sees its current token here.
        public var origin: String?

        public init(seq: UInt64?, filters: Int, origin: String? = nil) {
            self.seq = seq
            self.filters = filters
            self.origin = origin
        }
    }
    public var endpoint: String
    public var connected: Bool
    /// When the link went down (seconds since 1970); nil while it is up (or never was).
    public var downSince: Double?
    /// While the link is down: the nodes whose own link to this peer is up (an asymmetric
    /// partition: this node is cut off from the peer, they are not). Nil when up or none.
    public var reachableVia: [String]?
    public var nodes: [String: Node]
    /// True while this node delivers to the peer directly (`--delivery direct` and the peer's
    /// agent advertises an origin token); absent otherwise.
    public var direct: Bool?

    public init(endpoint: String, connected: Bool, downSince: Double? = nil, reachableVia: [String]? = nil, nodes: [String: Node]) {
        self.endpoint = endpoint
        self.connected = connected
        self.downSince = downSince
        self.reachableVia = reachableVia
        self.nodes = nodes
    }
}

extension ControlTopic {

    /// `$mesh/<viewer>/peers/<node>/<kind>`: what agent `viewer` read from a peer broker,
    /// republished on its own broker. Peers read only `$mesh/+/subscriptions`, which never
    /// matches these deeper topics, so a mirror cannot be mistaken for the node itself.
    public static func mirror(of viewer: String, node: String, kind: Kind) -> String {
        "\(root)/\(viewer)/peers/\(node)/\(kind.rawValue)"
    }
}

extension MeshView {
    /// A view as the agent publishes it: any key order, optional members absent or null.
    /// Nil when the payload is not a view (empty, not JSON, a required member missing or of
    /// the wrong type) — the same payloads Foundation's JSONDecoder refuses for this type.
    public static func decode(_ payload: some Collection<UInt8>) -> MeshView? {
        guard let members = try? ControlPayload.members(payload, maximumBytes: DiscoveryCodec.maximumPayloadBytes) else { return nil }
        let o = JSONObject(members)
        guard let node = o.string("node"), let seq = o.uint64("seq"), case .array(let list)? = o["peers"] else { return nil }
        var peers: [PeerView] = []
        for entry in list {
            guard case .object(let fields) = entry, let peer = PeerView(JSONObject(fields)) else { return nil }
            peers.append(peer)
        }
        var view = MeshView(node: node, seq: seq, peers: peers, time: o.double("time"), advertise: o.string("advertise"))
        view.format = o.int("format")
        view.delivery = o.string("delivery")
        view.origin = o.string("origin")
        return view
    }
}

extension PeerView {
    fileprivate init?(_ o: JSONObject) {
        guard let endpoint = o.string("endpoint"), case .bool(let connected)? = o["connected"],
              case .object(let nodeFields)? = o["nodes"] else { return nil }
        var nodes: [String: Node] = [:]
        for (name, value) in nodeFields {
            guard case .object(let fields) = value else { return nil }
            let n = JSONObject(fields)
            guard let filters = n.int("filters") else { return nil }
            nodes[name] = Node(seq: n.uint64("seq"), filters: filters, origin: n.string("origin"))
        }
        var reachableVia: [String]?
        if case .array(let list)? = o["reachableVia"] {
            reachableVia = list.compactMap { if case .string(let s) = $0 { s } else { nil } }
            guard reachableVia!.count == list.count else { return nil }
        }
        self.init(endpoint: endpoint, connected: connected, downSince: o.double("downSince"), reachableVia: reachableVia, nodes: nodes)
        if case .bool(let direct)? = o["direct"] { self.direct = direct }
    }
}

/// `$mesh/<node>/stats`: the agent's counters (`MeshMetrics.snapshot()` plus
/// `peers_connected` and `time`), one flat JSON object of integers, keys sorted.
public enum MeshStatsCodec {
    public static func encode(_ stats: [String: Int]) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        for (key, value) in stats.sorted(by: { $0.key < $1.key }) {
            w.key(key)
            w.int(value)
        }
        w.endObject()
        return w.bytes
    }

    /// The integer members of a stats payload (others are skipped); nil when it is not a JSON object.
    public static func decode(_ payload: some Collection<UInt8>) -> [String: Int]? {
        guard let members = try? ControlPayload.members(payload, maximumBytes: DiscoveryCodec.maximumPayloadBytes) else { return nil }
        let o = JSONObject(members)
        var stats: [String: Int] = [:]
        for (key, _) in members { if let n = o.int(key) { stats[key] = n } }
        return stats
    }
}

/// Typed reads of one JSON object's members (the last of a repeated key wins, as in Foundation).
private struct JSONObject {
    let members: [(key: String, value: JSONValue)]
    init(_ members: [(key: String, value: JSONValue)]) { self.members = members }

    subscript(_ key: String) -> JSONValue? {
        guard let v = members.last(where: { $0.key == key })?.value, v != .null else { return nil }
        return v
    }
    func string(_ key: String) -> String? { if case .string(let s)? = self[key] { s } else { nil } }
    func double(_ key: String) -> Double? { if case .number(let text, _)? = self[key] { Double(text) } else { nil } }
    func int(_ key: String) -> Int? {
        guard case .number(let text, let isInteger)? = self[key] else { return nil }
        return isInteger ? Int(text) : Double(text).flatMap { Int(exactly: $0) }
    }
    func uint64(_ key: String) -> UInt64? {
        guard case .number(let text, let isInteger)? = self[key] else { return nil }
        return isInteger ? UInt64(text) : Double(text).flatMap { UInt64(exactly: $0) }
    }
}
