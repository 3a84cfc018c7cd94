import Foundation
import MeshHarness
import Testing

/// The benchmark's smallest configuration, run as a user would run it. It asserts only
/// that every scenario completes and delivers everything: figures from a shared CI box
/// are not worth asserting on (the targets live in docs/performance.md).
@Suite("bench smoke", .serialized, .timeLimit(.minutes(3)))
struct BenchSmokeTests {
    @Test("bench all --quick completes and delivers every message, once")
    func quickBenchmark() async throws {
        let dir = MeshCluster.temporaryDirectory("bench-smoke")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let json = dir + "/bench.json"
        let log = dir + "/bench.log"
        let child = try ChildProcess(executable: try AgentProcess.binaryPath(),
                                     arguments: ["bench", "all", "--quick", "--json", json], logPath: log)
        let exited = await child.waitForExit(timeout: .seconds(150))
        if !exited { await child.stop(grace: .seconds(5)) }
        #expect(exited, "bench did not finish within 150 s: \(child.logTail())")
        #expect(child.exitCode == 0, "bench failed: \(child.logTail())")

        let data = try #require(FileManager.default.contents(atPath: json), "no JSON at \(json): \(child.logTail())")
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let sections = try #require(report["sections"] as? [[String: Any]])
        #expect(Set(sections.compactMap { $0["scenario"] as? String }) == ["seed", "cross", "scale", "locality", "churn", "tree", "loglines"])
        for section in sections {
            for row in section["rows"] as? [[String: Any]] ?? [] {
                let m = row["metrics"] as? [String: Double] ?? [:]
                let label = "\(section["scenario"] ?? "?") \(row["variant"] ?? "?") \(row["setup"] ?? "?")"
                if let expected = m["expected"] { #expect(m["delivered"] == expected, "\(label): delivered \(m["delivered"] ?? -1) of \(expected)") }
                if let d = m["duplicates"] { #expect(d == 0, "\(label): \(d) duplicates") }
                if let missed = m["missed"] { #expect(missed == 0, "\(label): \(missed) subscriptions never served") }
            }
        }
    }
}
