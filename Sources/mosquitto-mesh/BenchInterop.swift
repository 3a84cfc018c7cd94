import ArgumentParser
import Foundation
import MeshBench
import MeshHarness

/// `bench interop` (issue 10): a third-party MQTT interoperability suite, Eclipse
/// paho.mqtt.testing (`interoperability/client_test.py` for 3.1.1, `client_test5.py` for
/// v5), run test by test through HAProxy against one broker and against a 3-node mesh in
/// the same run. The mesh must pass every test the single broker passes. The suite is not
/// part of this repository (CI cannot fetch it): the operator passes its path.
struct BenchInteropCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interop",
        abstract: "Run the paho.mqtt.testing interoperability suite (3.1.1 and v5) against one broker and a 3-node mesh (not in `all`).",
        discussion: """
        Needs a checkout of https://github.com/eclipse/paho.mqtt.testing (--suite: the checkout or its interoperability
        directory) and python3. Starts one broker behind HAProxy and 3 brokers + 3 agents behind HAProxy (leastconn,
        client-id stickiness, agent-check, as deploy/haproxy/haproxy.cfg), same broker configuration for both, then runs
        each test of both suites in its own python process against both targets at once (bounded by --test-timeout).
        Prints a Markdown table and the tests the mesh fails where the single broker passes; exits 1 if there are any.
        """
    )

    @Option(help: "Path to a paho.mqtt.testing checkout, or to its interoperability directory.")
    var suite: String
    @Option(help: "Run only tests whose name contains this (repeatable), e.g. --only will --only retained.")
    var only: [String] = []
    @Option(name: .customLong("test-timeout"), help: "Seconds one test may take on one target before it is killed and counted as failed.")
    var testTimeout = 90.0
    @Option(help: "Python 3 interpreter (name on PATH or a path).")
    var python = "python3"
    @Option(help: "Working directory (configs, broker/agent/haproxy logs, one log per test and target). Default: a new temporary directory, kept when a test fails.")
    var dir: String?
    @Option(help: "Also write the results as JSON to this path.")
    var json: String?

    func validate() throws {
        _ = try locateSuite()
        guard (5...600).contains(testTimeout) else { throw ValidationError("invalid --test-timeout '\(testTimeout)': expected 5-600 seconds") }
        guard InteropSuite.executable(python) != nil else {
            throw ValidationError("invalid --python '\(python)': not an executable file or a program on PATH")
        }
    }

    func run() async throws {
        raiseOpenFileLimit()
        let run = InteropRun(suite: try locateSuite(), python: InteropSuite.executable(python)!, only: only,
                             testTimeout: .milliseconds(Int64(testTimeout * 1000)),
                             directory: dir ?? MeshCluster.temporaryDirectory("bench-interop"))
        let status = try await run.runAndReport(json: json, keepDirectory: dir != nil)
        if status != 0 { throw ExitCode(status) }
    }

    /// The suite's directory; a missing or wrong one is a usage error.
    private func locateSuite() throws -> InteropSuite {
        do { return try InteropSuite.locate(suite) } catch let error as BenchError { throw ValidationError(error.description) }
    }
}
