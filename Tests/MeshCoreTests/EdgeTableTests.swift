import Testing
@testable import MeshCore

@Suite("EdgeTable")
struct EdgeTableTests {
    /// Random inserts and removes against a reference dictionary: exercises
    /// probing, backward-shift deletion, growth, shrinking and arena compaction.
    @Test(arguments: 0..<8)
    func matchesReferenceDictionary(_ seed: Int) {
        var rng = seededGenerator(UInt64(seed))
        var table = EdgeTable()
        var reference: [EdgeKeyForTest: UInt32] = [:]
        var nextChild: UInt32 = 1
        let levels = ["", "a", "b", "12345678", "123456789", "long-level-\(seed)-xxxxxxxxxxxxxxxx", "ünï cödé", "caf\u{E9}", "cafe\u{301}"]
        for step in 0..<6_000 {
            let parent = UInt32(rng.next() % 40)
            let level = levels[Int(rng.next() % UInt64(levels.count))] + (rng.next() % 3 == 0 ? "\(rng.next() % 50)" : "")
            let key = EdgeKeyForTest(parent: parent, level: Array(level.utf8))
            let grow = step < 3_000 ? 3 : 1 // grow first, then mostly shrink
            if rng.next() % 4 < grow {
                if reference[key] == nil {
                    key.level.withUnsafeBytes { table.insert(parent: parent, level: $0, child: nextChild) }
                    reference[key] = nextChild
                    nextChild += 1
                }
            } else {
                let removed = key.level.withUnsafeBytes { table.remove(parent: parent, level: $0) }
                #expect(removed == reference.removeValue(forKey: key))
            }
            #expect(table.count == reference.count)
        }
        for (key, child) in reference {
            #expect(key.level.withUnsafeBytes { table.child(of: key.parent, level: $0) } == child)
        }
        var seen = 0
        table.forEach { parent, level, child in
            seen += 1
            #expect(reference[EdgeKeyForTest(parent: parent, level: Array(level.utf8))] == child)
        }
        #expect(seen == reference.count)
        for key in reference.keys {
            #expect(key.level.withUnsafeBytes { table.remove(parent: key.parent, level: $0) } != nil)
        }
        #expect(table.count == 0)
        #expect(table.slots.isEmpty)
    }
}

struct EdgeKeyForTest: Hashable {
    let parent: UInt32
    let level: [UInt8]
}
