import ArgumentParser
import Foundation

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

/// The scenarios by name, in the order `all` runs them.
enum BenchScenario: String, CaseIterable, Sendable {
    case seed, cross, scale, locality, churn, tree, loglines

    func run(quick: Bool) async throws -> BenchSection {
        switch self {
        case .seed: try await BenchSeed(quick: quick).run()
        case .cross: try await BenchCross(quick: quick).run()
        case .scale: try await BenchScale(quick: quick).run()
        case .locality: try await BenchLocality(quick: quick).run()
        case .churn: try await BenchChurn(quick: quick).run()
        case .tree: try await BenchTree(quick: quick).run()
        case .loglines: try await BenchLogLines(quick: quick).run()
        }
    }
}

/// Runs scenarios, prints the Markdown report, writes the JSON.
@discardableResult
func runBench(_ scenarios: [BenchScenario], options: BenchOptions) async throws -> BenchReport {
    try await runBench(scenarios.map { s in (s.rawValue, { try await s.run(quick: options.quick) }) }, options: options)
}

/// The same for scenarios that take options of their own (not in `all`).
@discardableResult
func runBench(_ scenarios: [(name: String, run: () async throws -> BenchSection)], options: BenchOptions) async throws -> BenchReport {
    raiseOpenFileLimit()
    var report = BenchReport()
    benchSay("machine: \(report.machine)")
    for s in scenarios {
        benchSay("== \(s.name)\(options.quick ? " (quick)" : "")")
        let section = try await s.run()
        report.sections.append(section)
        print(section.markdown)
        if let path = options.json { try report.writeJSON(to: path) }
    }
    if let path = options.json {
        try report.writeJSON(to: path)
        benchSay("JSON written to \(path)")
    }
    return report
}

struct BenchSeedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "seed", abstract: "The HA-Mosquitto thesis test: 500 subscribers, 25 publishers through HAProxy.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.seed], options: options) }
}

struct BenchCrossCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cross", abstract: "Publishers on A, one subscriber on B: msg/s and latency, QoS 0 and 1.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.cross], options: options) }
}

struct BenchScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "2, 3 and 5 nodes: how inter-broker bytes and throughput grow.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.scale], options: options) }
}

struct BenchLocalityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "locality", abstract: "3 nodes, 90 % of messages stay on their node.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.locality], options: options) }
}

struct BenchChurnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "churn", abstract: "Subscriptions coming and going: SUBACK on B to the first message from A.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.churn], options: options) }
}

struct BenchTreeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tree", abstract: "The subscription tree alone at 10k, 100k and 1M filters (use a release build).")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.tree], options: options) }
}

struct BenchLogLinesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "loglines", abstract: "Broker log lines/s: parser + session table on one core, and a real agent under a subscribe storm.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench([.loglines], options: options) }
}

struct BenchAllCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "all", abstract: "Every scenario in turn, one report.")
    @OptionGroup var options: BenchOptions
    func run() async throws { try await runBench(BenchScenario.allCases, options: options) }
}

/// Each benchmark client holds a socket and libmosquitto's wake-up socket pair, so the
/// seed scenario's 525 clients need more than the usual soft limit of 1024 descriptors
/// (brokers started from here inherit the raised limit too).
func raiseOpenFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = min(limit.rlim_max, 65_536)
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
        benchSay("warning: could not raise the open file limit (\(limit.rlim_cur)); the seed scenario may run out of descriptors")
    }
}
