import MeshCore

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

    public init(node: String, seq: UInt64, peers: [PeerView], time: Double? = nil, advertise: String? = nil) {
        self.node = node
        self.seq = seq
        self.peers = peers
        self.time = time
        self.advertise = advertise
    }

    /// Equal apart from the time stamp: whether a new view needs publishing.
    func sameContent(as other: MeshView?) -> Bool {
        guard let other else { return false }
        return node == other.node && seq == other.seq && peers == other.peers && advertise == other.advertise
    }
}

public struct PeerView: Codable, Sendable, Equatable {
    public struct Node: Codable, Sendable, Equatable {
        /// Sequence number of the last advert read (nil: restored from disk, not yet read).
        public var seq: UInt64?
        public var filters: Int
    }
    public var endpoint: String
    public var connected: Bool
    /// When the link went down (seconds since 1970); nil while it is up (or never was).
    public var downSince: Double?
    /// While the link is down: the nodes whose own link to this peer is up (an asymmetric
    /// partition: this node is cut off from the peer, they are not). Nil when up or none.
    public var reachableVia: [String]?
    public var nodes: [String: Node]

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
