import Foundation
import Testing
@testable import MeshCore

@Suite("SessionDirectory")
struct SessionDirectoryTests {
    static func connect(_ id: String, level: Int, clean: Bool) -> BrokerLogEvent {
        .connected(clientID: id, protocolLevel: level, cleanStart: clean, keepalive: 60, username: nil)
    }

    static func table(_ events: [BrokerLogEvent]) -> SessionTable {
        var t = SessionTable()
        for e in events { t.apply(e) }
        return t
    }

    @Test func onlySessionsThatCanBeResumedAreShared() {
        let t = Self.table([
            Self.connect("p311", level: 2, clean: false), .subscribed(clientID: "p311", qos: 1, filter: "a/#"),
            Self.connect("clean311", level: 2, clean: true), .subscribed(clientID: "clean311", qos: 0, filter: "b"),
            Self.connect("v5resume", level: 5, clean: false), .subscribed(clientID: "v5resume", qos: 2, filter: "c/+"),
            Self.connect("v5clean", level: 5, clean: true), .subscribed(clientID: "v5clean", qos: 1, filter: "d"),
            Self.connect("mosquitto-mesh/a/local", level: 5, clean: false),
            .disconnected(clientID: "p311", reason: .closed),
        ])
        let shards = SessionDirectory.build(t, cleanStartV5: { $0 == "v5clean" }, adopted: { _ in nil })
        let all = shards.flatMap { $0 }.sorted { $0.clientID < $1.clientID }
        #expect(all.map(\.clientID) == ["p311", "v5resume"])
        #expect(all[0] == SharedSession(clientID: "p311", protocolLevel: 4, filters: ["a/#": 1], expiry: .never))
        #expect(all[1] == SharedSession(clientID: "v5resume", protocolLevel: 5, filters: ["c/+": 2], expiry: .unknown))
        for (i, shard) in shards.enumerated() {
            for s in shard { #expect(SessionDirectory.shard(of: s.clientID) == i) }
        }
    }

    @Test func aSessionWhoseSubscriptionsAreNotAllKnownIsSharedButNotAdoptable() {
        var t = SessionTable(everyClientKnown: false)
        t.apply(Self.connect("resumed", level: 2, clean: false))
        let e = SessionDirectory.entry(id: "resumed", session: t.sessions["resumed"]!, cleanStartV5: false, adopted: nil)
        #expect(e?.filtersIncomplete == true)
        #expect(e?.adoptable == false)
    }

    @Test func shardOfIsStableAcrossRuns() {
        // FNV-1a 64 of "" and "a" (published test vectors), then mod 64.
        #expect(SessionDirectory.fnv1a("".utf8) == 0xcbf2_9ce4_8422_2325)
        #expect(SessionDirectory.fnv1a("a".utf8) == 0xaf63_dc4c_8601_ec8c)
        #expect(SessionDirectory.shard(of: "a") == Int(UInt64(0xaf63_dc4c_8601_ec8c) % 64))
    }

    @Test func rebuildingOneShardFromItsIdsEqualsTheFullBuild() {
        var t = SessionTable()
        for i in 0..<500 {
            t.apply(Self.connect("c\(i)", level: i % 2 == 0 ? 2 : 5, clean: false))
            t.apply(.subscribed(clientID: "c\(i)", qos: i % 3, filter: "t/\(i)/#"))
        }
        let full = SessionDirectory.build(t, cleanStartV5: { _ in false }, adopted: { _ in nil })
        t.apply(.unsubscribed(clientID: "c7", filter: "t/7/#"))
        t.apply(.expired(clientID: "c8"))
        let shard7 = SessionDirectory.shard(of: "c7"), shard8 = SessionDirectory.shard(of: "c8")
        let after = SessionDirectory.build(t, cleanStartV5: { _ in false }, adopted: { _ in nil })
        for shard in [shard7, shard8] {
            let rebuilt = SessionDirectory.rebuild(t, ids: full[shard].map(\.clientID), cleanStartV5: { _ in false }, adopted: { _ in nil })
            #expect(rebuilt == after[shard])
        }
        #expect(after[shard7].first { $0.clientID == "c7" }?.filters == [:])
        #expect(!after[shard8].contains { $0.clientID == "c8" })
    }

    @Test func codecRoundTripsAndIsCompact() throws {
        let shard = SessionShard(node: "a", index: SessionDirectory.shard(of: "x y"), count: 64, sessions: [
            SharedSession(clientID: "x y", protocolLevel: 5, filters: ["$share/g/a/+": 1, "b/#": 2], expiry: .unknown,
                          filtersIncomplete: true, adopted: .init(from: "c", time: 1_764_450_000_123)),
        ])
        let bytes = SessionShardCodec.encode(shard)
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"node":"a","shard":\#(shard.index),"of":64,"sessions":[{"id":"x y","p":5,"f":{"$share/g/a/+":1,"b/#":2},"e":"unknown","u":true,"a":{"from":"c","t":1764450000123}}]}"#)
        #expect(try SessionShardCodec.decode(bytes, expectedNode: "a", expectedShard: shard.index) == shard)
    }

    @Test func hostilePayloadsAreRejectedNotTrapped() {
        let good = SessionShardCodec.encode(SessionShard(node: "a", index: SessionDirectory.shard(of: "x"), count: 64, sessions: [
            SharedSession(clientID: "x", protocolLevel: 4, filters: ["t": 1], expiry: .never),
        ]))
        let text = String(decoding: good, as: UTF8.self)
        let wrongShard = (SessionDirectory.shard(of: "x") + 1) % 64
        let cases: [(String, String)] = [
            ("other node", text.replacingOccurrences(of: #""node":"a""#, with: #""node":"b""#)),
            ("id in the wrong shard", text.replacingOccurrences(of: #""shard":\#(SessionDirectory.shard(of: "x"))"#, with: #""shard":\#(wrongShard)"#)),
            ("bad filter", text.replacingOccurrences(of: #""t":1"#, with: #""a/#/b":1"#)),
            ("qos 3", text.replacingOccurrences(of: #""t":1"#, with: #""t":3"#)),
            ("float qos", text.replacingOccurrences(of: #""t":1"#, with: #""t":1.0"#)),
            ("protocol 3", text.replacingOccurrences(of: #""p":4"#, with: #""p":3"#)),
            ("expiry", text.replacingOccurrences(of: #""e":"never""#, with: #""e":"soon""#)),
            ("not json", "{"),
            ("empty id", text.replacingOccurrences(of: #""id":"x""#, with: #""id":"""#)),
        ]
        for (label, payload) in cases {
            #expect(throws: AdvertDecodeError.self, "\(label)") {
                try SessionShardCodec.decode(Array(payload.utf8), expectedNode: "a", expectedShard: nil)
            }
        }
        #expect(throws: AdvertDecodeError.self) { try SessionShardCodec.decode(good, expectedNode: "a", expectedShard: wrongShard) }
    }

    @Test func topicsParseOnlyTheirOwnShape() {
        #expect(SessionDirectory.parseTopic(SessionDirectory.topic(node: "b", shard: 17))! == ("b", 17))
        #expect(SessionDirectory.parseTopic("$mesh/b/sessions") == nil)
        #expect(SessionDirectory.parseTopic("$mesh/a/peers/b/sessions") == nil)
        #expect(SessionDirectory.parseTopic("$mesh/b/sessions/x") == nil)
        #expect(SessionDirectory.parseTopic("$mesh/b/sessions/-1") == nil)
        #expect(SessionDirectory.parseTopic("$mesh/b+/sessions/1") == nil)
    }

    @Test func remoteSessionsFollowShards() {
        var r = RemoteSessions()
        let s = { (id: String) in SharedSession(clientID: id, protocolLevel: 4, filters: ["t": 1], expiry: .never) }
        let ids = (0..<200).map { "id\($0)" }
        let byShard = Dictionary(grouping: ids) { SessionDirectory.shard(of: $0) }
        for (i, group) in byShard { r.apply(SessionShard(node: "a", index: i, count: 64, sessions: group.map(s))) }
        #expect(r.count(of: "a") == 200)
        #expect(r.holders(of: "id5") == ["a"])
        #expect(r.holders(of: "id5", excluding: ["a"]).isEmpty)
        let shard5 = SessionDirectory.shard(of: "id5")
        let changed = r.apply(SessionShard(node: "a", index: shard5, count: 64, sessions: byShard[shard5]!.filter { $0 != "id5" }.map(s)))
        #expect(changed == ["id5"])
        #expect(r.session("id5", on: "a") == nil)
        #expect(r.remove(node: "a", shard: shard5).count == byShard[shard5]!.count - 1)
        // Fewer shards now: the ones beyond the new count go.
        let shard0 = byShard[0] ?? []
        r.apply(SessionShard(node: "a", index: 0, count: 1, sessions: []))
        #expect(r.count(of: "a") == 0, "had \(shard0.count) in shard 0")
    }

    @Test func rendezvousIsBalancedAndMovesOnlyTheLostNodesIds() {
        let nodes = ["a", "b", "c", "d"]
        var owners: [String: String] = [:]
        var counts: [String: Int] = [:]
        for i in 0..<20_000 {
            let id = "client-\(i)"
            let o = Rendezvous.owner(of: id, among: nodes)!
            owners[id] = o
            counts[o, default: 0] += 1
        }
        for n in nodes { #expect(abs(counts[n]! - 5_000) < 400, "\(n): \(counts[n]!)") }
        var moved: [String: Int] = [:]
        for (id, o) in owners {
            let after = Rendezvous.owner(of: id, among: ["a", "b", "d"])!
            if o != "c" { #expect(after == o) } else { moved[after, default: 0] += 1 }
        }
        for n in ["a", "b", "d"] { #expect(abs(moved[n]! - counts["c"]! / 3) < 300, "\(n): \(moved[n]!)") }
        // The order the nodes are given in does not matter.
        #expect(Rendezvous.owner(of: "x", among: ["c", "a", "b"]) == Rendezvous.owner(of: "x", among: ["a", "b", "c"]))
        #expect(Rendezvous.owner(of: "x", among: [String]()) == nil)
    }

    @Test func aNodeIsLostOnlyWhenEveryLiveAgentAgreesAndAMajorityIsLive() {
        let now = 1_000.0
        let reachB = ReachReport(node: "b", time: 0, down: ["c": 0])
        let peers = [
            AdoptionRule.Peer(nodes: ["b"], linkUp: true, downSince: nil),
            AdoptionRule.Peer(nodes: ["c"], linkUp: false, downSince: now - 6),
        ]
        var v = AdoptionRule.judge(selfNode: "a", selfUp: true, peers: peers, configuredNodes: 3, reach: ["b": reachB], adoptAfter: 5, now: now)
        #expect(v.live == ["a", "b"])
        #expect(v.majority)
        #expect(v.lost == ["c"])
        // Too early: not lost yet, but agreed unreachable (its clients are held).
        v = AdoptionRule.judge(selfNode: "a", selfUp: true, peers: peers, configuredNodes: 3, reach: ["b": reachB], adoptAfter: 10, now: now)
        #expect(v.lost.isEmpty)
        #expect(v.unreachable["c"] == now - 6)
        #expect(v.agreed["c"] == now - 6)
        // b still reaches c (a link cut between a and c only), or has not said yet.
        for reach in [["b": ReachReport(node: "b", time: 0, down: [:])], [:]] {
            v = AdoptionRule.judge(selfNode: "a", selfUp: true, peers: peers, configuredNodes: 3, reach: reach, adoptAfter: 5, now: now)
            #expect(v.lost.isEmpty)
            #expect(v.disputed == ["c"])
            #expect(v.agreed.isEmpty)
        }
        // a is the one cut off: no majority, nothing held or adopted.
        let alone = [AdoptionRule.Peer(nodes: ["b"], linkUp: false, downSince: now - 60), AdoptionRule.Peer(nodes: ["c"], linkUp: false, downSince: now - 60)]
        v = AdoptionRule.judge(selfNode: "a", selfUp: true, peers: alone, configuredNodes: 3, reach: [:], adoptAfter: 5, now: now)
        #expect(!v.majority)
        #expect(v.lost.isEmpty)
        // Two nodes: the survivor cannot tell the other's death from its own partition.
        v = AdoptionRule.judge(selfNode: "a", selfUp: true, peers: [peers[1]], configuredNodes: 2, reach: [:], adoptAfter: 5, now: now)
        #expect(!v.majority && v.lost.isEmpty)
        // An agent beside a dead broker adopts nothing.
        v = AdoptionRule.judge(selfNode: "a", selfUp: false, peers: peers, configuredNodes: 3, reach: ["b": reachB], adoptAfter: 5, now: now)
        #expect(v.lost.isEmpty && v.live.isEmpty)
    }

    @Test func reachReportRoundTrips() throws {
        let r = ReachReport(node: "b", time: 17, down: ["a": 3, "c": 9])
        #expect(try ReachReportCodec.decode(ReachReportCodec.encode(r), expectedNode: "b") == r)
        #expect(throws: AdvertDecodeError.self) { try ReachReportCodec.decode(ReachReportCodec.encode(r), expectedNode: "a") }
        #expect(throws: AdvertDecodeError.self) { try ReachReportCodec.decode(Array(#"{"node":"b","time":1,"down":{"a/b":1}}"#.utf8), expectedNode: nil) }
    }

    /// The figures behind the design: 100 000 persistent sessions (ids ~20 bytes, two filters
    /// each) — the whole directory's size, one shard's, and what building and encoding cost.
    @Test func hundredThousandSessions() throws {
        var t = SessionTable()
        for i in 0..<100_000 {
            let id = "device-\(i)-\(i &* 2_654_435_761 % 1_000_003)"
            t.apply(Self.connect(id, level: i % 2 == 0 ? 2 : 5, clean: false))
            t.apply(.subscribed(clientID: id, qos: 1, filter: "devices/\(i)/cmd/#"))
            t.apply(.subscribed(clientID: id, qos: 0, filter: "fleet/broadcast"))
            t.apply(.disconnected(clientID: id, reason: .closed))
        }
        let clock = ContinuousClock()
        var shards: [[SharedSession]] = []
        let build = clock.measure { shards = SessionDirectory.build(t, cleanStartV5: { _ in false }, adopted: { _ in nil }) }
        var payloads: [[UInt8]] = []
        let encode = clock.measure {
            payloads = shards.enumerated().map { SessionShardCodec.encode(SessionShard(node: "a", index: $0.offset, count: 64, sessions: $0.element)) }
        }
        let one = shards[0].map(\.clientID)
        let rebuild = clock.measure { _ = SessionDirectory.rebuild(t, ids: one, cleanStartV5: { _ in false }, adopted: { _ in nil }) }
        var decoded = 0
        let decode = try clock.measure {
            for (i, p) in payloads.enumerated() { decoded += try SessionShardCodec.decode(p, expectedNode: "a", expectedShard: i).sessions.count }
        }
        let total = payloads.reduce(0) { $0 + $1.count }
        let largest = payloads.map(\.count).max()!
        print("session directory, 100 000 sessions: \(total) bytes in 64 shards (largest \(largest)); build \(build), encode \(encode), one shard rebuilt \(rebuild), decode all \(decode)")
        #expect(decoded == 100_000)
        #expect(shards.map(\.count).min()! > 1_300 && shards.map(\.count).max()! < 1_850, "shards unbalanced")
        #expect(total < 12_000_000)
        #expect(largest < 200_000)
    }
}
