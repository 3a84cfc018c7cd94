/// One node's interest, published retained on `$mesh/<node>/subscriptions`.
///
/// `seq` grows with every advert a node publishes, so a reader can tell a
/// stale retained copy from a fresh one and operators can see churn.
public struct InterestAdvert: Equatable, Sendable {
    public var node: String
    public var seq: UInt64
    /// Filter text as subscribed (may be `$share/...`) → number of local sessions holding it.
    public var filters: [String: Int]
    /// Filters that appeared at this node moments ago → when (milliseconds since 1970, the
    /// node's clock): a peer sends the node what it routed elsewhere since then, which the
    /// node's subscriber would otherwise miss (`ReplayBuffer`). Empty when nothing is new.
    public var since: [String: UInt64]
    /// The token this node's agent marks its direct deliveries with (`--delivery direct`:
    /// a message published on a peer broker under its own topic). Present, it also says the
    /// agent honours such marks — never forwards a message carrying a peer's token — which
    /// is what lets a peer deliver to it directly; agents of releases before it write none
    /// and get prefixed forwards. A random value per agent run: clients cannot read `$mesh/`
    /// (deploy/mosquitto/acl), so they cannot forge a mark that stops their message.
    public var origin: String?

    public init(node: String, seq: UInt64, filters: [String: Int], since: [String: UInt64] = [:], origin: String? = nil) {
        self.node = node
        self.seq = seq
        self.filters = filters
        self.since = since
        self.origin = origin
    }
}

/// Why a received advert was rejected.
public struct AdvertDecodeError: Error, Equatable, Sendable {
    public let reason: String

    public init(reason: String) {
        self.reason = reason
    }
}


/// What reading one advert gave: the advert as this agent applies it, and what it had to
/// widen to get there.
public struct AdvertReading: Equatable, Sendable {
    /// The interest to apply: every filter the payload named that this agent can use, a
    /// covering filter for each one it cannot (`InterestAdvertCodec.covering`).
    public var advert: InterestAdvert
    /// The payload's format (`ControlFormat`; 1 when it carries none).
    public var format: Int
    /// One line per entry this agent could not use as written, saying what it did instead
    /// (widened to a covering filter, count taken as 1, `since` ignored). Empty for an advert
    /// read exactly as written.
    public var widened: [String]
    /// The payload's format is outside `ControlFormat.understood`: its filters were not
    /// read at all and the node is taken to want everything (`#`).
    public var foreignFormat: Bool { !ControlFormat.isUnderstood(format) }
}

/// JSON form of `InterestAdvert`:
/// `{"format":2,"node":"a","seq":3,"filters":{"a/+/c":1}}`, with
/// `"since":{"a/+/c":1764450000123}` after `filters` when filters are new, and
/// `"origin":"k3j9x2"` last when the agent has a direct-delivery token.
///
/// Hand-written rather than `JSONDecoder` so that the rules are exact and portable:
/// integers are told from floats by their text (`1.0` is not a count), nesting depth and
/// size are bounded before any work, duplicate keys are refused, and nothing here can trap
/// on hostile input.
///
/// Reading follows `ControlFormat`'s contract: a payload whose frame is unusable (not a JSON
/// object, no valid `node` or `seq`, the wrong node, no `filters` object) is rejected and
/// the last good interest stays; inside the frame, an entry this agent cannot use widens
/// the interest instead of losing the advert — one odd filter never costs a node every
/// other filter it advertised.
public enum InterestAdvertCodec {
    /// Larger payloads are rejected before parsing (a 1M-filter advert is ~30 MB at most).
    public static let maximumPayloadBytes = 32 * 1024 * 1024
    /// Largest count kept as written: a count is a number of sessions, never near this.
    public static let maximumCount = Int(Int32.max)

