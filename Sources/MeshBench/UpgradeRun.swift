import Foundation
import MeshHarness
import Synchronization

/// A rolling upgrade under load: a mesh of agents of the previous release, a QoS 1 stream
/// from a publisher on every node to a subscriber on every node, and the agents replaced by
/// the current release one node at a time (SIGTERM, then the new binary on the same state
/// directory) while the stream runs. Counts what each subscriber lost, got twice or out of
/// order. Used by `UpgradeTests` and `mosquitto-mesh bench upgrade`.
public struct UpgradeRun: Sendable {
    public struct Options: Sendable {
        /// The previous release's `mosquitto-mesh`.
        public var previous: String
        /// This release's (default: `AgentProcess.binaryPath()`).
        public var current: String?
        public var nodes = ["a", "b", "c"]
        /// QoS 1 messages per second per publisher.
        public var rate = 200
        /// Messages each subscriber must receive from each publisher between two steps
        /// (the stream is flowing through the mesh as it is at that moment).
        public var betweenSteps = 300
        public var directory: String?
        public init(previous: String) { self.previous = previous }
    }

    public struct Step: Codable, Sendable {
        public var node: String
        /// SIGTERM to exit (the old agent drains what it holds).
        public var stopSeconds: Double
        public var exitCode: Int32?
        /// Start of the new agent to its health endpoint answering `up`.
        public var startSeconds: Double
        /// What runs after this step, node by node ("previous"/"current").
        public var mesh: [String]
        /// A new subscription on every node, reached by a message from every node: how long
        /// that took (interest crossing between the releases both ways).
        public var newInterestSeconds: Double
    }

    public struct Result: Codable, Sendable {
        public var previous: String
        public var current: String
        public var previousVersion: String
        public var currentVersion: String
        /// Per publisher: messages published (and acknowledged by its broker).
        public var published: [String: Int]
        /// Per subscriber, per publisher.
        public var lost: [String: [String: Int]]
        public var duplicates: [String: [String: Int]]
        public var outOfOrder: [String: [String: Int]]
        public var steps: [Step]
        public var seconds: Double
        public var ratePerPublisher: Int
        /// Lines of the agents' logs (both releases) saying a control payload was rejected or
        /// widened: each would be an incompatibility between the releases.
        public var compatibilityComplaints: [String]
        /// New interest crossing the mesh of the previous release alone, before any upgrade.
        public var newInterestSecondsBefore: Double

        public var totalLost: Int { lost.values.flatMap(\.values).reduce(0, +) }
        public var totalDuplicates: Int { duplicates.values.flatMap(\.values).reduce(0, +) }
        public var totalOutOfOrder: Int { outOfOrder.values.flatMap(\.values).reduce(0, +) }
        public var totalDelivered: Int { published.values.reduce(0, +) * lost.count - totalLost }
    }

    public let options: Options
    public init(options: Options) { self.options = options }

