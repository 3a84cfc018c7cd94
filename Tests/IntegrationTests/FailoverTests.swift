import Foundation
import MeshHarness
import Testing

/// Failover through HAProxy, measured by the same engine as `mosquitto-mesh bench failover`.
/// Timing targets (≤ 3 s, ≤ 5 s) are shown by the bench, not asserted here: a loaded CI box
/// must not fail on them. What is asserted is what the mesh promises: every cut client
/// comes back, and no QoS 1 message that a surviving broker acknowledged is lost.
@Suite("failover", .serialized, .timeLimit(.minutes(3)))
struct FailoverTests {
    @Test("kill -9 a broker behind HAProxy under a QoS 1 stream: clients come back, nothing acknowledged by the survivor is lost")
    func brokerKillOnLoopback() async throws {
        let dir = MeshCluster.temporaryDirectory("failover-loopback")
        let cluster = MeshCluster(nodes: ["a", "b"], directory: dir)
        let lb = cluster.makeLoadBalancer(balance: "leastconn")
        do {
            try await cluster.start()
            try await lb.start()
            var plan = FailoverPlan(host: "127.0.0.1", port: lb.port)
            plan.publishers = 4
            plan.subscribers = 4
            plan.rate = 40
            plan.duration = .seconds(10)
            let admin = lb.admin
            plan.locate = { try admin.stuckClients(backend: HAProxyProcess.backendName) }
            let victim = cluster.brokers[0]
            plan.faults = [FailoverFault(kind: .broker, label: "kill -9 broker a", at: .milliseconds(3500), server: "a") { await victim.kill9() }]
            let recording = try await FailoverRunner.run(plan)
            let a = FailoverAnalysis(recording)
            let r = try #require(a.recoveries.first)
            print("failover[loopback]: published \(a.published), acknowledged \(a.acknowledged), lost acknowledged \(a.lostAcknowledged), "
                  + "not promised: killed broker \(a.withKilledBroker), no session \(a.noSession); duplicates \(a.duplicates); "
                  + "\(r.affected.count) clients cut, back after \(r.clientsBack.map { String(format: "%.2f s", $0) } ?? "never")")
            #expect(recording.notes.isEmpty, "run did not settle: \(recording.notes)")
            #expect(a.unmatchedAcks == 0, "PUBACK ids did not match published messages")
            // leastconn spreads 8 clients over 2 brokers: the kill must have cut some.
            #expect(!r.affected.isEmpty, "no client was on the killed broker")
            #expect(r.stickTableMismatch.isEmpty, "HAProxy's stick table and the broken connections disagree: \(r.stickTableMismatch)")
            #expect(r.notBack.isEmpty, "clients not back after the kill: \(r.notBack)")
            #expect(a.unacknowledged == 0, "messages never acknowledged although every client was back")
            #expect(a.expectedPairs > 0)
            #expect(a.lostAcknowledged == 0, "acknowledged by the surviving broker and lost: \(a.lostExamples)")
        } catch {
            await lb.stop()
            await cluster.stop()
            throw error
        }
        await lb.stop()
        await cluster.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}
