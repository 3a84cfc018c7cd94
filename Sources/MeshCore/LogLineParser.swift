/// A `$SYS/broker/log/...` line that should have carried interest
/// information but could not be understood. Carries the topic and (a
/// printable, bounded copy of) the line so the agent can log it verbatim.
public struct LogParseError: Error, Equatable, Sendable {
    public let topic: String
    public let line: String
    public let reason: String
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
    /// Mosquitto 2.0 formats a log line into a 1000-byte buffer (`log__vprintf`: timestamp,
    /// then the text, NUL-terminated), so a published line of this many bytes may have been
    /// cut — possibly in the middle of a client id, a filter or a UTF-8 sequence.
    public static let brokerLineLimit = 999
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
    ///   - isKnownClient: whether an id has a session in the caller's table. Ids and
    ///     filters may contain spaces, so `<client-id> <qos> <filter>` and the notices can
    ///     often be read several ways; a reading is taken only when it is the one reading
    ///     that names a known client.
    ///   - everyClientKnown: the caller's table holds every session the broker has (no
    ///     connect line was cut or lost). When false, a reading that names an unknown
    ///     client is as plausible as one that names a known client.
    /// - Returns: nil for lines that are understood but carry no interest information;
    ///   `.ambiguous` when several readings remain; `.truncated` for a line the broker cut.
    /// - Throws: for lines on the subscribe/unsubscribe topics that do not parse, for
    ///   connect lines that do not parse (they are needed), and for non-UTF-8 payloads.
    public func parse(
        topic: String,
        payload: some Collection<UInt8>,
        isKnownClient: (String) -> Bool,
        everyClientKnown: Bool = true
    ) throws(LogParseError) -> BrokerLogEvent? {
        let truncated = payload.count >= Self.brokerLineLimit
        let decoded: String
        if let valid = String(validating: payload, as: UTF8.self) {
            decoded = valid
        } else if truncated, let valid = Self.validPrefix(payload) {
            // The cut fell inside a multi-byte character: the text before it is intact.
            decoded = valid
        } else {
            let lossy = String(decoding: payload.prefix(Self.maximumQuotedLine), as: UTF8.self)
            throw LogParseError(topic: topic, line: lossy, reason: "payload is not valid UTF-8")
        }
        var text = Substring(decoded)
        if !truncated, text.utf8.last == UInt8(ascii: "\n") { text = text.droppingBytes(first: 0, last: 1)! }

        func failure(_ reason: String) -> LogParseError {
            LogParseError(topic: topic, line: String(text.prefix(Self.maximumQuotedLine)), reason: reason)
        }

        // A timestamp prefix is taken when there is one; the whole text is read as a body
        // only when the stripped one yields nothing (log_timestamp false, odd ids).
        var bodies: [Substring] = []
        if let stripped = Self.afterTimestamp(text) { bodies.append(stripped) }
        bodies.append(text)

        if truncated {
            return Self.truncatedReadings(topic: topic, bodies: bodies, isKnownClient: isKnownClient)
        }

        switch topic {
        case Self.subscribeTopic:
            let readings = Self.readings(bodies, splits: Self.subscribeSplits, isKnownClient: isKnownClient)
            guard let event = Self.choose(readings.map { BrokerLogEvent.subscribed(clientID: $0.id, qos: $0.qos, filter: $0.filter) },
                                          isKnownClient: isKnownClient, everyClientKnown: everyClientKnown) else {
                throw failure("not a '<client-id> <qos> <filter>' line with a valid filter")
            }
            return event
        case Self.unsubscribeTopic:
            let readings = Self.readings(bodies, splits: Self.unsubscribeSplits, isKnownClient: isKnownClient)
            guard let event = Self.choose(readings.map { BrokerLogEvent.unsubscribed(clientID: $0.id, filter: $0.filter) },
                                          isKnownClient: isKnownClient, everyClientKnown: everyClientKnown) else {
                throw failure("not a '<client-id> <filter>' line with a valid filter")
            }
            return event
        case Self.noticeTopic, Self.errorTopic:
            for body in bodies {
                guard let prefix = Self.connectPrefixes.first(where: { body.hasBytePrefix($0) }) else { continue }
                let readings = Self.parseConnect(body, prefix: prefix)
                if readings.isEmpty {
                    throw failure("connect line without a '(p<n>, c<0|1>, k<n>[, u'<user>'])' suffix")
                }
                return readings.count == 1 ? readings[0] : .ambiguous(readings)
            }
            if bodies[0].hasBytePrefix(Self.socketPrefix) { return .socketOpened }
            return Self.choose(Self.noticeReadings(bodies), isKnownClient: isKnownClient, everyClientKnown: everyClientKnown)
        default:
            return nil
        }
    }

