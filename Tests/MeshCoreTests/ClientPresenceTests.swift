import Testing
@testable import MeshCore

@Suite("TakeoverRule")
struct TakeoverRuleTests {
    static func connect(_ time: Int64, id: String = "x") -> ClientConnect {
        ClientConnect(clientID: id, time: time, cleanStart: true, protocolLevel: 5)
    }

    @Test func theOlderConnectionGivesWayTheNewerNever() {
        let online = LocalClient(online: true, connectedAt: 1_000)
        #expect(TakeoverRule.decide(remote: Self.connect(1_001), remoteNode: "b", local: online, localNode: "a") == .endConnection)
        #expect(TakeoverRule.decide(remote: Self.connect(999), remoteNode: "b", local: online, localNode: "a") == .keep(.localNewer))
        let offline = LocalClient(online: false, connectedAt: 1_000)
        #expect(TakeoverRule.decide(remote: Self.connect(5_000), remoteNode: "b", local: offline, localNode: "a") == .endSession)
        #expect(TakeoverRule.decide(remote: Self.connect(500), remoteNode: "b", local: offline, localNode: "a") == .keep(.localNewer))
    }

    @Test func nothingToEndWithoutASessionForAMeshClientOrWhileEnding() {
        #expect(TakeoverRule.decide(remote: Self.connect(9), remoteNode: "b", local: nil, localNode: "a") == .keep(.noSession))
        let mesh = LocalClient(online: true, connectedAt: 1, meshClient: true)
        #expect(TakeoverRule.decide(remote: Self.connect(9), remoteNode: "b", local: mesh, localNode: "a") == .keep(.meshClient))
        let ending = LocalClient(online: true, connectedAt: 1, ending: true)
        #expect(TakeoverRule.decide(remote: Self.connect(9), remoteNode: "b", local: ending, localNode: "a") == .keep(.alreadyEnding))
    }

    @Test func aConnectTheAgentNeverReadIsOlderThanAnyAnnounced() {
        let unknown = LocalClient(online: true, connectedAt: nil)
        #expect(TakeoverRule.decide(remote: Self.connect(0), remoteNode: "b", local: unknown, localNode: "a") == .endConnection)
        let unknownOffline = LocalClient(online: false, connectedAt: nil)
        #expect(TakeoverRule.decide(remote: Self.connect(0), remoteNode: "b", local: unknownOffline, localNode: "a") == .endSession)
    }

    @Test func extremeTimesDoNotTrap() {
        let early = LocalClient(online: true, connectedAt: Int64.min)
        #expect(TakeoverRule.decide(remote: Self.connect(Int64.max), remoteNode: "b", local: early, localNode: "a") == .endConnection)
        let late = LocalClient(online: true, connectedAt: Int64.max)
        #expect(TakeoverRule.decide(remote: Self.connect(0), remoteNode: "b", local: late, localNode: "a", margin: 10) == .keep(.localNewer))
    }

    /// Both nodes apply the rule to the same two times: exactly one of them ends its client,
    /// and (outside the margin) it is the one with the older connect.
    @Test(arguments: [Int64(0), 100])
    func bothSidesAgreeExactlyOneGivesWay(margin: Int64) {
        var rng = SystemRandomNumberGenerator()
        let nodes = ["a", "b", "node-10", "node-9", "ü"]
        for _ in 0..<5_000 {
            let pair = nodes.shuffled(using: &rng).prefix(2)
            let (n1, n2) = (pair.first!, pair.last!)
            let t1 = Int64.random(in: 0...400, using: &rng)
            let t2 = Int64.random(in: 0...400, using: &rng)
            let onFirst = TakeoverRule.decide(remote: Self.connect(t2), remoteNode: n2,
                                              local: LocalClient(online: true, connectedAt: t1), localNode: n1, margin: margin)
            let onSecond = TakeoverRule.decide(remote: Self.connect(t1), remoteNode: n1,
                                               local: LocalClient(online: Bool.random(using: &rng), connectedAt: t2), localNode: n2, margin: margin)
            #expect(onFirst.ends != onSecond.ends, "t1 \(t1) on \(n1), t2 \(t2) on \(n2), margin \(margin)")
            if abs(t1 - t2) > margin {
                #expect(onFirst.ends == (t1 < t2), "the newer connection was ended: t1 \(t1) on \(n1), t2 \(t2) on \(n2)")
            }
        }
    }

