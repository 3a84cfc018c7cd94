import Foundation
import Testing
@testable import MeshCore

/// What the log cannot tell: MQTT 5 session lifetimes, cut and ambiguous lines, lost lines.
/// The table must keep the larger picture and let go only on evidence or after the grace.
@Suite("SessionTable evidence")
struct SessionEvidenceTests {
    static func connect5(_ id: String, clean: Bool = true) -> BrokerLogEvent {
        .connected(clientID: id, protocolLevel: 5, cleanStart: clean, keepalive: 60, username: nil)
    }
    static func connect3(_ id: String, clean: Bool) -> BrokerLogEvent {
        .connected(clientID: id, protocolLevel: 2, cleanStart: clean, keepalive: 60, username: nil)
    }
    static func sub(_ id: String, _ filter: String) -> BrokerLogEvent { .subscribed(clientID: id, qos: 1, filter: filter) }

    /// A clean-start MQTT 5 client `id` that subscribed `filter` and disconnected: kept, its
    /// session's expiry not being in the log.
    static func v5Left(_ table: inout SessionTable, _ id: String, _ filter: String) {
        table.apply(connect5(id))
        table.apply(sub(id, filter))
        table.apply(.disconnected(clientID: id, reason: .clean))
    }

    /// Ticks the table's clock `n` times, one second apart.
    static func tick(_ table: inout SessionTable, _ n: Int = 1) {
        for _ in 0..<n { table.advance(to: .init(tick: table.clock.tick + 1, time: table.clock.time + 1)) }
    }

    @Test("an MQTT 5 session keeps its filters offline: clean start = 1 with a session expiry is persistent")
    func v5SessionKeptOffline() {
        var table = SessionTable()
        table.apply(Self.connect5("v5"))
        table.apply(Self.sub("v5", "x/#"))
        #expect(table.apply(.disconnected(clientID: "v5", reason: .clean)) == false)
        #expect(table.interest == ["x/#": 1])
        #expect(table.uncertainSessions == 1)
        // A resume (clean start 0) logs nothing more: the filters are still there.
        #expect(table.apply(Self.connect5("v5", clean: false)) == false)
        #expect(table.interest == ["x/#": 1])
        // Restored only if the session had an expiry, which the log does not say: in doubt.
        #expect(table.uncertainSessions == 1)
    }

    @Test("the broker's count of offline sessions releases MQTT 5 sessions that ended")
    func censusReleasesEndedSessions() {
        var table = SessionTable()
        table.apply(Self.connect3("durable", clean: false))
        table.apply(Self.sub("durable", "d"))
        table.apply(.disconnected(clientID: "durable", reason: .clean))
        Self.v5Left(&table, "gone", "g")
        // The broker counts one offline session: the durable one, so "gone" is gone.
        let snapshot = table.censusSnapshot(pendingSocketsComplete: true)
        // Not while the log connection may be lagging (counts could overtake lines).
        #expect(table.census(snapshot, counts: .init(disconnected: 1, connected: 0), caughtUp: false).byEvidence == 0)
        // Two offline sessions counted: "gone" may be alive.
        #expect(table.census(snapshot, counts: .init(disconnected: 2, connected: 0), caughtUp: true).byEvidence == 0)
        let released = table.census(snapshot, counts: .init(disconnected: 1, connected: 0), caughtUp: true)
        #expect(released.byEvidence == 1 && released.changedInterest)
        #expect(table.interest == ["d": 1])
        #expect(!table.isKnownClient("gone"))
    }

