import Foundation
import MeshHarness
import Testing

/// `$share` groups across real brokers and agents: one broker gives a group's message to one
/// member; the mesh must do the same across brokers where it can, and count where it cannot.
@Suite("shared subscriptions across the mesh", .serialized, .timeLimit(.minutes(3)))
struct SharedSubscriptionTests {
    static let group = "$share/g/jobs/#"

    /// Every message on every path before a publisher's barrier has arrived once its barrier
    /// has: one client's messages take one path to each broker, in order.
    static func waitForBarriers(_ clients: [HarnessClient], count: Int) async throws {
        for c in clients {
            try await c.waitForMessages(count, timeout: .seconds(30)) { $0.topic.hasPrefix("barrier/") }
        }
    }

    /// The group's members, member-a on A and member-b on B, each subscribed to the group and
    /// to the barriers (the caller waits for the interest it needs).
    static func members(_ mesh: MeshCluster) async throws -> [HarnessClient] {
        var members: [HarnessClient] = []
        for n in ["a", "b"] {
            let m = try await mesh.client(n, id: "member-\(n)")
            try await m.subscribe(group, qos: 1)
            try await m.subscribe("barrier/#", qos: 1)
            members.append(m)
        }
        return members
    }

    static func texts(_ client: HarnessClient, _ prefix: String) -> [String] {
        client.messages.filter { $0.topic.hasPrefix("jobs/") && $0.text.hasPrefix(prefix) }.map(\.text)
    }

    /// An MQTT 5 member's session whose expiry the log does not show stays in A's table after
    /// it leaves (it may still be queueing): it must not count as a member that makes A keep
    /// the group's messages at home — there they would reach no one.
    @Test("a member that left A with a session of unknown lifetime does not hold A's messages back")
    func uncertainMemberDoesNotHoldBack() async throws {
        try await withMesh(["a", "b"]) { mesh in
            let leaving = try await mesh.client("a", id: "member-leaving", cleanStart: true, sessionExpiry: 0)
            try await leaving.subscribe(Self.group, qos: 1)
            let stay = try await mesh.client("b", id: "member-b")
            try await stay.subscribe(Self.group, qos: 1)
            try await mesh.waitForInterest(of: "a") { $0[Self.group] == 1 }
            try await mesh.waitForInterest(of: "b") { $0[Self.group] == 1 }
            leaving.disconnect()
            // A's agent keeps the session (unknown lifetime): its advert still holds the group.
            try await waitUntil(timeout: .seconds(5), "a's agent to see the member leave") {
                (mesh.metric(agent: "a", "mesh_sessions_uncertain") ?? 0) >= 1
            }
            let pub = try await mesh.client("a", id: "pub-a")
            for i in 0..<20 { try pub.publish("jobs/x/\(i)", "u-\(i)", qos: 1) }
            let got = try await stay.waitForMessages(20, timeout: .seconds(10)) { $0.text.hasPrefix("u-") }
            #expect(got.count == 20)
            leaving.close(); stay.close(); pub.close()
        }
    }

