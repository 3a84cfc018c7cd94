import ArgumentParser
import MeshBench

struct BenchChurnMemoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "churn-memory",
        abstract: "Distinct clients come, subscribe and leave: agent memory per 100k ids (not in `all`: minutes).",
        discussion: """
        2 brokers + 2 agents; --ids clients (default 200000, 20000 with --quick), --parallel at a time, each with a new id:
        45 % MQTT 3.1.1 clean, 45 % MQTT 5 clean start (session expiry 0), 10 % MQTT 5 persistent with a 1 s expiry.
        Samples agent and broker VmRSS every 10000 ids; fits bytes per 100k ids after the first 20 %.
        """
    )
    @OptionGroup var options: BenchOptions
    @Option(help: "Distinct client ids (default 200000; 20000 with --quick).")
    var ids: Int?
    @Option(help: "Clients connecting at a time.")
    var parallel = 16
    @Option(help: "mixed (default: 45 % 3.1.1 clean, 45 % v5 expiry 0, 10 % v5 persistent with 1 s expiry) or clean (half 3.1.1 clean, half v5 expiry 0).")
    var mix = "mixed"

    func validate() throws {
        if let ids, !(100...5_000_000).contains(ids) { throw ValidationError("invalid --ids '\(ids)': expected 100-5000000") }
        guard (1...128).contains(parallel) else { throw ValidationError("invalid --parallel '\(parallel)': expected 1-128") }
        guard ["mixed", "clean"].contains(mix) else { throw ValidationError("invalid --mix '\(mix)': expected mixed or clean") }
    }

    func run() async throws {
        let bench = BenchChurnMemory(quick: options.quick, ids: ids, parallel: parallel, cleanOnly: mix == "clean")
        try await runBench([("churn-memory", { try await bench.run() })], quick: options.quick, json: options.json)
    }
}
