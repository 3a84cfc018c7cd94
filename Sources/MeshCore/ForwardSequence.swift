/// Drops forwarded messages that arrive a second time.
///
/// A QoS 1 forward whose PUBACK is lost in a link cut is resent by the sending agent's
/// library after the reconnect; the peer broker takes it as a new message, so without a
/// check its subscribers would get it twice. Every QoS 1/2 forward is numbered per sending
/// agent run and link (`<node>.<run>:<n>`, `n` in base 36, increasing in the order sent), and a link
/// delivers in order, so a number not above the highest seen from that source is a copy.
///
/// Bounded: at most `maximumSources` sources are remembered (each agent run of each peer is
/// one); the one heard from longest ago is forgotten first.
public struct ForwardSequence: Sendable {
    public static let maximumSources = 1024

    private var highest: [String: (number: UInt64, touched: UInt64)] = [:]
    private var clock: UInt64 = 0

    public init() {}

    public enum Verdict: Equatable, Sendable {
        case new
        case duplicate
        /// Not `<source>:<number>`: passed on, not checked (counted by the caller).
        case malformed
    }

    /// Judges one marker value and records it.
    public mutating func judge(_ marker: String) -> Verdict {
        guard let colon = marker.utf8.lastIndex(of: UInt8(ascii: ":")),
              let number = UInt64(Substring(marker.utf8[marker.utf8.index(after: colon)...]), radix: 36) else { return .malformed }
        let source = String(Substring(marker.utf8[..<colon]))
        guard !source.isEmpty else { return .malformed }
        clock &+= 1
        if let seen = highest[source] {
            highest[source] = (max(seen.number, number), clock)
            return number <= seen.number ? .duplicate : .new
        }
        if highest.count >= Self.maximumSources, let oldest = highest.min(by: { $0.value.touched < $1.value.touched }) {
            highest[oldest.key] = nil
        }
        highest[source] = (number, clock)
        return .new
    }

    public var sourceCount: Int { highest.count }
}
