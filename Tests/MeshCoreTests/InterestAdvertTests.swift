import Testing
@testable import MeshCore

@Suite("InterestAdvertCodec")
struct InterestAdvertTests {
    @Test func encodesCompactWithSortedFilters() {
        let advert = InterestAdvert(node: "a", seq: 3, filters: ["b/#": 2, "a/+/c": 1])
        let text = String(decoding: InterestAdvertCodec.encode(advert), as: UTF8.self)
        #expect(text == #"{"format":2,"node":"a","seq":3,"filters":{"a/+/c":1,"b/#":2}}"#)
    }

    @Test(arguments: [
        InterestAdvert(node: "a", seq: 0, filters: [:]),
        InterestAdvert(node: "node-1", seq: UInt64.max, filters: ["a/+/c": 1, "#": 7, "$share/g1/x": 2]),
        InterestAdvert(node: "ünï", seq: 42, filters: ["quote\"back\\slash": 1, "tab\tnew\nline": 3, "ctl\u{1}": 1, "  ünï cödé  /+": 9]),
        InterestAdvert(node: "n", seq: 1, filters: ["emoji/😀": Int(Int32.max)]),
    ])
    func roundTrip(_ advert: InterestAdvert) throws {
        let bytes = InterestAdvertCodec.encode(advert)
        #expect(try InterestAdvertCodec.decode(bytes, expectedNode: advert.node) == advert)
        #expect(try InterestAdvertCodec.decode(bytes, expectedNode: nil) == advert)
    }

    @Test func acceptsWhitespaceEscapesAndUnknownKeys() throws {
        let json = #" { "v" : [1, {"x": null}], "seq" : 5 , "filters" : { "a\/b\u00e9\ud83d\ude00" : 1 }, "node" : "n" } "#
        let advert = try InterestAdvertCodec.decode(Array(json.utf8), expectedNode: "n")
        #expect(advert == InterestAdvert(node: "n", seq: 5, filters: ["a/bé😀": 1]))
    }

    /// A named payload whose test description is its name (not megabytes of bytes).
    struct Hostile: Sendable, CustomTestStringConvertible {
        let name: String
        let payload: [UInt8]
        var testDescription: String { "\(name) (\(payload.count) bytes)" }
    }