    /// Compact JSON in a fixed layout: `format`, `node`, `seq`, `filters`, with filter
    /// keys sorted by UTF-8 bytes so equal adverts are byte-identical (and a
    /// retained republish of unchanged interest is recognisable).
    public static func encode(_ advert: InterestAdvert) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(44 + advert.node.utf8.count + advert.filters.count * 24)
        ControlFormat.appendOpening(to: &out)
        out.append(contentsOf: #""node":"#.utf8)
        appendString(advert.node, to: &out)
        out.append(contentsOf: #","seq":"#.utf8)
        out.append(contentsOf: String(advert.seq).utf8)
        out.append(contentsOf: #","filters":"#.utf8)
        appendSortedObject(advert.filters, to: &out)
        if !advert.since.isEmpty {
            out.append(contentsOf: #","since":"#.utf8)
            appendSortedObject(advert.since, to: &out)
        }
        if let origin = advert.origin {
            out.append(contentsOf: #","origin":"#.utf8)
            appendString(origin, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `{"k":n,…}` with keys sorted by UTF-8 bytes, so equal maps encode byte-identically.
    static func appendSortedObject(_ map: [String: some BinaryInteger], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        for (i, key) in map.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: String(map[key]!).utf8)
        }
        out.append(UInt8(ascii: "}"))
    }

    static func appendString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The advert as this agent applies it (see `read`); entries it cannot use are widened.
    public static func decode(_ payload: some Collection<UInt8>, expectedNode: String?) throws(AdvertDecodeError) -> InterestAdvert {
        try read(payload, expectedNode: expectedNode).advert
    }

    /// Decodes an advert. Hostile input is expected (peers, operators, attackers): never
    /// crashes. Rejects, with a reason, a payload that is too large, not UTF-8, not JSON, not
    /// an object, has an ill-typed `format`, a missing or ill-typed `node`/`seq`/`filters`, an
    /// invalid node id or a node other than `expectedNode` (when given). Everything else is
    /// read: unknown keys are ignored; a filter that is not a valid `TopicFilter` is replaced
    /// by a filter covering it, a count that is not an integer in 1...Int32.max is taken as
    /// 1 (or the maximum), a `since` entry that does not fit is ignored — each noted in
    /// `widened`. An advert in a format this release does not read is taken as `#`.
    public static func read(_ payload: some Collection<UInt8>, expectedNode: String?) throws(AdvertDecodeError) -> AdvertReading {
        let members = try ControlPayload.members(payload, maximumBytes: maximumPayloadBytes)
        func member(_ name: String) -> JSONValue? { members.first { $0.key == name }?.value }

        let format = try ControlFormat.version(of: members)
        guard let nodeValue = member("node") else { throw AdvertDecodeError(reason: "missing 'node'") }
        guard case .string(let node) = nodeValue else { throw AdvertDecodeError(reason: "'node' is not a string") }
        do {
            try NodeID.validate(node)
        } catch {
            throw AdvertDecodeError(reason: "'node' is not a valid node id: \(error.reason)")
        }
        if let expectedNode, !node.utf8.elementsEqual(expectedNode.utf8) {
            throw AdvertDecodeError(reason: "'node' is \(quoted(node)) but the topic says \(quoted(expectedNode))")
        }

        guard let seqValue = member("seq") else { throw AdvertDecodeError(reason: "missing 'seq'") }
        guard case .number(let seqText, let seqIsInteger) = seqValue, seqIsInteger, let seq = UInt64(seqText) else {
            throw AdvertDecodeError(reason: "'seq' is not an unsigned 64-bit integer")
        }

        guard ControlFormat.isUnderstood(format) else {
            // A format this release cannot read: whatever it says, the node may want anything.
            return AdvertReading(advert: InterestAdvert(node: node, seq: seq, filters: ["#": 1]), format: format,
                                 widened: ["format \(format) is not one this agent reads (\(ControlFormat.understood)): taken as '#'"])
        }

        guard let filtersValue = member("filters") else { throw AdvertDecodeError(reason: "missing 'filters'") }
        guard case .object(let filterMembers) = filtersValue else {
            throw AdvertDecodeError(reason: "'filters' is not an object")
        }
        var widened: [String] = []
        func note(_ text: String) {
            // Bounded: a hostile advert with a million odd entries must not cost a million lines.
            if widened.count < 20 { widened.append(text) } else if widened.count == 20 { widened.append("…") }
        }
        var filters: [String: Int] = [:]
        filters.reserveCapacity(filterMembers.count)
        for (text, countValue) in filterMembers {
            var filter = text
            if (try? TopicFilter(validating: text)) == nil {
                filter = covering(text)
                note("filter \(quoted(text)) is not one this agent can use: widened to \(quoted(filter))")
            }
            var count = 1
            if case .number(let digits, true) = countValue, let n = Int(digits), n >= 1 {
                count = min(n, maximumCount)
                if n > maximumCount { note("count of \(quoted(text)) above \(maximumCount): taken as \(maximumCount)") }
            } else {
                note("count of \(quoted(text)) is not a positive integer: taken as 1")
            }
            if let index = filters.index(forKey: filter) {
                let stored = filters[index].key
                if !stored.utf8.elementsEqual(filter.utf8) {
                    // Canonically equal to a filter already read but other bytes: the dictionary
                    // holds only one of them, and the subscription trie matches bytes. Cover both.
                    filters["#"] = max(filters["#"] ?? 0, 1)
                    note("filter \(quoted(text)) is canonically equal to another with other bytes: '#' added")
                }
                filters[stored] = max(filters[index].value, count)
            } else {
                filters[filter] = count
            }
        }
        var since: [String: UInt64] = [:]
        if let sinceValue = member("since") {
            if case .object(let sinceMembers) = sinceValue {
                for (filter, timeValue) in sinceMembers {
                    guard let index = filters.index(forKey: filter), filters[index].key.utf8.elementsEqual(filter.utf8) else {
                        note("'since' names \(quoted(filter)), which is not among the filters: ignored")
                        continue
                    }
                    guard case .number(let text, true) = timeValue, let millis = UInt64(text) else {
                        note("'since' of \(quoted(filter)) is not an unsigned 64-bit integer: ignored")
                        continue
                    }
                    if since[filter] == nil { since[filter] = millis }
                }
            } else {
                note("'since' is not an object: ignored")
            }
        }
        var origin: String?
        if let originValue = member("origin") {
            // Only ever compared with a mark's value: a token that is not a short string is
            // ignored, which costs the node prefixed forwards, never interest.
            if case .string(let token) = originValue, OriginToken.isValid(token) {
                origin = token
            } else {
                note("'origin' is not a token: ignored (the node gets prefixed forwards)")
            }
        }
        return AdvertReading(advert: InterestAdvert(node: node, seq: seq, filters: filters, since: since, origin: origin),
                             format: format, widened: widened)
    }

    /// A valid filter matching at least every topic `text` could be meant to match: its
    /// leading levels up to the first one this agent cannot read, then `#` (`a/b+/c` →
    /// `a/#`); a shared subscription's group is dropped first (interest in the topics is
    /// what routes); `#` when nothing is left.
    public static func covering(_ text: String) -> String {
        var levels = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if levels.first == TopicFilter.shareLevel { levels.removeFirst(min(2, levels.count)) }
        var kept: [String] = []
        for level in levels {
            if level.utf8.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") || $0 == 0 }) { break }
            kept.append(level)
        }
        // The last level may be the one that made it unusable only by what follows: drop
        // it as well when nothing was cut, so `covering` never returns `text` unchanged.
        if kept.count == levels.count, !kept.isEmpty { kept.removeLast() }
        let candidate = (kept + ["#"]).joined(separator: "/")
        guard candidate.utf8.count <= Topic.maximumLengthInBytes, (try? TopicFilter(validating: candidate)) != nil else { return "#" }
        // `$share/#` and the like are not interest in topics: fall back to everything.
        guard (try? TopicFilter(validating: candidate))?.shareGroup == nil else { return "#" }
        return candidate
    }

    /// A short, printable rendering of untrusted text for error reasons.
    static func quoted(_ text: String) -> String {
        let limit = 80
        var out: [UInt8] = []
        appendString(String(text.prefix(limit)), to: &out)
        return String(decoding: out, as: UTF8.self) + (text.count > limit ? "…" : "")
    }
}

/// The value of a direct delivery's origin mark (`InterestAdvert.origin`).
public enum OriginToken {
    /// Characters of a token: base 36, enough that a guess is hopeless (36¹² ≈ 2⁶²).
    public static let length = 12

    /// A fresh token from `random` (the agent passes the system generator).
    public static func make(using random: inout some RandomNumberGenerator) -> String {
        let digits = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
        return String(decoding: (0..<length).map { _ in digits[Int(random.next(upperBound: UInt64(digits.count)))] }, as: UTF8.self)
    }

    /// Whether `text` can be a token: 1–64 bytes of ASCII letters and digits (a newer release
    /// may use longer ones; anything else is not a token).
    public static func isValid(_ text: String) -> Bool {
        let bytes = text.utf8
        return (1...64).contains(bytes.count) && bytes.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) || (0x41...0x5A).contains($0) }
    }
}
