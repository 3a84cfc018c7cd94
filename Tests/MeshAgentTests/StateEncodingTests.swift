import Foundation
import MeshCore
import Testing
@testable import MeshAgent

@Suite("state file encoding")
struct StateEncodingTests {
    /// A table with every kind of session and id the log can produce.
    static func sampleTable(seed: UInt64) -> SessionTable {
        var rng = seed
        func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 33 }
        var table = SessionTable()
        let ids = ["plain", "with \"quotes\" and \\ back", "tab\tnew\nline", "ünï cödé ✓", "mosquitto-mesh/x/local", " spaced  ", "\u{1}ctl"]
        let filters = ["a/+/c", "#", "$share/g/x", "q\"uote", "ü/ß/+"]
        for _ in 0..<200 {
            let id = ids[Int(next() % UInt64(ids.count))] + String(next() % 5)
            switch next() % 6 {
            case 0: table.apply(.connected(clientID: id, protocolLevel: next() % 2 == 0 ? 5 : 2, cleanStart: next() % 2 == 0, keepalive: 60, username: nil))
            case 1, 2: table.apply(.subscribed(clientID: id, qos: Int(next() % 3), filter: filters[Int(next() % UInt64(filters.count))]))
            case 3: table.apply(.disconnected(clientID: id, reason: .closed))
            case 4: table.apply(.ambiguous([.disconnected(clientID: id, reason: .other), .subscribed(clientID: id, qos: 1, filter: "amb")]))
            default: table.advance(to: .init(tick: table.clock.tick + 1, time: 1_795_976_992.25 + Double(table.clock.tick)))
            }
        }
        _ = table.sweep(grace: 3, limit: 5)
        if seed % 2 == 0 { _ = table.linesLost() }
        return table
    }

    @Test("the hand-written state JSON decodes to the same state", arguments: 0..<8)
    func roundTrip(seed: UInt64) throws {
        let state = PersistedState(nodeID: "n\"1", seq: 42 + seed, sessions: Self.sampleTable(seed: seed),
                                   peerInterest: ["10.0.0.2:1883": ["b": ["x/#": 2, "ü": 1]], "[::1]:1883": [:]],
                                   brokerStartedAt: seed % 3 == 0 ? nil : 1_795_976_000.5, savedAt: 1_795_976_992.125,
                                   cleanStop: seed % 2 == 0)
        let bytes = state.encodedJSON()
        let decoded = try JSONDecoder().decode(PersistedState.self, from: Data(bytes))
        #expect(decoded == state)
        #expect(decoded.sessions.interest == state.sessions.interest)
    }
}
