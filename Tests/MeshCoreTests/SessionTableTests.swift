import Foundation
import Testing
@testable import MeshCore

@Suite("SessionTable")
struct SessionTableTests {
    /// An MQTT 3.1.1 connect (`p2`): its lifetime is in the log line.
    static func connect(_ id: String, clean: Bool) -> BrokerLogEvent {
        .connected(clientID: id, protocolLevel: 2, cleanStart: clean, keepalive: 60, username: nil)
    }
    /// An MQTT 5 connect: the session expiry interval is not logged.
    static func connect5(_ id: String, clean: Bool) -> BrokerLogEvent {
        .connected(clientID: id, protocolLevel: 5, cleanStart: clean, keepalive: 60, username: nil)
    }
    static func sub(_ id: String, _ filter: String, qos: Int = 1) -> BrokerLogEvent {
        .subscribed(clientID: id, qos: qos, filter: filter)
    }

    /// A table holding one persistent 3.1.1 session `id` with `filter` (QoS 1), offline
    /// after a disconnect for `reason`.
    static func offlinePersistent(_ id: String, _ filter: String, reason: DisconnectReason = .closed) -> SessionTable {
        var table = SessionTable()
        table.apply(connect(id, clean: false))
        table.apply(sub(id, filter))
        table.apply(.disconnected(clientID: id, reason: reason))
        return table
    }

    @Test func cleanSessionLifecycle() {
        var table = SessionTable()
        #expect(table.apply(Self.connect("c", clean: true)) == false)
        #expect(table.isKnownClient("c"))
        #expect(table.apply(Self.sub("c", "a/+")) == true)
        #expect(table.interest == ["a/+": 1])
        #expect(table.apply(.disconnected(clientID: "c", reason: .clean)) == true)
        #expect(table.interest.isEmpty)
        #expect(!table.isKnownClient("c"))
        #expect(table.sessions.isEmpty)
    }

    @Test(arguments: [DisconnectReason.clean, .closed, .keepaliveTimeout, .malformedPacket, .other])
    func persistentSessionSurvivesAnyDisconnect(_ reason: DisconnectReason) {
        var table = SessionTable()
        table.apply(Self.connect("p", clean: false))
        table.apply(Self.sub("p", "x/#", qos: 2))
        #expect(table.apply(.disconnected(clientID: "p", reason: reason)) == false)
        #expect(table.sessions["p"]?.lifetime == .survivesDisconnect)
        #expect(table.sessions["p"]?.online == false && table.sessions["p"]?.filters == ["x/#": 2])
        #expect(table.interest == ["x/#": 1])
    }

    @Test func persistentReconnectRestoresSilently() {
        var table = Self.offlinePersistent("p", "x")
        #expect(table.apply(Self.connect("p", clean: false)) == false)
        #expect(table.sessions["p"] == .init(persistent: true, online: true, filters: ["x": 1]))
        #expect(table.interest == ["x": 1])
    }

    @Test func cleanReconnectDropsPersistentSession() {
        var table = Self.offlinePersistent("p", "x")
        #expect(table.apply(Self.connect("p", clean: true)) == true)
        #expect(table.sessions["p"] == .init(persistent: false, online: true, filters: [:]))
        #expect(table.interest.isEmpty)
    }

    @Test func takeoverThenConnect() {
        var table = SessionTable()
        table.apply(Self.connect("dup", clean: false))
        table.apply(Self.sub("dup", "t"))
        #expect(table.apply(.takenOver(clientID: "dup")) == false)
        #expect(table.interest == ["t": 1])
        #expect(table.apply(Self.connect("dup", clean: false)) == false)   // resume keeps filters
        #expect(table.interest == ["t": 1])
        #expect(table.apply(.takenOver(clientID: "dup")) == false)
        #expect(table.apply(Self.connect("dup", clean: true)) == true)             // clean start drops them
        #expect(table.interest.isEmpty)
    }

    @Test func expiryRemovesSession() {
        var table = Self.offlinePersistent("e", "q", reason: .keepaliveTimeout)
        #expect(table.apply(.expired(clientID: "e")) == true)
        #expect(!table.isKnownClient("e"))
        #expect(table.interest.isEmpty)
        #expect(table.apply(.expired(clientID: "e")) == false)
    }

    @Test func duplicateSubscribeCountsOnceAndUpdatesQoS() {
        var table = SessionTable()
        table.apply(Self.connect("c", clean: true))
        #expect(table.apply(Self.sub("c", "a", qos: 0)) == true)
        #expect(table.apply(Self.sub("c", "a", qos: 2)) == false)
        #expect(table.interest == ["a": 1])
        #expect(table.sessions["c"]?.filters == ["a": 2])
        #expect(table.apply(.unsubscribed(clientID: "c", filter: "a")) == true)
        #expect(table.interest.isEmpty)
    }

    @Test func unsubscribeOfUnknownIsNoOp() {
        var table = SessionTable()
        #expect(table.apply(.unsubscribed(clientID: "ghost", filter: "a")) == false)
        table.apply(Self.connect("c", clean: true))
        #expect(table.apply(.unsubscribed(clientID: "c", filter: "never")) == false)
        #expect(table.interest.isEmpty)
        #expect(table.apply(.disconnected(clientID: "ghost", reason: .clean)) == false)
    }

