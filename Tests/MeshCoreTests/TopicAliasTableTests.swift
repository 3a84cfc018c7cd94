import Testing
@testable import MeshCore

@Suite("TopicAliasTable")
struct TopicAliasTableTests {
    static func connected(capacity: Int) -> TopicAliasTable {
        var t = TopicAliasTable()
        _ = t.connected(peerMaximum: capacity, configuredMaximum: 64)
        return t
    }

    @Test func firstUseAnnouncesThenAliasOnly() {
        var t = Self.connected(capacity: 10)
        #expect(t.use(for: "a") == .announce(1))
        #expect(t.use(for: "a") == .alias(1))
        #expect(t.use(for: "b") == .announce(2))
        #expect(t.use(for: "a") == .alias(1))
        #expect(t.alias(of: "b") == 2)
        #expect(t.nextAlias == 3)
    }

    /// Aliases are never reassigned: once full, new topics go without.
    @Test func fullTableLeavesNewTopicsWithout() {
        var t = Self.connected(capacity: 2)
        #expect(t.use(for: "a") == .announce(1))
        #expect(t.use(for: "b") == .announce(2))
        #expect(t.nextAlias == nil)
        #expect(t.use(for: "c") == .none)
        #expect(t.use(for: "c") == .none)
        #expect(t.use(for: "b") == .alias(2))
    }

    @Test(arguments: [(0, 64), (10, 0), (0, 0)])
    func zeroOnEitherSideTurnsAliasesOff(peer: Int, configured: Int) {
        var t = TopicAliasTable()
        _ = t.connected(peerMaximum: peer, configuredMaximum: configured)
        #expect(t.use(for: "a") == .none)
        #expect(t.capacity == 0)
    }

    @Test func capacityIsTheSmallerMaximum() {
        var t = TopicAliasTable()
        _ = t.connected(peerMaximum: 10, configuredMaximum: 3)
        #expect(t.capacity == 3)
        _ = t.connected(peerMaximum: 2, configuredMaximum: 3)
        #expect(t.capacity == 2)
    }

    @Test func nothingByAliasWhileDown() {
        var t = Self.connected(capacity: 10)
        #expect(t.use(for: "a") == .announce(1))
        t.connectionLost()
        #expect(t.use(for: "a") == .none)
        #expect(t.use(for: "new") == .none)
        #expect(t.alias(of: "a") == nil)
        #expect(t.nextAlias == nil)
    }

    /// Every alias is announced again (in alias order) and kept.
    @Test func reconnectWithOutstandingKeepsAndAnnounces() {
        var t = Self.connected(capacity: 10)
        for topic in ["x", "y", "z"] { _ = t.use(for: topic) }
        t.connectionLost()
        let (announce, unusable) = t.connected(peerMaximum: 10, configuredMaximum: 64)
        #expect(announce.map(\.topic) == ["x", "y", "z"])
        #expect(announce.map(\.alias) == [1, 2, 3])
        #expect(unusable == 0)
        #expect(t.use(for: "y") == .alias(2))
        #expect(t.use(for: "w") == .announce(4))
    }

    /// Aliases outlive the connection even when nothing is outstanding: a forward decided
    /// just before a reconnect may still go out by alias on the next connection.
    @Test func aliasesAreNeverForgottenOnReconnect() {
        var t = Self.connected(capacity: 1)
        _ = t.use(for: "old")
        t.connectionLost()
        let (announce, unusable) = t.connected(peerMaximum: 1, configuredMaximum: 64)
        #expect(announce.map(\.topic) == ["old"])
        #expect(unusable == 0)
        #expect(t.use(for: "old") == .alias(1))
        #expect(t.use(for: "new") == .none)
    }

    /// A peer that now accepts fewer aliases: those above its maximum go unused (reported),
    /// their numbers are never handed to another topic, and they come back when the maximum
    /// is raised again.
    @Test func loweredThenRaisedMaximumNeverReusesANumber() {
        var t = Self.connected(capacity: 5)
        for topic in ["a", "b", "c", "d"] { _ = t.use(for: topic) }
        t.connectionLost()
        let (announce, unusable) = t.connected(peerMaximum: 2, configuredMaximum: 64)
        #expect(announce.map(\.alias) == [1, 2])
        #expect(unusable == 2)
        #expect(t.use(for: "c") == .none)
        #expect(t.use(for: "e") == .none)
        #expect(t.use(for: "b") == .alias(2))
        t.connectionLost()
        let (again, stillUnusable) = t.connected(peerMaximum: 64, configuredMaximum: 64)
        #expect(again.map(\.topic) == ["a", "b", "c", "d"])
        #expect(again.map(\.alias) == [1, 2, 3, 4])
        #expect(stillUnusable == 0)
        #expect(t.use(for: "c") == .alias(3))
        #expect(t.use(for: "e") == .announce(5))
    }

    /// An alias whose setting-up message was not sent is announced again with the next one.
    @Test func failedAnnouncementIsRepeated() {
        var t = Self.connected(capacity: 10)
        #expect(t.use(for: "a") == .announce(1))
        t.announcementFailed(1)
        #expect(t.alias(of: "a") == nil)
        #expect(t.use(for: "a") == .announce(1))
        #expect(t.use(for: "a") == .alias(1))
        t.announcementFailed(7) // unknown: ignored
        #expect(t.use(for: "b") == .announce(2))
    }
}
