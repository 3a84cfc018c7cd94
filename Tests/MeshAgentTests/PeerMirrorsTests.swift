import Testing
@testable import MeshAgent

/// Mirror updates are decided under the link's lock and published after it: a publisher that
/// was overtaken learns which topics to publish again, so the broker ends with the current value.
@Suite("peer mirrors")
struct PeerMirrorsTests {
    @Test("an update overtaken by a newer one of the same topic is superseded by the current value")
    func overtakenUpdateIsRepublished() {
        var mirrors = PeerMirrors()
        let old = mirrors.set("m/a", [1])
        // A reconnect snapshots `old`; the peer thread then records and publishes a newer value.
        let snapshot = mirrors.all()
        #expect(snapshot == [old])
        let newer = mirrors.set("m/a", [2])
        #expect(mirrors.superseded([newer]).isEmpty)
        // The snapshot's publisher, last to publish, must publish the newer value again.
        #expect(mirrors.superseded(snapshot) == [newer])
    }

    @Test("a deletion is republished as a deletion; deleted mirrors are not sent on reconnect; clear deletes each once")
    func deletions() {
        var mirrors = PeerMirrors()
        let a = mirrors.set("m/a", [1])
        _ = mirrors.set("m/b", [2])
        let deleted = mirrors.set("m/a", [])
        #expect(mirrors.superseded([a]) == [deleted])
        #expect(mirrors.all().map(\.topic) == ["m/b"])
        let cleared = mirrors.clear()
        #expect(cleared.map(\.topic) == ["m/b"] && cleared.allSatisfy { $0.payload.isEmpty })
        #expect(mirrors.all().isEmpty)
        #expect(mirrors.clear().isEmpty)
    }
}
