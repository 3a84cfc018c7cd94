import Testing
@testable import MeshCore

@Suite("ForwardSequence")
struct ForwardSequenceTests {
    @Test func resentCopiesAreDuplicatesPerSource() {
        var s = ForwardSequence()
        #expect(s.judge("a.x1:1") == .new)
        #expect(s.judge("a.x1:2") == .new)
        #expect(s.judge("b.y2:1") == .new, "another source has its own numbers")
        #expect(s.judge("a.x1:2") == .duplicate)
        #expect(s.judge("a.x1:1") == .duplicate)
        #expect(s.judge("a.x1:z") == .new, "base 36")
        #expect(s.judge("a.x2:1") == .new, "a new run of the node starts over")
    }

    @Test(arguments: ["", ":", "a.x1", "a.x1:", ":5", "a.x1:-1", "a.x1:5 ", "a.x1:ÿ"])
    func malformedMarkersAreNotChecked(_ marker: String) {
        var s = ForwardSequence()
        #expect(s.judge(marker) == .malformed)
    }

    @Test func sourcesAreBoundedOldestFirst() {
        var s = ForwardSequence()
        for i in 0..<(ForwardSequence.maximumSources + 10) { #expect(s.judge("n.\(i):1") == .new) }
        #expect(s.sourceCount == ForwardSequence.maximumSources)
        #expect(s.judge("n.0:1") == .new, "the oldest source was forgotten")
        #expect(s.judge("n.\(ForwardSequence.maximumSources + 9):1") == .duplicate, "a recent one was kept")
    }

    /// libmosquitto can put a new forward on the wire before the resends of older ones.
    @Test func unseenLowerNumbersAreNew() {
        var s = ForwardSequence()
        for n in 1...5 { #expect(s.judge("a.r:\(n)") == .new) }
        #expect(s.judge("a.r:9") == .new, "published right after the CONNACK, before the resends")
        for n in 6...8 { #expect(s.judge("a.r:\(n)") == .new, "never seen: new, although lower") }
        for n in [3, 5, 6, 8, 9] { #expect(s.judge("a.r:\(n)") == .duplicate) }
        #expect(s.judge("a.r:\(String(9 + Int(ForwardSequence.window), radix: 36))") == .new)
        #expect(s.judge("a.r:9") == .duplicate, "below the window: cannot still be held by the sender")
    }

    /// A stream resent from any point after a cut: every copy is caught, nothing new is.
    @Test(arguments: 0..<4)
    func randomResends(seed: Int) {
        var rng = seededGenerator(UInt64(seed))
        var s = ForwardSequence()
        var sent = 0
        for _ in 0..<200 {
            let fresh = Int.random(in: 1...20, using: &rng)
            for n in (sent + 1)...(sent + fresh) { #expect(s.judge("a.r:\(String(n, radix: 36))") == .new) }
            let resendFrom = Int.random(in: max(1, sent - 30)...(sent + fresh), using: &rng)
            for n in resendFrom...(sent + fresh) { #expect(s.judge("a.r:\(String(n, radix: 36))") == .duplicate) }
            sent += fresh
        }
    }
}
