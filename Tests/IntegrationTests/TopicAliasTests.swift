import Foundation
import MeshHarness
import Mosquitto
import Testing

/// Forwards go by MQTT v5 topic alias; a broken peer link must not turn the resends it
/// owes (built as alias only) into a refused-reconnect loop.
@Suite("topic aliases", .serialized, .timeLimit(.minutes(2)))
struct TopicAliasTests {
    @Test("unacknowledged forwards sent by alias survive a broken link: aliases are set up again before the resend")
    func resendAfterBrokenLink() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let brokerB = mesh.brokers[1]
            let peerB = brokerB.endpoint
            let sub = try await mesh.subscriber("b", id: "alias-sub", to: "alias/#")
            let pub = try await mesh.client("a", id: "alias-pub")

            // Two rounds over three topics: the second goes by alias only.
            for i in 0..<6 { try pub.publish("alias/\(i % 3)", "warm-\(i)", qos: 1) }
            try await sub.waitForMessages(6)
            let byAlias = try #require(mesh.metric(agent: "a", "mesh_forwarded_by_alias_total", peer: peerB))
            #expect(byAlias >= 3, "forwards by alias after two rounds: \(byAlias)")

            // Freeze broker B, so what agent a forwards now stays unacknowledged …
            let pidB = try #require(brokerB.pid)
            kill(pidB, SIGSTOP)
            var resumed = false
            defer { if !resumed { kill(pidB, SIGCONT) } }
            let before = mesh.metric(agent: "a", "mesh_forwarded_messages_total", peer: peerB) ?? 0
            for i in 0..<30 { try pub.publish("alias/\(i % 3)", "held-\(i)", qos: 1) }
            try await waitUntil(timeout: .seconds(10), "agent a to forward the 30 held messages") {
                (mesh.metric(agent: "a", "mesh_forwarded_messages_total", peer: peerB) ?? 0) >= before + 30
            }
            // … then break agent a's link to B (the kernel aborts the socket) and thaw B.
            let agentA = try #require(mesh.agents[0].pid)
            let link = try #require(try await SocketCounters.snapshot().first { $0.pid == agentA && $0.remotePort == brokerB.port })
            let killed = try Self.run("/usr/bin/ss", ["-K", "dst", "127.0.0.1", "dport", "=", ":\(brokerB.port)", "sport", "=", ":\(link.localPort)"])
            #expect(killed.contains(":\(link.localPort)"), "ss -K did not list the link: \(killed)")
            kill(pidB, SIGCONT)
            resumed = true

            // The link comes back and what B never acknowledged is resent and delivered …
            // (QoS 1: what B had already read from the aborted socket may arrive twice.)
            try await waitUntil(timeout: .seconds(30), "the 30 held messages at the subscriber") {
                Set(sub.messages.filter { $0.text.hasPrefix("held-") }.map(\.text)).count == 30
            }
            let held = sub.messages.filter { $0.text.hasPrefix("held-") }
            for m in held {
                let i = Int(m.text.dropFirst("held-".count))!
                #expect(m.topic == "alias/\(i % 3)", "\(m.text) arrived on \(m.topic)")
            }
            #expect(held.count <= 60, "more than one extra copy per message: \(held.count)")
            // … and the link stays usable: later messages cross too, without more reconnects.
            for i in 0..<3 { try pub.publish("alias/\(i)", "after-\(i)", qos: 1) }
            try await sub.waitForMessages(3, timeout: .seconds(10)) { $0.text.hasPrefix("after-") }
            let reconnects = mesh.metric(agent: "a", "mesh_peer_reconnects_total", peer: peerB) ?? -1
            #expect(reconnects == 1, "peer link reconnects: \(reconnects)")
            // The three alias set-ups reached agent b, which dropped them: no empty message leaked.
            #expect(mesh.metric(agent: "b", "mesh_alias_announcements_received_total") == 3)
            #expect(!sub.messages.contains { $0.payload.isEmpty })
            sub.close(); pub.close()
        }
    }

    @Test("--topic-aliases 0 sends every forward with its topic")
    func aliasesOff() async throws {
        try await withMesh(["a", "b"], agentArguments: ["--topic-aliases", "0"]) { mesh in
            let sub = try await mesh.subscriber("b", id: "plain-sub", to: "plain/#")
            let pub = try await mesh.client("a", id: "plain-pub")
            for i in 0..<10 { try pub.publish("plain/x", "m-\(i)", qos: 1) }
            let got = try await sub.waitForMessages(10)
            #expect(got.map(\.text) == (0..<10).map { "m-\($0)" })
            #expect(mesh.metric(agent: "a", "mesh_forwarded_by_alias_total", peer: mesh.brokers[1].endpoint) == 0)
            #expect(mesh.metric(agent: "a", "mesh_forwarded_messages_total", peer: mesh.brokers[1].endpoint) == 10)
            sub.close(); pub.close()
        }
    }

    @Test("a client's own mesh: user properties cross as nothing special and are not passed on")
    func reservedPropertiesAreNotMarkers() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let sub = try await mesh.subscriber("b", id: "reserved-sub", to: "reserved/#")
            let pub = try await mesh.client("a", id: "reserved-pub")
            // Shaped like an alias announcement (empty, not retained, mesh:alias) …
            let announcementLike = PropertyList()
            try announcementLike.addUserProperty("mesh:alias", "1")
            try announcementLike.addUserProperty("app", "x")
            try pub.publish("reserved/empty", "", qos: 1, properties: announcementLike)
            // … and like a forwarded retained message (mesh:retained on a live message).
            let retainedLike = PropertyList()
            try retainedLike.addUserProperty("mesh:retained", "1")
            try pub.publish("reserved/live", "live", qos: 1, properties: retainedLike)
            let got = try await sub.waitForMessages(2)
            #expect(got.map(\.topic) == ["reserved/empty", "reserved/live"])
            #expect(got.allSatisfy { !$0.retain })
            #expect(got[0].payload.isEmpty && got[0].userProperties == [["app", "x"]])
            #expect(got[1].userProperties.isEmpty)
            // Nothing was stored as retained on B either.
            let late = try await mesh.client("b", id: "reserved-late")
            try await late.subscribe("reserved/#", qos: 1)
            try pub.publish("reserved/marker", "end", qos: 1)
            let seen = try await late.waitForMessages(1)
            #expect(seen.map(\.topic) == ["reserved/marker"])
            #expect(mesh.metric(agent: "b", "mesh_alias_announcements_received_total") == 0)
            sub.close(); pub.close(); late.close()
        }
    }

    static func run(_ path: String, _ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
