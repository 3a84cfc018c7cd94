import Foundation

/// A Prometheus text page as sample (name with labels) → value.
public func metricSamples(_ body: String) -> [String: Double] {
    var result: [String: Double] = [:]
    for line in body.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        result[String(line[..<space])] = value
    }
    return result
}

extension AgentProcess {
    /// One sample of this agent's `GET /metrics`, e.g. `mesh_local_sessions`; nil if the
    /// agent does not answer or does not export it (yet).
    public func metric(_ sample: String) -> Double? {
        guard let (status, body) = Network.httpGet(port: metricsPort, path: "/metrics"), status == 200 else { return nil }
        return metricSamples(body)[sample]
    }

    /// The sum of every sample of `name` whatever its labels (a per-peer counter over all
    /// peers); nil if the agent does not answer.
    public func metricTotal(_ name: String) -> Double? {
        guard let (status, body) = Network.httpGet(port: metricsPort, path: "/metrics"), status == 200 else { return nil }
        return metricSamples(body).filter { $0.key == name || $0.key.hasPrefix(name + "{") }.values.reduce(0, +)
    }

    /// Resident set size of the running agent (bytes).
    public var residentBytes: Int? { pid.flatMap(ProcessProbe.residentBytes) }
}

extension BrokerProcess {
    /// Resident set size of the running broker (bytes).
    public var residentBytes: Int? { pid.flatMap(ProcessProbe.residentBytes) }
}

/// What `/proc` says of another process (an agent or broker under test).
public enum ProcessProbe {
    /// `VmRSS` of `/proc/<pid>/status`, in bytes: what the kernel holds resident for the
    /// process now (heap growth shows here, page by page).
    public static func residentBytes(pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 2, let kb = Int(fields[1]) else { return nil }
        return kb * 1024
    }

    /// User plus system CPU seconds the process has used (`/proc/<pid>/stat` fields 14 and
    /// 15, after the parenthesised command name, which may hold spaces).
    public static func cpuSeconds(pid: pid_t) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Counts the lines a broker has written to its log file so far. Mosquitto writes each
/// line to the file (line-buffered) and, for the same `log_type`s, to `$SYS/broker/log/...`,
/// so the file is an independent count of what the agent should have read.
public final class LogFileLineCounter: @unchecked Sendable {
    // Used from one task at a time (the benchmark's or test's own loop).
    private let path: String
    private var offset: UInt64 = 0
    private var lines = 0

    public init(path: String) { self.path = path }

    /// Lines in the file now (reads only what was added since the last call).
    public func count() -> Int {
        guard let handle = FileHandle(forReadingAtPath: path) else { return lines }
        defer { try? handle.close() }
        try? handle.seek(toOffset: offset)
        while let chunk = try? handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            offset += UInt64(chunk.count)
            lines += chunk.reduce(0) { $1 == 0x0A ? $0 + 1 : $0 }
        }
        return lines
    }
}

/// Whether an agent has read every line its broker logged: the agent's
/// `mesh_log_lines_total` against the broker's log file, less the lines logged before the
/// agent subscribed (startup), which are measured once while both are quiet.
public final class AgentLogLag: @unchecked Sendable {
    // Used from one task at a time.
    public let agent: AgentProcess
    private let file: LogFileLineCounter
    private var offset = 0

    public init(agent: AgentProcess) {
        self.agent = agent
        file = LogFileLineCounter(path: agent.local.logPath)
    }

    /// Lines logged / read now.
    public var brokerLines: Int { file.count() }
    public var agentLines: Int? { agent.metric("mesh_log_lines_total").map { Int($0) } }

    /// Takes the startup offset once both counts hold still for `quiet` (bounded).
    public func calibrate(quiet: Duration = .milliseconds(300), timeout: Duration = .seconds(10)) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var last: (Int, Int)?
        while clock.now < deadline {
            if let read = agentLines {
                let now = (brokerLines, read)
                if let last, last == now {
                    offset = now.0 - now.1
                    return
                }
                last = now
            }
            try await Task.sleep(for: quiet)
        }
        throw HarnessError("agent \(agent.nodeID): log line counts did not settle within \(timeout)")
    }

    /// Lines the broker logged that the agent has not read yet.
    public var behind: Int? { agentLines.map { brokerLines - offset - $0 } }

    /// Waits until the agent has read everything logged so far, or `timeout` passed, or
    /// it read nothing for `stall`. Returns how many lines it is still behind.
    @discardableResult
    public func waitUntilCaughtUp(timeout: Duration = .seconds(60), stall: Duration = .seconds(10)) async -> Int {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var lastRead = -1
        var lastProgress = clock.now
        while true {
            let read = agentLines ?? lastRead
            let lag = brokerLines - offset - read
            if lag <= 0 || clock.now >= deadline { return lag }
            if read != lastRead { lastRead = read; lastProgress = clock.now }
            if clock.now - lastProgress > stall { return lag }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
