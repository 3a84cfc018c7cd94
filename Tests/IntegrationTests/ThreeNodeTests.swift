import Foundation
import MeshHarness
import Testing

@Suite("three nodes, full mesh", .serialized, .timeLimit(.minutes(2)))
struct ThreeNodeTests {
    @Test("a subscriber on every node gets every message from every node exactly once", arguments: [Int32(0), 1, 2])
    func everyMessageOnce(qos: Int32) async throws {
        let nodes = ["a", "b", "c"]
        try await withMesh(nodes) { mesh in
            var subscribers: [HarnessClient] = []
            for n in nodes {
                let s = try await mesh.client(n, id: "sub-\(n)")
                try await s.subscribe("all/#", qos: 2)
                subscribers.append(s)
            }
            for n in nodes { try await mesh.waitForFilter("all/#", on: n) }
            let perPublisher = 100
            var publishers: [HarnessClient] = []
            for n in nodes {
                let p = try await mesh.client(n, id: "pub-\(n)")
                publishers.append(p)
            }
            for i in 0..<perPublisher {
                for (k, p) in publishers.enumerated() { try p.publish("all/\(nodes[k])", "\(nodes[k])-\(i)", qos: qos) }
            }
            let expected = perPublisher * nodes.count
            for s in subscribers { try await s.waitForMessages(expected, timeout: .seconds(30)) }
            // One marker per publisher, sent after everything else on the same paths: once a
            // subscriber has all markers, any duplicate or stray copy would have arrived too.
            for (j, p) in publishers.enumerated() { try p.publish("all/\(nodes[j])", "marker-\(nodes[j])", qos: 1) }
            for (k, s) in subscribers.enumerated() {
                try await s.waitForMessages(nodes.count, timeout: .seconds(10)) { $0.text.hasPrefix("marker-") }
                let data = s.messages.filter { !$0.text.hasPrefix("marker-") }.map(\.text)
                #expect(data.count == expected, "subscriber on \(nodes[k]) got \(data.count), expected \(expected)")
                #expect(Set(data).count == data.count, "duplicates at \(nodes[k])")
                #expect(s.messages.filter { $0.text.hasPrefix("marker-") }.count == nodes.count)
                // Per-publisher order is kept.
                for n in nodes {
                    let seq = data.filter { $0.hasPrefix("\(n)-") }.map { Int($0.dropFirst(n.count + 1))! }
                    #expect(seq == Array(0..<perPublisher), "order from \(n) at \(nodes[k])")
                }
            }
            for c in subscribers + publishers { c.close() }
        }
    }
}
