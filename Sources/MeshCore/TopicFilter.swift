/// A subscription filter that has passed MQTT's rules, split into what it
/// was subscribed as and what it actually matches.
///
/// The split exists because `$share/<group>/<filter>` is interest in
/// `<filter>`: the mesh must forward messages for `a/+` to a node whose
/// client subscribed `$share/g1/a/+`, but report the filter as subscribed.
public struct TopicFilter: Hashable, Sendable, CustomStringConvertible {
    /// Exactly as subscribed, e.g. `$share/g1/a/+`.
    public let text: String
    /// What it matches against: `a/+` for `$share/g1/a/+`, otherwise equal to `text`.
    /// Empty for `$share/<group>` and `$share/<group>/`: Mosquitto 2.0.11 accepts both and
    /// matches no topic with them (a topic name is never empty), and neither does a
    /// `SubscriptionTree` holding the empty filter.
    public let matchFilter: String
    /// The share group (`g1`), or nil for an ordinary subscription. May be empty or a
    /// wildcard (`$share//x`, `$share/+/x`): Mosquitto takes whatever the second level is.
    public let shareGroup: String?

    static let shareLevel = "$share"

    /// Accepts exactly the filters Mosquitto 2.0.11 subscribes: MQTT 3.1.1/5 §4.7 wildcard
    /// placement over the whole text (`+` only as a whole level, `#` only as the whole last
    /// level; `mosquitto_sub_topic_check`), then, if the first level is exactly `$share`, a
    /// shared subscription as `sub__topic_tokenise` splits it: the second level is the group
    /// (any, even empty), the rest after the next `/` is the filter (possibly empty or absent).
    /// `$share` alone is refused (Mosquitto disconnects the client with a protocol error).
    /// Mosquitto's own rule wins over the MQTT 5 spec's stricter one (non-empty group without
    /// wildcards) because the agent must understand every subscription its broker logs.
    public init(validating text: String) throws(TopicError) {
        let utf8 = text.utf8
        if utf8.isEmpty { throw .empty }
        if utf8.count > Topic.maximumLengthInBytes { throw .tooLong(utf8.count) }
        if utf8.contains(0) { throw .containsNull }
        try Self.validateLevels(utf8)
        self.text = text

        let slash = UInt8(ascii: "/")
        let firstEnd = utf8.firstIndex(of: slash) ?? utf8.endIndex
        guard utf8[..<firstEnd].elementsEqual(Self.shareLevel.utf8) else {
            self.matchFilter = text
            self.shareGroup = nil
            return
        }
        guard firstEnd != utf8.endIndex else { throw .malformedSharedSubscription }
        let rest = utf8[utf8.index(after: firstEnd)...]
        let groupEnd = rest.firstIndex(of: slash) ?? rest.endIndex
        self.shareGroup = String(Substring(rest[..<groupEnd]))
        self.matchFilter = groupEnd == rest.endIndex ? "" : String(Substring(rest[rest.index(after: groupEnd)...]))
    }

    /// Checks wildcard placement in one pass over the bytes.
    private static func validateLevels(_ utf8: some Collection<UInt8>) throws(TopicError) {
        var levelLength = 0          // bytes in the current level so far
        var levelHasPlus = false
        var sawHash = false
        for byte in utf8 {
            if sawHash { throw .misplacedMultiLevelWildcard } // anything after '#'
            switch byte {
            case UInt8(ascii: "/"):
                levelLength = 0
                levelHasPlus = false
                continue
            case UInt8(ascii: "+"):
                if levelLength != 0 { throw .misplacedSingleLevelWildcard }
                levelHasPlus = true
            case UInt8(ascii: "#"):
                if levelLength != 0 { throw .misplacedMultiLevelWildcard }
                sawHash = true
            default:
                if levelHasPlus { throw .misplacedSingleLevelWildcard }
                if levelLength == 0 && sawHash { throw .misplacedMultiLevelWildcard }
            }
            levelLength += 1
        }
    }

    public var description: String { text }
}
