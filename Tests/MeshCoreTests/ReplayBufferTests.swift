import Testing
@testable import MeshCore

@Suite("Topic.matches")
struct TopicMatchTests {
    @Test(arguments: [
        ("a/b", "a/b", true), ("a/+", "a/b", true), ("a/+", "a/b/c", false), ("a/#", "a", true),
        ("a/#", "a/b/c", true), ("#", "a", true), ("#", "$SYS/x", false), ("+/b", "$x/b", false),
        ("$x/+", "$x/b", true), ("a/+", "a/", true), ("+/+", "/", true), ("a/b", "a", false),
        ("a", "a/b", false), ("+", "a/b", false), ("a/+/c", "a//c", true), ("/#", "/a", true),
        ("a/b/#", "a/b", true), ("a/b/#", "a/c", false), ("ab", "a", false), ("a", "ab", false),
    ])
    func table(_ filter: String, _ name: String, _ expected: Bool) {
        #expect(Topic.matches(filter: filter, name: name) == expected, "\(filter) vs \(name)")
    }

    /// Against `SubscriptionTree`, the matcher the hot path uses, on random small topics.
    @Test(arguments: 0..<4)
    func agreesWithTree(seed: Int) {
        var rng = seededGenerator(UInt64(seed))
        let levels = ["a", "b", "", "$s"]
        func name() -> String { (0..<Int.random(in: 1...4, using: &rng)).map { _ in levels.randomElement(using: &rng)! }.joined(separator: "/") }
        for _ in 0..<3000 {
            var parts = (0..<Int.random(in: 1...4, using: &rng)).map { _ in (levels + ["+"]).randomElement(using: &rng)! }
            if Bool.random(using: &rng) { parts.append("#") }
            let filter = parts.joined(separator: "/")
            guard (try? TopicFilter(validating: filter)) != nil else { continue }
            let topic = name()
            guard !topic.isEmpty else { continue } // a topic name is never empty
            let tree = SubscriptionTree(filters: [filter: 1])
            #expect(Topic.matches(filter: filter, name: topic) == tree.matches(topic), "\(filter) vs \(topic)")
        }
    }
}

@Suite("ReplayBuffer")
struct ReplayBufferTests {
    typealias Buffer = ReplayBuffer<Int>

    @Test func replaysWhatThePeerMissedInOrderOnce() {
        var b = Buffer(window: 2, byteLimit: 1 << 20)
        b.append(time: 10.0, topic: "x/1", size: 1, sentTo: PeerSet(), body: 1)
        b.append(time: 10.1, topic: "y/1", size: 1, sentTo: PeerSet(), body: 2)
        b.append(time: 10.2, topic: "x/2", size: 1, sentTo: PeerSet([3]), body: 3)
        b.append(time: 10.3, topic: "x/3", size: 1, sentTo: PeerSet([0]), body: 4)
        var sent: [Int] = []
        let request = ReplayRequest(peer: 3, filters: [ReplayFilter(matchFilter: "x/+", since: 10.05)])
        let outcome = b.replay(request, margin: 0.1) { sent.append($0.body) }
        #expect(sent == [1, 4])
        #expect(outcome == ReplayOutcome(replayed: 2, windowExceeded: false))
        sent = []
        _ = b.replay(request, margin: 0.1) { sent.append($0.body) }
        #expect(sent == [], "a message replayed once is marked as sent")
    }

    @Test func respectsEachFiltersSinceAndTheMargin() {
        var b = Buffer(window: 10, byteLimit: 1 << 20)
        for i in 0..<10 { b.append(time: Double(i), topic: i % 2 == 0 ? "even" : "odd", size: 1, sentTo: PeerSet(), body: i) }
        var sent: [Int] = []
        _ = b.replay(ReplayRequest(peer: 1, filters: [ReplayFilter(matchFilter: "even", since: 6.5), ReplayFilter(matchFilter: "odd", since: 3)]),
                     margin: 0.5) { sent.append($0.body) }
        #expect(sent == [3, 5, 6, 7, 8, 9])
    }

