/// Drops forwarded messages that arrive a second time.
///
/// A QoS 1 forward whose PUBACK is lost in a link cut is resent by the sending agent's
/// library after the reconnect; the peer broker takes it as a new message, so without a
/// check its subscribers would get it twice. Every QoS 1/2 forward is numbered per sending
/// agent run and link (`<node>.<run>:<n>`, `n` in base 36, in the order the agent sent them).
///
/// The wire order is *not* the numbering order: after a reconnect libmosquitto resends what
/// was unacknowledged, but a forward published in the instant after the CONNACK can go out
/// before those resends. So each source keeps the numbers it has seen within a window below
/// the highest (`window`, above the most a link can hold unacknowledged: 60 000); a number
/// seen before is a copy, an unseen one is new whatever its place. A number below the window
/// cannot belong to a message still held by the sender, so it is a copy too.
///
/// Bounded: at most `maximumSources` sources (each agent run of each peer is one, 8 KiB
/// each); the one heard from longest ago is forgotten first.
public struct ForwardSequence: Sendable {
    public static let maximumSources = 1024
    /// Numbers remembered below the highest seen, per source.
    public static let window: UInt64 = 65_536

    struct Source: Sendable {
        var highest: UInt64
        /// Bit `n % window` set: number `n` (within the window below `highest`) was seen.
        var seen: [UInt64]
        var touched: UInt64

        init(first: UInt64, touched: UInt64) {
            highest = first
            seen = Array(repeating: 0, count: Int(ForwardSequence.window / 64))
            self.touched = touched
            mark(first)
        }

        func isSeen(_ n: UInt64) -> Bool {
            let bit = n % ForwardSequence.window
            return seen[Int(bit / 64)] & (1 << (bit % 64)) != 0
        }

        mutating func mark(_ n: UInt64) {
            let bit = n % ForwardSequence.window
            seen[Int(bit / 64)] |= 1 << (bit % 64)
        }

        mutating func clear(_ n: UInt64) {
            let bit = n % ForwardSequence.window
            seen[Int(bit / 64)] &= ~(1 << (bit % 64))
        }

        /// Moves the window up to `n`, forgetting the numbers that fall out of it.
        mutating func advance(to n: UInt64) {
            if n - highest >= ForwardSequence.window {
                for i in seen.indices { seen[i] = 0 }
            } else {
                var k = highest + 1
                while k <= n { clear(k); k += 1 }
            }
            highest = n
        }
    }

    private var sources: [String: Source] = [:]
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
        let key = String(Substring(marker.utf8[..<colon]))
        guard !key.isEmpty else { return .malformed }
        clock &+= 1
        guard var source = sources[key] else {
            if sources.count >= Self.maximumSources, let oldest = sources.min(by: { $0.value.touched < $1.value.touched }) {
                sources[oldest.key] = nil
            }
            sources[key] = Source(first: number, touched: clock)
            return .new
        }
        source.touched = clock
        defer { sources[key] = source }
        if number > source.highest {
            source.advance(to: number)
            source.mark(number)
            return .new
        }
        if source.highest - number >= Self.window || source.isSeen(number) { return .duplicate }
        source.mark(number)
        return .new
    }

    public var sourceCount: Int { sources.count }
}
