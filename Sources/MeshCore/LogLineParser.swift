/// A `$SYS/broker/log/...` line that should have carried interest
/// information but could not be understood. Carries the topic and (a
/// printable, bounded copy of) the line so the agent can log it verbatim.
public struct LogParseError: Error, Equatable, Sendable {
    public let topic: String
    public let line: String
    public let reason: String

    public init(topic: String, line: String, reason: String) {
        self.topic = topic
        self.line = line
        self.reason = reason
    }
}

/// Turns Mosquitto 2.0 `log_dest topic` lines into `BrokerLogEvent`s.
///
/// Stock Mosquitto offers no subscription API, so its log is the only live
/// source of who subscribes to what. The format is made for humans: client
/// ids and filters may contain spaces, so several lines are ambiguous and
/// are resolved against the ids the caller already knows (see `parse`).
public struct LogLineParser: Sendable {
    public static let logTopicPrefix = "$SYS/broker/log/"
    public static let subscribeTopic = "$SYS/broker/log/M/subscribe"
    public static let unsubscribeTopic = "$SYS/broker/log/M/unsubscribe"
    public static let noticeTopic = "$SYS/broker/log/N"
    public static let errorTopic = "$SYS/broker/log/E"
    /// Mosquitto cuts topic log lines at this many bytes; a line this long is suspect.
    public static let brokerLineLimit = 1000
    /// Longest copy of an offending line kept in a `LogParseError`.
    static let maximumQuotedLine = 1200

    public init() {}

    /// Parses one log message.
    ///
    /// - Parameters:
    ///   - topic: the `$SYS/broker/log/...` topic the line came on.
    ///   - payload: raw bytes (may be non-UTF-8 garbage, may end in "\n", may
    ///     carry an `<epoch>: ` or numeric strftime-style `2026-11-22T02:56:21: `
    ///     timestamp prefix, or none).
    ///   - isKnownClient: resolves ambiguous `<client-id> <qos> <filter>` /
    ///     `<client-id> <filter>` lines, since ids and filters may contain
    ///     spaces: the longest known id that fits wins; with none known, the
    ///     first split that parses (shortest id) is taken.
    /// - Returns: nil for lines that are understood but carry no interest
    ///   information ("New connection from ...", other notices, info, warnings).
    /// - Throws: for lines on the subscribe/unsubscribe topics that do not
    ///   parse, for connect lines that do not parse (they are needed), and for
    ///   non-UTF-8 payloads.
    public func parse(
        topic: String,
        payload: some Collection<UInt8>,
        isKnownClient: (String) -> Bool
    ) throws(LogParseError) -> BrokerLogEvent? {
        guard let decoded = String(validating: payload, as: UTF8.self) else {
            let lossy = String(decoding: payload.prefix(Self.maximumQuotedLine), as: UTF8.self)
            throw LogParseError(topic: topic, line: lossy, reason: "payload is not valid UTF-8")
        }
        var text = Substring(decoded)
        if text.utf8.last == UInt8(ascii: "\n") { text = text.droppingBytes(first: 0, last: 1)! }

        func failure(_ reason: String) -> LogParseError {
            LogParseError(topic: topic, line: String(text.prefix(Self.maximumQuotedLine)), reason: reason)
        }

        var bodies: [Substring] = []
        if let stripped = Self.afterTimestamp(text) { bodies.append(stripped) }
        bodies.append(text)

        switch topic {
        case Self.subscribeTopic:
            guard let (id, qos, filter) = Self.resolve(bodies, splits: Self.subscribeSplits, isKnownClient: isKnownClient) else {
                throw failure("not a '<client-id> <qos> <filter>' line with a valid filter")
            }
            return .subscribed(clientID: id, qos: qos, filter: filter)
        case Self.unsubscribeTopic:
            guard let (id, _, filter) = Self.resolve(bodies, splits: Self.unsubscribeSplits, isKnownClient: isKnownClient) else {
                throw failure("not a '<client-id> <filter>' line with a valid filter")
            }
            return .unsubscribed(clientID: id, filter: filter)
        case Self.noticeTopic, Self.errorTopic:
            for body in bodies where body.hasBytePrefix(Self.connectPrefix) {
                guard let event = Self.parseConnect(body) else {
                    throw failure("connect line without a '(p<n>, c<0|1>, k<n>[, u'<user>'])' suffix")
                }
                return event
            }
            return Self.parseClientNotice(bodies, isKnownClient: isKnownClient)
        default:
            return nil
        }
    }

