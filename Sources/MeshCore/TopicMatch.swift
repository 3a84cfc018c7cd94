extension Topic {
    /// Whether the match filter `filter` (no `$share/` prefix: see `TopicFilter.matchFilter`)
    /// matches the topic name `name` under MQTT §4.7: `+` is one whole level, `#` the rest
    /// including the parent level, and a wildcard in the first level never matches a
    /// `$`-topic. One pass over both strings, no allocation; for the few filters a replay
    /// checks, where building a `SubscriptionTree` would cost more than it saves.
    public static func matches(filter: String, name: String) -> Bool {
        var filter = filter
        var name = name
        return filter.withUTF8 { f in name.withUTF8 { n in matches(filter: f, name: n) } }
    }

    static func matches(filter f: UnsafeBufferPointer<UInt8>, name n: UnsafeBufferPointer<UInt8>) -> Bool {
        let slash = UInt8(ascii: "/")
        if f.isEmpty || n.isEmpty { return false }
        if n[0] == UInt8(ascii: "$") && (f[0] == UInt8(ascii: "+") || f[0] == UInt8(ascii: "#")) { return false }
        var fi = 0, ni = 0
        while true {
            // At the start of a level in both.
            let fEnd = f[fi...].firstIndex(of: slash) ?? f.count
            let fLevel = UnsafeBufferPointer(rebasing: f[fi..<fEnd])
            if fLevel.count == 1 && fLevel[0] == UInt8(ascii: "#") { return true }
            guard ni <= n.count else { return false }
            let nEnd = n[ni...].firstIndex(of: slash) ?? n.count
            if !(fLevel.count == 1 && fLevel[0] == UInt8(ascii: "+")) {
                guard fLevel.elementsEqual(UnsafeBufferPointer(rebasing: n[ni..<nEnd])) else { return false }
            }
            let fDone = fEnd == f.count, nDone = nEnd == n.count
            if fDone && nDone { return true }
            if nDone {
                // Name exhausted: only a remaining "/#" matches (the parent level).
                let rest = UnsafeBufferPointer(rebasing: f[fEnd...])
                return rest.count == 2 && rest[1] == UInt8(ascii: "#")
            }
            if fDone { return false }
            fi = fEnd + 1
            ni = nEnd + 1
        }
    }
}
