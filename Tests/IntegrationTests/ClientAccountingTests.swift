import Foundation
import MeshHarness
import Mosquitto
import Testing

/// `MQTTClient.outstandingPublishes` is what backpressure and a graceful stop's drain wait
/// on: it must count exactly the QoS 1/2 messages the broker has not acknowledged.
@Suite("client accounting", .serialized, .timeLimit(.minutes(1)))
struct ClientAccountingTests {
    @Test("QoS 0 writes do not wear down the count of unacknowledged QoS 1 messages")
    func qos0DoesNotHideUnacknowledged() async throws {
        try await withMesh(["a"]) { mesh in
            let client = try await mesh.client("a", id: "accounting")
            let pid = try #require(mesh.brokers[0].pid)
            // A frozen broker acknowledges nothing, while QoS 0 writes still complete
            // (libmosquitto reports them once they are in the socket).
            kill(pid, SIGSTOP)
            var resumed = false
            defer { if !resumed { kill(pid, SIGCONT) } }
            for i in 0..<5 { try client.publish("acct/q1", "q1-\(i)", qos: 1) }
            for i in 0..<20 { try client.publish("acct/q0", "q0-\(i)", qos: 0) }
            #expect(client.client.outstandingPublishes == 5)
            kill(pid, SIGCONT)
            resumed = true
            try await waitUntil(timeout: .seconds(10), "the 5 acknowledgements") { client.client.outstandingPublishes == 0 }
            client.close()
        }
    }
}
