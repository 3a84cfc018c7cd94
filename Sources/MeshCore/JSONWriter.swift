/// Writes JSON straight into bytes. For large documents (the agent's state: every session
/// and every peer's filters) Foundation's `JSONEncoder` builds an object tree first and
/// needed ~1.4 KB of transient memory per session; this needs only the output.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    /// Whether the next member or element needs a comma before it, per open container.
    private var needsComma: [Bool] = []

    public init(reservingCapacity capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func beginObject() { separate(); bytes.append(UInt8(ascii: "{")); needsComma.append(false) }
    public mutating func endObject() { needsComma.removeLast(); bytes.append(UInt8(ascii: "}")) }
    public mutating func beginArray() { separate(); bytes.append(UInt8(ascii: "[")); needsComma.append(false) }
    public mutating func endArray() { needsComma.removeLast(); bytes.append(UInt8(ascii: "]")) }

    /// An object member's key; the value written next belongs to it.
    public mutating func key(_ name: String) {
        separate()
        InterestAdvertCodec.appendString(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        if !needsComma.isEmpty { needsComma[needsComma.count - 1] = false }
    }

    public mutating func string(_ value: String) { separate(); InterestAdvertCodec.appendString(value, to: &bytes) }
    public mutating func int(_ value: Int) { separate(); bytes.append(contentsOf: String(value).utf8) }
    public mutating func uint(_ value: UInt64) { separate(); bytes.append(contentsOf: String(value).utf8) }
    public mutating func bool(_ value: Bool) { separate(); bytes.append(contentsOf: (value ? "true" : "false").utf8) }
    /// A finite double as Swift prints it (shortest round-tripping form); non-finite as null.
    public mutating func double(_ value: Double) {
        separate()
        bytes.append(contentsOf: (value.isFinite ? String(value) : "null").utf8)
    }

    /// `{ key: int, … }` in key order (String's, unless `areInIncreasingOrder` says otherwise).
    public mutating func counts<Value: BinaryInteger>(_ dictionary: [String: Value],
                                                      by areInIncreasingOrder: (String, String) -> Bool = { $0 < $1 }) {
        beginObject()
        for k in dictionary.keys.sorted(by: areInIncreasingOrder) {
            key(k)
            int(Int(dictionary[k]!))
        }
        endObject()
    }

    private mutating func separate() {
        guard let last = needsComma.last else { return }
        if last { bytes.append(UInt8(ascii: ",")) }
        needsComma[needsComma.count - 1] = true
    }
}

extension SessionTable {
    /// The table as the JSON its `Codable` conformance reads back.
    public func writeJSON(to w: inout JSONWriter) {
        w.beginObject()
        w.key("excludedClientIDPrefix"); w.string(excludedClientIDPrefix)
        w.key("sessions")
        w.beginObject()
        for (id, s) in sessions {
            w.key(id)
            w.beginObject()
            w.key("lifetime"); w.string(s.lifetime.rawValue)
            w.key("online"); w.bool(s.online)
            w.key("filters"); w.counts(s.filters)
            if s.filtersUnknown { w.key("filtersUnknown"); w.bool(true) }
            if s.stateUncertain { w.key("stateUncertain"); w.bool(true) }
            if s.excluded { w.key("excluded"); w.bool(true) }
            if s.filtersMayBeStale { w.key("filtersMayBeStale"); w.bool(true) }
            if let since = s.offlineSince {
                w.key("offlineSince")
                w.beginObject(); w.key("tick"); w.uint(since.tick); w.key("time"); w.double(since.time); w.endObject()
            }
            if s.epoch != 0 { w.key("epoch"); w.uint(s.epoch) }
            w.endObject()
        }
        w.endObject()
        w.key("everyClientKnown"); w.bool(everyClientKnown)
        w.key("linkEpoch"); w.uint(linkEpoch)
        w.key("clock")
        w.beginObject(); w.key("tick"); w.uint(clock.tick); w.key("time"); w.double(clock.time); w.endObject()
        w.key("forgotten")
        w.beginArray()
        for id in forgotten { w.string(id) }
        w.endArray()
        w.endObject()
    }
}
