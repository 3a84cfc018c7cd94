import Foundation
import MeshHarness

/// Memory per distinct client: `ids` clients, each with an id never seen before, connect
/// once to one of two brokers (each with its agent), subscribe one filter and leave. A
/// fleet of short-lived devices must not make the agent grow: whatever it keeps per client
/// has to go when the client does. Every `sampleEvery` ids the run waits until both agents
/// have read all their broker logged (so the table reflects every departure) and samples
/// each agent's resident set (`VmRSS`) and `mesh_local_sessions`; after a warm-up (the first
/// 20 % of ids) a least-squares line through the samples gives bytes per 100 000 ids.
package struct BenchChurnMemory {
    var ids = 200_000
    var parallel = 16
    var timeLimit: Duration = .seconds(1800)
    /// 45 % MQTT 3.1.1 clean, 45 % MQTT 5 clean start with session expiry 0, 10 % MQTT 5
    /// persistent sessions with a 1 s expiry (the broker expires them and logs it).
    var kinds: [ClientChurn.Kind] = Array(repeating: .v311Clean, count: 9) + Array(repeating: .v5Clean, count: 9) + [.v5Expiring, .v5Expiring]
    static let warmUp = 0.2

    /// Clean sessions only (MQTT 3.1.1 and MQTT 5 with expiry 0), half each: every session
    /// leaves with its client, and the broker's session count proves the MQTT 5 ones gone.
    static let cleanKinds: [ClientChurn.Kind] = [.v311Clean, .v5Clean]

    package init(quick: Bool, ids: Int? = nil, parallel: Int? = nil, cleanOnly: Bool = false) {
        if cleanOnly { kinds = Self.cleanKinds }
        if quick { self.ids = 20_000; timeLimit = .seconds(300) }
        if let ids { self.ids = ids }
        if let parallel { self.parallel = parallel }
    }

    /// Every 10 000 ids, or a tenth of a smaller run (so even `--quick` has a curve).
    var sampleEvery: Int { ids >= 100_000 ? 10_000 : max(1, ids / 10) }

    struct Sample {
        var ids: Int
        var seconds: Double
        var agentRSS: [Int]
        /// The agents' allocator bytes in use (`mesh_process_heap_bytes`): tells a leak
        /// (heap and RSS rise) from allocator keeping (RSS rises, heap flat).
        var agentHeap: [Double]
        var brokerRSS: [Int]
        var sessions: [Double]
        var idsPerSecond: Double
    }

    package func run() async throws -> BenchSection {
        var section = BenchSection(scenario: "churn-memory", columns: ["ids", "agent_rss_kb", "agent_heap_kb", "broker_rss_kb", "local_sessions", "ids_s", "bytes_per_100k_ids", "heap_bytes_per_100k_ids"])
        let dir = MeshCluster.temporaryDirectory("bench-churn-memory")
        let mesh = MeshCluster(nodes: ["a", "b"], directory: dir, brokerOptions: BenchTopology.brokerOptions)
        let (samples, churn, leftover) : ([Sample], ClientChurn, [Double])
        do {
            try await mesh.start()
            (samples, churn, leftover) = try await measure(mesh)
            await mesh.stop()
            try? FileManager.default.removeItem(atPath: dir)
        } catch {
            await mesh.stop()
            throw BenchError("churn-memory (files kept in \(dir)): \(error)")
        }

        for s in samples {
            for (i, agent) in mesh.agents.enumerated() {
                section.rows.append(BenchRow(scenario: section.scenario, variant: "\(s.ids) ids", setup: "mesh \(agent.nodeID)", metrics: [
                    "ids": Double(s.ids),
                    "seconds": s.seconds,
                    "agent_rss_kb": Double(s.agentRSS[i]) / 1024,
                    "agent_heap_kb": s.agentHeap[i] / 1024,
                    "broker_rss_kb": Double(s.brokerRSS[i]) / 1024,
                    "local_sessions": s.sessions[i],
                    "ids_s": s.idsPerSecond,
                ]))
            }
        }
        let fitted = samples.filter { Double($0.ids) >= Self.warmUp * Double(ids) }
        for (i, agent) in mesh.agents.enumerated() {
            let agentSlope = Self.slope(fitted.map { (Double($0.ids), Double($0.agentRSS[i])) })
            let brokerSlope = Self.slope(fitted.map { (Double($0.ids), Double($0.brokerRSS[i])) })
            let heapSlope = Self.slope(fitted.map { (Double($0.ids), $0.agentHeap[i]) })
            var metrics: [String: Double] = [
                "ids": Double(churn.visited),
                "failed": Double(churn.failed),
                "samples_fitted": Double(fitted.count),
                "sessions_left": leftover[i],
            ]
            if let agentSlope { metrics["bytes_per_100k_ids"] = agentSlope * 100_000 }
            if let brokerSlope { metrics["broker_bytes_per_100k_ids"] = brokerSlope * 100_000 }
            if let heapSlope { metrics["heap_bytes_per_100k_ids"] = heapSlope * 100_000 }
            if let first = samples.first, let last = samples.last {
                metrics["agent_rss_kb"] = Double(last.agentRSS[i] - first.agentRSS[i]) / 1024
                metrics["agent_heap_kb"] = (last.agentHeap[i] - first.agentHeap[i]) / 1024
                metrics["broker_rss_kb"] = Double(last.brokerRSS[i] - first.brokerRSS[i]) / 1024
            }
            section.rows.append(BenchRow(scenario: section.scenario, variant: "fit after \(Int(Self.warmUp * 100)) % warm-up (rss_kb: growth over the run)",
                                         setup: "mesh \(agent.nodeID)", metrics: metrics))
            section.target("agent \(agent.nodeID): RSS growth per 100k distinct ids after warm-up (bytes; ≤ 1 MB per 1M ids)",
                           agentSlope.map { $0 * 100_000 }, atMost: 100_000)
            section.target("agent \(agent.nodeID): sessions still counted after every client left", leftover[i], atMost: 0)
        }
        section.target("visits that failed", Double(churn.failed), atMost: 0)
        section.target("ids visited of \(ids)", Double(churn.visited), atLeast: Double(ids))
        if !churn.failureSamples.isEmpty { benchSay("[churn-memory] failures: \(churn.failureSamples)") }
        return section
    }

    private func measure(_ mesh: MeshCluster) async throws -> ([Sample], ClientChurn, [Double]) {
        let lags = mesh.agents.map { AgentLogLag(agent: $0) }
        for lag in lags { try await lag.calibrate() }
        let baseline = mesh.agents.map { $0.metric("mesh_local_sessions") ?? 0 }
        let churn = ClientChurn(ports: mesh.brokers.map(\.port), kinds: kinds, parallel: parallel)
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: timeLimit)
        func sample(_ n: Int, rate: Double) throws -> Sample {
            let agents = mesh.agents.compactMap(\.residentBytes), brokers = mesh.brokers.compactMap(\.residentBytes)
            guard agents.count == mesh.agents.count, brokers.count == mesh.brokers.count else {
                throw BenchError("an agent or broker is gone after \(n) ids")
            }
            let elapsed = clock.now - start
            return Sample(ids: n, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                          agentRSS: agents, agentHeap: mesh.agents.map { $0.metric("mesh_process_heap_bytes") ?? -1 }, brokerRSS: brokers, sessions: mesh.agents.map { $0.metric("mesh_local_sessions") ?? -1 },
                          idsPerSecond: rate)
        }
        var samples = [try sample(0, rate: 0)]
        let progress = BenchProgress {
            "[churn-memory] ids \(churn.visited)/\(ids) failed \(churn.failed) agent RSS \(mesh.agents.map { ($0.residentBytes ?? 0) / 1024 }) KB"
        }
        defer { progress.finish() }
        var done = 0
        while done < ids && clock.now < deadline {
            let end = min(ids, done + sampleEvery)
            let phaseStart = clock.now
            await churn.run(done..<end, until: deadline)
            let phase = clock.now - phaseStart
            done = end
            for lag in lags {
                let behind = await lag.waitUntilCaughtUp(timeout: .seconds(60))
                if behind > 0 { benchSay("[churn-memory] agent \(lag.agent.nodeID) still \(behind) log lines behind after \(done) ids") }
            }
            let seconds = Double(phase.components.seconds) + Double(phase.components.attoseconds) / 1e18
            samples.append(try sample(churn.visited, rate: Double(end - samples.last!.ids) / seconds))
        }
        // Persistent sessions expire about a second after their client left.
        var leftover: [Double] = []
        for (i, agent) in mesh.agents.enumerated() {
            let until = clock.now.advanced(by: .seconds(20))
            var sessions = agent.metric("mesh_local_sessions") ?? -1
            while sessions != baseline[i] && clock.now < until {
                try await Task.sleep(for: .milliseconds(200))
                sessions = agent.metric("mesh_local_sessions") ?? -1
            }
            leftover.append(sessions - baseline[i])
        }
        return (samples, churn, leftover)
    }

    /// Least-squares slope of y over x; nil with fewer than two distinct x.
    static func slope(_ points: [(Double, Double)]) -> Double? {
        guard points.count >= 2 else { return nil }
        let n = Double(points.count)
        let mx = points.map(\.0).reduce(0, +) / n, my = points.map(\.1).reduce(0, +) / n
        let sxx = points.map { ($0.0 - mx) * ($0.0 - mx) }.reduce(0, +)
        guard sxx > 0 else { return nil }
        return points.map { ($0.0 - mx) * ($0.1 - my) }.reduce(0, +) / sxx
    }
}
