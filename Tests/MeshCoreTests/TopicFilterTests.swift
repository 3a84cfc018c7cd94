import Testing
@testable import MeshCore

@Suite("TopicFilter and Topic validation")
struct TopicFilterTests {
    struct Row: Sendable, CustomStringConvertible {
        let text: String
        let result: Result<(match: String, group: String?), TopicError>
        var description: String { text.debugDescription }
        init(_ text: String, _ match: String, _ group: String? = nil) {
            self.text = text
            self.result = .success((match, group))
        }
        init(_ text: String, _ error: TopicError) {
            self.text = text
            self.result = .failure(error)
        }
    }

    static let rows: [Row] = [
        Row("a/b/c", "a/b/c"),
        Row("#", "#"),
        Row("+", "+"),
        Row("a/#", "a/#"),
        Row("a/+/c", "a/+/c"),
        Row("+/+/#", "+/+/#"),
        Row("/", "/"),
        Row("a//b", "a//b"),
        Row("$SYS/#", "$SYS/#"),
        Row("$shared/g/a", "$shared/g/a"),
        Row("$sharex", "$sharex"),
        Row("a/$share/g/b", "a/$share/g/b"),        // only a first level is a share
        Row("$share/g1/a/+", "a/+", "g1"),
        Row("$share/g/a/#", "a/#", "g"),
        Row("$share/g/#", "#", "g"),
        Row("$share/g//", "/", "g"),
        Row("$share/ünï/x y", "x y", "ünï"),
        // What Mosquitto 2.0.11 also accepts (SUBACK 0 and a subscribe log line; see the
        // initializer): an empty or wildcard group, an empty or absent filter.
        Row("$share//x", "x", ""),
        Row("$share//", "", ""),
        Row("$share/", "", ""),
        Row("$share/g", "", "g"),
        Row("$share/g/", "", "g"),
        Row("$share/+/x", "x", "+"),
        Row("$share/+", "", "+"),
        Row("$share/#", "", "#"),
        // What it refuses: `$share` alone (protocol error), wildcards misplaced anywhere.
        Row("$share", .malformedSharedSubscription),
        Row("$share/g+/a", .misplacedSingleLevelWildcard),
        Row("$share/#/a", .misplacedMultiLevelWildcard),
        Row("$share/g/a/#/b", .misplacedMultiLevelWildcard),
        Row("$share/g/a+", .misplacedSingleLevelWildcard),
        Row("a/#/b", .misplacedMultiLevelWildcard),
        Row("a#", .misplacedMultiLevelWildcard),
        Row("#a", .misplacedMultiLevelWildcard),
        Row("##", .misplacedMultiLevelWildcard),
        Row("#/", .misplacedMultiLevelWildcard),
        Row("a+", .misplacedSingleLevelWildcard),
        Row("+a", .misplacedSingleLevelWildcard),
        Row("a/b+/c", .misplacedSingleLevelWildcard),
        Row("++", .misplacedSingleLevelWildcard),
        Row("+#", .misplacedMultiLevelWildcard),
        Row("a\u{0}b", .containsNull),
        Row("", .empty),
        Row(String(repeating: "x", count: 65_536), .tooLong(65_536)),
    ]

    @Test(arguments: rows)
    func validation(_ row: Row) {
        switch row.result {
        case .success(let expected):
            let filter = try? TopicFilter(validating: row.text)
            #expect(filter?.text == row.text)
            #expect(filter?.matchFilter == expected.match)
            #expect(filter?.shareGroup == expected.group)
            #expect(filter?.description == row.text)
        case .failure(let expected):
            #expect(throws: expected) { try TopicFilter(validating: row.text) }
        }
    }

    @Test func maximumLengthAccepted() throws {
        let text = String(repeating: "x", count: 65_535)
        #expect(try TopicFilter(validating: text).matchFilter == text)
    }

    @Test(arguments: [
        ("a/b", nil),
        ("$mesh/x", nil),
        ("/", nil),
        ("", TopicError.empty),
        ("a/+", .wildcardInTopicName),
        ("a/#", .wildcardInTopicName),
        ("a+b", .wildcardInTopicName),
        ("a\u{0}", .containsNull),
    ] as [(String, TopicError?)])
    func names(_ name: String, _ expected: TopicError?) {
        if let expected {
            #expect(throws: expected) { try Topic.validateName(name) }
        } else {
            #expect(throws: Never.self) { try Topic.validateName(name) }
        }
    }

    @Test func nameTooLong() {
        #expect(throws: TopicError.tooLong(70_000)) { try Topic.validateName(String(repeating: "é", count: 35_000)) }
    }

    @Test(arguments: [("$SYS/x", true), ("$", true), ("a/$", false), ("", false), (" $", false)])
    func dollar(_ name: String, _ expected: Bool) {
        #expect(Topic.isDollarTopic(name) == expected)
    }
}