    static let hostile: [Hostile] = {
        func j(_ s: String) -> [UInt8] { Array(s.utf8) }
        let valid = #"{"node":"a","seq":1,"filters":{"x":1}}"#
        var rows: [(String, [UInt8])] = [
            ("empty", []),
            ("whitespace", j("   ")),
            ("truncated", Array(j(valid).dropLast(3))),
            ("truncated string", j(#"{"node":"a"#)),
            ("array", j("[1,2]")),
            ("string", j(#""node""#)),
            ("number", j("7")),
            ("null", j("null")),
            ("trailing garbage", j(valid + "x")),
            ("two documents", j(valid + valid)),
            ("missing node", j(#"{"seq":1,"filters":{}}"#)),
            ("missing seq", j(#"{"node":"a","filters":{}}"#)),
            ("missing filters", j(#"{"node":"a","seq":1}"#)),
            ("node number", j(#"{"node":1,"seq":1,"filters":{}}"#)),
            ("node empty", j(#"{"node":"","seq":1,"filters":{}}"#)),
            ("node with slash", j(#"{"node":"a/b","seq":1,"filters":{}}"#)),
            ("node with space", j(#"{"node":"a b","seq":1,"filters":{}}"#)),
            ("node with NUL", j(#"{"node":"a\u0000","seq":1,"filters":{}}"#)),
            ("node too long", j(#"{"node":"\#(String(repeating: "n", count: 65))","seq":1,"filters":{}}"#)),
            ("wrong node", j(#"{"node":"b","seq":1,"filters":{}}"#)),
            ("seq as string", j(#"{"node":"a","seq":"1","filters":{}}"#)),
            ("seq negative", j(#"{"node":"a","seq":-1,"filters":{}}"#)),
            ("seq float", j(#"{"node":"a","seq":1.5,"filters":{}}"#)),
            ("seq too big", j(#"{"node":"a","seq":18446744073709551616,"filters":{}}"#)),
            ("filters array", j(#"{"node":"a","seq":1,"filters":["x"]}"#)),
            ("count NaN", j(#"{"node":"a","seq":1,"filters":{"x":NaN}}"#)),
            ("count Infinity", j(#"{"node":"a","seq":1,"filters":{"x":Infinity}}"#)),
            ("leading zero", j(#"{"node":"a","seq":01,"filters":{}}"#)),
            ("duplicate key", j(#"{"node":"a","node":"a","seq":1,"filters":{}}"#)),
            ("duplicate filter", j(#"{"node":"a","seq":1,"filters":{"x":1,"x":2}}"#)),
            ("single quotes", j("{'node':'a','seq':1,'filters':{}}")),
            ("trailing comma", j(#"{"node":"a","seq":1,"filters":{},}"#)),
            ("lone surrogate", j(#"{"node":"\ud800","seq":1,"filters":{}}"#)),
            ("bad escape", j(#"{"node":"\q","seq":1,"filters":{}}"#)),
            ("raw control char", j("{\"node\":\"a\u{1}\",\"seq\":1,\"filters\":{}}")),
            ("non-UTF-8", j(#"{"node":"a","seq":1,"filters":{"x"#) + [0xFF, 0xFE] + j(#"":1}}"#)),
            ("overlong UTF-8", j(#"{"node":""#) + [0xC0, 0xAF] + j(#"","seq":1,"filters":{}}"#)),
            ("deep nesting", j(String(repeating: "[", count: 100_000))),
            ("deep objects", j(#"{"node":"a","seq":1,"filters":{},"x":"# + String(repeating: #"{"a":"#, count: 10_000))),
            ("10 MB node", j(#"{"node":""# + String(repeating: "n", count: 10_000_000) + #"","seq":1,"filters":{}}"#)),
        ]
        rows.append(("random bytes", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) }))
        return rows.map { Hostile(name: $0.0, payload: $0.1) }
    }()

    @Test(arguments: hostile)
    func rejectsHostileInput(_ row: Hostile) {
        do {
            let advert = try InterestAdvertCodec.decode(row.payload, expectedNode: "a")
            Issue.record("\(row.name) decoded to \(advert)")
        } catch {
            #expect(!error.reason.isEmpty)
        }
    }

    /// Entries an agent cannot use cost an over-estimate, never the advert (`ControlFormat`):
    /// each row's filter `x` or its count is unusable, and the advert still carries the good
    /// filter `keep/me` and a filter covering the odd one.
    @Test(arguments: [
        (#""x":"1""#, "x", 1), (#""x":0"#, "x", 1), (#""x":-2"#, "x", 1), (#""x":1.0"#, "x", 1),
        (#""x":1e2"#, "x", 1), (#""x":2147483648"#, "x", Int(Int32.max)), (#""x":99999999999999999999999999"#, "x", 1),
        (#""x":true"#, "x", 1), (#""x":null"#, "x", 1), (#""x":{"count":2,"qos":1}"#, "x", 1),
        (#""a/#/b":1"#, "a/#", 1), (#""a+":1"#, "#", 1), (#""":1"#, "#", 1), (#""$share":1"#, "#", 1),
        (#""$share/g/a/b+/c":3"#, "a/#", 3), (#""a\u0000":1"#, "#", 1), (#""s/t/u#":2"#, "s/t/#", 2),
    ] as [(String, String, Int)])
    func unusableEntriesWiden(_ entry: String, _ cover: String, _ count: Int) throws {
        let json = #"{"node":"a","seq":4,"filters":{"keep/me":5,"# + entry + "}}"
        let reading = try InterestAdvertCodec.read(Array(json.utf8), expectedNode: "a")
        #expect(reading.advert.filters["keep/me"] == 5, "\(json)")
        #expect(reading.advert.filters[cover] == count, "\(json) → \(reading.advert.filters)")
        #expect(reading.advert.filters.count == 2, "\(reading.advert.filters)")
        #expect(reading.widened.count == 1, "\(reading.widened)")
        #expect(reading.advert.seq == 4 && reading.format == 1)
    }

    @Test func unusableSinceEntriesAreIgnoredNotFatal() throws {
        let json = #"{"node":"a","seq":2,"filters":{"a/b":1,"c":1},"since":{"a/b":17,"gone":5,"c":-1}}"#
        let reading = try InterestAdvertCodec.read(Array(json.utf8), expectedNode: "a")
        #expect(reading.advert.filters == ["a/b": 1, "c": 1])
        #expect(reading.advert.since == ["a/b": 17])
        #expect(reading.widened.count == 2)
        let notObject = try InterestAdvertCodec.read(Array(#"{"node":"a","seq":2,"filters":{"a":1},"since":[1]}"#.utf8), expectedNode: "a")
        #expect(notObject.advert.filters == ["a": 1] && notObject.advert.since.isEmpty && notObject.widened.count == 1)
    }

    /// The direct-delivery token: written last, read back; an unusable one is dropped (the
    /// node then gets prefixed forwards) without touching the filters.
    @Test func originToken() throws {
        var random = SystemRandomNumberGenerator()
        let token = OriginToken.make(using: &random)
        #expect(token.utf8.count == OriginToken.length && OriginToken.isValid(token))
        #expect(token != OriginToken.make(using: &random))
        let own = InterestAdvert(node: "a", seq: 3, filters: ["t": 1], since: ["t": 5], origin: token)
        let encoded = String(decoding: InterestAdvertCodec.encode(own), as: UTF8.self)
        #expect(encoded.hasSuffix(#","origin":"\#(token)"}"#), "\(encoded)")
        let back = try InterestAdvertCodec.read(Array(encoded.utf8), expectedNode: "a")
        #expect(back.advert == own && back.widened.isEmpty)
        // Without it (releases before direct delivery): no token.
        #expect(try InterestAdvertCodec.decode(InterestAdvertCodec.encode(InterestAdvert(node: "a", seq: 1, filters: ["t": 1])), expectedNode: "a").origin == nil)
        for bad in [#"7"#, #""""#, #""a b""#, #""\#(String(repeating: "x", count: 65))""#, #"{"x":1}"#] {
            let r = try InterestAdvertCodec.read(Array(#"{"node":"a","seq":2,"filters":{"x/y":2},"origin":\#(bad)}"#.utf8), expectedNode: "a")
            #expect(r.advert.origin == nil && r.advert.filters == ["x/y": 2] && r.widened.count == 1, "origin \(bad)")
        }
    }

    @Test func canonicallyEqualFiltersAreCovered() throws {
        // "é" precomposed and decomposed: Swift's String equality merges them, the trie does not.
        let json = "{\"node\":\"a\",\"seq\":1,\"filters\":{\"caf\u{E9}\":1,\"cafe\u{301}\":2}}"
        let reading = try InterestAdvertCodec.read(Array(json.utf8), expectedNode: "a")
        #expect(reading.advert.filters["#"] == 1, "\(reading.advert.filters)")
        #expect(!reading.widened.isEmpty)
    }

    @Test func formatVersions() throws {
        func read(_ format: String) throws -> AdvertReading {
            try InterestAdvertCodec.read(Array(#"{"format":\#(format),"node":"a","seq":9,"filters":{"x/y":2},"new-key":[1]}"#.utf8), expectedNode: "a")
        }
        // One older, this one, one newer: read as written (unknown keys ignored).
        for v in [ControlFormat.current - 1, ControlFormat.current, ControlFormat.current + 1] {
            let r = try read(String(v))
            #expect(r.format == v && !r.foreignFormat && r.advert.filters == ["x/y": 2] && r.widened.isEmpty)
        }
        // Two newer (or anything it was never told about): everything, never nothing.
        for v in [ControlFormat.current + 2, 0, 1000] {
            let r = try read(String(v))
            #expect(r.foreignFormat && r.advert.filters == ["#": 1] && r.advert.seq == 9, "format \(v)")
        }
        // The frame still decides: a format that is not a number, or a wrong node, is refused.
        #expect(throws: AdvertDecodeError.self) { try read(#""2""#) }
        #expect(throws: AdvertDecodeError.self) { try read("2.5") }
        #expect(throws: AdvertDecodeError.self) {
            try InterestAdvertCodec.read(Array(#"{"format":99,"node":"b","seq":1,"filters":{}}"#.utf8), expectedNode: "a")
        }
        // This release writes its own format, and reads it back as written.
        let own = InterestAdvert(node: "a", seq: 3, filters: ["t": 1], since: ["t": 5])
        let back = try InterestAdvertCodec.read(InterestAdvertCodec.encode(own), expectedNode: "a")
        #expect(back.format == ControlFormat.current && back.advert == own && back.widened.isEmpty)
    }

    @Test(arguments: ["a/b+/c", "a/#/b", "+x", "", "$share/g", "$share/g/x+/y", "$SYS/a+", "a\u{0}b/c", String(repeating: "l/", count: 40_000)])
    func coveringIsValidAndNotTheInput(_ text: String) throws {
        let cover = InterestAdvertCodec.covering(text)
        let filter = try TopicFilter(validating: cover)
        #expect(filter.shareGroup == nil)
        #expect(cover != text)
        #expect(cover.hasSuffix("#"))
    }

    /// The covering filter matches the topics the odd filter could have been meant for.
    @Test(arguments: [("a/b+/c", "a/bq/c"), ("a/#/b", "a/x/b"), ("$share/g/x+/y", "x1/y"), ("s/t/u#", "s/t/u1"), ("+x/y", "zx/y")])
    func coveringMatchesWhatWasMeant(_ odd: String, _ topic: String) {
        #expect(Topic.matches(filter: InterestAdvertCodec.covering(odd), name: topic))
    }

    @Test func oversizedPayloadRejectedBeforeParsing() {
        let payload = [UInt8](repeating: 0x20, count: InterestAdvertCodec.maximumPayloadBytes + 1)
        #expect(throws: AdvertDecodeError.self) { try InterestAdvertCodec.decode(payload, expectedNode: nil) }
    }

    @Test func wrongNodeReasonNamesBoth() {
        let bytes = InterestAdvertCodec.encode(InterestAdvert(node: "b", seq: 1, filters: [:]))
        do {
            _ = try InterestAdvertCodec.decode(bytes, expectedNode: "a")
            Issue.record("accepted a foreign node")
        } catch {
            #expect(error.reason.contains("\"b\""))
            #expect(error.reason.contains("\"a\""))
        }
    }

    @Test func withoutExpectedNodeAnyValidNode() throws {
        let bytes = Array(#"{"node":"zz","seq":9,"filters":{"$share/g/x":4}}"#.utf8)
        #expect(try InterestAdvertCodec.decode(bytes, expectedNode: nil) == InterestAdvert(node: "zz", seq: 9, filters: ["$share/g/x": 4]))
    }
}