    /// The longest prefix of `bytes` that is valid UTF-8 (at most 3 bytes shorter).
    static func validPrefix(_ bytes: some Collection<UInt8>) -> String? {
        let array = Array(bytes)
        for drop in 1...3 where array.count >= drop {
            if let s = String(validating: array.dropLast(drop), as: UTF8.self) { return s }
        }
        return nil
    }

    /// Picks among the readings of one line: the one naming a known client when there is
    /// exactly one such (and no unknown client could be meant), the only reading there is,
    /// or `.ambiguous` with every reading still possible. Nil when there is none.
    static func choose(_ readings: [BrokerLogEvent], isKnownClient: (String) -> Bool, everyClientKnown: Bool) -> BrokerLogEvent? {
        var unique: [BrokerLogEvent] = []
        for r in readings where !unique.contains(r) { unique.append(r) }
        guard !unique.isEmpty else { return nil }
        if unique.count == 1 { return unique[0] }
        let known = unique.filter { isKnownClient($0.clientID) }
        if known.count == 1 && everyClientKnown { return known[0] }
        if known.count > 1 && everyClientKnown { return .ambiguous(known) }
        return .ambiguous(unique)
    }

    // MARK: - Lines the broker cut

    /// What a cut line can still say. Only readings that name a known client are kept, and a
    /// cut subscribe reading carries a filter that covers whatever the cut filter was.
    static func truncatedReadings(topic: String, bodies: [Substring], isKnownClient: (String) -> Bool) -> BrokerLogEvent {
        var readings: [BrokerLogEvent] = []
        let body = bodies[0]
        switch topic {
        case subscribeTopic:
            for split in subscribeSplits(body) where !split.id.isEmpty && isKnownClient(String(split.id)) {
                let event = BrokerLogEvent.subscribed(clientID: String(split.id), qos: split.qos, filter: coveringFilter(ofCut: split.filter))
                if !readings.contains(event) { readings.append(event) }
            }
            return .truncated(TruncatedLine(kind: .subscribe, readings: readings))
        case unsubscribeTopic:
            return .truncated(TruncatedLine(kind: .unsubscribe, readings: []))
        case noticeTopic, errorTopic:
            // Any known client whose id the visible text could begin a notice about may be
            // the one it is about: such readings are kept so the table can stop trusting them.
            for prefix in ["Client ", "Expiring client ", "Socket error on client ", "Bad socket read/write on client "]
                where body.hasBytePrefix(prefix) {
                let rest = body.droppingBytes(first: prefix.utf8.count, last: 0)!
                var index = rest.utf8.startIndex
                while index != rest.utf8.endIndex {
                    if rest.utf8[index] == UInt8(ascii: " ") || rest.utf8[index] == UInt8(ascii: ",") || rest.utf8[index] == UInt8(ascii: ":") {
                        let id = String(Substring(rest.utf8[..<index]))
                        if !id.isEmpty, isKnownClient(id) {
                            readings.append(.disconnected(clientID: id, reason: .other))
                        }
                    }
                    index = rest.utf8.index(after: index)
                }
            }
            let isConnect = connectPrefixes.contains { body.hasBytePrefix($0) }
            return .truncated(TruncatedLine(kind: isConnect ? .connect : .notice, readings: readings))
        default:
            return .truncated(TruncatedLine(kind: .notice, readings: []))
        }
    }

    /// A filter that matches everything the cut `filter` could have been: its complete
    /// levels followed by `#` (`a/b/cd…` → `a/b/#`); `#` when no level is complete. A cut
    /// shared subscription (`$share/g/a/b…`) is covered by the same plain filter: the node
    /// wants those topics either way.
    static func coveringFilter(ofCut filter: Substring) -> String {
        var text = filter
        if text.hasBytePrefix("$share/") {
            let rest = text.droppingBytes(first: 7, last: 0)!
            guard let slash = rest.utf8.firstIndex(of: UInt8(ascii: "/")) else { return "#" }
            text = Substring(rest.utf8[rest.utf8.index(after: slash)...])
        }
        guard let lastSlash = text.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "#" }
        let complete = String(Substring(text.utf8[..<lastSlash]))
        // A complete level holding a `#` is not a valid prefix (it was not a filter at all).
        guard (try? TopicFilter(validating: complete + "/#")) != nil else { return "#" }
        return complete + "/#"
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

    /// Every (id, qos, filter) reading with a non-empty id and a valid filter: all of the
    /// first body's (the timestamp-stripped one) and, of the others (the whole text, for an
    /// id that looks like a timestamp), those that name a known client — or all of them if
    /// the first body has none.
    static func readings(_ bodies: [Substring], splits: Splitter, isKnownClient: (String) -> Bool) -> [(id: String, qos: Int, filter: String)] {
        var result: [(id: String, qos: Int, filter: String)] = []
        for (index, body) in bodies.enumerated() {
            for split in splits(body) where !split.id.isEmpty {
                let filter = String(split.filter)
                let id = String(split.id)
                guard index == 0 || result.isEmpty || isKnownClient(id),
                      (try? TopicFilter(validating: filter)) != nil else { continue }
                result.append((id, split.qos, filter))
            }
        }
        return result
    }

