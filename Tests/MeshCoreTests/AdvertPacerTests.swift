import Testing
@testable import MeshCore

@Suite("AdvertPacer")
struct AdvertPacerTests {
    static func pacer() -> AdvertPacer { AdvertPacer(base: .milliseconds(20), ceiling: .milliseconds(200)) }

    /// `changes[i]` changes arrived during wait i; the gap doubles while they come faster
    /// than one per 20 ms and drops back to 20 ms as soon as they do not.
    @Test(arguments: [
        ([5, 10, 20, 40, 40, 40], [40, 80, 160, 200, 200, 200]),
        ([0, 0], [20, 20]),
        ([1, 1, 1], [20, 20, 20]), // one change per gap: a trickle, never slowed down
        ([2, 5, 0, 2], [40, 80, 20, 40]),
        ([2, 4, 8, 11, 2], [40, 80, 160, 200, 20]), // at 200 ms, 2 changes is a trickle again
    ])
    func gapFollowsTheChangeRate(changes: [Int], expectedMilliseconds: [Int]) {
        var pacer = Self.pacer()
        #expect(pacer.interval == .milliseconds(20))
        let gaps = changes.map { pacer.next(changesWhileWaiting: $0) }
        #expect(gaps == expectedMilliseconds.map { .milliseconds($0) })
    }

    @Test func ceilingBelowBaseMeansAFixedGap() {
        var pacer = AdvertPacer(base: .milliseconds(50), ceiling: .milliseconds(10))
        #expect(pacer.next(changesWhileWaiting: 100) == .milliseconds(50))
        #expect(pacer.next(changesWhileWaiting: 100) == .milliseconds(50))
    }

    /// Simulated time: a storm (one change per ms for 2 s) costs a dozen adverts, and the
    /// 10-per-second trickle after it is back at the 20 ms gap by its second change.
    @Test func stormThenTrickle() {
        var pacer = Self.pacer()
        let changeTimes = Array(0..<2_000) + stride(from: 2_100, to: 4_000, by: 100).map { $0 }
        var now = 0, adverts = 0, gap = pacer.interval, seen = 0
        var gapsAfterStorm: [Duration] = []
        while now < 4_000 {
            adverts += 1
            let until = now + Int(gap.components.seconds) * 1000 + Int(gap.components.attoseconds / 1_000_000_000_000_000)
            let arrived = changeTimes[seen...].prefix { $0 < until }.count
            seen += arrived
            now = until
            gap = pacer.next(changesWhileWaiting: arrived)
            if now > 2_300 { gapsAfterStorm.append(gap) }
        }
        #expect(adverts < 200) // one per 20 ms would be 200
        #expect(gapsAfterStorm.allSatisfy { $0 == .milliseconds(20) }, "\(gapsAfterStorm.prefix(5))")
    }
}