    @Test func windowAndBytesBoundWhatIsKeptAndSayWhenAReplayReachesTooFar() {
        var b = Buffer(window: 1, byteLimit: 10 * (Buffer.entryOverhead + 10))
        for i in 0..<20 { b.append(time: Double(i) * 0.01, topic: "t", size: 10, sentTo: PeerSet(), body: i) }
        #expect(b.count == 10, "the byte limit holds ten")
        #expect(b.evictedEarly == 10)
        #expect(b.bytes == 10 * (Buffer.entryOverhead + 10))
        b.append(time: 5, topic: "t", size: 10, sentTo: PeerSet(), body: 99)
        #expect(b.count == 1, "the window let the old ones go")
        var sent: [Int] = []
        let far = b.replay(ReplayRequest(peer: 0, filters: [ReplayFilter(matchFilter: "t", since: 0.1)]), margin: 0) { sent.append($0.body) }
        #expect(far.windowExceeded)
        #expect(sent == [99])
        let near = b.replay(ReplayRequest(peer: 1, filters: [ReplayFilter(matchFilter: "t", since: 4.5)]), margin: 0) { _ in }
        #expect(!near.windowExceeded)
        b.expire(now: 7)
        #expect(b.count == 0 && b.bytes == 0)
    }

    @Test func timesThatGoBackAreHeldAtTheLastOne() {
        var b = Buffer(window: 5, byteLimit: 1 << 20)
        b.append(time: 10, topic: "t", size: 1, sentTo: PeerSet(), body: 1)
        b.append(time: 9, topic: "t", size: 1, sentTo: PeerSet(), body: 2)
        var sent: [Int] = []
        _ = b.replay(ReplayRequest(peer: 0, filters: [ReplayFilter(matchFilter: "t", since: 10)]), margin: 0) { sent.append($0.body) }
        #expect(sent == [1, 2])
    }

    @Test func offKeepsNothing() {
        var b = Buffer(window: 0, byteLimit: 1 << 20)
        b.append(time: 1, topic: "t", size: 1, sentTo: PeerSet(), body: 1)
        #expect(b.count == 0)
        #expect(b.replay(ReplayRequest(peer: 0, filters: [ReplayFilter(matchFilter: "#", since: 0)]), margin: 1) { _ in } == ReplayOutcome())
    }

    /// Random appends, sends and replays against a plain list: each replay sends exactly the
    /// kept messages the model says, in order, and never one twice to the same peer.
    @Test(arguments: 0..<6)
    func differential(seed: Int) {
        var rng = seededGenerator(UInt64(seed) &+ 77)
        let window = 1.0
        var b = Buffer(window: window, byteLimit: 1 << 30)
        struct Kept { var time: Double; var topic: String; var sent: Set<Int> }
        var model: [Kept] = []
        var now = 0.0
        var lastAppend = 0.0
        let topics = ["a/b", "a/c", "b/b", "c", "a/b/c"]
        let filters = ["a/+", "#", "b/b", "a/#", "+/b", "c"]
        for step in 0..<4000 {
            now += Double.random(in: 0...0.01, using: &rng)
            if Int.random(in: 0..<10, using: &rng) < 8 {
                let topic = topics.randomElement(using: &rng)!
                let sent = Set((0..<3).filter { _ in Int.random(in: 0..<4, using: &rng) == 0 })
                b.append(time: now, topic: topic, size: 1, sentTo: PeerSet(sent), body: step)
                lastAppend = now
                model.append(Kept(time: now, topic: topic, sent: sent))
            } else {
                let peer = Int.random(in: 0..<3, using: &rng)
                let fs = (0..<Int.random(in: 1...3, using: &rng)).map { _ in
                    ReplayFilter(matchFilter: filters.randomElement(using: &rng)!, since: now - Double.random(in: 0...1.5, using: &rng))
                }
                let margin = Double.random(in: 0...0.2, using: &rng)
                var expected: [Int] = []
                // The buffer lets go of old messages when it takes a new one (never fewer kept).
                for i in model.indices where model[i].time >= lastAppend - window && !model[i].sent.contains(peer) {
                    if fs.contains(where: { $0.since - margin <= model[i].time && SubscriptionTree(filters: [$0.matchFilter: 1]).matches(model[i].topic) }) {
                        expected.append(i)
                        model[i].sent.insert(peer)
                    }
                }
                var got: [Int] = []
                _ = b.replay(ReplayRequest(peer: peer, filters: fs), margin: margin) { got.append($0.body) }
                // Bodies are step numbers; the model's indexes map to them through the appends.
                #expect(got.count == expected.count, "seed \(seed) step \(step)")
                if got.count != expected.count { return }
            }
        }
    }
}

