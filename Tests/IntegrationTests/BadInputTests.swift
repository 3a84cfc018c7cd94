import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Testing

/// Hostile or broken input is counted and logged, and the agent keeps its last good state.
@Suite("bad input", .serialized, .timeLimit(.minutes(2)))
struct BadInputTests {
    static let hostilePayloads: [[UInt8]] = [
        Array("not json".utf8),
        Array("{\"node\":\"evil\",\"seq\":1,\"filters\":{\"a/#/b\":1}}".utf8),
        Array("{\"node\":\"evil\",\"seq\":-1,\"filters\":{}}".utf8),
        Array("{\"node\":\"other\",\"seq\":1,\"filters\":{}}".utf8),
        Array("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]".utf8),
        [0xff, 0xfe, 0x00, 0x01],
    ]

    @Test("garbage on a peer's control topic is rejected and counted; forwarding goes on")
    func hostileControlPayload() async throws {
        try await withMesh(["a", "b"], agentArguments: ["--stats-interval", "0.5"]) { mesh in
            let sub = try await mesh.subscriber("b", id: "victim-sub", to: "v/#")
            // An attacker without the ACL of deploy/ writes to $mesh on B (the ACL test shows the
            // shipped config refuses this; here the agent itself must survive it).
            let evil = try await mesh.client("b", id: "evil")
            for p in Self.hostilePayloads { try evil.publish("$mesh/evil/subscriptions", bytes: p, qos: 1, retain: true) }
            try await evil.waitForAcks()
            let reader = try await ControlReader(port: mesh.brokers[0].port)
            try await waitUntil(timeout: .seconds(10), "agent a to count rejected control payloads") {
                guard let n = reader.stats(of: "a")?["control_rejected"] else { return false }
                return n >= Self.hostilePayloads.count - 1
            }
            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("v/1", "still works", qos: 1)
            let got = try await sub.waitForMessages(1)
            #expect(got.first?.text == "still works")
            #expect(mesh.agents[0].isRunning)
            #expect(mesh.agents[0].logTail().contains("control payload rejected"))
            try evil.publish("$mesh/evil/subscriptions", bytes: [], qos: 1, retain: true)
            for c in [sub, evil, pub] { c.close() }
            reader.close()
        }
    }

    @Test("an unreachable peer does not stop forwarding to the others")
    func unreachablePeer() async throws {
        let dead = Network.freePort()
        try await withMesh(["a", "b"], agentArguments: ["--peer", "127.0.0.1:\(dead)", "--peer-sync-timeout", "0.5"]) { mesh in
            let sub = try await mesh.subscriber("b", id: "sub", to: "u/#")
            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("u/1", "through", qos: 1)
            #expect(try await sub.waitForMessages(1).first?.text == "through")
            // One of two peers up: the node is not cut off, HAProxy keeps sending clients.
            #expect(mesh.agents[0].health == "up ready")
            sub.close(); pub.close()
        }
    }
}

/// The command line: a bad value gets one line naming it and exit status 64.
@Suite("command line")
struct CommandLineTests {
    @Test("invalid arguments exit 64 with a one-line error naming the value", arguments: [
        (["run", "--node-id", "a/b", "--local", "127.0.0.1:1883"], "a/b"),
        (["run", "--node-id", "a", "--local", "127.0.0.1:1883", "--peer", "nonsense"], "nonsense"),
        (["run", "--node-id", "a", "--local", "127.0.0.1:99999"], "99999"),
        (["run", "--node-id", "a", "--local", "127.0.0.1:1883", "--peer", "127.0.0.1:1883"], "127.0.0.1:1883"),
        (["run", "--node-id", "a", "--forward-prefix", "$bad/"], "$bad/"),
        (["run", "--node-id", "a", "--log-level", "loud"], "loud"),
        (["run", "--node-id", "a", "--shared-balance", "random"], "random"),
        (["run", "--node-id", "a", "--cafile", "/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
        (["run"], "node-id"),
    ])
    func invalidArguments(arguments: [String], named: String) async throws {
        let dir = MeshCluster.temporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/out.log"
        var env = ProcessInfo.processInfo.environment
        env = env.filter { !$0.key.hasPrefix("MESH_") }
        let p = try ChildProcess(executable: try AgentProcess.binaryPath(), arguments: arguments, environment: env, logPath: log)
        #expect(await p.waitForExit(timeout: .seconds(10)))
        #expect(p.exitCode == 64)
        let output = try String(contentsOfFile: log, encoding: .utf8)
        let errorLines = output.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        #expect(errorLines.count == 1, "output: \(output)")
        #expect(errorLines.first?.contains(named) == true, "output: \(output)")
    }
}
