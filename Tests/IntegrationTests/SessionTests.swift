import Foundation
import MeshHarness
import Testing

/// Sessions as Mosquitto keeps them, seen through its log: takeover, restarts of the broker
/// and of the agent, bursts.
@Suite("sessions", .serialized, .timeLimit(.minutes(3)))
struct SessionTests {
    @Test("takeover: a clean reconnect of the same id drops the old filters, a persistent one keeps them")
    func takeover() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let first = try await mesh.subscriber("b", id: "dup id", to: "old/#", cleanStart: false, sessionExpiry: 3600)
            // Same id, persistent: takes over the session; Mosquitto logs no disconnect for the old one.
            let second = try await mesh.client("b", id: "dup id", cleanStart: false, sessionExpiry: 3600)
            #expect(second.sessionPresent)
            try await second.subscribe("new/#", qos: 1)
            try await mesh.waitForInterest(of: "b") { $0["old/#"] == 1 && $0["new/#"] == 1 }
            // Same id, clean: the session and its filters are gone.
            let third = try await mesh.client("b", id: "dup id", cleanStart: true)
            try await third.subscribe("third/#", qos: 1)
            try await mesh.waitForInterest(of: "b") { $0 == ["third/#": 1] }
            for c in [first, second, third] { c.close() }
        }
    }

    @Test("a persistent client's filters survive a restart of the agent and of the broker", arguments: ["agent", "broker"])
    func survivesRestart(what: String) async throws {
        try await withMesh(["a", "b"]) { mesh in
            var sub = try await mesh.subscriber("b", id: "durable", to: "keep/#", cleanStart: false, sessionExpiry: 3600)
            sub.disconnect(); sub.close()
            let agentB = mesh.agents[1]
            if what == "agent" {
                #expect(await agentB.stop() == 0)
                try agentB.start()
            } else {
                // The broker restarts (persistence on); Mosquitto restores the session without a log line.
                await mesh.brokers[1].stop()
                try await mesh.brokers[1].start()
            }
            try await agentB.waitUntilUp()
            try await mesh.waitForFilter("keep/#", on: "b")
            let pub = try await mesh.client("a", id: "pub")
            for i in 0..<5 { try pub.publish("keep/\(i)", "v\(i)", qos: 1) }
            try await pub.waitForAcks()
            sub = try await mesh.client("b", id: "durable", cleanStart: false, sessionExpiry: 3600)
            #expect(try await sub.waitForMessages(5).map(\.text) == (0..<5).map { "v\($0)" })
            sub.close(); pub.close()
        }
    }

    @Test("an upgraded agent drops the log subscription older versions kept on their forwarding session")
    func upgradeDropsOldLogSubscription() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let agentB = mesh.agents[1]
            #expect(await agentB.stop() == 0)
            // What an agent from before the control link left in its persistent forwarding session.
            let old = try HarnessClient(clientID: "mosquitto-mesh/b/local", port: mesh.brokers[1].port, cleanStart: false,
                                        sessionExpiry: UInt32.max)
            try await old.connect()
            try await old.subscribe("$SYS/broker/log/#", qos: 2)
            old.disconnect(); old.close()
            try agentB.start()
            try await agentB.waitUntilUp()
            let first = try await mesh.subscriber("b", id: "noise-1", to: "noise/1")
            let baseline = mesh.metric(agent: "b", "mesh_ignored_dollar_messages_total") ?? 0
            // More log lines: none may reach the forwarding link any more.
            let second = try await mesh.subscriber("b", id: "noise-2", to: "noise/2")
            #expect(mesh.metric(agent: "b", "mesh_ignored_dollar_messages_total") == baseline)
            first.close(); second.close()
        }
    }

    @Test("a broker restart forgets clean sessions that did not come back")
    func brokerRestartDropsCleanSessions() async throws {
        try await withMesh(["a", "b"]) { mesh in
            // MQTT 3.1.1 clean session: the log says it ends with its connection. (An MQTT 5
            // session's expiry is not logged: after a restart it is kept until the broker's
            // session count proves it gone — InterestIntegrityTests.)
            let clean = try await mesh.client("b", id: "ephemeral", protocolVersion: .v311)
            try await clean.subscribe("gone/#", qos: 1)
            let durable = try await mesh.client("b", id: "stays", cleanStart: false, sessionExpiry: 3600)
            try await durable.subscribe("stay/#", qos: 1)
            try await mesh.waitForInterest(of: "b") { $0["gone/#"] != nil && $0["stay/#"] != nil }
            // A restart is told by $SYS/broker/uptime going back: let the broker run long
            // enough for the going back to show (a real broker does not die within a second).
            try await waitForUptime(atLeast: 3, port: mesh.brokers[1].port)
            await mesh.brokers[1].kill9()
            clean.close(); durable.close()
            try await mesh.brokers[1].start()
            try await mesh.waitForInterest(of: "b", timeout: .seconds(20)) { $0 == ["stay/#": 1] }
        }
    }

    @Test("a burst of subscribes is coalesced into few adverts, and the interest is exact")
    func burstIsCoalesced() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let reader = try await ControlReader(port: mesh.brokers[1].port)
            try await waitUntil(timeout: .seconds(5), "first advert") { reader.latest("$mesh/b/subscriptions") != nil }
            let before = reader.client.messages(on: "$mesh/b/subscriptions").count
            let c = try await mesh.client("b", id: "burst")
            for i in 0..<300 { _ = try c.client.subscribe("burst/\(i)", qos: 1) }
            try await mesh.waitForInterest(of: "b") { $0.count == 300 }
            let adverts = reader.client.messages(on: "$mesh/b/subscriptions").count - before
            print("300 subscribes in a burst → \(adverts) adverts")
            #expect(adverts >= 1 && adverts <= 30, "\(adverts) adverts for 300 subscribes")
            c.close(); reader.close()
        }
    }

    @Test("time from SUBACK on B until A forwards to it")
    func subscribeToForwardLatency() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let pub = try await mesh.client("a", id: "prober")
            var samples: [Double] = []
            for i in 0..<10 {
                let sub = try await mesh.client("b", id: "late-\(i)")
                let clock = ContinuousClock()
                let start = clock.now
                try await sub.subscribe("lat/\(i)", qos: 1)
                // Publish every millisecond until the first copy arrives: the wait a real subscriber sees.
                try await poll(timeout: .seconds(5), every: .milliseconds(1)) {
                    guard sub.messages.isEmpty else { return true }
                    try pub.publish("lat/\(i)", "probe", qos: 0)
                    return false
                }
                let elapsed = clock.now - start
                #expect(!sub.messages.isEmpty, "nothing forwarded within 5 s of the SUBACK")
                samples.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                sub.close()
            }
            samples.sort()
            print("SUBACK on B → first message forwarded from A: p50 \(samples[samples.count / 2]) ms, max \(samples.last!) ms")
            #expect(samples.count == 10)
            pub.close()
        }
    }

    @Test("status is online while the agent runs, offline via its Will after kill -9, online again after restart")
    func statusFollowsTheAgent() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let reader = try await ControlReader(port: mesh.brokers[0].port)
            try await waitUntil(timeout: .seconds(5), "status online") { reader.latest("$mesh/a/status")?.text == "online" }
            await mesh.agents[0].kill9()
            // Nobody published this but the broker, from the agent's Will.
            try await waitUntil(timeout: .seconds(10), "status offline from the Will") { reader.latest("$mesh/a/status")?.text == "offline" }
            try mesh.agents[0].start()
            try await mesh.agents[0].waitUntilUp()
            try await waitUntil(timeout: .seconds(5), "status online again") { reader.latest("$mesh/a/status")?.text == "online" }
            reader.close()
        }
    }

    @Test("a 4 MiB message crosses intact")
    func largeMessage() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let sub = try await mesh.subscriber("b", id: "big-sub", to: "big")
            let pub = try await mesh.client("a", id: "big-pub")
            let payload = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            try pub.publish("big", bytes: payload, qos: 1)
            #expect(try await sub.waitForMessages(1, timeout: .seconds(20)).first?.payload == payload)
            sub.close(); pub.close()
        }
    }
}

/// Waits until the broker's `$SYS/broker/uptime` reads at least `seconds`.
func waitForUptime(atLeast seconds: Int, port: Int32) async throws {
    // A mesh-prefixed id, like ControlReader's: the probe never counts as interest.
    let probe = try HarnessClient(clientID: "mosquitto-mesh/uptime-probe-\(UInt32.random(in: 0...UInt32.max))", port: port)
    try await probe.connect()
    try await probe.subscribe("$SYS/broker/uptime", qos: 0)
    try await waitUntil(timeout: .seconds(15), "broker uptime \(seconds) s") {
        probe.messages.contains { (Int($0.text.split(separator: " ").first ?? "") ?? 0) >= seconds }
    }
    probe.close()
}