    @Test func equalTimesGoToTheNodeWhoseIdSortsLater() {
        let local = LocalClient(online: true, connectedAt: 7)
        #expect(TakeoverRule.decide(remote: Self.connect(7), remoteNode: "b", local: local, localNode: "a") == .endConnection)
        #expect(TakeoverRule.decide(remote: Self.connect(7), remoteNode: "a", local: local, localNode: "b") == .keep(.localWinsTie))
    }
}

@Suite("ConnectAnnouncementCodec")
struct ConnectAnnouncementCodecTests {
    @Test func roundTripsAnyClientId() throws {
        let ids = ["plain", "with space ", "quote\"back\\slash", "tab\tnew\nline\u{1}", "ü ñ 🚀", "a/+/#", String(repeating: "x", count: 65_535)]
        let connects = ids.enumerated().map { ClientConnect(clientID: $1, time: 1_764_450_000_000 + Int64($0), cleanStart: $0 % 2 == 0, protocolLevel: [1, 2, 5][$0 % 3]) }
        let announcement = ConnectAnnouncement(node: "b", connects: connects)
        let decoded = try ConnectAnnouncementCodec.decode(ConnectAnnouncementCodec.encode(announcement), expectedNode: "b")
        #expect(decoded == announcement)
    }

    @Test func batchesSplitLargeBurstsAndKeepOrder() throws {
        let connects = (0..<5_000).map { ClientConnect(clientID: "client-\($0)-" + String(repeating: "p", count: 100), time: Int64($0), cleanStart: true, protocolLevel: 5) }
        let batches = ConnectAnnouncementCodec.batches(node: "a", connects: connects)
        #expect(batches.count > 1)
        #expect(batches.allSatisfy { $0.count <= ConnectAnnouncementCodec.batchBytes + 1024 })
        let back = try batches.flatMap { try ConnectAnnouncementCodec.decode($0, expectedNode: "a").connects }
        #expect(back == connects)
        #expect(ConnectAnnouncementCodec.batches(node: "a", connects: []).isEmpty)
        // One id larger than a batch still goes out, alone.
        let huge = [ClientConnect(clientID: String(repeating: "h", count: 65_535), time: 1, cleanStart: true, protocolLevel: 5)]
        let single = ConnectAnnouncementCodec.batches(node: "a", connects: huge + huge + huge + huge + huge)
        #expect(single.count == 2)
    }

    @Test(arguments: [
        #"{"node":"c","connects":[]}"#,
        #"{"node":"b"}"#,
        #"{"node":"b","connects":{}}"#,
        #"{"node":"b","connects":[{"id":"","t":1,"c":true,"p":5}]}"#,
        #"{"node":"b","connects":[{"id":"x\u0000y","t":1,"c":true,"p":5}]}"#,
        #"{"node":"b","connects":[{"id":"x","t":1.5,"c":true,"p":5}]}"#,
        #"{"node":"b","connects":[{"id":"x","t":-1,"c":true,"p":5}]}"#,
        #"{"node":"b","connects":[{"id":"x","t":99999999999999999999,"c":true,"p":5}]}"#,
        #"{"node":"b","connects":[{"id":"x","t":1,"c":1,"p":5}]}"#,
        #"{"node":"b","connects":[{"id":"x","t":1,"c":true,"p":"5"}]}"#,
        #"{"node":"b","connects":[{"id":"x","t":1,"c":true}]}"#,
        #"{"node":"b","connects":["x"]}"#,
        #"{"node":"b/c","connects":[]}"#,
        #"[1]"#,
        "not json",
    ])
    func refusesWhatIsNotAnAnnouncementOfB(text: String) {
        #expect(throws: AdvertDecodeError.self) { try ConnectAnnouncementCodec.decode(Array(text.utf8), expectedNode: "b") }
    }

    @Test func ignoresUnknownKeys() throws {
        let text = #"{"node":"b","v":2,"connects":[{"id":"x","t":5,"c":false,"p":2,"extra":[1]}]}"#
        let decoded = try ConnectAnnouncementCodec.decode(Array(text.utf8), expectedNode: "b")
        #expect(decoded.connects == [ClientConnect(clientID: "x", time: 5, cleanStart: false, protocolLevel: 2)])
    }