@Suite("advert since")
struct AdvertSinceTests {
    @Test func roundTripsAndIsOmittedWhenEmpty() throws {
        let advert = InterestAdvert(node: "b", seq: 9, filters: ["a/+": 1, "c": 2], since: ["a/+": 1_764_450_000_123])
        let text = String(decoding: InterestAdvertCodec.encode(advert), as: UTF8.self)
        #expect(text == #"{"format":2,"node":"b","seq":9,"filters":{"a/+":1,"c":2},"since":{"a/+":1764450000123}}"#)
        #expect(try InterestAdvertCodec.decode(Array(text.utf8), expectedNode: "b") == advert)
        let plain = InterestAdvert(node: "b", seq: 9, filters: ["c": 2])
        #expect(!String(decoding: InterestAdvertCodec.encode(plain), as: UTF8.self).contains("since"))
    }

    @Test(arguments: [
        #"{"node":"b","seq":1,"filters":{"a":1},"since":[]}"#,
        #"{"node":"b","seq":1,"filters":{"a":1},"since":{"b":5}}"#,
        #"{"node":"b","seq":1,"filters":{"a":1},"since":{"a":-5}}"#,
        #"{"node":"b","seq":1,"filters":{"a":1},"since":{"a":1.5}}"#,
        #"{"node":"b","seq":1,"filters":{"a":1},"since":{"a":"5"}}"#,
    ])
    func ignoresMalformedSince(_ json: String) throws {
        // An unusable 'since' costs its replay, never the advert (`ControlFormat`).
        let reading = try InterestAdvertCodec.read(Array(json.utf8), expectedNode: "b")
        #expect(reading.advert == InterestAdvert(node: "b", seq: 1, filters: ["a": 1]))
        #expect(reading.widened.count == 1)
    }

    @Test func requestUsesMatchFormsAndSkipsTheEmptyShare() {
        let request = ReplayRequest(peer: 2, since: ["$share/g/a/+": 1500, "$share/g": 1000, "x": 2000])
        #expect(request?.filters.sorted { $0.since < $1.since } == [ReplayFilter(matchFilter: "a/+", since: 1.5), ReplayFilter(matchFilter: "x", since: 2)])
        #expect(ReplayRequest(peer: 0, since: ["$share/g/": 1]) == nil)
    }
}

@Suite("SessionTable appearances")
struct SessionTableAppearanceTests {
    @Test func newFiltersAreReportedOnceWhenRecording() {
        var table = SessionTable(excludedClientIDPrefix: "mosquitto-mesh/")
        _ = table.apply(.connected(clientID: "c1", protocolLevel: 4, cleanStart: true, keepalive: 60, username: nil))
        _ = table.apply(.subscribed(clientID: "c1", qos: 1, filter: "x"))
        #expect(table.takeAppeared() == [], "not recording by default")
        table.recordsAppearances = true
        _ = table.apply(.connected(clientID: "c2", protocolLevel: 4, cleanStart: true, keepalive: 60, username: nil))
        _ = table.apply(.subscribed(clientID: "c2", qos: 1, filter: "x"))
        _ = table.apply(.subscribed(clientID: "c2", qos: 1, filter: "y"))
        #expect(table.takeAppeared() == ["y"], "x was already wanted")
        #expect(table.takeAppeared() == [])
        var copy = table
        copy.recordsAppearances = false
        #expect(copy == table, "bookkeeping is not part of the table's value")
    }
}
