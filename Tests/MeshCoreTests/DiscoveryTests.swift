import Testing
@testable import MeshCore

@Suite("Discovery")
struct DiscoveryTests {
    typealias Link = Discovery.Link
    static func view(_ node: String, _ peers: [(String, Bool, [String])], advertise: String? = nil) -> DiscoveryView {
        DiscoveryView(node: node, advertise: advertise, peers: peers.map { .init(endpoint: $0.0, connected: $0.1, nodes: $0.2) })
    }

    @Test("one seed: its view's connected peers become links, one per node, never this node")
    func learnsFromTheSeedsView() {
        var d = Discovery(ownNode: "e", seeds: ["h:4"], expiry: 60)
        d.observe(Self.view("d", [("h:3", true, ["c"]), ("h:2", true, ["b"]), ("h:9", false, ["z"]), ("h:5", true, ["e"]), ("h:1", true, [])]), via: "h:4")
        let first = d.tick(links: [Link(endpoint: "h:4", connected: true, since: 0)], now: 1)
        // z's link is down (no evidence), h:5 is this node seen from d, h:1 shows no node.
        #expect(first.peers == ["h:4", "h:2", "h:3"])
        #expect(first.added.map(\.node) == ["b", "c"])
        // Applied: the same set again, nothing new.
        let links = first.peers.map { Link(endpoint: $0, connected: true, since: 1) }
        let second = d.tick(links: links, now: 2)
        #expect(second.peers == first.peers && second.added.isEmpty && second.expired.isEmpty)
    }

    @Test("a hello makes a link to where the node says it is; a second name of one node never makes a second link")
    func helloAndOneLinkPerNode() {
        var d = Discovery(ownNode: "a", seeds: [], expiry: 60)
        d.observe(DiscoveryHello(node: "b", advertise: "10.0.0.2:1883"), at: 0)
        let first = d.tick(links: [], now: 0.1)
        #expect(first.peers == ["10.0.0.2:1883"])
        // Linked to b; c's view shows b under another name: no second link to b.
        var links = [Link(endpoint: "10.0.0.2:1883", connected: true, since: 0.1)]
        d.observe(Self.view("b", [("broker-c:1883", true, ["c"])]), via: "10.0.0.2:1883")
        let second = d.tick(links: links, now: 1)
        #expect(second.peers == ["10.0.0.2:1883", "broker-c:1883"])
        links.append(Link(endpoint: "broker-c:1883", connected: true, since: 1))
        d.observe(Self.view("c", [("b.example:1883", true, ["b"]), ("10.0.0.1:1883", true, ["a"])]), via: "broker-c:1883")
        let third = d.tick(links: links, now: 2)
        #expect(third.peers == ["10.0.0.2:1883", "broker-c:1883"])
        #expect(third.added.isEmpty)
    }

    @Test("a discovered endpoint that turns out to lead to a covered node (or to this node) is dropped")
    func duplicatesDropped() {
        var d = Discovery(ownNode: "a", seeds: ["s:1"], expiry: 60)
        d.observe(DiscoveryHello(node: "b", advertise: "alias:1"), at: 0)
        // The seed is not identified yet: within the grace no discovered link is added.
        let pending = d.tick(links: [Link(endpoint: "s:1", connected: false, since: 0)], now: 1)
        #expect(pending.peers == ["s:1"])
        // Grace over, the seed still silent: b gets its discovered link.
        let later = d.tick(links: [Link(endpoint: "s:1", connected: false, since: 0)], now: 6)
        #expect(later.peers == ["s:1", "alias:1"])
        // The seed comes up and is b: the discovered link goes.
        d.observe(Self.view("b", []), via: "s:1")
        let links = [Link(endpoint: "s:1", connected: true, since: 0), Link(endpoint: "alias:1", connected: true, since: 6)]
        let after = d.tick(links: links, now: 7)
        #expect(after.peers == ["s:1"])
        #expect(after.duplicates.map(\.node) == ["b"])
        // A discovered endpoint that is this node itself is dropped and never tried again.
        var e = Discovery(ownNode: "a", seeds: [], expiry: 60)
        e.observe(DiscoveryHello(node: "x", advertise: "me:1"), at: 0)
        _ = e.tick(links: [], now: 0)
        e.observe(Self.view("a", []), via: "me:1")
        let selfLink = e.tick(links: [Link(endpoint: "me:1", connected: true, since: 0)], now: 1)
        #expect(selfLink.peers.isEmpty && selfLink.duplicates.map(\.node) == ["a"])
        #expect(e.excludedEndpoints.contains("me:1"))
    }

    @Test("a node without evidence is forgotten after the expiry; evidence keeps it; seeds stay")
    func expiry() {
        var d = Discovery(ownNode: "a", seeds: ["seed:1"], expiry: 10)
        d.observe(DiscoveryHello(node: "b", advertise: "b:1"), at: 0)
        d.observe(DiscoveryHello(node: "c", advertise: "c:1"), at: 0)
        d.observe(Self.view("s", []), via: "seed:1")
        var links = [Link(endpoint: "seed:1", connected: false, since: 0)]
        let first = d.tick(links: links, now: 0)
        #expect(first.peers == ["seed:1", "b:1", "c:1"])
        links += [Link(endpoint: "b:1", connected: true, since: 0), Link(endpoint: "c:1", connected: false, since: 0)]
        // b's link is up (evidence); c's is down and c says nothing.
        for t in stride(from: 1.0, through: 10, by: 1) { _ = d.tick(links: links, now: t) }
        let late = d.tick(links: links, now: 10.5)
        #expect(late.peers == ["seed:1", "b:1"])
        #expect(late.expired == ["c"])
        // A hello brings c back.
        d.observe(DiscoveryHello(node: "c", advertise: "c:1"), at: 11)
        #expect(d.tick(links: links, now: 11).peers == ["seed:1", "b:1", "c:1"])
        // The seed's link has been down all along: still listed.
        #expect(d.tick(links: links, now: 100).peers.first == "seed:1")
    }

