import Testing
@testable import MeshAgent

/// Telling a restart of the local broker from its `$SYS/broker/uptime` readings.
@Suite("broker restart detector")
struct BrokerRestartDetectorTests {
    @Test func uptimeGoingBackWhileWatchingIsARestart() {
        var d = BrokerRestartDetector(startedAt: nil)
        let readings = [(100.0, 1_000.0), (110, 1_010), (3, 1_020), (13, 1_030)].map { d.observe(uptimeSeconds: $0.0, now: $0.1) }
        #expect(readings == [false, false, true, false], "uptime went back at the third reading: the broker restarted")
    }

    /// Across an agent restart only the saved start time is known: the broker's start time
    /// moving forward by more than the wobble of `sys_interval` readings is a restart.
    @Test(arguments: [(0.0, false), (14.0, false), (16.0, true), (3_600.0, true)])
    func startTimeJumpAcrossAnAgentRestart(_ later: Double, _ restarted: Bool) {
        var d = BrokerRestartDetector(startedAt: 500)
        let seen = d.observe(uptimeSeconds: 1_000, now: 1_500 + later)
        #expect(seen == restarted)
        #expect(d.startedAt == 500 + later)
    }

    @Test func firstReadingWithoutHistoryIsNotARestart() {
        var d = BrokerRestartDetector(startedAt: nil)
        let seen = d.observe(uptimeSeconds: 1, now: 10)
        #expect(!seen)
        #expect(d.startedAt == 9)
    }

    @Test(arguments: [("123 seconds", 123.0), ("7", 7.0), ("", nil), ("seconds 5", nil), ("1e3 seconds", 1_000.0)] as [(String, Double?)])
    func parsesUptime(_ text: String, _ expected: Double?) {
        let value = Array(text.utf8).withUnsafeBytes { BrokerRestartDetector.parseUptime($0) }
        #expect(value == expected)
    }
}
