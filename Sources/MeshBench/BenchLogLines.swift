import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Synchronization

/// One `$SYS/broker/log/...` message as the agent receives it.
struct LogLine: Sendable {
    var topic: String
    var payload: [UInt8]
}

/// What the agent does with one log line to keep its interest: parse it and apply the event
/// to the session table. Returns false for a line it did not understand.
typealias LogLineStep = (_ topic: String, _ payload: UnsafeRawBufferPointer) -> Bool

/// A realistic stream of Mosquitto 2.0.11 log lines and the loop that times a step over it.
///
/// The benchmark knows the parser and the session table only through `LogLineStep`, made in
/// one place (`meshCoreStep`), so a change of that API (one entry point instead of
/// parse + apply) touches that function and nothing else here.
struct LogLineWorkload {
    let lines: [LogLine]
    /// Distinct client ids in the stream.
    let clients: Int

    /// The agent's step over MeshCore, as `NodeInterest.handleLogLine` does it (less the lock
    /// and the metrics): a fresh parser and empty table per call, so every run starts alike.
    static func meshCoreStep() -> LogLineStep {
        let parser = LogLineParser()
        let state = StepState()
        return { topic, payload in
            do throws(LogParseError) {
                guard let event = try parser.parse(topic: topic, payload: payload, isKnownClient: { state.table.isKnownClient($0) },
                                                   everyClientKnown: state.table.everyClientKnown) else {
                    return true
                }
                state.table.apply(event)
                return true
            } catch {
                return false
            }
        }
    }

    private final class StepState {
        var table = SessionTable()
    }

    /// Feeds every line through `step` once, on this thread; returns the time it took and
    /// how many lines the step did not understand (a realistic stream has none).
    func feed(_ step: LogLineStep) -> (seconds: Double, unparsed: Int) {
        var unparsed = 0
        let start = monotonicNanos()
        for line in lines where !line.payload.withUnsafeBytes({ step(line.topic, $0) }) {
            unparsed += 1
        }
        return (Double(monotonicNanos() - start) / 1e9, unparsed)
    }

    /// `count` lines from `clients` distinct ids that come and go, `concurrent` of them in a
    /// visit at any time, their lines interleaved. A visit is what Mosquitto 2.0.11 logs for
    /// one connection: `New connection from …`, `New client connected from … as <id> (p5,
    /// c1, k60).`, one to three `<id> <qos> <filter>`, sometimes `<id> <filter>`, then
    /// `Client <id> disconnected.` (or `closed its connection.`, or a keepalive timeout).
    /// Ids are 20–100 characters, one in eight with spaces; one visit in six is a persistent
    /// session (`c0`), one in ten logs a username. Seeded: the same stream every run.
    init(count: Int, clients: Int, concurrent: Int, seed: UInt64 = 0x6D65_7368) {
        var rng = SplitMix64(seed: seed)
        let ids = (0..<clients).map { ClientChurn.clientID(tag: "lg", index: $0) }
        var offline = Array(0..<clients)
        offline.shuffle(using: &rng)
        var active: [(id: Int, lines: [LogLine], next: Int)] = []
        var lines: [LogLine] = []
        lines.reserveCapacity(count)
        var seen = Set<Int>()

        let notice = LogLineParser.noticeTopic, subscribe = LogLineParser.subscribeTopic
        let unsubscribe = LogLineParser.unsubscribeTopic
        func visit(_ k: Int) -> [LogLine] {
            let id = ids[k]
            let port = Int.random(in: 32768...60999, using: &rng)
            let p = Bool.random(using: &rng) ? 5 : 2
            let c = rng.next() % 6 == 0 ? 0 : 1
            let keepalive = [30, 60, 60, 120][Int(rng.next() % 4)]
            let user = rng.next() % 10 == 0 ? ", u'user-\(k % 97)'" : ""
            var v = [LogLine(topic: notice, text: "New connection from 127.0.0.1:\(port) on port 1883."),
                     LogLine(topic: notice, text: "New client connected from 127.0.0.1:\(port) as \(id) (p\(p), c\(c), k\(keepalive)\(user)).")]
            let filters = (0..<(1 + Int(rng.next() % 3))).map { ClientChurn.filter(index: k * 3 + $0) }
            for f in filters { v.append(LogLine(topic: subscribe, text: "\(id) \(rng.next() % 3) \(f)")) }
            if rng.next() % 10 < 3 { v.append(LogLine(topic: unsubscribe, text: "\(id) \(filters[0])")) }
            switch rng.next() % 20 {
            case 0: v.append(LogLine(topic: notice, text: "Client \(id) has exceeded timeout, disconnecting."))
            case 1..<6: v.append(LogLine(topic: notice, text: "Client \(id) closed its connection."))
            default: v.append(LogLine(topic: notice, text: "Client \(id) disconnected."))
            }
            return v
        }

        while lines.count < count {
            while active.count < concurrent, !offline.isEmpty {
                let k = offline.removeLast()
                seen.insert(k)
                active.append((k, visit(k), 0))
            }
            let pick = Int(rng.next() % UInt64(active.count))
            var line = active[pick].lines[active[pick].next]
            // Mosquitto's default `log_timestamp`: epoch seconds, about 2 000 lines a second.
            line.payload = Array("\(1_700_000_000 + lines.count / 2000): ".utf8) + line.payload
            lines.append(line)
            active[pick].next += 1
            if active[pick].next == active[pick].lines.count {
                offline.insert(active[pick].id, at: Int(rng.next() % UInt64(offline.count + 1)))
                active.swapAt(pick, active.count - 1)
                active.removeLast()
            }
        }
        self.lines = lines
        self.clients = seen.count
    }
}

