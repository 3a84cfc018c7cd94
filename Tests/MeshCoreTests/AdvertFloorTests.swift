import Testing
@testable import MeshCore

@Suite("AdvertFloor")
struct AdvertFloorTests {
    /// A live advert (not the retained copy read on subscribe).
    static func live(_ floor: inout AdvertFloor, _ node: String, _ seq: UInt64, same: Bool = false) -> AdvertFloor.Verdict {
        floor.judge(node: node, seq: seq, sameFilters: { same }, readOnSubscribe: false)
    }

    @Test func firstAdvertOfANodeIsNewWhateverItsSeq() {
        var floor = AdvertFloor()
        #expect(Self.live(&floor, "b", 7) == .newer)
        #expect(Self.live(&floor, "c", 0) == .newer)
        #expect(floor.seq(of: "b") == 7)
        #expect(floor.seq(of: "c") == 0)
        #expect(floor.seq(of: "d") == nil)
    }

    @Test func whileWatchingOnlyAHigherSeqIsApplied() {
        var floor = AdvertFloor()
        _ = Self.live(&floor, "b", 7)
        #expect(Self.live(&floor, "b", 6) == .stale(accepted: 7))
        #expect(Self.live(&floor, "b", 0) == .stale(accepted: 7))
        #expect(Self.live(&floor, "b", 7, same: false) == .stale(accepted: 7))
        #expect(Self.live(&floor, "b", 7, same: true) == .repeated)
        #expect(floor.seq(of: "b") == 7, "a refused advert must not move the floor")
        #expect(Self.live(&floor, "b", 8) == .newer)
        #expect(Self.live(&floor, "b", 7) == .stale(accepted: 8))
        #expect(Self.live(&floor, "b", UInt64.max) == .newer)
        #expect(Self.live(&floor, "b", UInt64.max, same: true) == .repeated)
    }

    @Test func filtersAreComparedOnlyOnAnEqualSeq() {
        var floor = AdvertFloor()
        _ = Self.live(&floor, "b", 5)
        var asked = 0
        _ = floor.judge(node: "b", seq: 4, sameFilters: { asked += 1; return true }, readOnSubscribe: false)
        _ = floor.judge(node: "b", seq: 6, sameFilters: { asked += 1; return true }, readOnSubscribe: false)
        #expect(asked == 0)
        #expect(floor.judge(node: "b", seq: 6, sameFilters: { asked += 1; return true }, readOnSubscribe: false) == .repeated)
        #expect(asked == 1)
    }

    @Test func theRetainedAdvertReadOnSubscribeIsTakenWhateverItsSeq() {
        var floor = AdvertFloor()
        _ = Self.live(&floor, "b", 9)
        #expect(floor.judge(node: "b", seq: 2, sameFilters: { false }, readOnSubscribe: true) == .restarted(previous: 9))
        #expect(floor.seq(of: "b") == 2)
        // …and it is the new floor for live adverts.
        #expect(Self.live(&floor, "b", 1) == .stale(accepted: 2))
        #expect(Self.live(&floor, "b", 3) == .newer)
        // The same advert read again on a reconnect changes nothing.
        #expect(floor.judge(node: "b", seq: 3, sameFilters: { true }, readOnSubscribe: true) == .repeated)
    }

    @Test func aLiveStatusLetsTheNextAdvertStartOver() {
        var floor = AdvertFloor()
        _ = Self.live(&floor, "b", 40)
        _ = Self.live(&floor, "c", 40)
        floor.statusSeen(node: "b")
        #expect(Self.live(&floor, "c", 1) == .stale(accepted: 40), "only the node whose status was seen")
        #expect(Self.live(&floor, "b", 1) == .restarted(previous: 40))
        // Lifted for one advert only.
        #expect(Self.live(&floor, "b", 0) == .stale(accepted: 1))
        // A higher seq after a status also closes it again.
        floor.statusSeen(node: "b")
        #expect(Self.live(&floor, "b", 2) == .newer)
        #expect(Self.live(&floor, "b", 1) == .stale(accepted: 2))
        // A status for a node never seen records nothing.
        floor.statusSeen(node: "z")
        #expect(floor.seq(of: "z") == nil)
    }

    @Test func aDeletedNodeStartsAfresh() {
        var floor = AdvertFloor()
        _ = Self.live(&floor, "b", 40)
        floor.remove(node: "b")
        #expect(floor.seq(of: "b") == nil)
        #expect(Self.live(&floor, "b", 3) == .newer)
    }
}
