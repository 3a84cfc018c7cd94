import Foundation

/// One measured line: a scenario's variant (e.g. `qos1`, `n=3`) on one setup.
struct BenchRow: Encodable, Sendable {
    var scenario: String
    var variant: String
    var setup: String
    var metrics: [String: Double]
}

/// A target from issue 4, checked against this run.
struct BenchTarget: Encodable, Sendable {
    var scenario: String
    var description: String
    var value: Double
    var threshold: Double
    /// true: value must be ≥ threshold; false: ≤.
    var atLeast: Bool
    var holds: Bool { atLeast ? value >= threshold : value <= threshold }

    enum CodingKeys: String, CodingKey { case scenario, description, value, threshold, atLeast, holds }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(scenario, forKey: .scenario)
        try c.encode(description, forKey: .description)
        try c.encode(value, forKey: .value)
        try c.encode(threshold, forKey: .threshold)
        try c.encode(atLeast, forKey: .atLeast)
        try c.encode(holds, forKey: .holds)
    }
}

/// A scenario's results: rows, the columns to show, and the targets checked.
package struct BenchSection: Encodable, Sendable {
    var scenario: String
    var columns: [String]
    var rows: [BenchRow] = []
    var ratios: [String: Double] = [:]
    var targets: [BenchTarget] = []

    func row(_ setup: BenchSetup, _ variant: String) -> BenchRow? {
        rows.first { $0.setup == setup.rawValue && $0.variant == variant }
    }

    /// Measures `variant` once per setup (single, bridge, mesh), each on a topology of its
    /// own with `nodes` brokers, and adds the rows.
    mutating func measureEverySetup(variant: String, nodes: Int, label: String,
                                    _ measure: (BenchTopology) async throws -> [String: Double]) async throws {
        for setup in BenchSetup.selected.value {
            let metrics = try await BenchTopology.with(setup, nodes: nodes, label: label) { t in
                let cpuBefore = t.agentCPUSeconds()
                var m = try await measure(t)
                // The agents' cost per message, over the whole measurement (probes included).
                if setup.isMesh, let delivered = m["delivered"], delivered > 0 {
                    m["agent_cpu_s_per_10k"] = (t.agentCPUSeconds() - cpuBefore) / delivered * 10_000
                }
                return m
            }
            if metrics["agent_cpu_s_per_10k"] != nil, !columns.contains("agent_cpu_s_per_10k") { columns.append("agent_cpu_s_per_10k") }
            rows.append(BenchRow(scenario: scenario, variant: variant, setup: setup.rawValue, metrics: metrics))
        }
    }

    /// The share of expected messages the mesh delivered for `variant`, in percent.
    func meshDeliveredPercent(_ variant: String) -> Double? {
        row(.mesh, variant).map { 100 * ($0.metrics["delivered"] ?? 0) / max(1, $0.metrics["expected"] ?? 1) }
    }

    /// mesh ÷ bridge of `metric` for `variant`, recorded under `name` (and, when the run
    /// measured direct delivery, mesh-direct ÷ bridge under `name (direct)`). Returns the
    /// default mode's ratio, or the direct one's when that is the only mesh measured.
    @discardableResult
    mutating func ratio(_ name: String, _ metric: String, variant: String) -> Double? {
        guard let b = row(.bridge, variant)?.metrics[metric], b > 0 else { return nil }
        if let d = row(.meshDirect, variant)?.metrics[metric] { ratios[name + " (direct)"] = d / b }
        guard let m = row(.mesh, variant)?.metrics[metric] else { return row(.meshDirect, variant)?.metrics[metric].map { $0 / b } }
        ratios[name] = m / b
        return m / b
    }

    mutating func target(_ description: String, _ value: Double?, atLeast threshold: Double) {
        guard let value else { return }
        targets.append(BenchTarget(scenario: scenario, description: description, value: value, threshold: threshold, atLeast: true))
    }

    mutating func target(_ description: String, _ value: Double?, atMost threshold: Double) {
        guard let value else { return }
        targets.append(BenchTarget(scenario: scenario, description: description, value: value, threshold: threshold, atLeast: false))
    }

    var markdown: String {
        var out = "### \(scenario)\n\n| variant | setup | " + columns.joined(separator: " | ") + " |\n"
        out += "|---|---|" + String(repeating: "---:|", count: columns.count) + "\n"
        for r in rows {
            out += "| \(r.variant) | \(r.setup) | " + columns.map { r.metrics[$0].map(Self.format) ?? "–" }.joined(separator: " | ") + " |\n"
        }
        if !ratios.isEmpty {
            out += "\nRatios (mesh ÷ bridge): " + ratios.sorted { $0.key < $1.key }.map { "\($0.key) **\(String(format: "%.2f", $0.value))×**" }.joined(separator: ", ") + "\n"
        }
        if !targets.isEmpty {
            out += "\n| target | value | holds |\n|---|---:|---|\n"
            for t in targets {
                out += "| \(t.description) | \(Self.format(t.value)) | \(t.holds ? "yes" : "**no**") |\n"
            }
        }
        return out
    }

    static func format(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        if abs(v) >= 100 { return String(format: "%.0f", v) }
        return String(format: "%.2f", v)
    }
}

/// The whole run: what was run, where, and every section.
package struct BenchReport: Encodable, Sendable {
    var command: String
    var machine: String
    var date: String
    var sections: [BenchSection] = []

    init() {
        command = "mosquitto-mesh " + CommandLine.arguments.dropFirst().joined(separator: " ")
        date = ISO8601DateFormatter().string(from: Date())
        machine = Self.describeMachine()
    }

    static func describeMachine() -> String {
        var cpu = "unknown CPU"
        if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let colon = line.firstIndex(of: ":") {
            cpu = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memory = ProcessInfo.processInfo.physicalMemory / 1_073_741_824
        var os = "Linux"
        if let text = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("PRETTY_NAME=") }) {
            os = line.dropFirst("PRETTY_NAME=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return "\(cpu), \(cores) cores, \(memory) GiB, \(os), mosquitto 2.0.11, loopback"
    }

    var markdown: String {
        var out = "## mosquitto-mesh bench\n\n- command: `\(command)`\n- machine: \(machine)\n- date: \(date)\n"
        out += "- broker configuration (all setups): max_inflight_messages 1000, max_queued_messages 0 (unlimited), max_queued_bytes 0, set_tcp_nodelay true, persistence true\n\n"
        for s in sections { out += s.markdown + "\n" }
        return out
    }

    func writeJSON(to path: String) throws { try writePrettyJSON(self, to: path) }
}

/// Every bench JSON file: pretty-printed, keys sorted (stable diffs between runs).
func writePrettyJSON(_ value: some Encodable, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(value).write(to: URL(fileURLWithPath: path))
}
