import Testing
@testable import MeshCore

@Suite("InterestAdvertCodec")
struct InterestAdvertTests {
    @Test func encodesCompactWithSortedFilters() {
        let advert = InterestAdvert(node: "a", seq: 3, filters: ["b/#": 2, "a/+/c": 1])
        let text = String(decoding: InterestAdvertCodec.encode(advert), as: UTF8.self)
        #expect(text == #"{"node":"a","seq":3,"filters":{"a/+/c":1,"b/#":2}}"#)
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
            ("count as string", j(#"{"node":"a","seq":1,"filters":{"x":"1"}}"#)),
            ("count zero", j(#"{"node":"a","seq":1,"filters":{"x":0}}"#)),
            ("count negative", j(#"{"node":"a","seq":1,"filters":{"x":-2}}"#)),
            ("count float", j(#"{"node":"a","seq":1,"filters":{"x":1.0}}"#)),
            ("count exponent", j(#"{"node":"a","seq":1,"filters":{"x":1e2}}"#)),
            ("count huge", j(#"{"node":"a","seq":1,"filters":{"x":2147483648}}"#)),
            ("count enormous", j(#"{"node":"a","seq":1,"filters":{"x":99999999999999999999999999}}"#)),
            ("count NaN", j(#"{"node":"a","seq":1,"filters":{"x":NaN}}"#)),
            ("count Infinity", j(#"{"node":"a","seq":1,"filters":{"x":Infinity}}"#)),
            ("count bool", j(#"{"node":"a","seq":1,"filters":{"x":true}}"#)),
            ("count null", j(#"{"node":"a","seq":1,"filters":{"x":null}}"#)),
            ("leading zero", j(#"{"node":"a","seq":01,"filters":{}}"#)),
            ("hash in middle", j(#"{"node":"a","seq":1,"filters":{"a/#/b":1}}"#)),
            ("plus in level", j(#"{"node":"a","seq":1,"filters":{"a+":1}}"#)),
            ("empty filter", j(#"{"node":"a","seq":1,"filters":{"":1}}"#)),
            ("bad share", j(#"{"node":"a","seq":1,"filters":{"$share":1}}"#)),
            ("NUL filter", j(#"{"node":"a","seq":1,"filters":{"a\u0000":1}}"#)),
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