    @Test("sockets waiting for CONNECT lower the broker's count: census allows for them")
    func censusAllowsForPendingSockets() {
        var table = SessionTable()
        table.apply(Self.connect5("maybe"))
        table.apply(Self.sub("maybe", "m"))
        table.apply(.disconnected(clientID: "maybe", reason: .closed))
        table.apply(.socketOpened)
        // "maybe" alive and one socket without CONNECT: by_id − by_sock = 1 − 1 = 0.
        var snapshot = table.censusSnapshot(pendingSocketsComplete: true)
        #expect(table.census(snapshot, counts: .init(disconnected: 0, connected: 1), caughtUp: true).byEvidence == 0)
        // Before every open socket is known to have been logged, any socket the broker has
        // beyond the known online sessions may be one (here the log saw none).
        var fresh = SessionTable()
        fresh.apply(Self.connect5("maybe"))
        fresh.apply(.disconnected(clientID: "maybe", reason: .closed))
        snapshot = fresh.censusSnapshot(pendingSocketsComplete: false)
        #expect(fresh.census(snapshot, counts: .init(disconnected: 0, connected: 1), caughtUp: true).byEvidence == 0)
        snapshot = fresh.censusSnapshot(pendingSocketsComplete: true)
        #expect(fresh.census(snapshot, counts: .init(disconnected: 0, connected: 1), caughtUp: true).byEvidence == 1)
    }

    @Test("a session that comes back between the snapshot and its counts is not released")
    func censusSkipsSessionsThatChanged() {
        var table = SessionTable()
        Self.v5Left(&table, "back", "b")
        let snapshot = table.censusSnapshot(pendingSocketsComplete: true)
        table.apply(Self.connect5("back", clean: false))
        #expect(table.census(snapshot, counts: .init(disconnected: 0, connected: 0), caughtUp: true).byEvidence == 0)
        #expect(table.interest == ["b": 1])
    }

    @Test("an MQTT 5 session the counters show alive is kept")
    func censusKeepsLiveSessions() {
        var table = SessionTable()
        Self.v5Left(&table, "alive", "a")
        let snapshot = table.censusSnapshot(pendingSocketsComplete: true)
        #expect(table.census(snapshot, counts: .init(disconnected: 1, connected: 0), caughtUp: true).byEvidence == 0)
        #expect(table.interest == ["a": 1])
    }

    @Test("grace and limit release uncertain sessions, and a forgotten id that resumes counts as #")
    func graceAndLimit() {
        var table = SessionTable()
        for i in 0..<5 {
            Self.v5Left(&table, "s\(i)", "t/\(i)")
            Self.tick(&table)
        }
        var released = table.sweep(grace: 100, limit: 3)
        #expect(released.byLimit == 2)
        #expect(table.interest == ["t/2": 1, "t/3": 1, "t/4": 1])
        Self.tick(&table, 200)
        released = table.sweep(grace: 100, limit: 3)
        #expect(released.byGrace == 3)
        #expect(table.interest.isEmpty)
        // s0 comes back resuming its session: whatever it had is now unknown.
        #expect(table.apply(Self.connect5("s0", clean: false)) == true)
        #expect(table.interest == ["#": 1])
        // A clean start clears that.
        #expect(table.apply(Self.connect5("s0", clean: true)) == true)
        #expect(table.interest.isEmpty)
    }

    @Test("ambiguous lines never shrink interest")
    func ambiguousLines() {
        var table = SessionTable()
        table.apply(Self.connect3("v", clean: true))
        table.apply(Self.connect3("v 1 a", clean: true))
        table.apply(Self.sub("v", "keep"))
        // Either reading may be true: both subscriptions are added.
        #expect(table.apply(.ambiguous([Self.sub("v", "a 1 b"), Self.sub("v 1 a", "b")])) == true)
        #expect(table.interest == ["keep": 1, "a 1 b": 1, "b": 1])
        // A disconnect that may be v's removes nothing.
        #expect(table.apply(.ambiguous([.disconnected(clientID: "v", reason: .other), .disconnected(clientID: "v 1 a", reason: .other)])) == false)
        #expect(table.interest["keep"] == 1)
        #expect(table.sessions["v"]?.stateUncertain == true)
        // ... not even when a clean disconnect line follows: the session may have been persistent.
        #expect(table.apply(.ambiguous([.unsubscribed(clientID: "v", filter: "keep")])) == false)
        #expect(table.interest["keep"] == 1)
    }

