import Testing
@testable import MeshCore

/// Every control payload this release writes carries its format; each reader takes one older
/// (no key) and one newer, and what it does beyond that depends on what acting on a misread costs.
@Suite("control formats")
struct ControlFormatTests {
    @Test func everyPayloadCarriesTheFormat() {
        let payloads: [[UInt8]] = [
            InterestAdvertCodec.encode(InterestAdvert(node: "a", seq: 1, filters: [:])),
            ConnectAnnouncementCodec.encode(ConnectAnnouncement(node: "a", connects: [])),
            PresenceSnapshotCodec.encode(PresenceSnapshot(node: "a", time: 1, online: [:], offline: 0, unlisted: 0)),
            DiscoveryCodec.encode(DiscoveryHello(node: "a", advertise: nil)),
        ]
        for p in payloads { #expect(String(decoding: p, as: UTF8.self).hasPrefix(#"{"format":\#(ControlFormat.current),"#)) }
    }

    @Test("connect announcements and presence: one older and one newer read, anything else refused (no takeover on a misread)")
    func takeoverPayloads() throws {
        func connects(_ format: String) -> [UInt8] {
            Array(#"{\#(format)"node":"b","connects":[{"id":"x","t":5,"c":true,"p":5,"later":{}}],"extra":1}"#.utf8)
        }
        func presence(_ format: String) -> [UInt8] {
            Array(#"{\#(format)"node":"b","time":7,"offline":1,"unlisted":0,"online":{"x":5}}"#.utf8)
        }
        for f in ["", #""format":1,"#, #""format":2,"#, #""format":3,"#] {
            #expect(try ConnectAnnouncementCodec.decode(connects(f), expectedNode: "b").connects.map(\.clientID) == ["x"], "\(f)")
            #expect(try PresenceSnapshotCodec.decode(presence(f), expectedNode: "b").online == ["x": 5], "\(f)")
        }
        for f in [#""format":4,"#, #""format":0,"#, #""format":"2","#] {
            #expect(throws: AdvertDecodeError.self) { try ConnectAnnouncementCodec.decode(connects(f), expectedNode: "b") }
            #expect(throws: AdvertDecodeError.self) { try PresenceSnapshotCodec.decode(presence(f), expectedNode: "b") }
        }
    }
}
