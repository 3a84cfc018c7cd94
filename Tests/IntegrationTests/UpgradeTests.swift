import Foundation
import MeshBench
import MeshHarness
import Testing

/// A rolling upgrade from the previous release under a QoS 1 stream (`UpgradeRun`).
///
/// Between the steps a new subscription is made on every node and must get a message from
/// every node (adverts crossing between the releases both ways, not only the retained ones
/// read at start). The previous release's binary is built from its tag by scripts/build-previous.sh (about a
/// minute on 2 cores, cached per commit in .build/previous), so the test is opt-in:
/// `MESH_UPGRADE_TEST=1` builds the last tag before HEAD (or `MESH_PREVIOUS_REF`), and
/// `MESH_PREVIOUS_BINARY=<path>` uses a binary built elsewhere.
@Suite("rolling upgrade", .serialized, .timeLimit(.minutes(8)))
struct UpgradeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let environment = ProcessInfo.processInfo.environment
    static let enabled = environment["MESH_PREVIOUS_BINARY"] != nil || environment["MESH_UPGRADE_TEST"] == "1"

    static func previousBinary() async throws -> String {
        if let path = environment["MESH_PREVIOUS_BINARY"] { return path }
        let dir = MeshCluster.temporaryDirectory("build-previous")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var args = [root.path + "/scripts/build-previous.sh"]
        if let ref = environment["MESH_PREVIOUS_REF"] { args.append(ref) }
        let p = try ChildProcess(executable: args[0], arguments: Array(args.dropFirst()), environment: environment, logPath: dir + "/out")
        #expect(await p.waitForExit(timeout: .seconds(420)))
        let out = (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? ""
        try #require(p.exitCode == 0, "scripts/build-previous.sh failed:\n\(out.suffix(3000))")
        print(out.split(separator: "\n").filter { $0.hasPrefix("build-previous.sh:") }.joined(separator: "\n"))
        return String(out.split(separator: "\n").last ?? "")
    }

    @Test("3 nodes of the previous release, upgraded one at a time with SIGTERM under a QoS 1 stream from every node to every node: nothing lost, nothing duplicated, order kept",
          .enabled(if: enabled, "opt-in: MESH_UPGRADE_TEST=1 (builds the last tagged release, ~1 min) or MESH_PREVIOUS_BINARY=<path>"))
    func rollingUpgradeUnderStream() async throws {
        let previous = try await Self.previousBinary()
        try #require(FileManager.default.isExecutableFile(atPath: previous), "no previous binary at \(previous)")
        var options = UpgradeRun.Options(previous: previous)
        options.rate = 200
        let result = try await UpgradeRun(options: options).run { print("upgrade: \($0)") }
        print("upgrade: \(result.previousVersion) → \(result.currentVersion): published \(result.published), delivered \(result.totalDelivered), lost \(result.totalLost), duplicates \(result.totalDuplicates), out of order \(result.totalOutOfOrder), \(String(format: "%.1f", result.seconds)) s")
        for step in result.steps {
            print("upgrade: \(step.node): stop \(String(format: "%.2f", step.stopSeconds)) s, new agent up in \(String(format: "%.2f", step.startSeconds)) s, then \(step.mesh); new interest crossed every pair in \(String(format: "%.2f", step.newInterestSeconds)) s")
            #expect(step.exitCode == 0, "the previous agent of \(step.node) did not stop cleanly")
        }
        #expect(result.steps.count == 3)
        #expect(result.published.values.allSatisfy { $0 > 300 }, "the stream was too short to cover the upgrade: \(result.published)")
        #expect(result.totalLost == 0, "lost: \(result.lost)")
        #expect(result.totalDuplicates == 0, "duplicates: \(result.duplicates)")
        #expect(result.totalOutOfOrder == 0, "out of order: \(result.outOfOrder)")
        // Neither release refused or had to widen what the other wrote.
        #expect(result.compatibilityComplaints.isEmpty, "\(result.compatibilityComplaints.prefix(5))")
    }
}