extension LogLine {
    init(topic: String, text: String) {
        self.init(topic: topic, payload: Array(text.utf8))
    }
}

/// Log-line processing throughput: in process on one core (the parser and session table
/// alone, median of several runs over the same stream), then through a real agent beside
/// a real broker while a few clients subscribe and unsubscribe as fast as the broker takes it.
struct BenchLogLines {
    var lines = 200_000
    var clients = 5_000
    var concurrent = 500
    var runs = 5
    var stormSeconds = 10.0
    var stormClients = 4
    /// The interest step under test; the only link to MeshCore's log API.
    var makeStep: () -> LogLineStep = LogLineWorkload.meshCoreStep

    init(quick: Bool) {
        if quick { lines = 20_000; clients = 2_000; concurrent = 200; runs = 3; stormSeconds = 2 }
    }

    func run() async throws -> BenchSection {
        var section = BenchSection(scenario: "loglines", columns: ["lines_s", "lines_s_min", "lines_s_max", "lines", "clients", "unparsed",
                                                                   "broker_lines_s", "agent_lines_s", "broker_lines", "agent_lines", "lost", "catch_up_s",
                                                                   "catch_up_lines_s"])
        #if DEBUG
        benchSay("warning: debug build; log line figures need `swift build -c release`")
        #endif
        let inProcess = measureInProcess()
        section.rows.append(BenchRow(scenario: "loglines", variant: "in process, one core", setup: "parser+table", metrics: inProcess))
        section.target("log lines/s, parser + session table, one core", inProcess["lines_s"], atLeast: 50_000)
        section.target("lines of the realistic stream not understood", inProcess["unparsed"], atMost: 0)

        let storm = try await measureAgent()
        section.rows.append(BenchRow(scenario: "loglines", variant: "\(stormClients) clients sub/unsub for \(BenchSection.format(stormSeconds)) s",
                                     setup: "mesh", metrics: storm))
        section.target("log lines the broker produced and the agent never read", storm["lost"], atMost: 0)
        return section
    }