    @Test("members on A and B, publishers on A, B and C: each message once across the group",
          arguments: ["round-robin", "topic-hash"])
    func oncePerGroup(balance: String) async throws {
        // round-robin is the default: that case runs unchanged against agents without the flag.
        let flags = balance == "round-robin" ? [] : ["--shared-balance", balance]
        try await withMesh(["a", "b", "c"], agentArguments: flags) { mesh in
            let members = try await Self.members(mesh)
            for n in ["a", "b"] {
                try await mesh.waitForInterest(of: n) { $0[Self.group] == 1 && $0["barrier/#"] == 1 }
            }
            let perPublisher = 60, topics = 12
            var publishers: [HarnessClient] = []
            for n in ["a", "b", "c"] { publishers.append(try await mesh.client(n, id: "pub-\(n)")) }
            for i in 0..<perPublisher {
                for (p, n) in zip(publishers, ["a", "b", "c"]) { try p.publish("jobs/\(n)/\(i % topics)", "\(n)-\(i)", qos: 1) }
            }
            for (p, n) in zip(publishers, ["a", "b", "c"]) { try p.publish("barrier/\(n)", "barrier", qos: 1) }
            try await Self.waitForBarriers(members, count: 3)

            let atA = Self.texts(members[0], ""), atB = Self.texts(members[1], "")
            let all = atA + atB
            let expected = Set(["a", "b", "c"].flatMap { n in (0..<perPublisher).map { "\(n)-\($0)" } })
            #expect(all.count == expected.count, "the group got \(all.count) messages for \(expected.count) published")
            #expect(Set(all) == expected, "missing: \(expected.subtracting(all).sorted().prefix(10))")
            // The publishing broker's member takes what is published there; nothing crosses for it.
            #expect(Self.texts(members[0], "a-").count == perPublisher && Self.texts(members[1], "a-").isEmpty)
            #expect(Self.texts(members[1], "b-").count == perPublisher && Self.texts(members[0], "b-").isEmpty)
            // C has no member: each message goes to one of A and B.
            let cAtA = Self.texts(members[0], "c-").count, cAtB = Self.texts(members[1], "c-").count
            #expect(cAtA + cAtB == perPublisher)
            switch balance {
            case "round-robin":
                #expect(abs(cAtA - cAtB) <= 1, "round robin split C's messages \(cAtA):\(cAtB)")
            default:
                // One broker per topic, and the topics spread over both.
                func topicsAt(_ m: HarnessClient) -> Set<String> { Set(m.messages.filter { $0.topic.hasPrefix("jobs/c/") }.map(\.topic)) }
                #expect(topicsAt(members[0]).isDisjoint(with: topicsAt(members[1])))
                #expect(cAtA > 0 && cAtB > 0, "topic hash sent every topic one way: \(cAtA):\(cAtB)")
            }
            #expect(mesh.metric(agent: "c", "mesh_shared_forwards_total") == Double(perPublisher))
            for n in ["a", "b", "c"] {
                #expect(mesh.metric(agent: n, "mesh_shared_extra_copies_total") == 0, "\(n)")
            }
            for n in ["a", "b"] { #expect(mesh.metric(agent: n, "mesh_shared_forwards_total") == 0, "\(n)") }
            for c in members + publishers { c.close() }
        }
    }

    @Test("an ordinary subscriber on B forces a second copy to the group (counted); retained messages reach every member broker (counted)")
    func forcedCopiesAreCounted() async throws {
        try await withMesh(["a", "b", "c"]) { mesh in
            let members = try await Self.members(mesh)
            let ordinary = try await mesh.client("b", id: "ordinary-b")
            try await ordinary.subscribe("jobs/#", qos: 1)
            try await ordinary.subscribe("barrier/#", qos: 1)
            try await mesh.waitForInterest(of: "a") { $0[Self.group] == 1 && $0["barrier/#"] == 1 }
            try await mesh.waitForInterest(of: "b") { $0[Self.group] == 1 && $0["barrier/#"] == 2 && $0["jobs/#"] == 1 }

            let n = 40, retained = 5
            let pubA = try await mesh.client("a", id: "pub-a"), pubC = try await mesh.client("c", id: "pub-c")
            for i in 0..<n {
                try pubA.publish("jobs/a/\(i)", "a-\(i)", qos: 1)
                try pubC.publish("jobs/c/\(i)", "c-\(i)", qos: 1)
            }
            for k in 0..<retained { try pubC.publish("jobs/kept/\(k)", "r-\(k)", qos: 1, retain: true) }
            try pubA.publish("barrier/a", "barrier", qos: 1)
            try pubC.publish("barrier/c", "barrier", qos: 1)
            try await Self.waitForBarriers(members + [ordinary], count: 2)

            // The ordinary subscriber gets everything once.
            let plain = Self.texts(ordinary, "")
            #expect(plain.count == 2 * n + retained && Set(plain).count == plain.count)
            // From A: A's member got it from A; the copy crossing to B for the ordinary
            // subscriber also reaches B's member. Counted by A, once per message.
            #expect(Self.texts(members[0], "a-").count == n)
            #expect(Self.texts(members[1], "a-").count == n)
            #expect(mesh.metric(agent: "a", "mesh_shared_extra_copies_total") == Double(n))
            // From C: the copy going to B anyway serves the group; nothing more crosses.
            #expect(Self.texts(members[1], "c-").count == n)
            #expect(Self.texts(members[0], "c-").isEmpty)
            #expect(mesh.metric(agent: "c", "mesh_shared_forwards_total") == 0)
            // Retained: every broker must store it, so A's and B's members each get one.
            #expect(Self.texts(members[0], "r-").count == retained && Self.texts(members[1], "r-").count == retained)
            #expect(mesh.metric(agent: "c", "mesh_shared_extra_copies_total") == Double(retained))
            #expect(mesh.metric(agent: "b", "mesh_shared_extra_copies_total") == 0)
            for c in members + [ordinary, pubA, pubC] { c.close() }
        }
    }
}
