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

    @Option(help: "Mesh modes to measure beside the single broker and the bridge: prefixed (default), direct (--delivery direct) or all.")
    var mode = "prefixed"

    func validate() throws {
        guard Self.modes[mode] != nil else { throw ValidationError("invalid --mode '\(mode)': expected prefixed, direct or all") }
    }

    static let modes: [String: [BenchSetup]] = [
        "prefixed": [.single, .bridge, .mesh], "direct": [.single, .bridge, .meshDirect], "all": [.single, .bridge, .mesh, .meshDirect],
    ]

    /// Puts the mode into effect for this run.
    func apply() { BenchSetup.selected.value = Self.modes[mode] ?? [.single, .bridge, .mesh] }
}

/// One comparison scenario, or `all`, as a subcommand: the options every comparison takes,
/// then `runBench`. The scenarios themselves live in MeshBench.
protocol BenchScenarioCommand: AsyncParsableCommand {
    static var scenarios: [BenchScenario] { get }
    var options: BenchOptions { get }
}

extension BenchScenarioCommand {
    static var configuration: CommandConfiguration {
        scenarios.count == 1
            ? CommandConfiguration(commandName: scenarios[0].rawValue, abstract: scenarios[0].abstract)
            : CommandConfiguration(commandName: "all", abstract: "Every scenario in turn, one report.")
    }

    func run() async throws {
        options.apply()
        try await runBench(Self.scenarios, quick: options.quick, json: options.json)
    }
}

extension BenchScenario {
    /// The subcommand's one-line help.
    var abstract: String {
        switch self {
        case .seed: "The HA-Mosquitto thesis test: 500 subscribers, 25 publishers through HAProxy."
        case .cross: "Publishers on A, one subscriber on B: msg/s and latency, QoS 0 and 1."
        case .scale: "2, 3 and 5 nodes: how inter-broker bytes and throughput grow."
        case .locality: "3 nodes, 90 % of messages stay on their node."
        case .churn: "Subscriptions coming and going: SUBACK on B to the first message from A."
        case .tree: "The subscription tree alone at 10k, 100k and 1M filters (use a release build)."
        case .loglines: "Broker log lines/s: parser + session table on one core, and a real agent under a subscribe storm."
        }
    }
}

struct BenchSeedCommand: BenchScenarioCommand { static let scenarios: [BenchScenario] = [.seed]; @OptionGroup var options: BenchOptions }
struct BenchCrossCommand: BenchScenarioCommand { static let scenarios: [BenchScenario] = [.cross]; @OptionGroup var options: BenchOptions }
struct BenchScaleCommand: BenchScenarioCommand { static let scenarios: [BenchScenario] = [.scale]; @OptionGroup var options: BenchOptions }
struct BenchLocalityCommand: BenchScenarioCommand { static let scenarios: [BenchScenario] = [.locality]; @OptionGroup var options: BenchOptions }
struct BenchChurnCommand: BenchScenarioCommand { static let scenarios: [BenchScenario] = [.churn]; @OptionGroup var options: BenchOptions }
struct BenchTreeCommand: BenchScenarioCommand { static let scenarios: [BenchScenario] = [.tree]; @OptionGroup var options: BenchOptions }
struct BenchLogLinesCommand: BenchScenarioCommand { static let scenarios: [BenchScenario] = [.loglines]; @OptionGroup var options: BenchOptions }
struct BenchAllCommand: BenchScenarioCommand { static let scenarios = BenchScenario.allCases; @OptionGroup var options: BenchOptions }
