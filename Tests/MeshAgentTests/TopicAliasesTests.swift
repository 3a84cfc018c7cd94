import PropertyBased
import Synchronization
import Testing
@testable import MeshAgent

/// `TopicAliases` keeps each alias and the property list it is sent with together: whatever
/// happens on the link (forwards, refused set-ups, reconnects with any peer maximum, lists
/// that cannot be built), every alias handed out comes with the list built for it.
@Suite("topic aliases and their lists")
struct TopicAliasesTests {
    /// Stands in for a `PropertyList` holding only a Topic Alias.
    struct FakeList: Equatable { let alias: UInt16 }

    /// Whether the next list build fails (set per step by the operations under test).
    final class Builds: Sendable {
        let failing = Atomic<Bool>(false)
        let built = Atomic<Int>(0)
    }

    static func aliases(_ builds: Builds) -> TopicAliases<FakeList> {
        TopicAliases { alias in
            if builds.failing.load(ordering: .relaxed) { throw CancellationError() }
            builds.built.add(1, ordering: .relaxed)
            return FakeList(alias: alias)
        }
    }

    /// One step on a link, decoded from a number (so the property checker can shrink runs).
    enum Step: CustomStringConvertible {
        case forward(topic: Int, buildFails: Bool)
        case setUpRefused(alias: UInt16)
        case lost
        case connected(peerMaximum: Int)

        init(_ n: Int) {
            switch n % 8 {
            case 0...3: self = .forward(topic: (n / 8) % 14, buildFails: (n / 112) % 5 == 0)
            case 4: self = .setUpRefused(alias: UInt16((n / 8) % 12 + 1))
            case 5: self = .lost
            default: self = .connected(peerMaximum: (n / 8) % 12)
            }
        }

        var description: String {
            switch self {
            case .forward(let t, let fails): "forward t\(t)\(fails ? " (list build fails)" : "")"
            case .setUpRefused(let a): "set-up of \(a) refused"
            case .lost: "lost"
            case .connected(let m): "connected (peer max \(m))"
            }
        }
    }

    @Test("every alias handed out carries its own list; a topic keeps its alias; no two topics share one; nothing by alias before it is set up on the connection")
    func aliasesAndListsStayTogether() async {
        await propertyCheck(count: 300, input: Gen.int(in: 0...4_000).array(of: 1...120)) { numbers in
            let builds = Builds()
            var aliases = Self.aliases(builds)
            var aliasOf: [String: UInt16] = [:]
            var topicOf: [UInt16: String] = [:]
            var established = false
            var maximum = 0
            /// Aliases the peer knows on this connection (announced, or set up by a forward that was not refused).
            var known: Set<UInt16> = []
            for step in numbers.map(Step.init) {
                switch step {
                case .forward(let t, let fails):
                    builds.failing.store(fails, ordering: .relaxed)
                    let topic = "t/\(t)"
                    let use = aliases.use(for: topic)
                    guard let (alias, list) = use.alias else {
                        #expect(!use.byAliasOnly, "\(step): by alias only without an alias")
                        continue
                    }
                    #expect(list == FakeList(alias: alias), "\(step): alias \(alias) sent with the list of \(list.alias)")
                    #expect(established, "\(step): alias used while the link is down")
                    #expect(Int(alias) <= maximum, "\(step): alias \(alias) above the peer's maximum \(maximum)")
                    #expect(aliasOf[topic] == nil || aliasOf[topic] == alias, "\(step): alias changed from \(aliasOf[topic]!) to \(alias)")
                    #expect(topicOf[alias] == nil || topicOf[alias] == topic, "\(step): alias \(alias) given to \(topic) and \(topicOf[alias]!)")
                    #expect(!use.byAliasOnly || known.contains(alias), "\(step): by alias only before the peer knows \(alias)")
                    aliasOf[topic] = alias
                    topicOf[alias] = topic
                    known.insert(alias)
                case .setUpRefused(let alias):
                    aliases.announcementFailed(alias)
                    known.remove(alias)
                case .lost:
                    aliases.connectionLost()
                    established = false
                    known = []
                case .connected(let peerMaximum):
                    let (announce, _) = aliases.connected(peerMaximum: peerMaximum, configuredMaximum: 10)
                    established = true
                    maximum = min(peerMaximum, 10)
                    known = Set(announce.map(\.alias))
                    for (topic, alias) in announce {
                        #expect(aliasOf[topic] == alias, "\(step): announced \(topic) as \(alias), handed out as \(aliasOf[topic].map { "\($0)" } ?? "none")")
                    }
                }
                #expect(aliases.listCount >= aliases.count, "\(step): \(aliases.count) aliases but \(aliases.listCount) lists")
            }
            #expect(builds.built.load(ordering: .relaxed) == aliases.listCount, "lists built and lists kept differ")
        }
    }

    @Test("a list that cannot be built keeps a new topic off aliases; topics that have one keep it")
    func aFailedBuildOnlyStopsNewTopics() {
        let builds = Builds()
        var aliases = Self.aliases(builds)
        _ = aliases.connected(peerMaximum: 10, configuredMaximum: 10)
        #expect(aliases.use(for: "a").alias?.number == 1)
        builds.failing.store(true, ordering: .relaxed)
        #expect(aliases.use(for: "b").alias == nil)
        let again = aliases.use(for: "a")
        #expect(again.alias?.number == 1 && again.byAliasOnly)
        #expect(again.alias?.list == FakeList(alias: 1))
        builds.failing.store(false, ordering: .relaxed)
        let b = aliases.use(for: "b")
        #expect(b.alias?.number == 2 && !b.byAliasOnly && b.alias?.list == FakeList(alias: 2))
    }
}
