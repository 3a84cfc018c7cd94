import ArgumentParser
import Foundation
import MeshBench

extension MosquittoMesh {
    /// Benchmarks: mesh vs Mosquitto's own bridge vs a single broker, and failover.
    /// Every scenario starts and stops its own brokers, agents and HAProxy on loopback.
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Benchmarks: mesh vs Mosquitto's own bridge vs a single broker; failover.",
            discussion: """
            Each scenario compares, in one run and with the same broker configuration, `single` (one broker),
            `bridge` (Mosquitto's bridge, `topic # both 2`, a star for 3+ brokers) and `mesh` (our agents).
            It prints a progress line on stderr, a Markdown table on stdout and, with --json, a JSON file.
            See docs/performance.md.
            """,
            subcommands: [BenchSeedCommand.self, BenchCrossCommand.self, BenchScaleCommand.self,
                          BenchLocalityCommand.self, BenchChurnCommand.self, BenchTreeCommand.self,
                          BenchLogLinesCommand.self, BenchAllCommand.self, BenchChurnMemoryCommand.self, BenchFailover.self,
                          BenchInteropCommand.self, BenchUpgradeCommand.self]
        )
    }
}

/// Options every comparison scenario takes.
struct BenchOptions: ParsableArguments {
    @Flag(help: "Smallest configuration (CI smoke test): a few hundred messages per setup.")
    var quick = false

    @Option(help: "Also write the results as JSON to this path.")
    var json: String?
}

struct BenchSeedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "seed", abstract: "The HA-Mosquitto thesis test: 500 subscribers, 25 publishers through HAProxy.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.seed], quick: options.quick, json: options.json) }
}

struct BenchCrossCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cross", abstract: "Publishers on A, one subscriber on B: msg/s and latency, QoS 0 and 1.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.cross], quick: options.quick, json: options.json) }
}

struct BenchScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "2, 3 and 5 nodes: how inter-broker bytes and throughput grow.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.scale], quick: options.quick, json: options.json) }
}

struct BenchLocalityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "locality", abstract: "3 nodes, 90 % of messages stay on their node.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.locality], quick: options.quick, json: options.json) }
}

struct BenchChurnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "churn", abstract: "Subscriptions coming and going: SUBACK on B to the first message from A.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.churn], quick: options.quick, json: options.json) }
}

struct BenchTreeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tree", abstract: "The subscription tree alone at 10k, 100k and 1M filters (use a release build).")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.tree], quick: options.quick, json: options.json) }
}

struct BenchLogLinesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "loglines", abstract: "Broker log lines/s: parser + session table on one core, and a real agent under a subscribe storm.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.loglines], quick: options.quick, json: options.json) }
}

struct BenchAllCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "all", abstract: "Every scenario in turn, one report.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench(BenchScenario.allCases, quick: options.quick, json: options.json) }
}
