import Foundation
import MeshHarness
import Testing

/// Thousands of distinct clients come once, subscribe one filter and leave: the agent must
/// let go of each one's state. Memory (RSS) is too noisy to assert on at this size, so the
/// test watches the agent's own counts, `mesh_local_sessions` (sessions in its table) and
/// `mesh_local_subscriptions` (filters it advertises), which must come back to where they
/// started once the broker has forgotten the clients. Every client subscribes: today the
/// gauges move only when the interest does.
@Suite("churn memory", .serialized, .timeLimit(.minutes(5)))
struct ChurnMemoryTests {
    static let ids = 5_000

    @Test("5 000 distinct clients come, subscribe and leave: each agent's session and filter counts come back to their baseline",
          .serialized,
          arguments: [
              // What a fleet of short-lived devices does; persistent sessions that expire 1 s after leaving.
              [ClientChurn.Kind.v311Clean, .v5Clean, .v5Expiring],
              // MQTT 5 clean start 0 without a session expiry: logged `c0` like a persistent session,
              // but Mosquitto ends the session with the connection and logs no expiry.
              [ClientChurn.Kind.v5ResumeWithoutExpiry],
          ])
    func stateReleased(kinds: [ClientChurn.Kind]) async throws {
        try await withMesh(["a", "b"]) { mesh in
            let gauges = ["mesh_local_sessions", "mesh_local_subscriptions"]
            let lags = mesh.agents.map { AgentLogLag(agent: $0) }
            for lag in lags { try await lag.calibrate() }
            let baseline = try mesh.agents.map { agent in
                try gauges.map { try #require(agent.metric($0), "agent \(agent.nodeID) exports no \($0)") }
            }

            // The gauges must see a client that stays: otherwise a leak could not show.
            var holders: [HarnessClient] = []
            defer { holders.forEach { $0.close() } }
            for (i, agent) in mesh.agents.enumerated() {
                let c = try HarnessClient(clientID: "churn-holder-\(agent.nodeID)", port: agent.local.port)
                try await c.connect()
                try await c.subscribe("churn/holder/\(agent.nodeID)", qos: 1)
                holders.append(c)
                try await waitUntil(timeout: .seconds(10), "agent \(agent.nodeID) to count the holder") {
                    gauges.indices.allSatisfy { (agent.metric(gauges[$0]) ?? 0) >= baseline[i][$0] + 1 }
                }
            }

            let churn = ClientChurn(ports: mesh.brokers.map(\.port), kinds: kinds, parallel: 16)
            await churn.run(0..<Self.ids, until: ContinuousClock.now.advanced(by: .seconds(150)))
            #expect(churn.visited == Self.ids)
            try #require(churn.failed == 0, "\(churn.failed) visits failed: \(churn.failureSamples)")
            holders.forEach { $0.close() }

            for (i, agent) in mesh.agents.enumerated() {
                let behind = await lags[i].waitUntilCaughtUp()
                #expect(behind <= 0, "agent \(agent.nodeID) is \(behind) log lines behind its broker")
                #expect(agent.metric("mesh_log_lines_unparsed_total") == 0, "agent \(agent.nodeID) did not understand some log lines")
                // Sessions that expire do so about a second after their client left.
                let now = try await poll(timeout: .seconds(20), every: .milliseconds(100), { gauges.map { agent.metric($0) } },
                                         until: { $0 == baseline[i].map(Optional.some) })
                for (g, name) in gauges.enumerated() {
                    #expect(now[g] == baseline[i][g],
                            "agent \(agent.nodeID): \(name) \(Int(now[g] ?? -1)), baseline \(Int(baseline[i][g])), after \(Self.ids) clients (\(kinds.map(\.rawValue))) left")
                }
            }
        }
    }
}
