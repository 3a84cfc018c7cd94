import Foundation
import MeshCore
import Mosquitto

/// `SubscriptionTree` alone, in this process: memory per filter (resident set growth
/// while building, from /proc/self/statm: glibc's mallinfo2 is not visible to Swift, and
/// the tree's large arrays are mmapped, so RSS tracks them page by page), inserts/s, and matches/s on one core, at 10k, 100k and 1M
/// filters of a fleet-like shape (80 % literal, 10 % with `+`, 10 % ending in `#`).
/// Run it from a release build for figures.
struct BenchTree {
    var sizes = [10_000, 100_000, 1_000_000]
    var lookups = 2_000_000

    init(quick: Bool) {
        if quick { sizes = [10_000]; lookups = 100_000 }
    }

    static func filter(_ k: Int) -> String {
        let site = k % 100, area = (k / 100) % 100
        switch k % 10 {
        case 8: return "site/\(site)/area/+/dev/\(k)/humidity"
        case 9: return "site/\(site)/area/\(area)/dev/\(k)/#"
        default: return "site/\(site)/area/\(area)/dev/\(k)/temp"
        }
    }

    func run() async throws -> BenchSection {
        var section = BenchSection(scenario: "tree", columns: ["bytes_per_filter", "inserts_s", "matches_s", "hit_rate"])
        #if DEBUG
        benchSay("warning: debug build; tree figures need `swift build -c release`")
        #endif
        for n in sizes {
            let metrics = measure(n)
            section.rows.append(BenchRow(scenario: "tree", variant: "\(n) filters", setup: "tree", metrics: metrics))
            if n == sizes.last {
                section.target("bytes per filter at \(n)", metrics["bytes_per_filter"], atMost: 150)
                section.target("matches/s on one core at \(n)", metrics["matches_s"], atLeast: 1_000_000)
            }
        }
        return section
    }

    private func measure(_ n: Int) -> [String: Double] {
        // Topics first, so their memory is not counted as the tree's.
        var rng = SystemRandomNumberGenerator()
        let topics: [String] = (0..<10_000).map { _ in
            let k = Int.random(in: 0..<(2 * n), using: &rng) // half of them miss
            return "site/\(k % 100)/area/\((k / 100) % 100)/dev/\(k)/\(k % 10 == 8 ? "humidity" : "temp")"
        }
        let before = Self.residentBytes()
        var tree = SubscriptionTree()
        let t0 = monotonicNanos()
        for k in 0..<n { tree.insert(Self.filter(k)) }
        let t1 = monotonicNanos()
        let bytes = Double(Self.residentBytes() &- before)
        var hits = 0
        let t2 = monotonicNanos()
        for i in 0..<lookups where tree.matches(topics[i % topics.count]) { hits += 1 }
        let t3 = monotonicNanos()
        withExtendedLifetime(tree) {}
        return [
            "bytes_per_filter": bytes / Double(n),
            "inserts_s": Double(n) / (Double(t1 - t0) / 1e9),
            "matches_s": Double(lookups) / (Double(t3 - t2) / 1e9),
            "hit_rate": Double(hits) / Double(lookups),
        ]
    }

    /// Resident set size of this process in bytes.
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
