import Testing
@testable import MeshCore

@Suite("AdvertPacer")
struct AdvertPacerTests {
    /// A burst doubles the gap up to the ceiling; one quiet wait brings it back to base.
    @Test(arguments: [
        ([true, true, true, true, true, true], [40, 80, 160, 200, 200, 200]),
        ([false, false], [20, 20]),
        ([true, true, false, true], [40, 80, 20, 40]),
        ([true, false, false, true, true, true, true], [40, 20, 20, 40, 80, 160, 200]),
    ])
    func gapFollowsTheBurst(changed: [Bool], expectedMilliseconds: [Int]) {
        var pacer = AdvertPacer(base: .milliseconds(20), ceiling: .milliseconds(200))
        #expect(pacer.interval == .milliseconds(20))
        let gaps = changed.map { pacer.next(changedWhileWaiting: $0) }
        #expect(gaps == expectedMilliseconds.map { .milliseconds($0) })
    }

    @Test func ceilingBelowBaseMeansAFixedGap() {
        var pacer = AdvertPacer(base: .milliseconds(50), ceiling: .milliseconds(10))
        #expect(pacer.next(changedWhileWaiting: true) == .milliseconds(50))
        #expect(pacer.next(changedWhileWaiting: true) == .milliseconds(50))
    }

    /// How many adverts a storm of `changes` one every millisecond costs: with the pacer it
    /// grows with the log of the storm, not linearly.
    @Test func stormCostsFewAdverts() {
        var pacer = AdvertPacer(base: .milliseconds(20), ceiling: .milliseconds(200))
        let stormEnds = 2_000 // ms of continuous changes
        var now = 0, adverts = 0, gap = pacer.interval
        while now < stormEnds {
            adverts += 1 // publish (something is always pending during the storm)
            now += Int(gap.components.attoseconds / 1_000_000_000_000_000) + Int(gap.components.seconds) * 1000
            gap = pacer.next(changedWhileWaiting: now < stormEnds)
        }
        #expect(adverts <= 14)
        #expect(adverts >= 10)
    }
}
