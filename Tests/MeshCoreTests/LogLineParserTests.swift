import MeshHarness
import Testing
@testable import MeshCore

@Suite("LogLineParser")
struct LogLineParserTests {
    static let N = "$SYS/broker/log/N"
    static let E = "$SYS/broker/log/E"
    static let SUB = "$SYS/broker/log/M/subscribe"
    static let UNSUB = "$SYS/broker/log/M/unsubscribe"

    struct Row: Sendable, CustomStringConvertible {
        let topic: String
        let line: String
        let known: [String]
        let expected: BrokerLogEvent?
        var description: String { "\(topic) \(line.debugDescription)" }
        init(_ topic: String, _ line: String, known: [String] = [], _ expected: BrokerLogEvent?) {
            self.topic = topic
            self.line = line
            self.known = known
            self.expected = expected
        }
    }

    static func connected(_ id: String, _ p: Int = 2, clean: Bool = true, k: Int = 60, user: String? = nil) -> BrokerLogEvent {
        .connected(clientID: id, protocolLevel: p, cleanStart: clean, keepalive: k, username: user)
    }

    static let rows: [Row] = [
        // connect, real lines from mosquitto 2.0.11
        Row(N, "1700000000: New client connected from 127.0.0.1:47269 as c311-clean (p2, c1, k60).", connected("c311-clean")),
        Row(N, "New client connected from 127.0.0.1:47269 as c5 (p5, c0, k45).", connected("c5", 5, clean: false, k: 45)),
        Row(N, "1700000000: New client connected from 127.0.0.1:47269 as cid (p5, c1, k60, u'bob smith').",
            connected("cid", 5, user: "bob smith")),
        Row(N, "1700000000: New client connected from 127.0.0.1:1 as auto-ED1D322A-C3A2-0558-EC0E-C346764E5814 (p2, c1, k60).",
            connected("auto-ED1D322A-C3A2-0558-EC0E-C346764E5814")),
        Row(N, "1700000000: New client connected from ::1:1234 as   ünï cödé   (p2, c0, k0).\n",
            connected("  ünï cödé  ", clean: false, k: 0)),
        Row(N, "New client connected from broker.example:1883 as a  b (p2, c1, k60) (p5, c1, k10).",
            connected("a  b (p2, c1, k60)", 5, k: 10)),
        Row(N, "New client connected from h:1 as x as y (p1, c1, k5, u'it's (p2, c1, k60').",
            connected("x as y", 1, k: 5, user: "it's (p2, c1, k60")),
        Row(N, "New client connected from h:1 as \u{301}combining (p2, c1, k60).", connected("\u{301}combining")),
        Row(N, "2026-11-22T02:56:21: New client connected from 10.0.0.1:5 as s (p2, c1, k60).", connected("s")),
        Row(N, "2026-11-22 02:56:21: New client connected from 10.0.0.1:5 as s (p2, c1, k60).\n", connected("s")),
        Row(N, "1700000000: New client connected from 10.0.0.1:5 as 1700000000: x (p2, c1, k60).", connected("1700000000: x")),
        // lines with no interest information
        Row(N, "1700000000: New connection from 127.0.0.1:47269 on port 18801.", .socketOpened),
        Row(N, "1700000000: mosquitto version 2.0.11 starting", nil),
        Row("$SYS/broker/log/I", "1700000000: Opening ipv4 listen socket on port 1883.", nil),
        Row("$SYS/broker/log/W", "1700000000: Warning: something", nil),
        Row("$SYS/broker/uptime", "12 seconds", nil),
        Row(N, "", nil),
        Row(N, "Client ", nil),
        Row(N, "Client  disconnected.", nil),
        // disconnects
        Row(N, "1700000000: Client c311-clean disconnected.", .disconnected(clientID: "c311-clean", reason: .clean)),
        Row(N, "Client killme closed its connection.\n", .disconnected(clientID: "killme", reason: .closed)),
        Row(N, "1700000000: Client ka has exceeded timeout, disconnecting.", .disconnected(clientID: "ka", reason: .keepaliveTimeout)),
        Row(N, "1700000000: Client x disconnected due to malformed packet.", .disconnected(clientID: "x", reason: .malformedPacket)),
        Row(N, "1700000000: Client x disconnected due to protocol error.", .disconnected(clientID: "x", reason: .other)),
        Row(N, "1700000000: Client x disconnected, not authorised.", .disconnected(clientID: "x", reason: .other)),
        Row(N, "1700000000: Socket error on client x y, disconnecting.", .disconnected(clientID: "x y", reason: .other)),
        Row(N, "Client  a  b  disconnected.", .disconnected(clientID: " a  b ", reason: .clean)),
        Row(N, "Client a disconnected. disconnected.", .disconnected(clientID: "a disconnected.", reason: .clean)),
        Row(N, "2026-11-22T02:56:21: Client   ünï cödé   disconnected.", .disconnected(clientID: "  ünï cödé  ", reason: .clean)),
        // takeover and expiry
        Row(E, "1700000000: Client dup already connected, closing old connection.", .takenOver(clientID: "dup")),
        Row(N, "1700000000: Expiring client scn-exp due to timeout.", .expired(clientID: "scn-exp")),
        Row(N, "Expiring client a b due to timeout.", .expired(clientID: "a b")),
        // subscribe
        Row(SUB, "1700000000: subwild 1 w/+/x", .subscribed(clientID: "subwild", qos: 1, filter: "w/+/x")),
        Row(SUB, "subwild 1 w/+/x\n", .subscribed(clientID: "subwild", qos: 1, filter: "w/+/x")),
        Row(SUB, "2026-11-22T02:56:21: cid 1 $share/g1/a/b", .subscribed(clientID: "cid", qos: 1, filter: "$share/g1/a/b")),
        Row(SUB, "1700000000: c 2 #", .subscribed(clientID: "c", qos: 2, filter: "#")),
        Row(SUB, "1700000000: c 0 a b 1 c", .ambiguous([.subscribed(clientID: "c", qos: 0, filter: "a b 1 c"),
                                                        .subscribed(clientID: "c 0 a b", qos: 1, filter: "c")])),
        Row(SUB, "1700000000: c 0 a b 1 c", known: ["c 0 a b"], .subscribed(clientID: "c 0 a b", qos: 1, filter: "c")),
        // Both readings name a known client: neither may be dropped (the old rule picked the longer id).
        Row(SUB, "1700000000: c 0 a b 1 c", known: ["c", "c 0 a b"], .ambiguous([.subscribed(clientID: "c", qos: 0, filter: "a b 1 c"),
                                                                                 .subscribed(clientID: "c 0 a b", qos: 1, filter: "c")])),
        Row(SUB, "1700000000: v 1 a 1 b", known: ["v", "v 1 a"], .ambiguous([.subscribed(clientID: "v", qos: 1, filter: "a 1 b"),
                                                                          .subscribed(clientID: "v 1 a", qos: 1, filter: "b")])),
        Row(SUB, "1700000000:   ünï cödé   1 x/ y", known: ["  ünï cödé  "],
            .subscribed(clientID: "  ünï cödé  ", qos: 1, filter: "x/ y")),
        Row(SUB, "my client 1 a/#", known: ["my client"], .subscribed(clientID: "my client", qos: 1, filter: "a/#")),
        Row(SUB, "12: x 1 a", known: ["12: x"], .subscribed(clientID: "12: x", qos: 1, filter: "a")),
        Row(SUB, "12: x 1 a", .subscribed(clientID: "x", qos: 1, filter: "a")),
        Row(SUB, "c 1 a/#/b 1 ok", .subscribed(clientID: "c 1 a/#/b", qos: 1, filter: "ok")),
        // `$share/g 2 x` is a filter Mosquitto accepts (group "g 2 x", no filter): two readings
        // without a known client; a known id settles it.
        Row(SUB, "c 1 $share/g 2 x", .ambiguous([.subscribed(clientID: "c", qos: 1, filter: "$share/g 2 x"),
                                                .subscribed(clientID: "c 1 $share/g", qos: 2, filter: "x")])),
        Row(SUB, "c 1 $share/g 2 x", known: ["c 1 $share/g"], .subscribed(clientID: "c 1 $share/g", qos: 2, filter: "x")),
        Row(SUB, "1700000000: cid 1 $share//x", .subscribed(clientID: "cid", qos: 1, filter: "$share//x")),
        Row(SUB, "1700000000: cid 0 $share/+/x", .subscribed(clientID: "cid", qos: 0, filter: "$share/+/x")),
        Row(SUB, "c 1 $share/g/ 2 x", known: ["c"], .subscribed(clientID: "c", qos: 1, filter: "$share/g/ 2 x")),
        // unsubscribe
        Row(UNSUB, "1700000000: subwild w/+/x", .unsubscribed(clientID: "subwild", filter: "w/+/x")),
        Row(UNSUB, "a b c", .ambiguous([.unsubscribed(clientID: "a", filter: "b c"), .unsubscribed(clientID: "a b", filter: "c")])),
        Row(UNSUB, "a b c", known: ["a b"], .unsubscribed(clientID: "a b", filter: "c")),
        Row(UNSUB, "a b c", known: ["a", "a b"], .ambiguous([.unsubscribed(clientID: "a", filter: "b c"), .unsubscribed(clientID: "a b", filter: "c")])),
        // Notices: only Mosquitto's exact phrases; an id holding one of them makes the line ambiguous.
        Row(N, "1700000000: Client v disconnected due to something else.", known: ["v"], nil),
        Row(N, "1700000000: Client v disconnected due to out of memory.", known: ["v"], .disconnected(clientID: "v", reason: .other)),
        Row(N, "1700000000: Client v disconnected: Connection reset by peer.", known: ["v"], .disconnected(clientID: "v", reason: .other)),
        Row(N, "1700000000: Client v closed its connection. disconnected.", known: ["v", "v closed its connection."],
            .disconnected(clientID: "v closed its connection.", reason: .clean)),
        Row(N, "1700000000: Client v disconnected: x closed its connection.", known: ["v", "v disconnected: x"],
            .ambiguous([.disconnected(clientID: "v disconnected: x", reason: .closed), .disconnected(clientID: "v", reason: .other)])),
        Row(N, "1700000000: New bridge connected from 10.0.0.2:40000 as br.x (p2, c0, k60).", connected("br.x", clean: false)),
        Row(N, "1700000000: New client connected from h:1 as v (p5, c0, k60, u'a'). (p5, c1, k1, u'b').",
            .ambiguous([connected("v (p5, c0, k60, u'a').", 5, k: 1, user: "b"), connected("v", 5, clean: false, user: "a'). (p5, c1, k1, u'b")])),
        Row(UNSUB, "2026-11-22T02:56:21: cid $share/g1/a/b\n", .unsubscribed(clientID: "cid", filter: "$share/g1/a/b")),
        Row(UNSUB, "x a+ b", .unsubscribed(clientID: "x a+", filter: "b")),
        Row(UNSUB, "cid $share//x", .unsubscribed(clientID: "cid", filter: "$share//x")),
    ]

