import Foundation
import MeshHarness
import Testing

/// Interest is never under-estimated: each case is a way the agent's picture of its broker
/// used to be made too small (silent message loss). Each asserts delivery to the victim,
/// not the agent's counters; each failed on the code before the fix.
@Suite("interest integrity", .serialized, .timeLimit(.minutes(3)))
struct InterestIntegrityTests {
    @Test("MQTT 5: clean start with a session expiry keeps the session's filters while offline and after a silent resume")
    func v5SessionExpiry() async throws {
        try await withMesh(["a", "b"]) { mesh in
            var sub = try await mesh.subscriber("b", id: "v5-durable", to: "x/#", cleanStart: true, sessionExpiry: 3600)
            sub.disconnect(); sub.close()
            let pub = try await mesh.client("a", id: "v5-pub")
            try pub.publish("x/while-away", "queued", qos: 1)
            try await pub.waitForAcks()
            // Resume: Mosquitto restores the subscription without a log line.
            sub = try await mesh.client("b", id: "v5-durable", cleanStart: false, sessionExpiry: 3600)
            #expect(sub.sessionPresent)
            try await mesh.waitForFilter("x/#", on: "b")
            try pub.publish("x/after", "live", qos: 1)
            let got = try await sub.waitForMessages(2).map(\.text)
            #expect(got == ["queued", "live"])
            sub.close(); pub.close()
        }
    }

    @Test("MQTT 5 sessions that ended are let go once the broker's session count proves it")
    func v5EndedSessionsReleased() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let gone = try await mesh.subscriber("b", id: "v5-gone", to: "gone/#", cleanStart: true, sessionExpiry: 0)
            gone.disconnect(); gone.close()
            // A few broker ticks: the count must reflect the disconnect and stand for a full tick.
            try await mesh.waitForInterest(of: "b", timeout: .seconds(20)) { $0["gone/#"] == nil }
            #expect((mesh.metric(agent: "b", "mesh_sessions_released_by_evidence_total") ?? 0) >= 1)
        }
    }

    @Test("a crafted client id cut at the broker's line limit cannot end another client's interest")
    func craftedDisconnectId() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let victim = try await mesh.subscriber("b", id: "victim", to: "vic/#", protocolVersion: .v311)
            let linesBefore = mesh.metric(agent: "b", "mesh_log_lines_total") ?? 0
            let attacker = try await mesh.client("b", id: "victim disconnected due to " + String(repeating: "x", count: 1200),
                                                 protocolVersion: .v311)
            attacker.disconnect(); attacker.close()
            // The attacker's connect and disconnect lines are cut; once the agent has read them,
            // whatever it made of them, the victim still gets traffic.
            try await waitUntil(timeout: .seconds(5), "the attacker's lines to be read") {
                (mesh.metric(agent: "b", "mesh_log_lines_total") ?? 0) >= linesBefore + 3
            }
            let pub = try await mesh.client("a", id: "crafted-pub")
            try pub.publish("vic/1", "still here", qos: 1)
            #expect(try await victim.waitForMessages(1).first?.text == "still here")
            #expect((mesh.metric(agent: "b", "mesh_log_lines_truncated_total") ?? 0) >= 1)
            victim.close(); pub.close()
        }
    }

    @Test("a lookalike id cannot narrow another client's filter")
    func lookalikeSubscribe() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let attacker = try await mesh.client("b", id: "v 1 a", protocolVersion: .v311)
            let victim = try await mesh.subscriber("b", id: "v", to: "a 1 b", protocolVersion: .v311)
            let pub = try await mesh.client("a", id: "lookalike-pub")
            try pub.publish("a 1 b", "exact", qos: 1)
            #expect(try await victim.waitForMessages(1).first?.text == "exact")
            attacker.close(); victim.close(); pub.close()
        }
    }

    @Test("a client using the agent's own client id does not make the agent forget interest", arguments: ["local", "control"])
    func agentIdTakeover(link: String) async throws {
        try await withMesh(["a", "b"]) { mesh in
            let sub = try await mesh.subscriber("b", id: "bystander", to: "t/#", protocolVersion: .v311)
            let intruder = try await mesh.client("b", id: "mosquitto-mesh/b/\(link)", cleanStart: true)
            intruder.disconnect(); intruder.close()
            // The kicked link comes back (with its session gone) and the broker's next uptime
            // tick tells the agent its broker did not restart.
            let reconnects = link == "local" ? "mesh_local_reconnects_total" : "mesh_control_reconnects_total"
            try await waitUntil(timeout: .seconds(10), "the \(link) link to reconnect") {
                (mesh.metric(agent: "b", reconnects) ?? 0) >= 1
            }
            try await mesh.agents[1].waitUntilUp()
            let pub = try await mesh.client("a", id: "takeover-pub")
            try await waitUntil(timeout: .seconds(10), "a message to reach the bystander") {
                try? pub.publish("t/1", "hello", qos: 1)
                return !sub.messages.isEmpty
            }
            #expect(sub.messages.first?.text == "hello")
            try await waitUntil(timeout: .seconds(10), "the takeover to be counted") {
                (mesh.metric(agent: "b", "mesh_local_session_takeovers_total") ?? 0) >= 1
            }
            // Never mistaken for a broker restart (which would forget the bystander's clean session).
            #expect((mesh.metric(agent: "b", "mesh_local_broker_restarts_total") ?? 0) == 0)
            sub.close(); pub.close()
        }
    }

    @Test("a filter longer than the broker's log line is covered, never narrowed")
    func longFilter() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let filter = "long/" + String(repeating: "y", count: 10_000)
            let sub = try await mesh.client("b", id: "long-filter", protocolVersion: .v311)
            try await sub.subscribe(filter, qos: 1)
            try await mesh.waitForFilter("long/#", on: "b")
            let pub = try await mesh.client("a", id: "long-pub")
            try pub.publish(filter, "reached", qos: 1)
            #expect(try await sub.waitForMessages(1).first?.text == "reached")
            sub.close(); pub.close()
        }
    }
}