    // MARK: - Connect

    /// Logged when a TCP connection is accepted, before its CONNECT.
    static let socketPrefix = "New connection from "

    /// A bridge is a client like any other: its subscriptions are interest too.
    static let connectPrefixes = ["New client connected from ", "New bridge connected from "]

    /// `New client connected from <addr> as <id> (p2, c1, k60[, u'<user>']).`
    /// The address has no spaces; the id and the username may contain anything (even
    /// `') (p5, c1, k1`), so every ` (p` whose remainder parses is a reading; one line
    /// usually has exactly one.
    static func parseConnect(_ body: Substring, prefix: String) -> [BrokerLogEvent] {
        guard let rest = body.droppingBytes(first: prefix.utf8.count, last: 0),
              let asRange = rest.byteRange(of: " as ") else { return [] }
        let afterAs = rest[asRange.upperBound...]
        var readings: [BrokerLogEvent] = []
        var searchEnd = afterAs.endIndex
        while let anchor = afterAs[..<searchEnd].lastByteRange(of: " (p") {
            searchEnd = anchor.lowerBound
            let id = afterAs[..<anchor.lowerBound]
            guard !id.isEmpty, let suffix = parseConnectSuffix(afterAs[anchor.upperBound...]) else { continue }
            readings.append(.connected(clientID: String(id), protocolLevel: suffix.protocolLevel, cleanStart: suffix.clean,
                                       keepalive: suffix.keepalive, username: suffix.username))
        }
        return readings
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

    /// `prefix <id> suffix`: every notice Mosquitto 2.0.11 logs about a client's session
    /// (src/loop.c `do_disconnect`, handle_connect.c, session_expiry.c). Each is exact, so
    /// no id, however crafted, can make a cut or foreign line read as one of them.
    static let exactNotices: [(prefix: String, suffix: String, kind: NoticeKind)] = [
        ("Client ", " disconnected due to malformed packet.", .disconnected(.malformedPacket)),
        ("Client ", " disconnected due to protocol error.", .disconnected(.other)),
        ("Client ", " disconnected due to oversize packet.", .disconnected(.other)),
        ("Client ", " disconnected due to oversize payload.", .disconnected(.other)),
        ("Client ", " disconnected due to out of memory.", .disconnected(.other)),
        ("Client ", " disconnected due to QoS too high or retain not supported.", .disconnected(.other)),
        ("Client ", " has exceeded timeout, disconnecting.", .disconnected(.keepaliveTimeout)),
        ("Client ", " closed its connection.", .disconnected(.closed)),
        ("Client ", " already connected, closing old connection.", .takenOver),
        ("Client ", " disconnected, not authorised.", .disconnected(.other)),
        ("Client ", " been disconnected by administrative action.", .disconnected(.other)),
        ("Client ", " disconnected.", .disconnected(.clean)),
        ("Expiring client ", " due to timeout.", .expired),
        ("Socket error on client ", ", disconnecting.", .disconnected(.other)),
    ]

    /// `prefix <id> separator <text>` where the text is strerror's or mosquitto_strerror's,
    /// neither of which contains the separator: the id ends at the last one.
    static let openNotices: [(prefix: String, separator: String, kind: NoticeKind)] = [
        ("Client ", " disconnected: ", .disconnected(.other)),
        ("Bad socket read/write on client ", ": ", .disconnected(.other)),
    ]

    /// Every reading of a notice about a client (several when the id itself contains a
    /// notice's words); `choose` decides among them.
    static func noticeReadings(_ bodies: [Substring]) -> [BrokerLogEvent] {
        for body in bodies {
            var readings: [BrokerLogEvent] = []
            for notice in exactNotices where body.hasBytePrefix(notice.prefix) && body.hasByteSuffix(notice.suffix) {
                guard let id = body.droppingBytes(first: notice.prefix.utf8.count, last: notice.suffix.utf8.count),
                      !id.isEmpty else { continue }
                readings.append(event(String(id), notice.kind))
            }
            for notice in openNotices where body.hasBytePrefix(notice.prefix) {
                guard let rest = body.droppingBytes(first: notice.prefix.utf8.count, last: 0),
                      let separator = rest.lastByteRange(of: notice.separator) else { continue }
                let id = rest[..<separator.lowerBound]
                guard !id.isEmpty else { continue }
                readings.append(event(String(id), notice.kind))
            }
            if !readings.isEmpty { return readings }
        }
        return []
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
