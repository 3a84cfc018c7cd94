import Foundation
import MeshCore
import Testing

/// The view and stats payloads keep their wire form: the agent writes the view with
/// Foundation's JSONEncoder (sorted keys) and readers decode it with MeshCore's reader.
@Suite("mesh view and stats payloads")
struct MeshViewTests {
    static let view = MeshView(node: "a", seq: 42, peers: [
        PeerView(endpoint: "10.0.0.2:1883", connected: true, nodes: ["b": .init(seq: 7, filters: 3), "c": .init(seq: nil, filters: 0)]),
        PeerView(endpoint: "10.0.0.3:1883", connected: false, downSince: 1_712_345_678.25, reachableVia: ["b"], nodes: [:]),
    ], time: 1_712_345_679.5, advertise: "10.0.0.1:1883")

    @Test("a view written by JSONEncoder decodes to the same value, and as Foundation decodes it")
    func viewRoundTrip() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let bytes = Array(try encoder.encode(Self.view))
        let decoded = try #require(MeshView.decode(bytes))
        #expect(decoded == Self.view)
        #expect(decoded == (try JSONDecoder().decode(MeshView.self, from: Data(bytes))))
    }

    @Test("a view of a release before the format member, or with null options, still decodes")
    func olderView() throws {
        let text = #"{"node":"b","seq":1,"time":null,"peers":[{"endpoint":"h:1","connected":true,"nodes":{"a":{"filters":2}}}]}"#
        let v = try #require(MeshView.decode(Array(text.utf8)))
        #expect(v.format == nil && v.time == nil && v.peers.first?.nodes["a"] == .init(seq: nil, filters: 2))
    }

    @Test("payloads that are not a view are refused", arguments: [
        "", "[]", #"{"node":"a"}"#, #"{"node":"a","seq":-1,"peers":[]}"#,
        #"{"node":"a","seq":1,"peers":[{"endpoint":"h:1","nodes":{}}]}"#,
    ])
    func notAView(_ text: String) {
        #expect(MeshView.decode(Array(text.utf8)) == nil)
    }

    @Test("stats are one flat object, keys sorted, as the agent always wrote them")
    func statsBytes() throws {
        let stats = ["time": 1_712_345_679, "forwarded": 12, "peers_connected": 2, "dropped": 0]
        let old = "{" + stats.sorted(by: { $0.key < $1.key }).map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        #expect(MeshStatsCodec.encode(stats) == Array(old.utf8))
        #expect(MeshStatsCodec.decode(MeshStatsCodec.encode(stats)) == stats)
        #expect(MeshStatsCodec.decode(Array("not json".utf8)) == nil)
    }
}