    private func measureInProcess() -> [String: Double] {
        benchSay("[loglines] generating \(lines) lines from \(clients) clients")
        let workload = LogLineWorkload(count: lines, clients: clients, concurrent: concurrent)
        var rates: [Double] = []
        var unparsed = 0
        for r in 0..<runs {
            let (seconds, missed) = workload.feed(makeStep())
            rates.append(Double(workload.lines.count) / seconds)
            unparsed = max(unparsed, missed)
            benchSay("[loglines] run \(r + 1)/\(runs): \(Int(rates.last!)) lines/s")
        }
        rates.sort()
        return [
            "lines_s": rates[rates.count / 2],
            "lines_s_min": rates.first!,
            "lines_s_max": rates.last!,
            "lines": Double(workload.lines.count),
            "clients": Double(workload.clients),
            "unparsed": Double(unparsed),
        ]
    }

    /// One broker and its agent; `stormClients` clients each subscribe and unsubscribe fresh
    /// filters (at most 100 SUBSCRIBEs unanswered each) for `stormSeconds`. What the broker
    /// produced is counted from its log file (the same lines go to `$SYS/broker/log`), what
    /// the agent read from its `mesh_log_lines_total`; afterwards the agent gets up to 30 s
    /// (past Mosquitto's 20 s expiry of log messages) to read what it still lags behind.
    private func measureAgent() async throws -> [String: Double] {
        let dir = MeshCluster.temporaryDirectory("bench-loglines")
        let mesh = MeshCluster(nodes: ["a"], directory: dir, brokerOptions: BenchTopology.brokerOptions)
        do {
            try await mesh.start()
            let result = try await storm(mesh)
            await mesh.stop()
            try? FileManager.default.removeItem(atPath: dir)
            return result
        } catch {
            await mesh.stop()
            throw BenchError("loglines mesh (files kept in \(dir)): \(error)")
        }
    }

    private func storm(_ mesh: MeshCluster) async throws -> [String: Double] {
        let lag = AgentLogLag(agent: mesh.agents[0])
        try await lag.calibrate()
        var clients: [StormClient] = []
        defer { clients.forEach { $0.client.close() } }
        for i in 0..<stormClients {
            let c = try StormClient(id: ClientChurn.clientID(tag: "storm", index: i), port: mesh.brokers[0].port)
            try await c.connect()
            clients.append(c)
        }
        let brokerBefore = lag.brokerLines
        guard let agentBefore = lag.agentLines else { throw BenchError("agent exports no mesh_log_lines_total") }
        let stormClients = clients
        let progress = BenchProgress { "[loglines storm] subscribe+unsubscribe sent \(stormClients.reduce(0) { $0 + $1.sent }), agent behind \(lag.behind ?? -1) lines" }
        let start = monotonicNanos()
        let seconds = stormSeconds
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, c) in clients.enumerated() {
                group.addTask { try await c.storm(seconds: seconds, label: i) }
            }
            try await group.waitForAll()
        }
        let end = monotonicNanos()
        let brokerDuring = lag.brokerLines - brokerBefore
        let agentDuring = (lag.agentLines ?? agentBefore) - agentBefore
        let behind = await lag.waitUntilCaughtUp(timeout: .seconds(30), stall: .seconds(25))
        let caughtUp = monotonicNanos()
        progress.finish()
        let produced = lag.brokerLines - brokerBefore
        let read = (lag.agentLines ?? agentBefore) - agentBefore
        let window = Double(end - start) / 1e9
        return [
            "broker_lines_s": Double(brokerDuring) / window,
            "agent_lines_s": Double(agentDuring) / window,
            "broker_lines": Double(produced),
            "agent_lines": Double(read),
            "lost": Double(max(0, behind)),
            "catch_up_s": Double(caughtUp - end) / 1e9,
            // What the agent reads once the broker is no longer busy with the storm.
            "catch_up_lines_s": Double(read - agentDuring) / max(1e-9, Double(caughtUp - end) / 1e9),
            "sub_unsub_sent": Double(clients.reduce(0) { $0 + $1.sent }),
        ]
    }
}

/// A client that subscribes and unsubscribes fresh filters as fast as the broker answers:
/// each filter is unsubscribed right after its SUBSCRIBE, so the client holds almost no
/// subscriptions while every packet costs the broker one log line.
