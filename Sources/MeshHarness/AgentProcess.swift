import Foundation

/// A real `mosquitto-mesh run` process beside a broker, so tests can SIGTERM and kill -9 it.
public final class AgentProcess: Sendable {
    public let nodeID: String
    public let local: BrokerProcess
    public let peers: [String]
    public let stateDirectory: String
    public let healthPort: Int32
    /// Where the agent serves Prometheus metrics (`GET /metrics`).
    public let metricsPort: Int32
    public let extraArguments: [String]
    /// The binary this agent runs; nil: `binaryPath()` (another release's, for upgrades).
    public let executable: String?
    private let process = ProcessSlot()

    public var logPath: String { stateDirectory + "/agent.log" }

    public init(nodeID: String, local: BrokerProcess, peers: [String], stateDirectory: String, extraArguments: [String] = [],
                executable: String? = nil) {
        self.executable = executable
        self.nodeID = nodeID
        self.local = local
        self.peers = peers
        self.stateDirectory = stateDirectory
        self.extraArguments = extraArguments
        healthPort = Network.freePort()
        metricsPort = Network.freePort()
        try? FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
    }

    /// The agent binary: `MESH_BINARY`, else the `mosquitto-mesh` built next to this test
    /// or bench executable.
    public static func binaryPath() throws -> String {
        if let path = ProcessInfo.processInfo.environment["MESH_BINARY"] { return path }
        var candidates: [String] = []
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = me.deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(dir.appendingPathComponent("mosquitto-mesh").path)
            dir = dir.deletingLastPathComponent()
        }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("mosquitto-mesh").path)
        }
        for c in candidates where FileManager.default.isExecutableFile(atPath: c) && !c.hasSuffix(".xctest") {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: c, isDirectory: &isDir), !isDir.boolValue { return c }
        }
        throw HarnessError("mosquitto-mesh binary not found (tried \(candidates)); build it or set MESH_BINARY")
    }

    public var arguments: [String] {
        var args = ["run", "--node-id", nodeID, "--local", local.endpoint, "--state-dir", stateDirectory,
                    "--health-listen", "127.0.0.1:\(healthPort)", "--metrics-listen", "127.0.0.1:\(metricsPort)",
                    "--log-level", "info"]
        for p in peers { args += ["--peer", p] }
        return args + extraArguments
    }

    public func start() throws {
        let child = try ChildProcess(executable: try executable ?? Self.binaryPath(), arguments: arguments, logPath: logPath)
        process.hold(child)
    }

    /// Waits (bounded) until the agent's health endpoint answers `up`.
    public func waitUntilUp(timeout: Duration = .seconds(15)) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if let line = Network.readLine(port: healthPort), line.hasPrefix("up") { return }
            if let p = process.child, !p.isRunning {
                throw HarnessError("agent \(nodeID) exited: \(p.logTail())")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("agent \(nodeID) not up within \(timeout): \(process.child?.logTail() ?? "")")
    }

    public var health: String? { Network.readLine(port: healthPort) }

    /// The running agent's process id (benchmarks attribute its sockets with it).
    public var pid: pid_t? { process.pid }

    /// SIGTERM and wait for a graceful exit; returns the exit code.
    @discardableResult
    public func stop(grace: Duration = .seconds(20)) async -> Int32? { await process.stop(grace: grace) }

    public func kill9() async { await process.kill9() }

    public var isRunning: Bool { process.isRunning }
    public func logTail() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8))?.suffix(4000).description ?? "" }
}