    @Test(arguments: rows)
    func realLines(_ row: Row) throws {
        let known = Set(row.known)
        let event = try LogLineParser().parse(topic: row.topic, payload: Array(row.line.utf8), isKnownClient: known.contains)
        #expect(event == row.expected)
    }

    @Test(arguments: [
        (SUB, ""),
        (SUB, "\n"),
        (SUB, "nospaces"),
        (SUB, "client 1"),
        (SUB, "client 1 "),
        (SUB, "client 3 a/b"),
        (SUB, "client x a/b"),
        (SUB, " 1 a"),
        (SUB, "c 1 a/#/b"),
        (SUB, "1700000000: "),
        (UNSUB, ""),
        (UNSUB, "lonely"),
        (UNSUB, "c a+"),
        (N, "New client connected from 127.0.0.1:47269 as c311-clean (p2, c1, k6"),
        (N, "New client connected from 127.0.0.1:47269 as c311-clean (p2, c2, k60)."),
        (N, "New client connected from 127.0.0.1:47269 as  (p2, c1, k60)."),
        (N, "New client connected from 127.0.0.1:47269"),
        (N, "New client connected from "),
        (N, "1700000000: New client connected from a:1 as c (p2, c1, k60, u'bob)."),
    ])
    func unparseableLinesThrow(_ topic: String, _ line: String) {
        #expect(throws: LogParseError.self) {
            try LogLineParser().parse(topic: topic, payload: Array(line.utf8), isKnownClient: { _ in false })
        }
    }

    @Test func errorCarriesContext() {
        do {
            _ = try LogLineParser().parse(topic: Self.SUB, payload: Array("1700000000: broken".utf8), isKnownClient: { _ in false })
            Issue.record("expected a throw")
        } catch {
            #expect(error.topic == Self.SUB)
            #expect(error.line == "1700000000: broken")
            #expect(!error.reason.isEmpty)
        }
    }

    @Test(arguments: [SUB, UNSUB, N, E])
    func nonUTF8Throws(_ topic: String) {
        let bytes: [UInt8] = Array("c 1 a/".utf8) + [0xC3, 0x28, 0xFF]
        #expect(throws: LogParseError.self) {
            try LogLineParser().parse(topic: topic, payload: bytes, isKnownClient: { _ in false })
        }
    }

    @Test("a line cut through a multi-byte character is read as cut, its filter covered")
    func cutLineWithSplitCharacter() throws {
        // A 999-byte cut through a multi-byte character leaves invalid UTF-8 at the end.
        let line = "1700000000: c 1 a/b/" + String(repeating: "é", count: 600)
        let cut = Array(line.utf8.prefix(999)) // 20 ASCII bytes + 979 bytes of 2-byte chars → split
        let event = try LogLineParser().parse(topic: Self.SUB, payload: cut, isKnownClient: { $0 == "c" })
        #expect(event == .truncated(TruncatedLine(kind: .subscribe, readings: [.subscribed(clientID: "c", qos: 1, filter: "a/b/#")])))
    }

    @Test("a cut connect line is reported as such, never as a client")
    func longCutConnectLine() throws {
        let line = "1700000000: New client connected from 1.2.3.4:5 as " + String(repeating: "x", count: 2000) + " (p2, c1, k60)."
        let event = try LogLineParser().parse(topic: Self.N, payload: Array(line.utf8.prefix(999)), isKnownClient: { _ in false })
        #expect(event == .truncated(TruncatedLine(kind: .connect, readings: [])))
    }

    @Test("a crafted id cut at the limit cannot end another client's session")
    func cutNoticeNamesNoOne() throws {
        // "<victim> disconnected due to xxx…" as a client id: its disconnect line is cut.
        let line = "1700000000: Client victim disconnected due to " + String(repeating: "x", count: 1200) + " disconnected."
        let event = try LogLineParser().parse(topic: Self.N, payload: Array(line.utf8.prefix(999)), isKnownClient: { $0 == "victim" })
        // The reading that names the victim is kept only so the table can stop trusting its state.
        #expect(event == .truncated(TruncatedLine(kind: .notice, readings: [.disconnected(clientID: "victim", reason: .other)])))
    }

    @Test(arguments: ["a/b/c", "a/b/", "a", "$share/g/a/b", "$share/gr", "a/+/b", "#"])
    func coveringFilter(_ visible: String) throws {
        let covering = LogLineParser.coveringFilter(ofCut: Substring(visible))
        let filter = try TopicFilter(validating: covering)
        // Whatever the cut text continued with, the covering filter matches its topics.
        for tail in ["", "x", "/y", "z/w"] {
            let plain = visible.hasPrefix("$share/") ? String(visible.split(separator: "/", maxSplits: 2).dropFirst(2).first ?? "") : visible
            let topic = (plain + tail).replacingOccurrences(of: "+", with: "p").replacingOccurrences(of: "#", with: "h")
            guard !topic.isEmpty else { continue }
            #expect(SubscriptionTree(filters: [filter.matchFilter: 1]).matches(topic), "\(covering) must cover \(topic)")
        }
    }

    @Test(arguments: 0..<200)
    func randomGarbageNeverCrashes(_ seed: Int) {
        var rng = seededGenerator(UInt64(seed))
        let length = Int(rng.next() % 1200)
        let alphabet: [UInt8] = Array(" 012:()pcku',.a/#+$\n".utf8) + [0xC3, 0xA9, 0xFF, 0x00]
        let bytes = (0..<length).map { _ in
            seed % 2 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : alphabet[Int(rng.next() % UInt64(alphabet.count))]
        }
        for topic in [Self.SUB, Self.UNSUB, Self.N, Self.E, "$SYS/broker/log/I"] {
            do {
                let event = try LogLineParser().parse(topic: topic, payload: bytes, isKnownClient: { $0.count % 3 == 0 })
                switch event {
                case .ambiguous(let readings)?: #expect(readings.count >= 2 && readings.allSatisfy { !$0.clientID.isEmpty })
                case .truncated?: #expect(bytes.count >= LogLineParser.brokerLineLimit)
                case let event?: #expect(!event.clientID.isEmpty)
                case nil: break
                }
            } catch {
                #expect(error.topic == topic)
            }
        }
    }
}

/// The MeshCore tests' seeded generator, so failures reproduce: SplitMix64 with the seed
/// offset these tests have always used (their seeds keep their cases).
func seededGenerator(_ seed: UInt64) -> SplitMix64 { SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15) }
