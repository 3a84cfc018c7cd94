import Testing
@testable import MeshCore

@Suite("SubscriptionTree")
struct SubscriptionTreeTests {
    /// (filters in the tree, topic, expected match)
    static let matchRows: [([String], String, Bool)] = [
        (["a/b/c"], "a/b/c", true),
        (["a/b/c"], "a/b", false),
        (["a/b/c"], "a/b/c/d", false),
        (["a/b/c"], "a/b/x", false),
        (["a/+/c"], "a/b/c", true),
        (["a/+/c"], "a//c", true),
        (["a/+/c"], "a/c", false),
        (["a/+/c"], "a/b/d/c", false),
        (["+"], "a", true),
        (["+"], "", true),
        (["+"], "a/b", false),
        (["+"], "/a", false),
        (["+/+"], "/a", true),
        (["/+"], "/a", true),
        (["+/"], "a/", true),
        (["a/#"], "a", true),
        (["a/#"], "a/", true),
        (["a/#"], "a/b/c", true),
        (["a/#"], "ab", false),
        (["a/#"], "b/a", false),
        (["a/b/#"], "a", false),
        (["#"], "a", true),
        (["#"], "/", true),
        (["#"], "a/b/c/d/e", true),
        (["#"], "$SYS/x", false),
        (["+/x"], "$SYS/x", false),
        (["+/#"], "$SYS/x", false),
        (["+/#"], "a/x", true),
        (["$SYS/#"], "$SYS/x", true),
        (["$SYS/#"], "$SYS", true),
        (["$SYS/+"], "$SYS/x", true),
        (["$SYS/x"], "$SYS/x", true),
        (["$+/x"], "$SYS/x", false),
        (["a/$SYS"], "a/$SYS", true),
        (["+/$SYS"], "a/$SYS", true),
        (["a//b"], "a//b", true),
        (["a//b"], "a/b", false),
        (["/a"], "/a", true),
        (["/a"], "a", false),
        (["a/"], "a/", true),
        (["a/"], "a", false),
        (["a/+"], "a", false),
        (["a/+/#"], "a/b", true),
        (["a/+/#"], "a", false),
        (["x", "y", "a/+/c"], "a/q/c", true),
        (["x", "y", "a/+/c"], "z", false),
        ([], "a", false),
        (["caf\u{E9}"], "cafe\u{301}", false),     // byte-wise, not canonical equivalence
        (["cafe\u{301}"], "cafe\u{301}", true),
        (["ünï cödé/+"], "ünï cödé/  x  ", true),
        (["sport/tennis/+"], "sport/tennis/player1", true),
        (["sport/tennis/+"], "sport/tennis/player1/ranking", false),
        (["sport/#"], "sport", true),
    ]

    @Test(arguments: matchRows)
    func matching(_ filters: [String], _ topic: String, _ expected: Bool) {
        let tree = SubscriptionTree(filters: Dictionary(uniqueKeysWithValues: filters.map { ($0, 1) }))
        #expect(tree.matches(topic) == expected)
        // matchingFilters must agree with matches, and list only real filters.
        let listed = tree.matchingFilters(topic)
        #expect(listed.isEmpty == !expected)
        #expect(listed.allSatisfy(filters.contains))
    }

    @Test(arguments: [
        ("a/b/c", ["#", "+/+/+", "a/#", "a/+/c", "a/b/#", "a/b/c"]),
        ("a/b", ["#", "a/#", "a/b/#"]),
        ("$SYS/x", ["$SYS/#"]),
        ("q", ["#"]),
    ])
    func matchingFilterLists(_ topic: String, _ expected: [String]) {
        let tree = SubscriptionTree(filters: [
            "#": 1, "+/+/+": 2, "a/#": 1, "a/+/c": 1, "a/b/#": 1, "a/b/c": 3, "a/b/d": 1, "$SYS/#": 1, "b/+": 1,
        ])
        #expect(tree.matchingFilters(topic) == expected)
    }