    // MARK: - Timestamp

    /// The text after a timestamp prefix: an epoch (`1700000000: `) or a
    /// numeric strftime format (`2026-11-22T02:56:21: `, `2026-11-22 02:56:21: `).
    /// The prefix must start with a digit and use only digits and `-:T.,/+Z `.
    static func afterTimestamp(_ text: Substring) -> Substring? {
        let utf8 = text.utf8
        guard let first = utf8.first, isDigit(first) else { return nil }
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            let next = utf8.index(after: index)
            if byte == UInt8(ascii: ":"), next != utf8.endIndex, utf8[next] == UInt8(ascii: " ") {
                return Substring(utf8[utf8.index(after: next)...])
            }
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "T"),
                 UInt8(ascii: "."), UInt8(ascii: ","), UInt8(ascii: "/"), UInt8(ascii: "+"), UInt8(ascii: "Z"),
                 UInt8(ascii: " "):
                index = next
            default:
                return nil
            }
        }
        return nil
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    // MARK: - Subscribe / unsubscribe

    /// Candidate (id, qos, filter) splits of a body, shortest id first.
    typealias Splitter = (Substring) -> [(id: Substring, qos: Int, filter: Substring)]

    /// `<client-id> <qos> <filter>`: every " <0|1|2> " is a possible separator.
    static func subscribeSplits(_ body: Substring) -> [(id: Substring, qos: Int, filter: Substring)] {
        let utf8 = body.utf8
        var result: [(id: Substring, qos: Int, filter: Substring)] = []
        var index = utf8.startIndex
        while index != utf8.endIndex {
            defer { index = utf8.index(after: index) }
            guard utf8[index] == UInt8(ascii: " ") else { continue }
            let digit = utf8.index(after: index)
            guard digit != utf8.endIndex, (UInt8(ascii: "0")...UInt8(ascii: "2")).contains(utf8[digit]) else { continue }
            let space = utf8.index(after: digit)
            guard space != utf8.endIndex, utf8[space] == UInt8(ascii: " ") else { continue }
            let filterStart = utf8.index(after: space)
            result.append((Substring(utf8[..<index]), Int(utf8[digit] - UInt8(ascii: "0")), Substring(utf8[filterStart...])))
        }
        return result
    }

    /// `<client-id> <filter>`: every space is a possible separator.
    static func unsubscribeSplits(_ body: Substring) -> [(id: Substring, qos: Int, filter: Substring)] {
        let utf8 = body.utf8
        var result: [(id: Substring, qos: Int, filter: Substring)] = []
        var index = utf8.startIndex
        while index != utf8.endIndex {
            if utf8[index] == UInt8(ascii: " ") {
                result.append((Substring(utf8[..<index]), 0, Substring(utf8[utf8.index(after: index)...])))
            }
            index = utf8.index(after: index)
        }
        return result
    }

    /// Picks the split whose id is known (longest such id, earliest body
    /// first); otherwise the first split, in the first body, that has a
    /// non-empty id and a valid filter.
    static func resolve(
        _ bodies: [Substring],
        splits: Splitter,
        isKnownClient: (String) -> Bool
    ) -> (id: String, qos: Int, filter: String)? {
        var fallback: (id: String, qos: Int, filter: String)?
        for body in bodies {
            var best: (id: String, qos: Int, filter: String)?
            for split in splits(body) where !split.id.isEmpty {
                guard (try? TopicFilter(validating: String(split.filter))) != nil else { continue }
                let id = String(split.id)
                if isKnownClient(id) {
                    if best == nil || id.utf8.count > best!.id.utf8.count {
                        best = (id, split.qos, String(split.filter))
                    }
                } else if fallback == nil {
                    fallback = (id, split.qos, String(split.filter))
                }
            }
            if let best { return best }
        }
        return fallback
    }

    // MARK: - Connect

    static let connectPrefix = "New client connected from "

    /// `New client connected from <addr> as <id> (p2, c1, k60[, u'<user>']).`
    /// The address has no spaces; the id may contain anything, so the suffix
    /// is anchored from the end: the last ` (p` whose remainder parses wins.
    static func parseConnect(_ body: Substring) -> BrokerLogEvent? {
        guard let rest = body.droppingBytes(first: connectPrefix.utf8.count, last: 0),
              let asRange = rest.byteRange(of: " as ") else { return nil }
        let afterAs = rest[asRange.upperBound...]
        var searchEnd = afterAs.endIndex
        while let anchor = afterAs[..<searchEnd].lastByteRange(of: " (p") {
            searchEnd = anchor.lowerBound
            let id = afterAs[..<anchor.lowerBound]
            guard !id.isEmpty, let suffix = parseConnectSuffix(afterAs[anchor.upperBound...]) else { continue }
            return .connected(clientID: String(id), protocolLevel: suffix.protocolLevel, cleanStart: suffix.clean,
                              keepalive: suffix.keepalive, username: suffix.username)
        }
        return nil
    }

    /// Parses `2, c1, k60).` or `5, c0, k45, u'bob smith').` (after ` (p`).
    static func parseConnectSuffix(_ text: Substring) -> (protocolLevel: Int, clean: Bool, keepalive: Int, username: String?)? {
        var rest = text
        guard let protocolLevel = takeNumber(&rest), rest.hasBytePrefix(", c") else { return nil }
        let clean: Bool
        if rest.hasBytePrefix(", c0, k") {
            clean = false
        } else if rest.hasBytePrefix(", c1, k") {
            clean = true
        } else {
            return nil
        }
        rest = rest.droppingBytes(first: 7, last: 0)!
        guard let keepalive = takeNumber(&rest) else { return nil }
        if rest.utf8.elementsEqual(").".utf8) { return (protocolLevel, clean, keepalive, nil) }
        guard rest.hasBytePrefix(", u'"), rest.hasByteSuffix("')."),
              let user = rest.droppingBytes(first: 4, last: 3) else { return nil }
        return (protocolLevel, clean, keepalive, String(user))
    }

    /// Consumes 1–9 leading ASCII digits.
    static func takeNumber(_ text: inout Substring) -> Int? {
        let digits = text.utf8.prefix(while: isDigit)
        guard (1...9).contains(digits.count) else { return nil }
        var value = 0
        for byte in digits { value = value * 10 + Int(byte - UInt8(ascii: "0")) }
        text = Substring(text.utf8[digits.endIndex...])
        return value
    }

    // MARK: - Disconnect, takeover, expiry

    enum NoticeKind {
        case disconnected(DisconnectReason)
        case takenOver
        case expired
    }

    /// `prefix <id> suffix` shapes, most specific first. Exact suffixes are
    /// tried before the open-ended ones so that a known phrase wins.
    static let exactNotices: [(prefix: String, suffix: String, kind: NoticeKind)] = [
        ("Client ", " disconnected due to malformed packet.", .disconnected(.malformedPacket)),
        ("Client ", " has exceeded timeout, disconnecting.", .disconnected(.keepaliveTimeout)),
        ("Client ", " closed its connection.", .disconnected(.closed)),
        ("Client ", " already connected, closing old connection.", .takenOver),
        ("Client ", " disconnected, not authorised.", .disconnected(.other)),
        ("Client ", " been disconnected by administrative action.", .disconnected(.other)),
        ("Client ", " disconnected.", .disconnected(.clean)),
        ("Expiring client ", " due to timeout.", .expired),
        ("Socket error on client ", ", disconnecting.", .disconnected(.other)),
    ]

    /// `prefix <id> separator <free text>`: the id ends at the last separator.
    static let openNotices: [(prefix: String, separator: String, kind: NoticeKind)] = [
        ("Client ", " disconnected due to ", .disconnected(.other)),
        ("Client ", " disconnected: ", .disconnected(.other)),
        ("Bad socket read/write on client ", ": ", .disconnected(.other)),
    ]

    static func parseClientNotice(_ bodies: [Substring], isKnownClient: (String) -> Bool) -> BrokerLogEvent? {
        var candidates: [BrokerLogEvent] = []
        for body in bodies {
            for notice in exactNotices where body.hasBytePrefix(notice.prefix) && body.hasByteSuffix(notice.suffix) {
                guard let id = body.droppingBytes(first: notice.prefix.utf8.count, last: notice.suffix.utf8.count),
                      !id.isEmpty else { continue }
                candidates.append(event(String(id), notice.kind))
            }
            for notice in openNotices where body.hasBytePrefix(notice.prefix) {
                guard let rest = body.droppingBytes(first: notice.prefix.utf8.count, last: 0),
                      let separator = rest.lastByteRange(of: notice.separator) else { continue }
                let id = rest[..<separator.lowerBound]
                guard !id.isEmpty else { continue }
                candidates.append(event(String(id), notice.kind))
            }
        }
        return candidates.first { isKnownClient($0.clientID) } ?? candidates.first
    }

    static func event(_ id: String, _ kind: NoticeKind) -> BrokerLogEvent {
        switch kind {
        case .disconnected(let reason): return .disconnected(clientID: id, reason: reason)
        case .takenOver: return .takenOver(clientID: id)
        case .expired: return .expired(clientID: id)
        }
    }
}

