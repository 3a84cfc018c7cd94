import ArgumentParser
import Foundation
import MeshBench

/// A rolling upgrade from another release under a QoS 1 stream (`UpgradeRun`): what it
/// loses, duplicates or reorders, how long each step takes, whether new interest crosses the
/// mixed mesh.
struct BenchUpgradeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Rolling upgrade from --previous to this binary, one node at a time under a QoS 1 stream.",
        discussion: """
        Starts --nodes brokers with agents of --previous (build one with scripts/build-previous.sh v0.2.0), a QoS 1
        publisher and a subscriber on every node, then replaces the agents one at a time (SIGTERM, the new binary on the
        same state directory). Between steps a new subscription on every node must get a message from every node.
        Exit status 1 when anything was lost, duplicated, reordered, or a release refused what the other wrote.
        """
    )

    @Option(help: "The previous release's mosquitto-mesh binary.")
    var previous: String
    @Option(help: "The release to upgrade to (default: this binary).")
    var current: String?
    @Option(help: "Nodes (2-5).")
    var nodes = 3
    @Option(help: "QoS 1 messages per second per publisher.")
    var rate = 200
    @Option(name: .customLong("between"), help: "Messages every subscriber must get from every publisher between two steps.")
    var between = 300
    @Option(help: "Also write the result as JSON here.")
    var json: String?

    func validate() throws {
        guard (2...5).contains(nodes) else { throw ValidationError("invalid --nodes '\(nodes)': expected 2-5") }
        guard (1...5000).contains(rate) else { throw ValidationError("invalid --rate '\(rate)': expected 1-5000") }
        guard FileManager.default.isExecutableFile(atPath: previous) else { throw ValidationError("invalid --previous '\(previous)': not an executable") }
    }

    func run() async throws {
        raiseOpenFileLimit()
        var options = UpgradeRun.Options(previous: previous)
        options.current = current ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        options.nodes = Array(["a", "b", "c", "d", "e"].prefix(nodes))
        options.rate = rate
        options.betweenSteps = between
        let r = try await UpgradeRun(options: options).run { benchSay($0) }
        r.printReport(nodes: nodes, rate: rate)
        if let json { try r.writeJSON(to: json) }
        if !r.isClean { throw ExitCode(1) }
    }
}
