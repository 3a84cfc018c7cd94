import Foundation

/// The scenarios by name, in the order `all` runs them.
package enum BenchScenario: String, CaseIterable, Sendable {
    case seed, cross, scale, locality, churn, tree, loglines

    package func run(quick: Bool) async throws -> BenchSection {
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

/// Runs scenarios, prints the Markdown report, writes the JSON (to `json`, after each
/// section so a long run that fails late keeps what it measured).
@discardableResult
package func runBench(_ scenarios: [BenchScenario], quick: Bool, json: String?) async throws -> BenchReport {
    try await runBench(scenarios.map { s in (s.rawValue, { try await s.run(quick: quick) }) }, quick: quick, json: json)
}

/// The same for scenarios that take options of their own (not in `all`).
@discardableResult
package func runBench(_ scenarios: [(name: String, run: () async throws -> BenchSection)], quick: Bool, json: String?) async throws -> BenchReport {
    raiseOpenFileLimit()
    var report = BenchReport()
    benchSay("machine: \(report.machine)")
    for s in scenarios {
        benchSay("== \(s.name)\(quick ? " (quick)" : "")")
        let section = try await s.run()
        report.sections.append(section)
        print(section.markdown)
        if let json { try report.writeJSON(to: json) }
    }
    if let json {
        try report.writeJSON(to: json)
        benchSay("JSON written to \(json)")
    }
    return report
}

/// Each benchmark client holds a socket and libmosquitto's wake-up socket pair, so the
/// seed scenario's 525 clients need more than the usual soft limit of 1024 descriptors
/// (brokers started from here inherit the raised limit too).
package func raiseOpenFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = min(limit.rlim_max, 65_536)
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
        benchSay("warning: could not raise the open file limit (\(limit.rlim_cur)); the seed scenario may run out of descriptors")
    }
}
