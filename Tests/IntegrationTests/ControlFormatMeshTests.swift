import Foundation
import MeshCore
import MeshHarness
import Testing

/// What an agent does with adverts of a newer release (`ControlFormat`), with real brokers:
/// an entry it cannot use widens the interest, a format it does not know counts as `#`; in
/// both cases messages reach the node rather than being lost.
@Suite("control formats across releases", .serialized, .timeLimit(.minutes(2)))
struct ControlFormatMeshTests {
    @Test("a format-3 advert with a filter this agent cannot parse routes by a covering filter; a format-4 advert routes everything")
    func newerAdvertsWidenNeverNarrow() async throws {
        try await withMesh(["a", "b"]) { mesh in
            // What a's agent forwards to b's broker is visible there under the forward prefix.
            let tap = try await mesh.subscriber("b", id: "forward-tap", to: "forward/#")
            // Nodes of a future release on b's broker, as a's link to b reads them.
            let future = try await mesh.client("b", id: "mosquitto-mesh/future-writer")
            try future.publish("$mesh/z/subscriptions",
                               #"{"format":3,"node":"z","seq":1,"filters":{"fut/+x/y":1,"ok/t":{"n":1,"qos":2}},"priority":{"ok/t":7}}"#, qos: 1, retain: true)
            try await future.waitForAcks()
            try await waitUntil(timeout: .seconds(10), "a to apply z's advert") {
                (mesh.metric(agent: "a", "mesh_advert_entries_widened_total", peer: mesh.brokers[1].endpoint) ?? 0) >= 2
            }
            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("fut/any/y", "covered", qos: 1)
            try pub.publish("ok/t", "kept", qos: 1)
            try pub.publish("other/x", "not wanted yet", qos: 1)
            try await tap.waitForMessages(2, where: { $0.topic.hasPrefix("forward/fut/") || $0.topic == "forward/ok/t" })
            // A format two steps ahead: whatever it says, b's broker gets everything.
            try future.publish("$mesh/w/subscriptions", #"{"format":4,"node":"w","seq":1,"routes":["anything"]}"#, qos: 1, retain: true)
            try await future.waitForAcks()
            try await waitUntil(timeout: .seconds(10), "a to take w's advert as '#'") {
                (mesh.metric(agent: "a", "mesh_advert_entries_widened_total", peer: mesh.brokers[1].endpoint) ?? 0) >= 3
            }
            try pub.publish("other/x", "now wanted", qos: 1)
            let got = try await tap.waitForMessages(1, where: { $0.topic == "forward/other/x" })
            #expect(got.map(\.text) == ["now wanted"], "the first other/x must not have crossed: nobody wanted it then")
            #expect(mesh.agents[0].logTail().contains("widened"))
            // Deleting the adverts removes the nodes again.
            try future.publish("$mesh/z/subscriptions", bytes: [], qos: 1, retain: true)
            try future.publish("$mesh/w/subscriptions", bytes: [], qos: 1, retain: true)
            try await future.waitForAcks()
            for c in [tap, future, pub] { c.close() }
        }
    }
}
