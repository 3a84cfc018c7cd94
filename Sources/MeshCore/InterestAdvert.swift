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

    public init(node: String, seq: UInt64, filters: [String: Int], since: [String: UInt64] = [:]) {
        self.node = node
        self.seq = seq
        self.filters = filters
        self.since = since
    }
}

/// Why a received advert was rejected.
public struct AdvertDecodeError: Error, Equatable, Sendable {
    public let reason: String

    public init(reason: String) {
        self.reason = reason
    }
}

/// JSON form of `InterestAdvert`: `{"node":"a","seq":3,"filters":{"a/+/c":1}}`, with
/// `"since":{"a/+/c":1764450000123}` after `filters` when filters are new (agents that do not
/// know `since` ignore it, as every unknown top-level key).
///
/// Hand-written rather than `JSONDecoder` so that the rules are exact and
/// portable: integers are told from floats by their text (`1.0` is not a
/// count), nesting depth and size are bounded before any work, duplicate
/// keys are refused, and nothing here can trap on hostile input.
public enum InterestAdvertCodec {
    /// Larger payloads are rejected before parsing (a 1M-filter advert is ~30 MB at most).
    public static let maximumPayloadBytes = 32 * 1024 * 1024
    /// Largest accepted count: a count is a number of sessions, never near this.
    public static let maximumCount = Int(Int32.max)

    /// Compact JSON in a fixed layout: `node`, `seq`, `filters`, with filter
    /// keys sorted by UTF-8 bytes so equal adverts are byte-identical (and a
    /// retained republish of unchanged interest is recognisable).
    public static func encode(_ advert: InterestAdvert) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32 + advert.node.utf8.count + advert.filters.count * 24)
        out.append(contentsOf: #"{"node":"#.utf8)
        appendString(advert.node, to: &out)
        out.append(contentsOf: #","seq":"#.utf8)
        out.append(contentsOf: String(advert.seq).utf8)
        out.append(contentsOf: #","filters":{"#.utf8)
        let keys = advert.filters.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for (i, key) in keys.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: String(advert.filters[key]!).utf8)
        }
        out.append(UInt8(ascii: "}"))
        if !advert.since.isEmpty {
            out.append(contentsOf: #","since":{"#.utf8)
            let sinceKeys = advert.since.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for (i, key) in sinceKeys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                out.append(contentsOf: String(advert.since[key]!).utf8)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
        return out
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

    /// Decodes and validates an advert. Hostile input is expected (peers,
    /// operators, attackers): never crashes; rejects with a reason when the
    /// payload is too large, not UTF-8, not JSON, not an object, has a
    /// missing/ill-typed `node`/`seq`/`filters`, an invalid node id, a node
    /// other than `expectedNode` (when given), a filter that is not a valid
    /// `TopicFilter`, or a count that is not an integer in 1...Int32.max.
    /// Unknown top-level keys are ignored, for forward compatibility.
    public static func decode(_ payload: some Collection<UInt8>, expectedNode: String?) throws(AdvertDecodeError) -> InterestAdvert {
        let size = payload.count
        guard size <= maximumPayloadBytes else {
            throw AdvertDecodeError(reason: "payload of \(size) bytes exceeds \(maximumPayloadBytes)")
        }
        let bytes = Array(payload)
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw AdvertDecodeError(reason: "payload is not valid UTF-8")
        }
        let value: JSONValue
        do {
            var parser = JSONParser(bytes: bytes)
            value = try parser.parseDocument()
        } catch {
            throw AdvertDecodeError(reason: "not JSON: \(error.reason) at byte \(error.offset)")
        }
        guard case .object(let members) = value else {
            throw AdvertDecodeError(reason: "top level is not a JSON object")
        }
        func member(_ name: String) -> JSONValue? { members.first { $0.key == name }?.value }

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

        guard let filtersValue = member("filters") else { throw AdvertDecodeError(reason: "missing 'filters'") }
        guard case .object(let filterMembers) = filtersValue else {
            throw AdvertDecodeError(reason: "'filters' is not an object")
        }
        var filters: [String: Int] = [:]
        filters.reserveCapacity(filterMembers.count)
        for (filter, countValue) in filterMembers {
            do {
                _ = try TopicFilter(validating: filter)
            } catch {
                throw AdvertDecodeError(reason: "filter \(quoted(filter)) is invalid: \(error)")
            }
            guard case .number(let text, let isInteger) = countValue, isInteger,
                  let count = Int(text), count >= 1, count <= maximumCount else {
                throw AdvertDecodeError(reason: "count of filter \(quoted(filter)) is not an integer in 1...\(maximumCount)")
            }
            guard filters.updateValue(count, forKey: filter) == nil else {
                // Canonically-equal keys differing in bytes: ambiguous, refuse.
                throw AdvertDecodeError(reason: "filter \(quoted(filter)) appears twice")
            }
        }
        var since: [String: UInt64] = [:]
        if let sinceValue = member("since") {
            guard case .object(let sinceMembers) = sinceValue else {
                throw AdvertDecodeError(reason: "'since' is not an object")
            }
            for (filter, timeValue) in sinceMembers {
                guard filters[filter] != nil else {
                    throw AdvertDecodeError(reason: "'since' names \(quoted(filter)), which is not among the filters")
                }
                guard case .number(let text, let isInteger) = timeValue, isInteger, let millis = UInt64(text) else {
                    throw AdvertDecodeError(reason: "'since' of filter \(quoted(filter)) is not an unsigned 64-bit integer")
                }
                guard since.updateValue(millis, forKey: filter) == nil else {
                    throw AdvertDecodeError(reason: "'since' names \(quoted(filter)) twice")
                }
            }
        }
        return InterestAdvert(node: node, seq: seq, filters: filters, since: since)
    }

    /// A short, printable rendering of untrusted text for error reasons.
    static func quoted(_ text: String) -> String {
        let limit = 80
        var out: [UInt8] = []
        appendString(String(text.prefix(limit)), to: &out)
        return String(decoding: out, as: UTF8.self) + (text.count > limit ? "…" : "")
    }
}
