import MeshCore

/// What one agent knows of the mesh, published retained on `$mesh/<node>/view` of its own
/// broker: any broker then shows the whole mesh to an operator (`inspect`), and tests can
/// wait until an interest change has reached a given agent. Peers never read it (they
/// read only `$mesh/+/subscriptions`), so it cannot confuse them about whose broker it is.
public struct MeshView: Codable, Sendable, Equatable {
    public var node: String
    public var seq: UInt64
    public var peers: [PeerView]
}

public struct PeerView: Codable, Sendable, Equatable {
    public struct Node: Codable, Sendable, Equatable {
        /// Sequence number of the last advert read (nil: restored from disk, not yet read).
        public var seq: UInt64?
        public var filters: Int
    }
    public var endpoint: String
    public var connected: Bool
    public var nodes: [String: Node]
}

extension ControlTopic {
    /// `$mesh/<node>/view`.
    public static func view(node: String) -> String { "\(root)/\(node)/view" }
}
