/// Why a node id was refused.
public struct NodeIDError: Error, Equatable, Sendable {
    public let id: String
    public let reason: String
}

/// Node ids name a broker+agent pair and become one topic level of the
/// control topics, so they must be a single, printable, wildcard-free level.
public enum NodeID {
    public static let maximumLengthInBytes = 64

    /// Non-empty, ≤64 UTF-8 bytes, no `/`, `+`, `#`, NUL, whitespace or control characters.
    public static func validate(_ id: String) throws(NodeIDError) {
        if id.isEmpty { throw NodeIDError(id: id, reason: "empty") }
        if id.utf8.count > maximumLengthInBytes {
            throw NodeIDError(id: id, reason: "longer than \(maximumLengthInBytes) UTF-8 bytes (\(id.utf8.count))")
        }
        for scalar in id.unicodeScalars {
            switch scalar {
            case "/", "+", "#":
                throw NodeIDError(id: id, reason: "contains '\(scalar)', which cannot appear in one topic level")
            case "\0":
                throw NodeIDError(id: id, reason: "contains NUL")
            default:
                if scalar.properties.isWhitespace {
                    throw NodeIDError(id: id, reason: "contains whitespace U+\(hex(scalar))")
                }
                switch scalar.properties.generalCategory {
                case .control, .format, .lineSeparator, .paragraphSeparator, .unassigned, .surrogate, .privateUse:
                    throw NodeIDError(id: id, reason: "contains control or invisible character U+\(hex(scalar))")
                default:
                    break
                }
            }
        }
    }

    /// True if `validate` would accept `id`.
    public static func isValid(_ id: String) -> Bool {
        (try? validate(id)) != nil
    }

    private static func hex(_ scalar: Unicode.Scalar) -> String {
        let digits = String(scalar.value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

/// The mesh's own topics on each broker: `$mesh/<node>/<kind>`.
///
/// They live under `$` so that ordinary `#` subscribers (and the agents' own
/// `#` forwarding subscription) never see them.
public enum ControlTopic {
    public static let root = "$mesh"

    /// Retained interest advert of `node` (see `InterestAdvertCodec`).
    public static func subscriptions(node: String) -> String { "\(root)/\(node)/subscriptions" }
    /// Liveness of `node` (e.g. its will message).
    public static func status(node: String) -> String { "\(root)/\(node)/status" }
    /// What `node`'s agent knows of the mesh (its peer links and what they read), retained.
    public static func view(node: String) -> String { "\(root)/\(node)/view" }
    /// Periodic counters of `node`.
    public static func stats(node: String) -> String { "\(root)/\(node)/stats" }
    /// Where `node`'s peer links publish (QoS 0, on each peer broker) and read back their
    /// heartbeat: hearing it proves the link carries traffic both ways.
    public static func heartbeat(node: String) -> String { "\(root)/\(node)/heartbeat" }
    /// Client connects on `node`'s broker, announced non-retained (see `ConnectAnnouncement`).
    public static func connected(node: String) -> String { "\(root)/\(node)/connected" }
    /// The clients connected on `node`'s broker, retained (see `PresenceSnapshot`).
    public static func presence(node: String) -> String { "\(root)/\(node)/presence" }

    /// Which peer brokers `node`'s agent cannot reach, retained (see `ReachReport`).
    public static func reach(node: String) -> String { "\(root)/\(node)/reach" }
    /// What `node`'s agent adopted from lost nodes, retained (for operators and `inspect`).
    public static func adoptions(node: String) -> String { "\(root)/\(node)/adoptions" }

    public enum Kind: String, Sendable, CaseIterable {
        case subscriptions, status, stats, connected, presence, reach, adoptions
        /// What a node's agent knows of the mesh (`MeshView`): read for asymmetric partitions
        /// and by discovery.
        case view
        /// A node's link announcing itself on a peer broker (`DiscoveryHello`).
        case hello
    }

    /// The node and kind of a control topic; nil for anything else, including
    /// invalid node ids and deeper or shallower topics.
    public static func parse(_ topic: String) -> (node: String, kind: Kind)? {
        let levels = topic.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard levels.count == 3, levels[0].elementsEqual(root.utf8),
              let kind = Kind(rawValue: String(Substring(levels[2]))) else { return nil }
        let node = String(Substring(levels[1]))
        guard NodeID.isValid(node) else { return nil }
        return (node, kind)
    }
}