    /// `--version` of a binary.
    public static func version(of binary: String) async -> String {
        let dir = MeshCluster.temporaryDirectory("version")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let p = try? ChildProcess(executable: binary, arguments: ["--version"], logPath: dir + "/out") else { return "?" }
        _ = await p.waitForExit(timeout: .seconds(10))
        return ((try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let current = try options.current ?? AgentProcess.binaryPath()
        let names = options.nodes
        let dir = options.directory ?? MeshCluster.temporaryDirectory("upgrade")
        let brokers = names.map { BrokerProcess(name: $0, directory: "\(dir)/broker-\($0)") }
        func agent(_ i: Int, _ binary: String) -> AgentProcess {
            AgentProcess(nodeID: names[i], local: brokers[i], peers: brokers.indices.filter { $0 != i }.map { brokers[$0].endpoint },
                         stateDirectory: "\(dir)/agent-\(names[i])", executable: binary)
        }
        var agents = names.indices.map { agent($0, options.previous) }
        var subs: [HarnessClient] = []
        var pubs: [HarnessClient] = []
        let stop = LockedValue(false)
        var streams: [Task<Int, Error>] = []
        let clock = ContinuousClock()
        let began = clock.now
        func cleanup() async {
            stop.value = true
            for s in streams { _ = try? await s.value }
            for c in subs + pubs { c.close() }
            for a in agents { await a.stop() }
            for b in brokers { await b.stop() }
        }
        do {
            for b in brokers { try await b.start() }
            for a in agents { try a.start() }
            for a in agents { try await a.waitUntilUp() }
            let previousVersion = await Self.version(of: options.previous)
            let currentVersion = await Self.version(of: current)
            progress("mesh of \(names.count) agents of \(previousVersion) up; stream of \(options.rate) msg/s per node")
            for (i, b) in brokers.enumerated() {
                let s = try HarnessClient(clientID: "upgrade-sub-\(names[i])", port: b.port)
                try await s.connect()
                try await s.subscribe("up/#", qos: 1)
                subs.append(s)
                let p = try HarnessClient(clientID: "upgrade-pub-\(names[i])", port: b.port)
                try await p.connect()
                pubs.append(p)
            }
            let subscribers = subs
            // Every subscription known everywhere: probes from each node until each subscriber has one from each.
            @Sendable func probed(_ s: HarnessClient, _ from: String) -> Bool { s.messages.contains { $0.topic == "up/probe/\(from)" } }
            var ready = false
            for _ in 0..<150 where !ready {
                for (i, p) in pubs.enumerated() where !subscribers.allSatisfy({ probed($0, names[i]) }) { try p.publish("up/probe/\(names[i])", "probe", qos: 1) }
                try? await waitUntil(timeout: .milliseconds(100), "probes") { subscribers.allSatisfy { s in names.allSatisfy { probed(s, $0) } } }
                ready = subscribers.allSatisfy { s in names.allSatisfy { probed(s, $0) } }
            }
            guard ready else { throw HarnessError("the previous release's mesh did not carry probes between every pair of nodes") }

            let rate = Double(options.rate)
            for (i, p) in pubs.enumerated() {
                let topic = "up/s/\(names[i])"
                streams.append(Task { [stop] in
                    let start = ContinuousClock.now
                    var n = 0
                    while !stop.value && n < 59_000 {
                        try p.publish(topic, "\(n)", qos: 1)
                        n += 1
                        let due = start.advanced(by: .seconds(Double(n) / rate))
                        if due > ContinuousClock.now { try await Task.sleep(until: due) }
                    }
                    return n
                })
            }
            @Sendable func streamed(_ s: HarnessClient, from node: String) -> Int { s.messages.reduce(0) { $0 + ($1.topic == "up/s/\(node)" ? 1 : 0) } }
            func waitForFlow(_ what: String) async throws {
                let base = subscribers.map { s in names.map { streamed(s, from: $0) } }
                let need = options.betweenSteps
                try await waitUntil(timeout: .seconds(30), "\(need) more messages from every publisher at every subscriber (\(what))") {
                    subscribers.indices.allSatisfy { si in names.indices.allSatisfy { streamed(subscribers[si], from: names[$0]) >= base[si][$0] + need } }
                }
            }
            // A subscription made now must reach every node, whichever release each runs: a fresh
            // subscriber per node, probes from every node until each subscriber has one from each.
            var round = 0
            func newInterestCrosses() async throws -> Double {
                round += 1
                let t = clock.now
                var late: [HarnessClient] = []
                defer { for c in late { c.close() } }
                for (i, b) in brokers.enumerated() {
                    let c = try HarnessClient(clientID: "upgrade-late-\(round)-\(names[i])", port: b.port)
                    try await c.connect()
                    try await c.subscribe("up/late/\(round)/\(names[i])", qos: 1)
                    late.append(c)
                }
                let lateSubs = late
                @Sendable func has(_ c: HarnessClient, from: String) -> Bool { c.messages.contains { $0.text == from } }
                for _ in 0..<150 {
                    for (i, p) in pubs.enumerated() {
                        for (j, c) in lateSubs.enumerated() where !has(c, from: names[i]) { try p.publish("up/late/\(round)/\(names[j])", names[i], qos: 1) }
                    }
                    if (try? await waitUntil(timeout: .milliseconds(100), "late") { lateSubs.allSatisfy { c in names.allSatisfy { has(c, from: $0) } } }) != nil {
                        return t.duration(to: clock.now).seconds
                    }
                }
                let missing = lateSubs.indices.flatMap { j in names.filter { !has(lateSubs[j], from: $0) }.map { "\($0)→\(names[j])" } }
                throw HarnessError("a new subscription did not get messages across the mixed mesh \(running): \(missing)")
            }
            var running = names.map { _ in "previous" }
            let before = try await newInterestCrosses()
            try await waitForFlow("before the upgrade")
            var steps: [Step] = []
            for i in names.indices {
                let t0 = clock.now
                let code = await agents[i].stop()
                let stopped = t0.duration(to: clock.now)
                agents[i] = agent(i, current)
                let t1 = clock.now
                try agents[i].start()
                try await agents[i].waitUntilUp()
                let started = t1.duration(to: clock.now)
                running[i] = "current"
                let crossed = try await newInterestCrosses()
                steps.append(Step(node: names[i], stopSeconds: stopped.seconds, exitCode: code, startSeconds: started.seconds, mesh: running,
                                  newInterestSeconds: crossed))
                progress("upgraded \(names[i]): stop \(stopped.seconds) s (exit \(code.map(String.init) ?? "?")), new agent up in \(started.seconds) s; mesh \(running); a new subscription on every node got every node's message in \(crossed) s")
                try await waitForFlow("after upgrading \(names[i])")
            }
            stop.value = true
            var published: [String: Int] = [:]
            for (i, s) in streams.enumerated() { published[names[i]] = try await s.value }
            streams = []
            for p in pubs { try await p.waitForAcks() }
            // A last message per publisher, after its stream on the same topic: the per-publisher
            // order means that once it is in, anything still on its way is in too.
            for (i, p) in pubs.enumerated() { try p.publish("up/s/\(names[i])", "end", qos: 1) }
            try await waitUntil(timeout: .seconds(30), "every publisher's last message at every subscriber") {
                subscribers.allSatisfy { s in names.allSatisfy { n in s.messages.contains { $0.topic == "up/s/\(n)" && $0.text == "end" } } }
            }
            var lost: [String: [String: Int]] = [:], duplicates: [String: [String: Int]] = [:], order: [String: [String: Int]] = [:]
            for (si, s) in subs.enumerated() {
                for n in names {
                    let got = s.messages.filter { $0.topic == "up/s/\(n)" }.compactMap { Int($0.text) }
                    let total = published[n] ?? 0
                    lost[names[si], default: [:]][n] = Set(0..<total).subtracting(got).count
                    duplicates[names[si], default: [:]][n] = got.count - Set(got).count
                    order[names[si], default: [:]][n] = zip(got, got.dropFirst()).filter { $0.0 >= $0.1 }.count
                }
            }
            var complaints: [String] = []
            for n in names {
                let log = (try? String(contentsOfFile: "\(dir)/agent-\(n)/agent.log", encoding: .utf8)) ?? ""
                complaints += log.split(separator: "\n").filter { $0.contains("rejected") || $0.contains("widened") }.map { "\(n): \($0)" }
            }
            let result = Result(previous: options.previous, current: current, previousVersion: previousVersion, currentVersion: currentVersion,
                                published: published, lost: lost, duplicates: duplicates, outOfOrder: order, steps: steps,
                                seconds: began.duration(to: clock.now).seconds, ratePerPublisher: options.rate,
                                compatibilityComplaints: complaints, newInterestSecondsBefore: before)
            await cleanup()
            if options.directory == nil { try? FileManager.default.removeItem(atPath: dir) }
            return result
        } catch {
            for a in agents { progress("--- agent \(a.nodeID) log ---\n\(a.logTail())") }
            await cleanup()
            throw error
        }
    }
}