    @Test func subscribeForUnknownClientCreatesSessionOfUnknownLifetime() {
        var table = SessionTable()
        #expect(table.apply(Self.sub("late", "z")) == true)
        #expect(table.sessions["late"] == .init(lifetime: .unknown, online: true, filters: ["z": 1]))
        // Its disconnect does not drop the filters: it may have been persistent.
        #expect(table.apply(.disconnected(clientID: "late", reason: .clean)) == false)
        #expect(table.interest == ["z": 1])
    }

    @Test func twoSessionsShareAFilter() {
        var table = SessionTable()
        table.apply(Self.connect("a", clean: true))
        table.apply(Self.connect("b", clean: false))
        table.apply(Self.sub("a", "s/+"))
        #expect(table.apply(Self.sub("b", "s/+")) == true)
        table.apply(Self.sub("b", "$share/g/s/+"))
        #expect(table.interest == ["s/+": 2, "$share/g/s/+": 1])
        #expect(table.apply(.disconnected(clientID: "a", reason: .clean)) == true)
        #expect(table.interest == ["s/+": 1, "$share/g/s/+": 1])
        #expect(table.apply(.disconnected(clientID: "b", reason: .clean)) == false)
        #expect(table.interest == ["s/+": 1, "$share/g/s/+": 1])
    }

    @Test(arguments: [
        SessionTableTests.connect("mosquitto-mesh/a", clean: true),
        SessionTableTests.sub("mosquitto-mesh/a", "#"),
        BrokerLogEvent.unsubscribed(clientID: "mosquitto-mesh/a", filter: "#"),
        .disconnected(clientID: "mosquitto-mesh/a", reason: .clean),
        .expired(clientID: "mosquitto-mesh/peer/0"),
    ])
    func excludedMeshClientsAreNeverInterest(_ event: BrokerLogEvent) {
        var table = SessionTable()
        #expect(table.apply(event) == false)
        #expect(table.sessions.values.allSatisfy { $0.excluded && $0.filters.isEmpty })
        #expect(table.interest.isEmpty)
        #expect(table.clientSessions == 0)
    }

    @Test func customExclusionPrefix() {
        var table = SessionTable(excludedClientIDPrefix: "bridge-")
        #expect(table.apply(Self.sub("bridge-1", "#")) == false)
        #expect(table.apply(Self.sub("mosquitto-mesh/x", "#")) == true)
    }

    @Test func brokerRestart() {
        var table = SessionTable()
        table.apply(Self.connect("clean", clean: true))
        table.apply(Self.sub("clean", "c"))
        table.apply(Self.connect("keep", clean: false))
        table.apply(Self.sub("keep", "k"))
        table.linkReconnected()
        table.apply(Self.connect("back", clean: true))
        table.apply(Self.sub("back", "b"))
        #expect(table.brokerRestarted() == true)
        #expect(table.sessions.keys.sorted() == ["back", "keep"])
        #expect(table.sessions["keep"]?.online == false && table.sessions["keep"]?.filters == ["k": 1])
        #expect(table.sessions["back"]?.online == true)
        #expect(table.interest == ["k": 1, "b": 1])
        #expect(table.brokerRestarted() == false)
    }

    @Test func codableRoundTripRecomputesInterest() throws {
        var table = SessionTable(excludedClientIDPrefix: "mesh:")
        table.apply(Self.connect("a", clean: false))
        table.apply(Self.connect("b b", clean: true))
        table.apply(Self.sub("a", "x/#", qos: 2))
        table.apply(Self.sub("b b", "x/#"))
        table.apply(Self.sub("b b", "$share/g/y"))
        table.apply(.disconnected(clientID: "a", reason: .closed))
        let data = try JSONEncoder().encode(table)
        let decoded = try JSONDecoder().decode(SessionTable.self, from: data)
        #expect(decoded == table)
        #expect(decoded.interest == ["x/#": 2, "$share/g/y": 1])
        #expect(decoded.excludedClientIDPrefix == "mesh:")
        #expect(String(decoding: data, as: UTF8.self).contains("interest") == false)
    }

    /// A long random event stream: `interest` maintained incrementally must
    /// always equal the interest recomputed from sessions.
    @Test(arguments: 0..<20)
    func incrementalInterestMatchesRecomputation(_ seed: Int) {
        var rng = seededGenerator(UInt64(seed))
        var table = SessionTable()
        let ids = ["a", "b", "c", "mosquitto-mesh/x"]
        let filters = ["x", "y/+", "$share/g/x"]
        for _ in 0..<500 {
            let id = ids[Int(rng.next() % UInt64(ids.count))]
            let filter = filters[Int(rng.next() % UInt64(filters.count))]
            let event: BrokerLogEvent
            switch rng.next() % 7 {
            case 0: event = rng.next() % 2 == 0 ? Self.connect(id, clean: rng.next() % 2 == 0) : Self.connect5(id, clean: rng.next() % 2 == 0)
            case 1, 2: event = Self.sub(id, filter)
            case 3: event = .unsubscribed(clientID: id, filter: filter)
            case 4: event = .disconnected(clientID: id, reason: .closed)
            case 5: event = .expired(clientID: id)
            default: event = .takenOver(clientID: id)
            }
            let before = table.interest
            let changed = table.apply(event)
            #expect(changed == (before != table.interest))
            if rng.next() % 50 == 0 { table.brokerRestarted() }
            var recomputed: [String: Int] = [:]
            for session in table.sessions.values { for f in session.contribution { recomputed[f, default: 0] += 1 } }
            #expect(recomputed == table.interest)
        }
    }
}