extension Substring {
    /// Byte-wise prefix test: `hasPrefix` compares Characters, and a client id
    /// starting with a combining mark would fuse with the prefix's last space.
    func hasBytePrefix(_ prefix: String) -> Bool { utf8.starts(with: prefix.utf8) }

    func hasByteSuffix(_ suffix: String) -> Bool {
        utf8.count >= suffix.utf8.count && utf8.reversed().starts(with: suffix.utf8.reversed())
    }

    /// Drops ASCII-sized byte counts from both ends; nil if too short.
    /// Callers only cut at ASCII boundaries, so the result is valid UTF-8.
    func droppingBytes(first: Int, last: Int) -> Substring? {
        let bytes = utf8
        guard bytes.count >= first + last else { return nil }
        let start = bytes.index(bytes.startIndex, offsetBy: first)
        let end = bytes.index(bytes.endIndex, offsetBy: -last)
        return Substring(bytes[start..<end])
    }

    /// Last occurrence of `needle` (byte-wise), without Foundation.
    func lastByteRange(of needle: String) -> Range<Index>? {
        let n = Array(needle.utf8)
        let hay = utf8
        guard !n.isEmpty, hay.count >= n.count else { return nil }
        var start = hay.index(hay.endIndex, offsetBy: -n.count)
        while true {
            if hay[start...].starts(with: n) {
                return start..<hay.index(start, offsetBy: n.count)
            }
            if start == hay.startIndex { return nil }
            start = hay.index(before: start)
        }
    }

    /// First occurrence of `needle` (byte-wise), without Foundation.
    func byteRange(of needle: String) -> Range<Index>? {
        let n = Array(needle.utf8)
        let hay = utf8
        guard !n.isEmpty, hay.count >= n.count else { return nil }
        var start = hay.startIndex
        let last = hay.index(hay.endIndex, offsetBy: -n.count)
        while true {
            if hay[start...].starts(with: n) {
                return start..<hay.index(start, offsetBy: n.count)
            }
            if start == last { return nil }
            start = hay.index(after: start)
        }
    }
}