    @Test func refusesOversizedPayloadsBeforeParsing() {
        let big = [UInt8](repeating: UInt8(ascii: " "), count: ConnectAnnouncementCodec.maximumPayloadBytes + 1)
        #expect(throws: AdvertDecodeError.self) { try ConnectAnnouncementCodec.decode(big, expectedNode: nil) }
    }
}

@Suite("ClientPresence")
struct ClientPresenceTests {
    static let fingerprint = ClientPresence.Fingerprint(keepalive: 47, username: "mesh")
    static func presence(_ node: String = "a") -> ClientPresence { ClientPresence(localNode: node, fingerprint: fingerprint) }
    static let meshPrefix: @Sendable (String) -> Bool = { $0.hasPrefix("mosquitto-mesh/") }
    static func connected(_ id: String, level: Int = 5, clean: Bool = true, keepalive: Int = 60, username: String? = nil) -> BrokerLogEvent {
        .connected(clientID: id, protocolLevel: level, cleanStart: clean, keepalive: keepalive, username: username)
    }
    /// The agent's own takeover connection as its broker logs it.
    static let own = connected("x", level: 2, clean: true, keepalive: 47, username: "mesh")

    @Test func connectTimeIsWhenReadButNoLaterThanTheBrokersSecond() {
        #expect(ClientPresence.connectTime(receivedAt: 1_700_000_000_250, line: Array("1700000000: New client connected".utf8)) == 1_700_000_000_250)
        // Read late (replayed after a restart): the end of the stamped second.
        #expect(ClientPresence.connectTime(receivedAt: 1_700_000_090_000, line: Array("1700000000: New client connected".utf8)) == 1_700_000_001_000)
        // No epoch prefix (log_timestamp false, or a strftime format): the time read.
        #expect(ClientPresence.connectTime(receivedAt: 42, line: Array("New client connected".utf8)) == 42)
        #expect(ClientPresence.connectTime(receivedAt: 42, line: Array("2026-11-22T02:56:21: New".utf8)) == 42)
        #expect(ClientPresence.connectTime(receivedAt: 42, line: [UInt8]()) == 42)
    }

    @Test func realConnectsAreAnnouncedMeshClientsAndOwnTakeoversAreNot() {
        var p = Self.presence()
        let out = p.observeLocal(Self.connected("x", level: 2, clean: false), at: 100, isMeshClient: Self.meshPrefix)
        #expect(out.announce == ClientConnect(clientID: "x", time: 100, cleanStart: false, protocolLevel: 2))
        #expect(out.takeover == nil && !out.ownConnection)
        #expect(p.observeLocal(Self.connected("mosquitto-mesh/a/local"), at: 100, isMeshClient: Self.meshPrefix) == .init())
        // Without a takeover under way the fingerprint means nothing: a real client.
        #expect(p.observeLocal(Self.own, at: 150, isMeshClient: Self.meshPrefix).announce != nil)

        // A takeover of x: its first matching connect line is the agent's own, the next one is real.
        let decision = p.observeRemote(ClientConnect(clientID: "x", time: 200, cleanStart: true, protocolLevel: 5), from: "b", at: 210,
                                       session: (online: true, meshClient: false))
        #expect(decision == .endConnection)
        #expect(p.isEnding("x"))
        let mine = p.observeLocal(Self.own, at: 220, isMeshClient: Self.meshPrefix)
        #expect(mine.ownConnection && mine.announce == nil)
        #expect(p.clients["x"] == nil, "the agent's own connection is not the client")
        #expect(p.observeLocal(Self.own, at: 230, isMeshClient: Self.meshPrefix).announce != nil)
        // A connect line that differs from the fingerprint in any part is a real client.
        for event in [Self.connected("y", level: 5, clean: true, keepalive: 47, username: "mesh"),
                      Self.connected("y", level: 2, clean: false, keepalive: 47, username: "mesh"),
                      Self.connected("y", level: 2, clean: true, keepalive: 60, username: "mesh"),
                      Self.connected("y", level: 2, clean: true, keepalive: 47, username: nil)] {
            var q = Self.presence()
            _ = q.observeRemote(ClientConnect(clientID: "y", time: 5, cleanStart: true, protocolLevel: 5), from: "b", at: 5,
                                session: (online: true, meshClient: false))
            #expect(!q.observeLocal(event, at: 6, isMeshClient: Self.meshPrefix).ownConnection)
        }
    }

