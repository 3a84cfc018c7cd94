import Foundation
import MeshHarness
import Testing

/// The files an operator installs are checked for real: haproxy -c, keepalived
/// --config-test, systemd-analyze, and a real mosquitto started with the shipped snippet and
/// ACL (hostile clients refused on forward/# and $mesh/#). See deploy/check.sh.
@Suite("deploy files", .timeLimit(.minutes(2)))
struct DeployTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("deploy/check.sh passes every check")
    func deployCheck() async throws {
        let dir = MeshCluster.temporaryDirectory("deploy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/check.log"
        let p = try ChildProcess(executable: "/bin/bash", arguments: [Self.root.path + "/deploy/check.sh"], logPath: log)
        #expect(await p.waitForExit(timeout: .seconds(110)))
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(p.exitCode == 0, "deploy/check.sh failed:\n\(output)")
        // It must have run the ACL checks, not skipped them.
        #expect(output.lowercased().contains("acl"), "\(output)")
    }
}
