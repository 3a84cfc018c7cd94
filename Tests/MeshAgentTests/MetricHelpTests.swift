import Testing
@testable import MeshAgent

@Suite("metric help")
struct MetricHelpTests {
    @Test("every metric the agent keeps says what it counts, once, before its TYPE line")
    func everyMetricHasHelp() {
        let metrics = MeshMetrics()
        _ = metrics.peer("10.0.0.2:1883")
        let page = """
            # TYPE mesh_forwarded_messages_total counter
            mesh_forwarded_messages_total{peer="10.0.0.2:1883"} 3
            # TYPE mesh_unknown_metric gauge
            mesh_unknown_metric 1
            # HELP mesh_local_sessions already there
            # TYPE mesh_local_sessions gauge
            mesh_local_sessions 2

            """
        let annotated = String(decoding: MetricHelp.annotate(Array(page.utf8)), as: UTF8.self)
        let lines = annotated.split(separator: "\n", omittingEmptySubsequences: false)
        let help = lines.firstIndex { $0.hasPrefix("# HELP mesh_forwarded_messages_total ") }
        let type = lines.firstIndex { $0 == "# TYPE mesh_forwarded_messages_total counter" }
        #expect(help != nil && type != nil && help! + 1 == type!)
        #expect(!annotated.contains("# HELP mesh_unknown_metric"))
        #expect(lines.filter { $0.hasPrefix("# HELP mesh_local_sessions") }.count == 1)
        #expect(annotated.hasSuffix("mesh_local_sessions 2\n"))
        for name in ["mesh_forward_held_total", "mesh_forwarded_bytes_total", "mesh_sessions_uncertain", "mesh_log_lines_truncated_total",
                     "mesh_sessions_adopted_total", "mesh_sessions_released_total", "mesh_session_adoption_failures_total"] {
            #expect(MetricHelp.text(of: name)?.isEmpty == false, "\(name) has no help text")
        }
    }
}
