/// Why a topic name or topic filter was refused.
///
/// A typed error (rather than a `Bool`) so callers can log *which* MQTT rule
/// a peer, operator or client broke without re-deriving it.
public enum TopicError: Error, Equatable, Sendable {
    case empty
    /// Longer than MQTT's 65535-byte UTF-8 string limit; carries the actual byte count.
    case tooLong(Int)
    case containsNull
    case wildcardInTopicName
    case misplacedMultiLevelWildcard
    case misplacedSingleLevelWildcard
    case malformedSharedSubscription
}

/// Rules about topic *names* (what is published), as opposed to filters.
public enum Topic {
    /// MQTT's limit on any UTF-8 string, topic names and filters included.
    public static let maximumLengthInBytes = 65_535

    /// Throws for names MQTT forbids in PUBLISH (empty, >65535 UTF-8 bytes, NUL,
    /// `+` or `#`), so the router never republishes something the broker would
    /// reject and disconnect the agent for.
    public static func validateName(_ name: String) throws(TopicError) {
        let utf8 = name.utf8
        if utf8.isEmpty { throw .empty }
        if utf8.count > maximumLengthInBytes { throw .tooLong(utf8.count) }
        var wildcard = false
        for byte in utf8 {
            switch byte {
            case 0: throw .containsNull
            case UInt8(ascii: "+"), UInt8(ascii: "#"): wildcard = true
            default: break
            }
        }
        if wildcard { throw .wildcardInTopicName }
    }

    /// `$`-topics (`$SYS`, `$mesh`, …) are broker/system space: root-level
    /// wildcards never match them and the mesh never forwards them.
    @inlinable
    public static func isDollarTopic(_ name: String) -> Bool {
        name.utf8.first == UInt8(ascii: "$")
    }
}
