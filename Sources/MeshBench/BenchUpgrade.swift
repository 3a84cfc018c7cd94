import Foundation

extension UpgradeRun.Result {
    /// Nothing lost, duplicated or reordered, and neither release complained of the other.
    package var isClean: Bool { totalLost + totalDuplicates + totalOutOfOrder + compatibilityComplaints.count == 0 }

    /// The Markdown report of `bench upgrade` on stdout.
    package func printReport(nodes: Int, rate: Int) {
        let r = self
        print("""
        ## upgrade: \(r.previousVersion) (\(r.previous)) → \(r.currentVersion), \(nodes) nodes, \(rate) msg/s QoS 1 per node

        | step | stop (SIGTERM → exit) | new agent up | new interest across the mesh | mesh after |
        |---|---|---|---|---|
        | before | | | \(String(format: "%.3f s", r.newInterestSecondsBefore)) | \(Array(repeating: "previous", count: nodes).joined(separator: " ")) |
        """)
        for s in r.steps {
            print("| \(s.node) | \(String(format: "%.3f s", s.stopSeconds)) (exit \(s.exitCode.map(String.init) ?? "?")) | \(String(format: "%.3f s", s.startSeconds)) | \(String(format: "%.3f s", s.newInterestSeconds)) | \(s.mesh.joined(separator: " ")) |")
        }
        print("""

        published \(r.published.values.reduce(0, +)) (\(r.published.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))), \
        delivered \(r.totalDelivered) of \(r.published.values.reduce(0, +) * nodes), lost \(r.totalLost), duplicates \(r.totalDuplicates), \
        out of order \(r.totalOutOfOrder), compatibility complaints in the logs \(r.compatibilityComplaints.count), \(String(format: "%.1f", r.seconds)) s
        """)
        for line in r.compatibilityComplaints.prefix(10) { print("  \(line)") }
    }

    package func writeJSON(to json: String) throws {
        try writePrettyJSON(self, to: json)
        benchSay("JSON written to \(json)")
    }
}