    @Test("a cut subscribe line adds a covering filter, or # when its client cannot be named")
    func truncatedSubscribe() {
        var table = SessionTable()
        table.apply(Self.connect3("c", clean: true))
        #expect(table.apply(.truncated(TruncatedLine(kind: .subscribe, readings: [Self.sub("c", "a/b/#")]))) == true)
        #expect(table.interest == ["a/b/#": 1])
        #expect(table.apply(.truncated(TruncatedLine(kind: .subscribe, readings: []))) == true)
        #expect(table.interest == ["a/b/#": 1, "#": 1])
        // A cut connect line: some client may now be unknown, so known readings are not enough.
        table.apply(.truncated(TruncatedLine(kind: .connect, readings: [])))
        #expect(!table.everyClientKnown)
        // The unattributed # goes only after the grace.
        Self.tick(&table, 10)
        #expect(table.sweep(grace: 5, limit: 100).byGrace == 1)
        #expect(table.interest == ["a/b/#": 1])
    }

    @Test("lost log lines: every session online meanwhile counts as #")
    func linesLost() {
        var table = SessionTable()
        table.apply(Self.connect3("on", clean: true))
        table.apply(Self.sub("on", "x"))
        table.apply(Self.connect3("off", clean: false))
        table.apply(.disconnected(clientID: "off", reason: .clean))
        #expect(table.linesLost() == true)
        #expect(table.interest == ["x": 1, "#": 2])
        #expect(table.unknownFilterSessions == 2)
        #expect(table.apply(.disconnected(clientID: "on", reason: .clean)) == true)
        #expect(table.interest == ["#": 1])
        Self.tick(&table, 10)
        #expect(table.sweep(grace: 5, limit: 10).byGrace == 1)
        #expect(table.interest.isEmpty)
    }

    @Test("state files from before lifetimes decode as persistent or clean")
    func oldStateDecodes() throws {
        let json = #"{"excludedClientIDPrefix":"mosquitto-mesh/","sessions":{"p":{"persistent":true,"online":false,"filters":{"x":1}},"c":{"persistent":false,"online":true,"filters":{"y":0}}}}"#
        let table = try JSONDecoder().decode(SessionTable.self, from: Data(json.utf8))
        #expect(table.sessions["p"]?.lifetime == .survivesDisconnect)
        #expect(table.sessions["c"]?.lifetime == .endsAtDisconnect)
        #expect(table.interest == ["x": 1, "y": 1])
        #expect(table.everyClientKnown)
    }

    @Test("a clean-start-0 takeover of a session without expiry starts empty; of an MQTT 5 one, its filters are in doubt")
    func resumeOverSessionWithoutExpiry() {
        var table = SessionTable()
        table.apply(Self.connect3("c", clean: true))
        table.apply(Self.sub("c", "q"))
        // Same id, clean start 0, while the clean 3.1.1 session is online: Mosquitto carries nothing over.
        #expect(table.apply(Self.connect5("c", clean: false)) == true)
        #expect(table.interest.isEmpty)
        table.apply(Self.sub("c", "r"))
        table.apply(.disconnected(clientID: "c", reason: .clean))
        #expect(table.apply(Self.connect5("c", clean: false)) == false)
        #expect(table.interest == ["r": 1])
        #expect(table.uncertainSessions == 1)
        #expect(table.sessions["c"]?.filtersMayBeStale == true)
    }

    @Test("a session a cut or ambiguous line may have ended is kept, then let go after the grace")
    func uncertainStateIsSwept() {
        var table = SessionTable()
        table.apply(Self.connect3("v", clean: true))
        table.apply(Self.sub("v", "keep"))
        table.apply(.ambiguous([.disconnected(clientID: "v", reason: .other), .disconnected(clientID: "v x", reason: .other)]))
        // Its real disconnect: kept (the ambiguous line may have been about it), counted as uncertain.
        #expect(table.apply(.disconnected(clientID: "v", reason: .clean)) == false)
        #expect(table.interest == ["keep": 1])
        #expect(table.uncertainSessions == 1)
        Self.tick(&table, 10)
        #expect(table.sweep(grace: 5, limit: 100).byGrace == 1)
        #expect(table.interest.isEmpty && table.sessions.isEmpty)
    }
}
