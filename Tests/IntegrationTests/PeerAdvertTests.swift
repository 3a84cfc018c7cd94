import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Testing

/// What a peer's agent accepts as interest: every filter its broker serves, and only adverts
/// newer than the ones it already has.
@Suite("peer adverts", .serialized, .timeLimit(.minutes(2)))
struct PeerAdvertTests {
    @Test("a $share//x subscriber on B (empty group, which Mosquitto 2.0.11 accepts) gets a message published on A")
    func emptyShareGroupCrosses() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let sub = try await mesh.client("b", id: "empty-group")
            try await sub.subscribe("$share//x", qos: 1)
            try await mesh.waitForFilter("$share//x", on: "b")
            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("x", "to the empty group", qos: 1)
            let got = try await sub.waitForMessages(1)
            #expect(got.map(\.text) == ["to the empty group"])
            #expect(got.first?.topic == "x")
            #expect(mesh.metric(agent: "b", "mesh_log_lines_unparsed_total") == 0)
            sub.close(); pub.close()
        }
    }
}
