import Foundation
import MeshHarness
import Testing

/// `bench interop` as a user runs it. The real suite (paho.mqtt.testing) cannot be
/// fetched in CI, so the run test uses a stand-in written here with the suite's shape
/// (two scripts, `class Test`, getopt `--hostname`/`--port`, then `unittest.main()`)
/// whose tests tell the two targets apart for certain: one passes everywhere, one fails
/// everywhere, and one fails only where a mesh agent has published its retained
/// `$mesh/<node>/status`, i.e. only on the mesh.
@Suite("bench interop", .serialized, .timeLimit(.minutes(3)))
struct BenchInteropTests {
    @Test("a missing --suite path is refused with a clear error")
    func missingSuite() async throws {
        let dir = MeshCluster.temporaryDirectory("bench-interop-missing")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/bench.log"
        let child = try ChildProcess(executable: try AgentProcess.binaryPath(),
                                     arguments: ["bench", "interop", "--suite", dir + "/no-such-suite"], logPath: log)
        let exited = await child.waitForExit(timeout: .seconds(20))
        if !exited { await child.stop(grace: .seconds(5)) }
        #expect(exited)
        #expect(child.exitCode == 64, "exit \(String(describing: child.exitCode)): \(child.logTail())")
        #expect(child.logTail().contains("invalid --suite '\(dir)/no-such-suite': no such directory"), "\(child.logTail())")
    }

    @Test("each test runs on both targets; a test failing only on the mesh is listed and fails the run")
    func standInSuite() async throws {
        let dir = MeshCluster.temporaryDirectory("bench-interop-standin")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let suite = dir + "/paho.mqtt.testing/interoperability"
        try FileManager.default.createDirectory(atPath: suite, withIntermediateDirectories: true)
        try Self.script(tests: Self.passEverywhere + Self.failEverywhere).write(toFile: suite + "/client_test.py", atomically: true, encoding: .utf8)
        try Self.script(tests: Self.passEverywhere + Self.failOnMesh).write(toFile: suite + "/client_test5.py", atomically: true, encoding: .utf8)
        let json = dir + "/interop.json"
        let log = dir + "/bench.log"
        // The checkout's root: the command finds `interoperability/` under it.
        let child = try ChildProcess(executable: try AgentProcess.binaryPath(),
                                     arguments: ["bench", "interop", "--suite", dir + "/paho.mqtt.testing", "--test-timeout", "30",
                                                 "--dir", dir + "/work", "--json", json], logPath: log)
        let exited = await child.waitForExit(timeout: .seconds(150))
        if !exited { await child.stop(grace: .seconds(15)) }
        #expect(exited, "bench interop did not finish within 150 s: \(child.logTail())")
        #expect(child.exitCode == 1, "exit \(String(describing: child.exitCode)): \(child.logTail())")

        let data = try #require(FileManager.default.contents(atPath: json), "no JSON: \(child.logTail())")
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(report["meshOnlyFailures"] as? [String] == ["5 test_no_mesh_control_topics"], "\(report)")
        #expect(report["singleOnlyFailures"] as? [String] == [], "\(report)")
        let cases = try #require(report["cases"] as? [[String: Any]])
        var seen: [String: (String, String)] = [:]
        for c in cases {
            let single = (c["single"] as? [String: Any])?["status"] as? String ?? "?"
            let mesh = (c["mesh"] as? [String: Any])?["status"] as? String ?? "?"
            seen["\(c["version"] ?? "?") \(c["test"] ?? "?")"] = (single, mesh)
        }
        #expect(seen.count == 4, "\(seen)")
        #expect(seen["3.1.1 test_connect"].map { $0 == ("pass", "pass") } == true, "\(seen)")
        #expect(seen["5 test_connect"].map { $0 == ("pass", "pass") } == true, "\(seen)")
        #expect(seen["3.1.1 test_fails"].map { $0 == ("fail", "fail") } == true, "\(seen)")
        #expect(seen["5 test_no_mesh_control_topics"].map { $0 == ("pass", "fail") } == true, "\(seen)")
        // The reason names the failing line of the script and the assertion.
        let meshReason = cases.first { $0["test"] as? String == "test_no_mesh_control_topics" }
            .flatMap { ($0["mesh"] as? [String: Any])?["reason"] as? String } ?? ""
        #expect(meshReason.contains("retained $mesh status"), "\(meshReason)")
        // Every process the bench started is gone: nothing listens on its HAProxy ports any more.
        let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let ports = out.split(separator: "\n").filter { $0.contains("behind HAProxy") }
            .flatMap { $0.split(separator: " ").filter { $0.hasPrefix("127.0.0.1:") } }
            .compactMap { Int32($0.dropFirst("127.0.0.1:".count).trimmingCharacters(in: .punctuationCharacters)) }
        #expect(ports.count == 2, "\(out)")
        for p in ports { #expect(!Network.isListening(port: p), "port \(p) still open") }
    }

    // The stand-in suite: raw MQTT 3.1.1 over a socket, standard library only.
    static let passEverywhere = """
        def test_connect(self):
            s = connect("interop-standin-a")
            s.close()

    """
    static let failEverywhere = """
        def test_fails(self):
            self.assertTrue(False, "fails on every broker")

    """
    static let failOnMesh = """
        def test_no_mesh_control_topics(self):
            s = connect("interop-standin-b")
            body = struct.pack("!H", 1) + struct.pack("!H", len(b"$mesh/+/status")) + b"$mesh/+/status" + b"\\x00"
            s.sendall(bytes([0x82, len(body)]) + body)
            suback = s.recv(5)
            self.assertEqual(suback[0], 0x90, suback)
            s.settimeout(1.5)
            try:
                got = s.recv(1)
            except socket.timeout:
                got = b""
            s.close()
            self.assertEqual(got, b"", "a retained $mesh status arrived: this broker has a mesh agent")

    """

    static func script(tests: String) -> String {
        """
        import getopt, socket, struct, sys, unittest

        def connect(clientid):
            s = socket.create_connection((host, port), timeout=5)
            cid = clientid.encode()
            body = b"\\x00\\x04MQTT\\x04\\x02\\x00\\x3c" + struct.pack("!H", len(cid)) + cid
            s.sendall(bytes([0x10, len(body)]) + body)
            connack = s.recv(4)
            assert connack == b"\\x20\\x02\\x00\\x00", connack
            return s

        class Test(unittest.TestCase):
        \(tests)
        if __name__ == "__main__":
            opts, args = getopt.gnu_getopt(sys.argv[1:], "h:p:", ["hostname=", "port="])
            host, port = "localhost", 1883
            for o, a in opts:
                if o in ("-h", "--hostname"):
                    host = a
                elif o in ("-p", "--port"):
                    port = int(a)
            unittest.main()
        """
    }
}
