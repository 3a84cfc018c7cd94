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
    public let matchFilter: String
    /// The share group (`g1`), or nil for an ordinary subscription.
    public let shareGroup: String?

    static let sharePrefix = "$share/"

    /// Validates `text` against MQTT 3.1.1/5 §4.7: `#` only as the whole last
    /// level, `+` only as a whole level, `$share/<group>/<filter>` with a
    /// non-empty group free of `+ # /` and a non-empty filter.
    public init(validating text: String) throws(TopicError) {
        let utf8 = text.utf8
        if utf8.isEmpty { throw .empty }
        if utf8.count > Topic.maximumLengthInBytes { throw .tooLong(utf8.count) }
        if utf8.contains(0) { throw .containsNull }

        if text.hasPrefix(Self.sharePrefix) {
            let rest = utf8.dropFirst(Self.sharePrefix.utf8.count)
            guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else {
                throw .malformedSharedSubscription
            }
            let group = rest[rest.startIndex..<slash]
            let filter = rest[rest.index(after: slash)...]
            if group.isEmpty || filter.isEmpty { throw .malformedSharedSubscription }
            if group.contains(UInt8(ascii: "+")) || group.contains(UInt8(ascii: "#")) {
                throw .malformedSharedSubscription
            }
            let filterText = String(Substring(filter))
            try Self.validateLevels(filterText.utf8)
            self.text = text
            self.matchFilter = filterText
            self.shareGroup = String(Substring(group))
        } else {
            try Self.validateLevels(utf8)
            self.text = text
            self.matchFilter = text
            self.shareGroup = nil
        }
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