    @Test func disconnectsEndCleanSessionsAndLeavePersistentOnesOffline() {
        var p = Self.presence()
        _ = p.observeLocal(Self.connected("clean311", level: 2, clean: true), at: 1, isMeshClient: Self.meshPrefix)
        _ = p.observeLocal(Self.connected("kept", level: 2, clean: false), at: 2, isMeshClient: Self.meshPrefix)
        _ = p.observeLocal(Self.connected("v5", level: 5, clean: true), at: 3, isMeshClient: Self.meshPrefix)
        for id in ["clean311", "kept", "v5"] { _ = p.observeLocal(.disconnected(clientID: id, reason: .clean), at: 0, isMeshClient: Self.meshPrefix) }
        #expect(p.clients["clean311"] == nil)
        #expect(p.clients["kept"] == .init(connectedAt: 2, online: false, endsAtDisconnect: false))
        // MQTT 5: the expiry is not logged, kept offline until the session table lets go.
        #expect(p.clients["v5"]?.online == false)
        _ = p.observeLocal(.expired(clientID: "kept"), at: 0, isMeshClient: Self.meshPrefix)
        #expect(p.clients["kept"] == nil)
        p.prune(now: 10, hasSession: { _ in false })
        #expect(p.clients.isEmpty)
    }

    @Test func remoteConnectsAreJudgedAgainstTheLocalConnectTime() {
        var p = Self.presence("a")
        _ = p.observeLocal(Self.connected("x"), at: 1_000, isMeshClient: Self.meshPrefix)
        let online = (online: true, meshClient: false)
        #expect(p.observeRemote(ClientConnect(clientID: "x", time: 900, cleanStart: true, protocolLevel: 5), from: "b", at: 1_001, session: online) == .keep(.localNewer))
        #expect(!p.isEnding("x"))
        #expect(p.observeRemote(ClientConnect(clientID: "x", time: 1_100, cleanStart: false, protocolLevel: 5), from: "b", at: 1_101, session: online) == .endConnection)
        // Announced again (another node, or a duplicate) while the takeover is under way: once.
        #expect(p.observeRemote(ClientConnect(clientID: "x", time: 1_200, cleanStart: true, protocolLevel: 5), from: "c", at: 1_201, session: online) == .keep(.alreadyEnding))
        // The recheck before connecting ignores the mark, not the times.
        #expect(p.recheck(ClientConnect(clientID: "x", time: 1_100, cleanStart: true, protocolLevel: 5), from: "b", session: online) == .endConnection)
        #expect(p.observeRemote(ClientConnect(clientID: "z", time: 1, cleanStart: true, protocolLevel: 5), from: "b", at: 1_300, session: nil) == .keep(.noSession))
    }

    @Test func theRecheckSparesAClientThatCameBackSince() {
        var p = Self.presence("a")
        _ = p.observeLocal(Self.connected("x"), at: 1_000, isMeshClient: Self.meshPrefix)
        let remote = ClientConnect(clientID: "x", time: 1_100, cleanStart: true, protocolLevel: 5)
        #expect(p.observeRemote(remote, from: "b", at: 1_101, session: (online: true, meshClient: false)).ends)
        // The client reconnects here before the job runs (not the agent's fingerprint).
        _ = p.observeLocal(Self.connected("x"), at: 1_150, isMeshClient: Self.meshPrefix)
        #expect(p.recheck(remote, from: "b", session: (online: true, meshClient: false)) == .keep(.localNewer))
    }

