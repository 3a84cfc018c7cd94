import CMosquitto
import Testing
@testable import Mosquitto

/// The types that keep libmosquitto's meanings inside this module, in process.
@Suite("Mosquitto boundary types")
struct BoundaryTypesTests {
    @Test(arguments: [
        (MOSQ_ERR_SUCCESS, 0, PublishOutcome.sent), (MOSQ_ERR_SUCCESS, 1, .sent),
        (MOSQ_ERR_NO_CONN, 0, .notConnected), (MOSQ_ERR_NO_CONN, 1, .queued), (MOSQ_ERR_NO_CONN, 2, .queued),
        (MOSQ_ERR_OVERSIZE_PACKET, 1, .tooLarge(beyondBrokerMaximum: true)),
        (MOSQ_ERR_PAYLOAD_SIZE, 0, .tooLarge(beyondBrokerMaximum: false)),
        (MOSQ_ERR_INVAL, 1, .refused(code: Int32(MOSQ_ERR_INVAL.rawValue))),
        (MOSQ_ERR_MALFORMED_UTF8, 0, .refused(code: Int32(MOSQ_ERR_MALFORMED_UTF8.rawValue))),
    ] as [(mosq_err_t, Int32, PublishOutcome)])
    func publishOutcomes(_ code: mosq_err_t, _ qos: Int32, _ expected: PublishOutcome) {
        let outcome = PublishOutcome.of(Int32(code.rawValue), qos: qos)
        #expect(outcome == expected)
        // Taken exactly when sent now or kept for the reconnect; a failure names its code.
        #expect(outcome.isAccepted == (outcome.failure("publish") == nil))
        if case .refused(let c) = outcome { #expect(outcome.failure("publish")?.code == c) }
    }

    /// The forward topic buffer grows past its first capacity and stays exact; cutting the
    /// prefix off again gives the topic back.
    @Test func prefixBufferGrowsAndCutsBack() {
        let buffer = TopicPrefixBuffer(prefix: "forward/")
        for length in [1, 7, 64, 300, 5_000, 3] {
            let topic = String(repeating: "a/", count: length / 2) + "x"
            topic.withCString { c in
                let prefixed = buffer.prefixed(BorrowedTopic(c))
                #expect(prefixed.string == "forward/" + topic)
                #expect(prefixed.byteCount == buffer.prefixLength + topic.utf8.count)
                #expect(prefixed.dropping(prefixBytes: buffer.prefixLength).string == topic)
                #expect(!prefixed.isDollarTopic)
            }
        }
        "$SYS/broker/uptime".withCString { #expect(BorrowedTopic($0).isDollarTopic) }
        #expect(BorrowedTopic.empty.byteCount == 0)
    }

    @Test func userPropertyKeyKeepsItsName() {
        let key = UserPropertyKey("mesh:o")
        #expect(key.name == "mesh:o" && String(cString: key.cString) == "mesh:o")
    }
}
