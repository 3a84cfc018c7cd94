import Logging
import MeshCore
import Testing
@testable import MeshAgent

/// `NodeInterest` in process: broker log lines in, the node's advert out (with the origin
/// token), the session and filter gauges following.
@Suite("node interest")
struct NodeInterestTests {
    static func line(_ interest: NodeInterest, _ topic: String, _ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { interest.handleLogLine(topic: topic, payload: $0) }
    }

    @Test func logLinesMakeTheAdvert() throws {
        let metrics = MeshMetrics()
        let interest = NodeInterest(table: SessionTable(), seq: 7, metrics: metrics, logger: Logger(label: "test"))
        // A fresh agent advertises once (its empty interest, after the saved seq), then only on
        // change or when forced.
        #expect(interest.takeAdvert(node: "a", origin: "tok")?.seq == 8)
        #expect(interest.takeAdvert(node: "a", origin: "tok") == nil)
        #expect(interest.takeAdvert(node: "a", origin: "tok", force: true)?.seq == 9)

        #expect(Self.line(interest, "$SYS/broker/log/N", "1700000000: New client connected from 127.0.0.1:1 as dev1 (p2, c1, k60).") == false)
        #expect(Self.line(interest, "$SYS/broker/log/M/subscribe", "1700000000: dev1 1 s/+/t"))
        let advert = try #require(interest.takeAdvert(node: "a", origin: "tok"))
        #expect(advert.filters == ["s/+/t": 1] && advert.seq == 10 && advert.origin == "tok" && advert.node == "a")
        #expect(interest.takeAdvert(node: "a", origin: "tok") == nil, "nothing changed since")
        #expect(metrics.localFilters.current == 1)

        // The clean session ends with its client: its filter leaves the interest.
        #expect(Self.line(interest, "$SYS/broker/log/N", "1700000000: Client dev1 disconnected."))
        #expect(try #require(interest.takeAdvert(node: "a", origin: "tok")).filters.isEmpty)
        #expect(metrics.localFilters.current == 0)
    }

    /// A line the parser does not understand on a topic that carries interest is counted,
    /// never silently dropped.
    @Test func unparsedLinesAreCounted() {
        let metrics = MeshMetrics()
        let interest = NodeInterest(table: SessionTable(), seq: 0, metrics: metrics, logger: Logger(label: "test"))
        _ = Self.line(interest, "$SYS/broker/log/M/subscribe", "garbage")
        #expect(metrics.logLinesUnparsed.current == 1)
        #expect(metrics.logLines.current == 1)
    }
}
