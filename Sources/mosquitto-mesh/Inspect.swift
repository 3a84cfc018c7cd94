import ArgumentParser
import Foundation
import MeshCore
import MeshHarness
import Mosquitto

extension MosquittoMesh {
    /// What the mesh believes, read like any MQTT client from one broker's retained `$mesh/…`.
    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the mesh as one broker sees it: nodes, status, and the subscription tree.",
            discussion: """
            Examples:
              mosquitto-mesh inspect --broker 127.0.0.1:1883
              mosquitto-mesh inspect --broker 127.0.0.1:1883 --route sensors/kitchen/temp
              mosquitto-mesh inspect --broker 127.0.0.1:1883 --client sensor-17
              mosquitto-mesh inspect --broker 127.0.0.1:1883 --json | jq .
              mosquitto-mesh inspect --broker 127.0.0.1:1883 --watch
            Works against a broker whose agent is down (reads what is retained) and says so.
            """
        )

        @Option(help: "Broker to read, HOST:PORT.")
        var broker: String = "127.0.0.1:1883"
        @Option(help: "Username (e.g. the read-only operator user of deploy/mosquitto/acl).")
        var username: String?
        @Option(help: "Password.")
        var password: String?
        @Option(name: .customLong("cafile"), help: "CA file for TLS.")
        var caFile: String?
        @Option(name: .customLong("route"), help: "Also show which nodes a message on this topic would be forwarded to.")
        var route: String?
        @Option(name: .customLong("client"), help: "Also show on which nodes this client id is connected.")
        var clientID: String?
        @Flag(help: "Machine-readable output.")
        var json = false
        @Flag(help: "Keep following changes until Ctrl-C.")
        var watch = false
        @Option(help: "Seconds to wait for the broker.")
        var timeout: Double = 5

        func validate() throws {
            let parts = broker.split(separator: ":")
            guard parts.count == 2, Int32(parts[1]) != nil else { throw ValidationError("invalid --broker '\(broker)': expected HOST:PORT") }
            if let route { do { try Topic.validateName(route) } catch { throw ValidationError("invalid --route '\(route)': \(error)") } }
        }

        func run() async throws {
            let parts = broker.split(separator: ":")
            let collected = LockedValue<[String: [UInt8]]>([:])
            let generation = LockedValue(0)
            let client = try HarnessClient(
                clientID: "mosquitto-mesh/inspect-\(getpid())", port: Int32(parts[1])!, host: String(parts[0]),
                username: username, password: password, tls: caFile.map { .init(caFile: $0) }, record: false,
                onMessage: { m in
                    let topic = m.topic
                    let payload = m.payloadBytes
                    collected.withLock { if payload.isEmpty { $0[topic] = nil } else { $0[topic] = payload } }
                    generation.withLock { $0 += 1 }
                })
            do {
                try await client.connect(timeout: .milliseconds(Int(timeout * 1000)))
            } catch {
                throw ValidationError("cannot reach broker \(broker): \(error)")
            }
            defer { client.close() }
            try await client.subscribe("\(ControlTopic.root)/#", qos: 0)
            // The broker queues retained messages before the next SUBACK: once it arrives, all are in.
            try await client.subscribe("\(ControlTopic.root)/inspect-barrier/\(getpid())", qos: 0)
            render(collected.value)
            guard watch else { return }
            let interrupted = await InterruptFlag()
            var seen = generation.value
            while true {
                let stop = await withTaskGroup(of: Bool.self) { group in
                    group.addTask { await interrupted.wait(); return true }
                    group.addTask { try? await Task.sleep(for: .milliseconds(300)); return false }
                    let first = await group.next() ?? true
                    group.cancelAll()
                    return first
                }
                if stop { return }
                let now = generation.value
                if now != seen {
                    seen = now
                    print("\n--- \(Date()) ---")
                    render(collected.value)
                }
            }
        }

        private func render(_ retained: [String: [UInt8]]) {
            var picture = MeshPicture()
            // Own topics first so mirrors never override them.
            for (topic, payload) in retained.sorted(by: { ($0.key.split(separator: "/").count, $0.key) < ($1.key.split(separator: "/").count, $1.key) }) {
                picture.add(topic: topic, payload: payload)
            }
            if json {
                printJSON(picture)
            } else {
                printText(picture)
            }
        }

        private func printJSON(_ picture: MeshPicture) {
            var o: [String: Any] = ["broker": broker, "nodes": picture.nodes.mapValues { n -> [String: Any] in
                var d: [String: Any] = ["filters": n.filters, "source": n.source, "subscriptions": n.filters.values.reduce(0, +)]
                if let s = n.status { d["status"] = s }
                if let s = n.seq { d["seq"] = s }
                if let u = n.updated { d["updated"] = u }
                if let s = n.stats { d["stats"] = s }
                if let p = n.presence {
                    d["clients"] = ["online": p.onlineCount, "offline": p.offline, "unlisted": p.unlisted, "time": p.time, "source": p.source]
                }
                if let a = n.adoptions {
                    d["adoptions"] = ["adopted_sessions": a.adoptedSessions, "source": a.source, "rounds": a.rounds.mapValues { r -> [String: Any] in
                        var x: [String: Any] = ["unreachable_since": r.unreachableSince, "lost_at": r.lostAt, "adopted": r.adopted,
                                                "skipped": r.skipped, "failed": r.failed, "finished": r.finished]
                        if let t = r.lastAdoption { x["last_adoption"] = t }
                        return x
                    }]
                }
                return d
            }]
            if let local = picture.localNode { o["sessions_shared"] = [local: picture.sharedSessions.count] }
            if let clientID {
                var c: [String: Any] = ["id": clientID, "connected": picture.whereConnected(clientID)]
                if let s = picture.sharedSessions[clientID], let local = picture.localNode {
                    var session: [String: Any] = ["node": local, "filters": s.filters, "protocol": s.protocolLevel]
                    if let a = s.adopted { session["adopted_from"] = a.from; session["adopted_at_ms"] = a.time }
                    c["persistent_session"] = session
                }
                o["client"] = c
            }
            if let local = picture.localNode {
                o["node"] = local
                o["agent"] = picture.nodes[local]?.status ?? "unknown"
            }
            if let route { o["route"] = ["topic": route, "nodes": picture.route(route)] }
            if !picture.rejected.isEmpty { o["rejected"] = picture.rejected }
            if let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .prettyPrinted]) {
                print(String(decoding: data, as: UTF8.self))
            }
        }

        private func printText(_ picture: MeshPicture) {
            guard !picture.nodes.isEmpty else {
                print("no mesh control topics on \(broker): no agent has run against this broker (or the ACL hides $mesh/# from this user)")
                return
            }
            let local = picture.localNode ?? "?"
            print("mesh as seen from broker \(broker) (node \(local))")
            if let status = picture.nodes[local]?.status, status != "online" {
                print("warning: the agent of this broker is \(status); what follows is what was retained when it last ran")
            }
            let now = Date().timeIntervalSince1970
            let rows = picture.nodes.keys.sorted().map { name -> [String] in
                let n = picture.nodes[name]!
                let updated = n.updated.map { "\(max(0, Int(now - $0)))s ago" } ?? "-"
                let source = n.source == "own" ? "own topics" : "mirrored by \(n.source)"
                let clients = n.presence.map { "\($0.onlineCount)+\($0.offline)" } ?? "-"
                return [name, n.status ?? "?", n.seq.map(String.init) ?? "-", "\(n.filters.count)", "\(n.filters.values.reduce(0, +))", clients,
                        n.delivery ?? "-", source, updated]
            }
            printTable(["NODE", "STATUS", "SEQ", "FILTERS", "SUBSCRIPTIONS", "CLIENTS", "DELIVERY", "SOURCE", "UPDATED"], rows)
            print("(CLIENTS: connected + offline sessions)")
            let down = picture.nodes.keys.sorted().flatMap { name in
                (picture.nodes[name]?.links ?? []).filter { !$0.connected }.map { link -> String in
                    let since = link.downSince.map { " for \(max(0, Int(now - $0)))s" } ?? ""
                    let via = link.reachableVia.map { " — reachable from \($0.joined(separator: ", ")): asymmetric partition" } ?? ""
                    return "  \(name) → \(link.endpoint): down\(since)\(via)"
                }
            }
            if !down.isEmpty {
                print("\npeer links down (from each node's view):")
                for line in down { print(line) }
            }
            printAdoptions(picture, now: now)
            print("\nsubscription tree (node:count; + and # are wildcards, [share g] a shared subscription)")
            printTree(picture)
            if let route {
                let targets = picture.route(route)
                print("\na message on '\(route)' would be delivered on: " + (targets.isEmpty ? "no node (nobody subscribes)" :
                    targets.keys.sorted().map { "\($0) (\(targets[$0]!.joined(separator: ", ")))" }.joined(separator: "; ")))
            }
            if let clientID { printClient(clientID, picture, now: now) }
            for r in picture.rejected { print("rejected: \(r)") }
        }

        /// Sessions adopted from lost nodes, as each adopter reports it (own or mirrored).
        private func printAdoptions(_ picture: MeshPicture, now: Double) {
            let adopters = picture.nodes.keys.sorted().filter { !(picture.nodes[$0]?.adoptions?.rounds.isEmpty ?? true) || (picture.nodes[$0]?.adoptions?.adoptedSessions ?? 0) > 0 }
            guard !adopters.isEmpty else { return }
            print("\nsessions adopted from lost nodes")
            for node in adopters {
                let a = picture.nodes[node]!.adoptions!
                print("  \(node) holds \(a.adoptedSessions) adopted session(s)" + (a.source == "own" ? "" : " (mirrored by \(a.source))"))
                for lost in a.rounds.keys.sorted() {
                    let r = a.rounds[lost]!
                    let window = r.lastAdoption.map { String(format: ", the last %.1f s after it became unreachable", $0 - r.unreachableSince) } ?? ""
                    print("    from \(lost), lost \(max(0, Int(now - r.lostAt)))s ago: \(r.adopted) adopted\(window); \(r.skipped) skipped (client connected or with a session elsewhere), \(r.failed) failed" + (r.finished ? "" : " — under way"))
                }
            }
        }

        private func printClient(_ id: String, _ picture: MeshPicture, now: Double) {
            let found = picture.whereConnected(id)
            let quoted = "'\(id)'"
            if let s = picture.sharedSessions[id], let local = picture.localNode {
                let from = s.adopted.map { " (adopted from \($0.from) \(max(0, Int(now - Double($0.time) / 1000)))s ago)" } ?? ""
                print("\nclient \(quoted) has a persistent session on \(local)\(from): \(s.filters.keys.sorted().joined(separator: ", "))")
            }
            if found.isEmpty {
                let partial = picture.nodes.filter { ($0.value.presence?.unlisted ?? 0) > 0 }.keys.sorted()
                print("\nclient \(quoted) is not connected on any node" + (partial.isEmpty ? "" : " listed (\(partial.joined(separator: ", ")) list only part of their clients)"))
                return
            }
            for node in found.keys.sorted() {
                let t = found[node]!
                let since = t > 0 ? "since \(Date(timeIntervalSince1970: Double(t) / 1000)) (\(max(0, Int(now - Double(t) / 1000)))s ago)" : "since before its agent started"
                print("\nclient \(quoted) is connected on \(node) \(since)")
            }
            if found.count > 1 {
                print("it is connected on \(found.count) nodes: the older connections are being ended (or the snapshots are not up to date yet)")
            }
        }

        private func printTable(_ header: [String], _ rows: [[String]]) {
            let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max() ?? 0 }
            for row in [header] + rows {
                print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            }
        }

        /// Topic levels as a tree, with each filter's nodes and counts at its last level.
        private func printTree(_ picture: MeshPicture) {
            final class Level {
                var children: [String: Level] = [:]
                var marks: [String] = []
            }
            let root = Level()
            for (node, n) in picture.nodes {
                for (text, count) in n.filters {
                    guard let f = try? TopicFilter(validating: text) else { continue }
                    var level = root
                    for part in f.matchFilter.split(separator: "/", omittingEmptySubsequences: false) {
                        let key = String(part)
                        if level.children[key] == nil { level.children[key] = Level() }
                        level = level.children[key]!
                    }
                    level.marks.append("\(node):\(count)" + (f.shareGroup.map { " [share \($0)]" } ?? ""))
                }
            }
            func walk(_ level: Level, _ prefix: String) {
                let keys = level.children.keys.sorted()
                for (i, key) in keys.enumerated() {
                    let child = level.children[key]!
                    let last = i == keys.count - 1
                    let name = key.isEmpty ? "\"\"" : key
                    let marks = child.marks.isEmpty ? "" : "   " + child.marks.sorted().joined(separator: " ")
                    print(prefix + (last ? "└── " : "├── ") + name + marks)
                    walk(child, prefix + (last ? "    " : "│   "))
                }
            }
            if root.children.isEmpty { print("(no subscriptions anywhere)") } else { walk(root, "") }
        }
    }
}