    @Test func aLocalConnectReadAfterAPeersNewerAnnouncementIsEndedAtOnce() {
        var p = Self.presence("a")
        // The peer's announcement arrives before this agent read its own line (its log lagging).
        #expect(p.observeRemote(ClientConnect(clientID: "x", time: 1_050, cleanStart: true, protocolLevel: 5), from: "b", at: 1_060, session: nil) == .keep(.noSession))
        let out = p.observeLocal(Self.connected("x"), at: 1_000, isMeshClient: Self.meshPrefix)
        #expect(out.announce?.time == 1_000)
        #expect(out.takeover == .init(decision: .endConnection, node: "b", connect: ClientConnect(clientID: "x", time: 1_050, cleanStart: true, protocolLevel: 5)))
        #expect(p.isEnding("x"))
        // A local connect newer than what the peer announced is left alone (the peer ends its own).
        var q = Self.presence("a")
        _ = q.observeRemote(ClientConnect(clientID: "x", time: 1_050, cleanStart: true, protocolLevel: 5), from: "b", at: 1_060, session: nil)
        #expect(q.observeLocal(Self.connected("x"), at: 1_070, isMeshClient: Self.meshPrefix).takeover == nil)
    }

    @Test func takeoverMarksAndRemoteConnectsAreForgottenInTime() {
        var p = Self.presence("a")
        _ = p.observeLocal(Self.connected("x"), at: 1_000, isMeshClient: Self.meshPrefix)
        _ = p.observeRemote(ClientConnect(clientID: "x", time: 2_000, cleanStart: true, protocolLevel: 5), from: "b", at: 2_000, session: (online: true, meshClient: false))
        // The job ended before its connect line was read: the line is still recognised…
        p.finishEnding("x", at: 3_000)
        #expect(p.isEnding("x"))
        #expect(p.observeLocal(Self.own, at: 3_100, isMeshClient: Self.meshPrefix).ownConnection)
        #expect(!p.isEnding("x"))
        // …but not for ever: a job that never connected leaves no line.
        _ = p.observeLocal(Self.connected("y"), at: 3_000, isMeshClient: Self.meshPrefix)
        _ = p.observeRemote(ClientConnect(clientID: "y", time: 4_000, cleanStart: true, protocolLevel: 5), from: "b", at: 4_000, session: (online: true, meshClient: false))
        p.finishEnding("y", at: 4_500)
        p.prune(now: 4_500 + ClientPresence.lineWait + 1, hasSession: { _ in true })
        #expect(!p.isEnding("y"))
        #expect(p.observeLocal(Self.connected("y", level: 2, clean: true, keepalive: 47, username: "mesh"), at: 20_000, isMeshClient: Self.meshPrefix).announce != nil)
        // A peer's connect is remembered for a late local line only `remoteMemory`.
        var q = Self.presence("a")
        _ = q.observeRemote(ClientConnect(clientID: "z", time: 10_000, cleanStart: true, protocolLevel: 5), from: "b", at: 10_000, session: nil)
        q.prune(now: 10_000 + ClientPresence.remoteMemory + 1, hasSession: { _ in true })
        #expect(q.observeLocal(Self.connected("z"), at: 5_000, isMeshClient: Self.meshPrefix).takeover == nil)
    }
}

@Suite("PresenceSnapshot")
struct PresenceSnapshotTests {
    static let meshPrefix: @Sendable (String) -> Bool = { $0.hasPrefix("mosquitto-mesh/") }

    @Test func roundTripsAndIsByteStable() throws {
        let s = PresenceSnapshot(node: "a", time: 1_764_450_000_123, online: ["x": 5, "with space": 0, "ü\"q": 7], offline: 3, unlisted: 2)
        let bytes = PresenceSnapshotCodec.encode(s)
        #expect(try PresenceSnapshotCodec.decode(bytes, expectedNode: "a") == s)
        #expect(PresenceSnapshotCodec.encode(s) == bytes)
        #expect(throws: AdvertDecodeError.self) { try PresenceSnapshotCodec.decode(bytes, expectedNode: "b") }
    }

    @Test(arguments: [
        #"{"node":"a","time":1,"offline":0,"unlisted":0}"#,
        #"{"node":"a","time":1,"offline":-1,"unlisted":0,"online":{}}"#,
        #"{"node":"a","time":1.5,"offline":0,"unlisted":0,"online":{}}"#,
        #"{"node":"a","time":1,"offline":0,"unlisted":0,"online":{"x":-3}}"#,
        #"{"node":"a","time":1,"offline":0,"unlisted":0,"online":{"":3}}"#,
        #"{"node":"a","time":1,"offline":0,"unlisted":0,"online":{"x":1,"x":2}}"#,
        #"{"node":"a","time":1,"offline":0,"unlisted":0,"online":[]}"#,
    ])
    func refusesMalformedSnapshots(text: String) {
        #expect(throws: AdvertDecodeError.self) { try PresenceSnapshotCodec.decode(Array(text.utf8), expectedNode: "a") }
    }

