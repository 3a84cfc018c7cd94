import Mosquitto
import Testing

/// Lets `#expect` call the ledger's mutating methods (a macro argument cannot mutate).
final class LedgerBox {
    var ledger = PublishLedger()
    func record(mid: UInt16, qos: Int32) -> Bool { ledger.published(mid: mid, qos: qos) }
    func complete(mid: UInt16) -> Bool { ledger.completed(mid: mid) }
    var unacknowledged: Int { ledger.unacknowledged }
}

/// `PublishLedger`: telling QoS 1/2 acknowledgements from QoS 0 write completions (both
/// arrive through libmosquitto's `on_publish`) in every order they can come in.
@Suite("PublishLedger")
struct PublishLedgerTests {
    @Test func acknowledgementAfterRecord() {
        let l = LedgerBox()
        #expect(l.record(mid: 7, qos: 1))
        #expect(l.unacknowledged == 1)
        #expect(l.complete(mid: 7))
        #expect(l.unacknowledged == 0)
    }

    /// The loop thread may see the PUBACK before the publisher has recorded the id.
    @Test(arguments: [Int32(1), 2])
    func acknowledgementBeforeRecord(qos: Int32) {
        let l = LedgerBox()
        #expect(!l.complete(mid: 9))
        #expect(!l.record(mid: 9, qos: qos))
        #expect(l.unacknowledged == 0)
        // The id is free again: its next use is counted normally.
        #expect(l.record(mid: 9, qos: 1))
        #expect(l.complete(mid: 9))
    }

    /// QoS 0 completions are never taken for acknowledgements, whenever they arrive.
    @Test func qos0NeverCounts() {
        let l = LedgerBox()
        #expect(l.record(mid: 1, qos: 1))
        #expect(!l.record(mid: 2, qos: 0))
        #expect(!l.complete(mid: 2))           // written after the record
        #expect(!l.complete(mid: 3))           // written inside the call, before the record
        #expect(!l.record(mid: 3, qos: 0))
        #expect(l.unacknowledged == 1)
        #expect(l.complete(mid: 1))
        #expect(l.unacknowledged == 0)
    }

    /// A QoS 0 packet discarded with a broken connection never completes; the next publish
    /// that gets its id is counted and acknowledged normally.
    @Test func discardedQoS0LeavesNothingBehind() {
        let l = LedgerBox()
        #expect(!l.record(mid: 4, qos: 0))
        #expect(l.record(mid: 4, qos: 1))
        #expect(l.unacknowledged == 1)
        #expect(l.complete(mid: 4))
        #expect(l.unacknowledged == 0)
    }

    /// An id reused while an older QoS 1 message still holds it: counted once, and the
    /// error is towards too few (never a count that cannot come down).
    @Test func reusedIdErrsLow() {
        let l = LedgerBox()
        #expect(l.record(mid: 5, qos: 1))
        #expect(!l.record(mid: 5, qos: 1))
        #expect(!l.record(mid: 5, qos: 0))
        #expect(l.unacknowledged == 1)
        #expect(l.complete(mid: 5))
        #expect(!l.complete(mid: 5))
        #expect(l.unacknowledged == 0)
    }

    /// Random interleavings (ids unique while in flight, as on a link with fewer than 65 536
    /// publishes between a message and its acknowledgement): the ledger's count always equals
    /// the true number of recorded, unacknowledged QoS 1/2 messages.
    @Test func randomInterleavingsMatchTheTruth() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let l = LedgerBox()
            var nextMid: UInt16 = 1
            var truth = 0
            // (mid, qos, recorded, completed)
            var live: [(mid: UInt16, qos: Int32, recorded: Bool, completed: Bool, discarded: Bool)] = []
            for _ in 0..<2_000 {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0:
                    live.append((nextMid, Int32.random(in: 0...2, using: &rng), false, false, false))
                    nextMid &+= 1
                    if nextMid == 0 { nextMid = 1 }
                case 1 where !live.isEmpty:
                    let k = Int.random(in: 0..<live.count, using: &rng)
                    if !live[k].recorded {
                        live[k].recorded = true
                        let counted = l.record(mid: live[k].mid, qos: live[k].qos)
                        if counted { truth += 1 }
                        #expect(counted == (live[k].qos > 0 && !live[k].completed))
                    }
                case 2 where !live.isEmpty:
                    let k = Int.random(in: 0..<live.count, using: &rng)
                    if !live[k].completed && !live[k].discarded {
                        live[k].completed = true
                        let acked = l.complete(mid: live[k].mid)
                        if acked { truth -= 1 }
                        #expect(acked == (live[k].qos > 0 && live[k].recorded))
                    }
                case 3 where !live.isEmpty:
                    // A QoS 0 packet lost with the connection: never completes.
                    let k = Int.random(in: 0..<live.count, using: &rng)
                    if live[k].qos == 0 && !live[k].completed { live[k].discarded = true }
                default:
                    break
                }
                live.removeAll { $0.recorded && ($0.completed || $0.discarded) }
                #expect(l.unacknowledged == truth)
            }
        }
    }
}
