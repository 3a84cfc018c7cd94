// libFuzzer harness: the broker-log-line parser feeding a session table.
// Built and run by scripts/fuzz.sh (swiftc -sanitize=fuzzer,address), not by SwiftPM.
//
// Input: lines separated by 0xFF (never valid UTF-8, so no real payload needs it).
// The first byte of a line picks its topic (byte % 5, see `topics`); the rest is
// the payload. Each line is parsed against the table's known ids and applied, and
// the table's invariants are checked after every step: a broken one traps.
import MeshCore

/// Mosquitto's log topics; index = first byte % 5.
let topics = [
    "$SYS/broker/log/M/subscribe",
    "$SYS/broker/log/M/unsubscribe",
    "$SYS/broker/log/N",
    "$SYS/broker/log/E",
    "$SYS/broker/log/I",
]

/// The lines of one input, at most this many (bounds the work per input).
let maximumLines = 64

/// Fails the fuzz run (libFuzzer reports the trap and saves the input) with a reason.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

/// The harness's only contact with the parser and session-table API, so that a change
/// there means adapting this one function.
///
/// Parses one line against `table`'s known clients, applies the event, and checks:
/// `apply` reports a change exactly when `interest` changed; `interest` equals the
/// interest recomputed from `sessions`; no count is below 1; an event names a client.
func step(_ table: inout SessionTable, topic: String, payload: ArraySlice<UInt8>) {
    let parsed: BrokerLogEvent?
    do {
        parsed = try LogLineParser().parse(topic: topic, payload: payload, isKnownClient: table.isKnownClient)
    } catch {
        return
    }
    guard let event = parsed else { return }
    check(!event.clientID.isEmpty, "event without a client id: \(event)")
    if case .subscribed(_, let qos, _) = event { check((0...2).contains(qos), "QoS \(qos) in \(event)") }

    let before = table.interest
    let changed = table.apply(event)
    check(changed == (table.interest != before), "apply returned \(changed) for \(event), interest \(before) -> \(table.interest)")

    var recomputed: [String: Int] = [:]
    for (id, session) in table.sessions {
        check(!table.isExcluded(id), "excluded client \(id) has a session")
        for filter in session.filters.keys { recomputed[filter, default: 0] += 1 }
    }
    check(table.interest == recomputed, "interest \(table.interest) != recomputed \(recomputed) after \(event)")
    check(table.interest.values.allSatisfy { $0 >= 1 }, "count below 1 in \(table.interest)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func logParserFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var table = SessionTable()
    for line in bytes.split(separator: 0xFF, maxSplits: maximumLines - 1, omittingEmptySubsequences: true) {
        step(&table, topic: topics[Int(line.first! % 5)], payload: line.dropFirst())
    }
    return 0
}