    @Test("evidence from a peer's view counts only while our link to that peer is up and the view says connected")
    func viewEvidence() {
        var d = Discovery(ownNode: "a", seeds: ["p:1"], expiry: 5)
        d.observe(Self.view("p", [("q:1", true, ["q"])]), via: "p:1")
        var links = [Link(endpoint: "p:1", connected: true, since: 0)]
        #expect(d.tick(links: links, now: 0).peers == ["p:1", "q:1"])
        links.append(Link(endpoint: "q:1", connected: false, since: 0))
        // p still sees q: q stays although our own link to it is down.
        #expect(d.tick(links: links, now: 20).peers == ["p:1", "q:1"])
        // p's view now says q is down: q ages out.
        d.observe(Self.view("p", [("q:1", false, ["q"])]), via: "p:1")
        #expect(d.tick(links: links, now: 24).peers == ["p:1", "q:1"])
        let gone = d.tick(links: links, now: 26)
        #expect(gone.peers == ["p:1"] && gone.expired == ["q"])
        // A disconnected view says nothing new either: learning needs a connected link.
        links[0].connected = false
        d.observe(Self.view("p", [("r:1", true, ["r"])]), via: "p:1")
        #expect(d.tick(links: links, now: 27).peers == ["p:1"])
    }

    @Test("a seed removed by a reload is not rediscovered until listed again")
    func removedSeedsStayOut() {
        var d = Discovery(ownNode: "a", seeds: ["b:1", "c:1"], expiry: 60)
        d.observe(Self.view("b", [("c:1", true, ["c"])]), via: "b:1")
        d.observe(Self.view("c", [("b:1", true, ["b"])]), via: "c:1")
        let links = [Link(endpoint: "b:1", connected: true, since: 0), Link(endpoint: "c:1", connected: true, since: 0)]
        #expect(d.tick(links: links, now: 1).peers == ["b:1", "c:1"])
        d.setSeeds(["b:1"], links: links)
        d.observe(DiscoveryHello(node: "c", advertise: "c-other:1"), at: 2)
        #expect(d.tick(links: [links[0]], now: 2).peers == ["b:1"])
        d.setSeeds(["b:1", "c:1"], links: [links[0]])
        #expect(d.tick(links: [links[0]], now: 3).peers == ["b:1", "c:1"])
    }

    @Test func codecs() throws {
        let hello = DiscoveryHello(node: "n1", advertise: "[fd00::1]:1883")
        let bytes = DiscoveryCodec.encode(hello)
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"format":2,"node":"n1","advertise":"[fd00::1]:1883"}"#)
        #expect(try DiscoveryCodec.decodeHello(bytes, expectedNode: "n1") == hello)
        #expect(throws: AdvertDecodeError.self) { try DiscoveryCodec.decodeHello(bytes, expectedNode: "n2") }
        #expect(throws: AdvertDecodeError.self) { try DiscoveryCodec.decodeHello(Array(#"{"format":9,"node":"n1"}"#.utf8), expectedNode: "n1") }
        // An address that is not one is dropped, the hello kept.
        #expect(try DiscoveryCodec.decodeHello(Array(#"{"node":"n1","advertise":"no port"}"#.utf8), expectedNode: "n1").advertise == nil)

        // A view as this release writes it (JSONEncoder, sorted keys) and as 0.2.0 wrote it (no format, no advertise).
        let current = #"{"advertise":"10.0.0.2:1883","format":2,"node":"b","peers":[{"connected":true,"endpoint":"10.0.0.1:1883","nodes":{"a":{"filters":3,"seq":9}}},{"connected":false,"downSince":1.5,"endpoint":"10.0.0.3:1883","nodes":{}}],"seq":4,"time":1.0}"#
        let v = try DiscoveryCodec.decodeView(Array(current.utf8), expectedNode: "b")
        #expect(v == Self.view("b", [("10.0.0.1:1883", true, ["a"]), ("10.0.0.3:1883", false, [])], advertise: "10.0.0.2:1883"))
        let old = #"{"node":"b","peers":[{"connected":true,"endpoint":"h:1","nodes":{"a":{"filters":0}}},{"endpoint":"bad"},7,{"connected":"yes","endpoint":"h:2","nodes":{}}],"seq":1}"#
        let o = try DiscoveryCodec.decodeView(Array(old.utf8), expectedNode: "b")
        #expect(o.format == 1 && o.peers == [.init(endpoint: "h:1", connected: true, nodes: ["a"])])
        #expect(throws: AdvertDecodeError.self) { try DiscoveryCodec.decodeView(Array(#"{"format":4,"node":"b","peers":[]}"#.utf8), expectedNode: "b") }
        for bad in ["", "h", ":1", "h:0", "h:65536", "h:1x", "a b:1", "h/x:1", "[]:1", String(repeating: "h", count: 400) + ":1"] {
            #expect(!DiscoveryCodec.isPlausibleEndpoint(bad), "\(bad)")
        }
        for good in ["h:1", "10.0.0.1:1883", "[::1]:1883", "broker-b.example.net:8883"] {
            #expect(DiscoveryCodec.isPlausibleEndpoint(good), "\(good)")
        }
    }
}
