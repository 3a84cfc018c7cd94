import Foundation
import MeshHarness

/// `bench interop` (issue 10): a third-party MQTT interoperability suite, Eclipse
/// paho.mqtt.testing (`interoperability/client_test.py` for 3.1.1, `client_test5.py` for
/// v5), run test by test through HAProxy against one broker and against a 3-node mesh in
/// the same run. The mesh must pass every test the single broker passes. The suite is not
/// part of this repository (CI cannot fetch it): the operator passes its path.
/// Where the suite's two client test scripts are.
package struct InteropSuite: Sendable {
    /// The `interoperability` directory (the scripts import `mqtt.*` from it).
    let directory: String

    /// MQTT version shown in the report → script in `directory`.
    static let scripts: [(version: String, script: String)] = [("3.1.1", "client_test.py"), ("5", "client_test5.py")]

    /// Accepts the checkout or its `interoperability` directory; a clear error otherwise.
    package static func locate(_ path: String) throws -> InteropSuite {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw BenchError("invalid --suite '\(path)': no such directory (expected a checkout of https://github.com/eclipse/paho.mqtt.testing or its interoperability directory)")
        }
        for candidate in [path, path + "/interoperability"] {
            if scripts.allSatisfy({ fm.isReadableFile(atPath: candidate + "/" + $0.script) }) {
                return InteropSuite(directory: URL(fileURLWithPath: candidate).standardizedFileURL.path)
            }
        }
        throw BenchError("invalid --suite '\(path)': neither it nor \(path)/interoperability holds \(scripts.map(\.script).joined(separator: " and ")) (expected a checkout of https://github.com/eclipse/paho.mqtt.testing)")
    }

    /// The client ids every test of both scripts uses (`aclient`, `bclient`): where HAProxy
    /// sticks them decides which tests cross between mesh nodes.
    static let fixedClientIDs: Set<String> = ["myclientid", "myclientid2"]

    /// `name` as a path, or looked up on PATH.
    package static func executable(_ name: String) -> String? {
        let fm = FileManager.default
        if name.contains("/") { return fm.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where fm.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }

    /// Our runner around the suite's scripts (written into the working directory; not
    /// the suite's code). The scripts parse `--hostname`/`--port` with getopt in their
    /// `__main__` block and then call `unittest.main()`, which would read the same argv
    /// (3.1.1 chokes on `--port`). So the driver runs the script as `__main__` with the
    /// options and replaces `unittest.main` by one that runs the one named test and
    /// prints a single `INTEROP-RESULT {json}` line. The reason is the first exception the
    /// test printed itself (the 3.1.1 tests catch their assertion, print it and then fail
    /// on `assertEqual(succeeded, True)`), else the failure unittest saw: the line of the
    /// script where it failed and the exception.
    static let driver = #"""
    import json, os, runpy, sys, traceback, unittest
    mode, suite, script = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path.insert(0, suite)
    os.chdir(suite)
    path = os.path.join(suite, script)

    def reason_of(exc_info):
        etype, value, tb = exc_info
        frames = [f for f in traceback.extract_tb(tb) if os.path.basename(f.filename) == script]
        where = ""
        if frames:
            f = frames[-1]
            where = "line %d `%s`: " % (f.lineno, (f.line or "").strip())
        text = " ".join("".join(traceback.format_exception_only(etype, value)).split())
        return (where + text)[:600]

    if mode == "list":
        g = runpy.run_path(path, run_name="interop_list")
        print("INTEROP-TESTS " + json.dumps(list(unittest.TestLoader().getTestCaseNames(g["Test"]))), flush=True)
        sys.exit(0)

    host, port, test = sys.argv[4], sys.argv[5], sys.argv[6]
    printed = []
    real_print_exc = traceback.print_exc
    def print_exc(*args, **kwargs):
        printed.append(reason_of(sys.exc_info()))
        return real_print_exc(*args, **kwargs)
    traceback.print_exc = print_exc

    class Result(unittest.TextTestResult):
        problems = []
        def addFailure(self, t, err):
            Result.problems.append(("fail", reason_of(err)))
            super().addFailure(t, err)
        def addError(self, t, err):
            Result.problems.append(("error", reason_of(err)))
            super().addError(t, err)

    real_main = unittest.main
    def main(*args, **kwargs):
        runner = unittest.TextTestRunner(resultclass=Result, verbosity=2)
        program = real_main(module="__main__", argv=[path, "Test." + test], exit=False, testRunner=runner)
        r = program.result
        if Result.problems:
            status, reason = Result.problems[0]
            if printed:
                reason = printed[0]
        elif r.skipped:
            status, reason = "skip", str(r.skipped[0][1])
        elif r.testsRun == 0:
            status, reason = "error", "no test ran"
        else:
            status, reason = "pass", ""
        print("INTEROP-RESULT " + json.dumps({"status": status, "reason": reason}), flush=True)
        sys.exit(0 if status == "pass" else 1)
    unittest.main = main
    sys.argv = [path, "--hostname", host, "--port", port]
    runpy.run_path(path, run_name="__main__")
    """#
}

/// What one test did on one target.
struct InteropOutcome: Codable, Sendable {
    /// pass, fail, error, skip, timeout, crash (no result line), interrupted.
    var status: String
    var reason: String
    var seconds: Double
    var log: String
    var passed: Bool { status == "pass" }
}

/// One test on both targets.
struct InteropCase: Codable, Sendable {
    var version: String
    var test: String
    var single: InteropOutcome
    var mesh: InteropOutcome
    /// Client id → mesh node, from HAProxy's stick table after the test.
    var meshPlacement: [String: String]
}

struct InteropReport: Encodable, Sendable {
    var suite: String
    var cases: [InteropCase] = []
    /// False when the run was interrupted before every selected test ran.
    var complete = true

    var meshOnlyFailures: [InteropCase] { cases.filter { $0.single.passed && !$0.mesh.passed } }
    var singleOnlyFailures: [InteropCase] { cases.filter { !$0.single.passed && $0.mesh.passed } }

    enum CodingKeys: String, CodingKey { case suite, cases, complete, meshOnlyFailures, singleOnlyFailures }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(suite, forKey: .suite)
        try c.encode(cases, forKey: .cases)
        try c.encode(complete, forKey: .complete)
        try c.encode(meshOnlyFailures.map { "\($0.version) \($0.test)" }, forKey: .meshOnlyFailures)
        try c.encode(singleOnlyFailures.map { "\($0.version) \($0.test)" }, forKey: .singleOnlyFailures)
    }

    var markdown: String {
        func mark(_ o: InteropOutcome) -> String { o.passed ? "pass" : o.status.uppercased() }
        func short(_ s: String) -> String {
            let flat = s.replacingOccurrences(of: "|", with: "\\|")
            return flat.count > 110 ? String(flat.prefix(107)) + "..." : flat
        }
        var lines = ["## interop: paho.mqtt.testing (\(suite))", "",
                     "| MQTT | test | single | mesh | mesh: client id → node | why it failed (mesh, else single) |",
                     "|---|---|---|---|---|---|"]
        for c in cases {
            let placement = c.meshPlacement.sorted { $0.key < $1.key }.map { "\($0.key)→\($0.value)" }.joined(separator: " ")
            let why = !c.mesh.passed ? c.mesh.reason : (!c.single.passed ? c.single.reason : "")
            lines.append("| \(c.version) | \(c.test) | \(mark(c.single)) | \(mark(c.mesh)) | \(placement) | \(short(why)) |")
        }
        lines.append("")
        for (version, _) in InteropSuite.scripts {
            let mine = cases.filter { $0.version == version }
            guard !mine.isEmpty else { continue }
            lines.append("MQTT \(version): \(mine.count) tests; single broker passes \(mine.filter(\.single.passed).count), "
                         + "mesh passes \(mine.filter(\.mesh.passed).count), mesh fails where single passes \(mine.filter { $0.single.passed && !$0.mesh.passed }.count)")
        }
        lines.append("")
        if meshOnlyFailures.isEmpty {
            lines.append("Mesh fails where the single broker passes: none.")
        } else {
            lines.append("Mesh fails where the single broker passes (\(meshOnlyFailures.count)):")
            for c in meshOnlyFailures {
                lines.append("- MQTT \(c.version) \(c.test): \(c.mesh.status): \(c.mesh.reason) (log: \(c.mesh.log))")
            }
        }
        if !singleOnlyFailures.isEmpty {
            lines.append("")
            lines.append("Single broker fails where the mesh passes (\(singleOnlyFailures.count)):")
            for c in singleOnlyFailures {
                lines.append("- MQTT \(c.version) \(c.test): \(c.single.status): \(c.single.reason) (log: \(c.single.log))")
            }
        }
        if !complete { lines += ["", "Interrupted: not every selected test ran."] }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// One `bench interop` run: both targets up, every selected test on both, all stopped.
package struct InteropRun: Sendable {
    let suite: InteropSuite
    let python: String
    let only: [String]
    let testTimeout: Duration
    package let directory: String

    package init(suite: InteropSuite, python: String, only: [String], testTimeout: Duration, directory: String) {
        self.suite = suite
        self.python = python
        self.only = only
        self.testTimeout = testTimeout
        self.directory = directory
    }

    var driverPath: String { directory + "/interop_driver.py" }

    func run() async throws -> InteropReport {
        try FileManager.default.createDirectory(atPath: directory + "/tests", withIntermediateDirectories: true)
        try InteropSuite.driver.write(toFile: driverPath, atomically: true, encoding: .utf8)
        var selected: [(version: String, script: String, tests: [String])] = []
        for (version, script) in InteropSuite.scripts {
            let tests = try await list(script).filter { name in only.isEmpty || only.contains { name.contains($0) } }
            selected.append((version, script, tests))
        }
        let plan = selected
        let total = plan.map(\.tests.count).reduce(0, +)
        guard total > 0 else { throw BenchError("interop: no test matches --only \(only)") }
        benchSay("interop: \(total) tests (\(plan.map { "MQTT \($0.version): \($0.tests.count)" }.joined(separator: ", "))) in \(directory)")

        // The same broker configuration for both targets (the one every benchmark uses: deploy/mosquitto/mesh.conf's limits).
        let single = BrokerProcess(name: "single", directory: directory + "/single/broker", options: BenchTopology.brokerOptions)
        let singleLB = HAProxyProcess(directory: directory + "/single/haproxy",
                                      backends: [.init(name: "single", port: single.port, agentPort: nil)], balance: "leastconn")
        let mesh = MeshCluster(nodes: ["a", "b", "c"], directory: directory + "/mesh", brokerOptions: BenchTopology.brokerOptions)
        let meshLB = mesh.makeLoadBalancer(balance: "leastconn")
        func stopAll() async {
            await singleLB.stop()
            await meshLB.stop()
            await single.stop()
            await mesh.stop()
        }

        // Ctrl-C / SIGTERM: finish with what ran, stop every process started here.
        let interrupt = await InterruptFlag()
        let work = Task { () async throws -> InteropReport in
            var report = InteropReport(suite: suite.directory)
            try await single.start()
            try await mesh.start()
            try await singleLB.start()
            try await meshLB.start()
            try await waitForServers(singleLB, ["single"])
            try await waitForServers(meshLB, ["a", "b", "c"])
            benchSay("single broker behind HAProxy 127.0.0.1:\(singleLB.port); mesh a b c behind HAProxy 127.0.0.1:\(meshLB.port)")
            var done = 0
            for (version, script, tests) in plan {
                for test in tests {
                    if Task.isCancelled { report.complete = false; return report }
                    done += 1
                    let name = "v\(version)-\(test)"
                    async let s = runTest(script: script, test: test, port: singleLB.port, log: "\(directory)/tests/\(name).single.log")
                    async let m = runTest(script: script, test: test, port: meshLB.port, log: "\(directory)/tests/\(name).mesh.log")
                    let (so, mo) = await (s, m)
                    let placement = ((try? meshLB.admin.stuckClients(backend: HAProxyProcess.backendName)) ?? [:])
                        .filter { InteropSuite.fixedClientIDs.contains($0.key) }
                    let c = InteropCase(version: version, test: test, single: so, mesh: mo, meshPlacement: placement)
                    report.cases.append(c)
                    if so.status == "interrupted" || mo.status == "interrupted" { report.cases.removeLast(); report.complete = false; return report }
                    benchSay(String(format: "[%d/%d] MQTT %@ %@: single %@ (%.1f s), mesh %@ (%.1f s)%@", done, total, version, test,
                                    so.status, so.seconds, mo.status, mo.seconds, so.passed && !mo.passed ? "  <- mesh only" : ""))
                }
            }
            return report
        }
        let watcher = Task {
            await interrupt.wait()
            guard !Task.isCancelled else { return }
            benchSay("interrupted: stopping")
            work.cancel()
        }
        let result = await work.result
        watcher.cancel()
        await stopAll()
        switch result {
        case .success(let report): return report
        case .failure(let error): throw BenchError("interop (files kept in \(directory)): \(error)")
        }
    }

    /// The suite's test names (`Test.*`) in one script.
    private func list(_ script: String) async throws -> [String] {
        let log = "\(directory)/tests/list-\(script).log"
        let child = try ChildProcess(executable: python, arguments: ["-u", driverPath, "list", suite.directory, script], logPath: log)
        guard await child.waitForExit(timeout: .seconds(30)) else {
            await child.stop(grace: .seconds(2))
            throw BenchError("listing the tests of \(script) took over 30 s: \(child.logTail())")
        }
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("INTEROP-TESTS ") }),
              let names = try? JSONDecoder().decode([String].self, from: Data(line.dropFirst("INTEROP-TESTS ".count).utf8)) else {
            throw BenchError("cannot list the tests of \(suite.directory)/\(script) with \(python): \(child.logTail())")
        }
        return names
    }

    /// Runs one test against one HAProxy port in its own python process, bounded by
    /// `testTimeout` (some tests wait for a message in an unbounded loop).
    private func runTest(script: String, test: String, port: Int32, log: String) async -> InteropOutcome {
        let clock = ContinuousClock()
        let start = clock.now
        func outcome(_ status: String, _ reason: String) -> InteropOutcome {
            let d = clock.now - start
            return InteropOutcome(status: status, reason: reason,
                                  seconds: Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18, log: log)
        }
        let child: ChildProcess
        do {
            child = try ChildProcess(executable: python, arguments: ["-u", driverPath, "run", suite.directory, script, "127.0.0.1", "\(port)", test],
                                     logPath: log)
        } catch {
            return outcome("error", "\(error)")
        }
        let deadline = start.advanced(by: testTimeout)
        while child.isRunning {
            if Task.isCancelled {
                await child.stop(grace: .seconds(2))
                return outcome("interrupted", "")
            }
            if clock.now >= deadline {
                await child.stop(grace: .seconds(2))
                return outcome("timeout", "no result within \(testTimeout)")
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        struct Line: Decodable { var status: String; var reason: String }
        guard let raw = text.split(separator: "\n").last(where: { $0.hasPrefix("INTEROP-RESULT ") }),
              let line = try? JSONDecoder().decode(Line.self, from: Data(raw.dropFirst("INTEROP-RESULT ".count).utf8)) else {
            return outcome("crash", "exit status \(child.exitCode.map(String.init) ?? "?") without a result: \(child.logTail(maxBytes: 300))")
        }
        return outcome(line.status, line.reason)
    }

    private func waitForServers(_ lb: HAProxyProcess, _ names: [String]) async throws {
        let admin = lb.admin
        try await waitUntil(timeout: .seconds(15), "HAProxy to see \(names) up") {
            let s = (try? admin.serverStatus(backend: HAProxyProcess.backendName)) ?? [:]
            return names.allSatisfy { s[$0]?.status == "UP" }
        }
    }
}

extension InteropRun {
    /// Runs the suite, prints the Markdown report, writes the JSON and removes the working
    /// directory when everything passed (unless the operator chose it). Returns the exit
    /// status: 130 when interrupted, 1 when the mesh fails a test the single broker passes.
    package func runAndReport(json: String?, keepDirectory: Bool) async throws -> Int32 {
        let report = try await run()
        print(report.markdown)
        if let json {
            try writePrettyJSON(report, to: json)
            benchSay("JSON written to \(json)")
        }
        if report.cases.allSatisfy({ $0.single.passed && $0.mesh.passed }), !keepDirectory, report.complete {
            try? FileManager.default.removeItem(atPath: directory)
        } else {
            benchSay("logs kept in \(directory)")
        }
        if !report.complete { return 130 }
        return report.meshOnlyFailures.isEmpty ? 0 : 1
    }
}
