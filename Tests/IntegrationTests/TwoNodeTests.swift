import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Testing

/// Two real brokers with agents: forwarding only where a subscriber waits.
@Suite("two nodes", .serialized, .timeLimit(.minutes(2)))
struct TwoNodeTests {
    @Test("a subscriber on B gets a message published on A exactly once, at its QoS", arguments: [Int32(0), 1, 2])
    func crossesOnce(qos: Int32) async throws {
        try await withMesh(["a", "b"]) { mesh in
            let sub = try await mesh.subscriber("b", id: "sub-wild", to: "a/+/c", qos: 2)
            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("a/b/c", "hello-\(qos)", qos: qos)
            try pub.publish("a/b/c", "second-\(qos)", qos: qos)
            let got = try await sub.waitForMessages(2)
            #expect(got.map(\.text) == ["hello-\(qos)", "second-\(qos)"])
            #expect(got.allSatisfy { $0.qos == qos && $0.topic == "a/b/c" && !$0.retain })
            // Nothing more arrives: a marker published after them is the next message.
            try pub.publish("a/x/c", "marker", qos: 1)
            let all = try await sub.waitForMessages(3)
            #expect(all.map(\.text) == ["hello-\(qos)", "second-\(qos)", "marker"])
            sub.close(); pub.close()
        }
    }

