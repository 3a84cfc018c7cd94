import Foundation
import MeshBench
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
        try await withMeshBehindHAProxy(["a", "b"], balance: "leastconn") { cluster, lb in
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
        }
    }

    /// The seed topology in network namespaces (examples/ha-netns/run.sh): kill -9 broker b1,
    /// then the MASTER load balancer (HAProxy + keepalived). Needs root and working
    /// `ip netns` (CI containers without CAP_SYS_ADMIN skip it), plus haproxy and keepalived.
    @Test("netns: broker kill and MASTER load-balancer kill, floating IP moves, nothing acknowledged is lost",
          .enabled(if: NetnsSupport.available, "skipped: \(NetnsSupport.reason)"))
    func netnsTopology() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let dir = MeshCluster.temporaryDirectory("failover-netns")
        let json = dir + "/summary.json"
        var env = ProcessInfo.processInfo.environment
        env["MESH_BINARY"] = try AgentProcess.binaryPath()
        env["HA_NETNS_LOGS"] = dir + "/logs"
        let script = try ChildProcess(executable: root + "/examples/ha-netns/run.sh",
                                      arguments: ["--duration", "16", "--kill-at", "4", "--lb-kill-at", "9", "--json", json],
                                      environment: env, logPath: dir + "/run.log")
        let exited = await script.waitForExit(timeout: .seconds(150))
        if !exited { await script.stop(grace: .seconds(20)) } // SIGTERM: the script's trap tears the namespaces down
        let log = script.logTail(maxBytes: 6000)
        print(log)
        #expect(exited, "run.sh did not finish within 150 s")
        #expect(script.exitCode == 0, "run.sh failed: \(log)")
        let data = try #require(FileManager.default.contents(atPath: json), "no summary written: \(log)")
        let summary = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let faults = try #require(summary["faults"] as? [[String: Any]])
        #expect(faults.count == 2)
        for f in faults {
            #expect((f["affected"] as? [String])?.isEmpty == false, "\(f["label"] ?? "?") cut no client")
            #expect((f["not_back"] as? [String])?.isEmpty == true, "\(f["label"] ?? "?"): clients not back \(f["not_back"] ?? "?")")
        }
        #expect(faults.last?["observed_after_s"] != nil, "floating IP never showed up on the BACKUP")
        #expect(summary["lost_acknowledged"] as? Int == 0, "acknowledged by a surviving broker and lost")
        #expect(summary["unacknowledged"] as? Int == 0)
        #expect(summary["unmatched_acks"] as? Int == 0)
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Whether this machine can build the netns topology: root, iproute2 that can really create
/// a namespace (containers without CAP_SYS_ADMIN cannot), haproxy and keepalived.
enum NetnsSupport {
    static let reason: String = check() ?? "available"
    static var available: Bool { reason == "available" }

    private static func check() -> String? {
        guard getuid() == 0 else { return "needs root (ip netns)" }
        for tool in ["/usr/sbin/ip", "/usr/sbin/haproxy", "/usr/sbin/keepalived", "/usr/sbin/mosquitto"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not installed"
        }
        let name = "mmha-probe-\(getpid())"
        guard run(["netns", "add", name]) else { return "'ip netns add' is not permitted here" }
        _ = run(["netns", "del", name])
        return nil
    }

    /// Runs `ip` with a bounded wait (it answers in milliseconds).
    private static func run(_ arguments: [String]) -> Bool {
        guard let child = try? ChildProcess(executable: "/usr/sbin/ip", arguments: arguments) else { return false }
        for _ in 0..<500 where child.isRunning { usleep(10_000) }
        return child.exitCode == 0
    }
}