    @Test func referenceCountsAndPruning() {
        var tree = SubscriptionTree()
        tree.insert("a/+/c")
        tree.insert("a/+/c", count: 2)
        tree.insert("a/#")
        tree.insert("a/b")
        #expect(tree.filterCount == 3)
        #expect(tree.filters == ["a/+/c": 3, "a/#": 1, "a/b": 1])

        #expect(tree.remove("a/+/c", count: 2) == true)
        #expect(tree.matches("a/x/c"))
        #expect(tree.remove("a/+/c") == true)
        #expect(tree.matchingFilters("a/x/c") == ["a/#"])
        #expect(tree.remove("a/+/c") == false)          // already gone
        #expect(tree.filterCount == 2)

        #expect(tree.remove("a") == false)               // interior node, not a filter
        #expect(tree.remove("nope/x") == false)
        #expect(tree.remove("a/#", count: 10) == true)           // count clamps at zero
        #expect(!tree.matches("a"))
        #expect(tree.matches("a/b"))
        #expect(tree.remove("a/b") == true)
        #expect(tree.isEmpty)
        #expect(tree.filterCount == 0)
        #expect(tree.filters.isEmpty)
        #expect(tree == SubscriptionTree())
        #expect(!tree.matches("a/b"))
    }

    @Test func pruningKeepsSiblingsAndReusesNodes() {
        var tree = SubscriptionTree()
        tree.insert("a/b/c")
        tree.insert("a/b")
        tree.remove("a/b/c")
        #expect(tree.matches("a/b"))
        #expect(!tree.matches("a/b/c"))
        tree.insert("a/b/d/e")
        tree.insert("a/+/d/#")
        #expect(tree.filters == ["a/b": 1, "a/b/d/e": 1, "a/+/d/#": 1])
        tree.remove("a/b")
        #expect(tree.matches("a/b/d/e"))
        #expect(tree.matchingFilters("a/b/d/e") == ["a/+/d/#", "a/b/d/e"])
        tree.remove("a/+/d/#")
        tree.remove("a/b/d/e")
        #expect(tree.isEmpty)
    }

    @Test func zeroAndNegativeCountsAreIgnored() {
        var tree = SubscriptionTree(filters: ["a": 0, "b": -3, "c": 2])
        tree.insert("d", count: 0)
        #expect(tree.filters == ["c": 2])
        #expect(tree.remove("c", count: 0) == false)
        #expect(tree.filters == ["c": 2])
    }

    @Test func oversizedFiltersAndLevels() {
        var tree = SubscriptionTree()
        let big = String(repeating: "x", count: 65_536)
        tree.insert(big)
        #expect(tree.isEmpty)
        let maximal = String(repeating: "y", count: 65_535)
        tree.insert(maximal)
        #expect(tree.matches(maximal))
        #expect(!tree.matches(big))
        #expect(!tree.matches(maximal + "/z"))
        #expect(tree.remove(big) == false)
        #expect(tree.remove(maximal) == true)
        #expect(tree.isEmpty)
    }

    @Test func valueSemantics() {
        var a = SubscriptionTree(filters: ["x/+": 1])
        let b = a
        a.insert("y")
        a.remove("x/+")
        #expect(b.filters == ["x/+": 1])
        #expect(a.filters == ["y": 1])
        #expect(a != b)
    }

    @Test func equalityIgnoresInsertionHistory() {
        var a = SubscriptionTree()
        a.insert("q/w/e")
        a.insert("a/b")
        a.remove("q/w/e")
        let b = SubscriptionTree(filters: ["a/b": 1])
        #expect(a == b)
    }

    @Test func manyFiltersRoundTrip() {
        var expected: [String: Int] = [:]
        for i in 0..<2_000 { expected["dev/\(i % 37)/\(i)/+"] = i % 5 + 1 }
        expected["#"] = 1
        let tree = SubscriptionTree(filters: expected)
        #expect(tree.filterCount == expected.count)
        #expect(tree.filters == expected)
        #expect(tree.matchingFilters("dev/3/3/x") == ["#", "dev/3/3/+"])
        var copy = tree
        for (filter, count) in expected { #expect(copy.remove(filter, count: count) == true) }
        #expect(copy.isEmpty)
    }
}