    @Test("a message nobody on B wants never crosses to B")
    func nothingCrossesWithoutInterest() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let spy = try await mesh.spy(on: "b")
            let sub = try await mesh.subscriber("b", id: "marker-sub", to: "marker/#")
            let pub = try await mesh.client("a", id: "pub")
            for i in 0..<50 { try pub.publish("nobody/\(i)", "unwanted", qos: Int32(i % 3)) }
            // Same publisher, same path: once the marker is at B, anything forwarded before it would be too.
            try pub.publish("marker/end", "marker", qos: 1)
            try await sub.waitForMessages(1)
            try await spy.waitForMessages(1) { $0.topic == "marker/end" }
            let crossed = spy.messages.filter { $0.topic.contains("nobody") }
            #expect(crossed.isEmpty, "crossed to B without a subscriber: \(crossed.map(\.topic))")
            #expect(spy.messages.contains { $0.topic == "forward/marker/end" })
            spy.close(); sub.close(); pub.close()
        }
    }

    @Test("v5 properties cross intact: user properties in order, content type, response topic, correlation data, payload format, expiry counting down")
    func propertiesCross() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let sub = try await mesh.subscriber("b", id: "props-sub", to: "req/#")
            let pub = try await mesh.client("a", id: "props-pub")
            let props = PropertyList()
            try props.addUserProperty("k", "1")
            try props.addUserProperty("k", "2")
            try props.addUserProperty("other", "ü ñ")
            try props.addString(PropertyID.contentType, "application/json")
            try props.addString(PropertyID.responseTopic, "resp/42")
            try props.addBinary(PropertyID.correlationData, [0, 1, 2, 255])
            try props.addByte(PropertyID.payloadFormatIndicator, 1)
            try props.addInt32(PropertyID.messageExpiryInterval, 3600)
            try pub.publish("req/x", "{}", qos: 1, properties: props)
            let m = try #require(try await sub.waitForMessages(1).first)
            #expect(m.userProperties == [["k", "1"], ["k", "2"], ["other", "ü ñ"]])
            #expect(m.contentType == "application/json")
            #expect(m.responseTopic == "resp/42")
            #expect(m.correlationData == [0, 1, 2, 255])
            let expiry = try #require(m.messageExpiry)
            #expect(expiry <= 3600 && expiry > 3500)
            sub.close(); pub.close()
        }
    }

    @Test("unsubscribe and clean disconnect stop forwarding")
    func unsubscribeStops() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let spy = try await mesh.spy(on: "b")
            let keep = try await mesh.client("b", id: "keeper")
            try await keep.subscribe("marker/#", qos: 1)
            let sub = try await mesh.client("b", id: "leaver")
            try await sub.subscribe("t/1", qos: 1)
            let sub2 = try await mesh.client("b", id: "quitter")
            try await sub2.subscribe("t/2", qos: 1)
            try await mesh.waitForInterest(of: "b") { $0["t/1"] != nil && $0["t/2"] != nil && $0["marker/#"] != nil }
            let pub = try await mesh.client("a", id: "pub")
            try pub.publish("t/1", "before", qos: 1)
            try pub.publish("t/2", "before", qos: 1)
            try await sub.waitForMessages(1)
            try await sub2.waitForMessages(1)

            try sub.unsubscribe("t/1")
            sub2.disconnect()
            // quitter is an MQTT 5 client: released once the broker's session count shows it gone (a few ticks).
            try await mesh.waitForInterest(of: "b", timeout: .seconds(20)) { $0["t/1"] == nil && $0["t/2"] == nil }
            spy.clearMessages()
            try pub.publish("t/1", "after", qos: 1)
            try pub.publish("t/2", "after", qos: 1)
            try pub.publish("marker/1", "m", qos: 1)
            try await keep.waitForMessages(1)
            try await spy.waitForMessages(1) { $0.topic == "marker/1" }
            #expect(!spy.messages.contains { $0.topic.hasSuffix("t/1") || $0.topic.hasSuffix("t/2") })
            #expect(sub.messages.count == 1)
            spy.close(); keep.close(); sub.close(); sub2.close(); pub.close()
        }
    }

    @Test("a persistent client offline on B receives, on reconnect, the QoS 1 messages published on A meanwhile", arguments: [ClientConfiguration.ProtocolVersion.v5, .v311])
    func persistentSessionKeepsInterest(version: ClientConfiguration.ProtocolVersion) async throws {
        try await withMesh(["a", "b"]) { mesh in
            let id = "persistent-\(version == .v5 ? "v5" : "v311")"
            var sub = try await mesh.client("b", id: id, cleanStart: false, sessionExpiry: 3600, protocolVersion: version)
            try await sub.subscribe("p/#", qos: 1)
            try await mesh.waitForFilter("p/#", on: "b")
            sub.disconnect()
            sub.close()
            // Offline: the filter must stay in B's interest (the broker queues for it).
            try await mesh.waitForInterest(of: "b") { $0["p/#"] == 1 }
            let pub = try await mesh.client("a", id: "pub")
            for i in 0..<20 { try pub.publish("p/\(i)", "queued-\(i)", qos: 1) }
            try await pub.waitForAcks()
            // Wait until all 20 reached broker B (a probe on B with the mesh prefix sees republishes).
            sub = try await mesh.client("b", id: id, cleanStart: false, sessionExpiry: 3600, protocolVersion: version)
            #expect(sub.sessionPresent)
            let got = try await sub.waitForMessages(20)
            #expect(got.map(\.text) == (0..<20).map { "queued-\($0)" })
            sub.close(); pub.close()
        }
    }

    @Test("a retained message on A reaches a later subscriber on B; deleting it propagates")
    func retainedPropagates() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let pub = try await mesh.client("a", id: "retainer")
            try pub.publish("cfg/x", "v1", qos: 1, retain: true)
            try await pub.waitForAcks()
            let reader = try HarnessClient(clientID: "mosquitto-mesh/probe", port: mesh.brokers[1].port)
            try await reader.connect()
            try await reader.subscribe("cfg/#", qos: 1)
            try await reader.waitForMessages(1) { $0.topic == "cfg/x" && $0.text == "v1" }
            // A later ordinary subscriber on B gets the retained value from B itself.
            let late = try await mesh.client("b", id: "late")
            try await late.subscribe("cfg/x", qos: 1)
            let got = try await late.waitForMessages(1)
            #expect(got.first?.text == "v1")
            #expect(got.first?.retain == true)
            #expect(got.first?.userProperties.isEmpty == true, "the forwarding marker must not leak")
            // The forwarded copy itself is never retained on B.
            let probe2 = try await mesh.client("b", id: "probe-forward")
            try await probe2.subscribe("forward/#", qos: 1)
            // Delete on A: B's retained copy goes too.
            try pub.publish("cfg/x", "", qos: 1, retain: true)
            try await late.waitForMessages(2)
            let fresh = try await mesh.client("b", id: "fresh")
            try await fresh.subscribe("cfg/#", qos: 1)
            try await fresh.subscribe("sentinel", qos: 1)
            try fresh.publish("sentinel", "s", qos: 1)
            try await fresh.waitForMessages(1) { $0.topic == "sentinel" }
            #expect(fresh.messages(on: "cfg/x").isEmpty, "deleted retained message still on B")
            #expect(probe2.messages.allSatisfy { !$0.retain }, "a forward/ copy was retained")
            for c in [pub, reader, late, probe2, fresh] { c.close() }
        }
    }

    @Test("$mesh/<id>/subscriptions equals the node's real subscriptions, with counts, shares and spaces")
    func advertMatchesSubscriptions() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let c1 = try await mesh.client("a", id: "  spaced id ü ")
            try await c1.subscribe("x/+/y", qos: 1)
            try await c1.subscribe("with space/#", qos: 0)
            let c2 = try await mesh.client("a", id: "two")
            try await c2.subscribe("x/+/y", qos: 2)
            try await c2.subscribe("$share/g1/jobs/#", qos: 1)
            try await mesh.waitForInterest(of: "a") { $0 == ["x/+/y": 2, "with space/#": 1, "$share/g1/jobs/#": 1] }
            try c2.unsubscribe("x/+/y")
            try await mesh.waitForInterest(of: "a") { $0 == ["x/+/y": 1, "with space/#": 1, "$share/g1/jobs/#": 1] }
            // A shared subscriber on B is interest in the inner filter, for its group: g2 has
            // members only on B (g1's member on A gets its copy from A, nothing crosses for it).
            let worker = try await mesh.subscriber("b", id: "worker", to: "$share/g2/jobs/#")
            try c1.publish("jobs/1", "job", qos: 1)
            let jobs = try await worker.waitForMessages(1)
            #expect(jobs.first?.topic == "jobs/1")
            #expect(try await c2.waitForMessages(1).first?.topic == "jobs/1")
            c1.close(); c2.close(); worker.close()
        }
    }
}