    @Test func listsOnlineClientsWithTheirConnectTimesAndCountsTheRest() {
        var table = SessionTable()
        var p = ClientPresence(localNode: "a", fingerprint: .init(keepalive: 47, username: nil))
        func connect(_ id: String, level: Int = 5, clean: Bool = true, at time: Int64) {
            let e = BrokerLogEvent.connected(clientID: id, protocolLevel: level, cleanStart: clean, keepalive: 60, username: nil)
            table.apply(e)
            _ = p.observeLocal(e, at: time, isMeshClient: Self.meshPrefix)
        }
        connect("on", at: 10)
        connect("kept", level: 2, clean: false, at: 20)
        table.apply(.disconnected(clientID: "kept", reason: .clean))
        _ = p.observeLocal(.disconnected(clientID: "kept", reason: .clean), at: 0, isMeshClient: Self.meshPrefix)
        connect("mosquitto-mesh/a/local", at: 30)
        // Online, but its connect was never read by this agent (a subscribe line only).
        table.apply(.subscribed(clientID: "unseen", qos: 1, filter: "t/#"))
        let s = p.snapshot(of: table, at: 99)
        #expect(s == PresenceSnapshot(node: "a", time: 99, online: ["on": 10, "unseen": 0], offline: 1, unlisted: 0))
        let capped = p.snapshot(of: table, at: 99, limit: 1)
        #expect(capped.online.count == 1 && capped.unlisted == 1 && capped.offline == 1)
    }

    @Test func reconcilingAPeersSnapshotEndsOnlyWhatIsOlderHere() {
        var p = ClientPresence(localNode: "a", fingerprint: .init(keepalive: 47, username: nil))
        for (id, t) in [("older", Int64(100)), ("newer", 900)] {
            _ = p.observeLocal(.connected(clientID: id, protocolLevel: 5, cleanStart: true, keepalive: 60, username: nil), at: t, isMeshClient: Self.meshPrefix)
        }
        let sessions: [String: (online: Bool, meshClient: Bool)] = [
            "older": (true, false), "newer": (true, false), "offline-here": (false, false), "mosquitto-mesh/x": (true, true),
        ]
        let snapshot = PresenceSnapshot(node: "b", time: 1_000, online: [
            "older": 500, "newer": 500, "offline-here": 500, "only-there": 500, "mosquitto-mesh/x": 500,
        ], offline: 0)
        let takeovers = p.reconcile(snapshot, at: 1_000) { sessions[$0] }
        #expect(Dictionary(uniqueKeysWithValues: takeovers.map { ($0.connect.clientID, $0.decision) }) == ["older": .endConnection, "offline-here": .endSession])
        #expect(takeovers.allSatisfy { $0.node == "b" && $0.connect.time == 500 })
        #expect(p.isEnding("older") && p.isEnding("offline-here") && !p.isEnding("newer"))
        // Read again (a later snapshot, unchanged): nothing new is started.
        #expect(p.reconcile(snapshot, at: 1_100) { sessions[$0] }.isEmpty)
    }

    @Test func twoConnectsNeitherAgentReadAreStillOrderedOneWay() {
        // Both agents restarted: each lists the other's client at time 0 and has no time of its own.
        let onA = TakeoverRule.decide(remote: ClientConnect(clientID: "x", time: 0, cleanStart: false, protocolLevel: 0), remoteNode: "b",
                                      local: LocalClient(online: true, connectedAt: nil), localNode: "a")
        let onB = TakeoverRule.decide(remote: ClientConnect(clientID: "x", time: 0, cleanStart: false, protocolLevel: 0), remoteNode: "a",
                                      local: LocalClient(online: true, connectedAt: nil), localNode: "b")
        #expect(onA.ends != onB.ends)
    }
}
