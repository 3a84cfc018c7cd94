import InMemoryLogging
import Logging
import Testing
@testable import MeshAgent

/// Bad input is logged, but a flood of it is not: the first few occurrences, then one in
/// every `every`, each with its ordinal. The lines are captured in memory.
@Suite("log throttle")
struct LogThrottleTests {
    @Test func firstFewThenOneInEvery() {
        let handler = InMemoryLogHandler()
        let logger = Logger(label: "test") { _ in handler }
        let throttle = LogThrottle(first: 3, every: 10)
        for i in 1...25 { throttle.log(.warning, to: logger, "odd input", metadata: ["n": "\(i)"]) }
        let logged = handler.entries
        #expect(logged.map { $0.metadata["occurrence"]?.description } == ["1", "2", "3", "10", "20"])
        #expect(logged.allSatisfy { $0.level == .warning && $0.message.description == "odd input" })
        #expect(logged.map { $0.metadata["n"]?.description } == ["1", "2", "3", "10", "20"], "the metadata of the logged occurrence")
    }

    @Test func libraryLogPassesOnlyErrorsThrottled() {
        let handler = InMemoryLogHandler()
        let log = LogThrottle.libraryLog(Logger(label: "test") { _ in handler }, link: "peer 10.0.0.2:1883")
        log(false, "debug chatter")
        for _ in 0..<7 { log(true, "Connection refused") }
        #expect(handler.entries.count == 5)
        #expect(handler.entries.first?.message.description == "peer 10.0.0.2:1883: Connection refused")
    }
}
