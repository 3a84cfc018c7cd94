import MeshCore

/// One peer link's topic aliases together with the property list each alias is sent with.
///
/// A forward by alias of a message without properties of its own carries a list holding only
/// the alias, built once per alias and reused. The table (`TopicAliasTable`) and those lists
/// live here side by side, and the only way an alias is handed out is `use(for:)`, which
/// builds the list for the alias a new topic would get *before* the table hands that alias
/// out: every alias returned comes with its own list, by construction (unit-tested,
/// `TopicAliasesTests`). Lists are never dropped: a forward on the local link's thread may
/// still hold one, and alias numbers are never given to another topic.
///
/// Generic over the list so that tests can count and fail list builds without libmosquitto;
/// the agent uses `PropertyList`. Pure state: the caller (`PeerLink`) serialises access.
struct TopicAliases<List> {
    /// How one forward sends its topic.
    struct Use {
        /// The alias the forward carries, with the list holding only it (for a message with
        /// no properties of its own); nil: the topic alone.
        var alias: (number: UInt16, list: List)?
        /// The peer already knows the alias: the topic is left empty.
        var byAliasOnly = false
    }

    private var table = TopicAliasTable()
    /// `lists[a - 1]` carries alias `a`; `lists.count >= table.count` always.
    private var lists: [List] = []
    private let makeList: @Sendable (UInt16) throws -> List

    init(makeList: @escaping @Sendable (UInt16) throws -> List) {
        self.makeList = makeList
    }

    /// How many aliases the peer accepts on the current connection.
    var capacity: Int { table.capacity }
    /// Aliases handed out so far (usable or not).
    var count: Int { table.count }
    /// Lists built so far (tests: never fewer than `count`).
    var listCount: Int { lists.count }

    /// How the next forward of `topic` goes out. If the list for a new alias cannot be built,
    /// a new topic goes without an alias (topics that have one keep using it).
    mutating func use(for topic: String) -> Use {
        if let next = table.nextAlias, lists.count < Int(next) {
            if let list = try? makeList(next) {
                lists.append(list)
            } else if table.alias(of: topic) == nil {
                return Use()
            }
        }
        switch table.use(for: topic) {
        case .none:
            return Use()
        case .alias(let a):
            return Use(alias: (a, lists[Int(a) - 1]), byAliasOnly: true)
        case .announce(let a):
            return Use(alias: (a, lists[Int(a) - 1]))
        }
    }

    /// The forward that was to set up `alias` was not sent: the next one on its topic carries
    /// the topic again.
    mutating func announcementFailed(_ alias: UInt16) { table.announcementFailed(alias) }

    /// The link went down: topics only until the next connection has its aliases set up.
    mutating func connectionLost() { table.connectionLost() }

    /// A connection is up: the aliases to announce on it before anything else, and how many
    /// are unusable under a lowered peer maximum (`TopicAliasTable.connected`).
    mutating func connected(peerMaximum: Int, configuredMaximum: Int) -> (announce: [(topic: String, alias: UInt16)], unusable: Int) {
        table.connected(peerMaximum: peerMaximum, configuredMaximum: configuredMaximum)
    }
}
