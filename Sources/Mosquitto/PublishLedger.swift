/// Which publishes the broker has not yet acknowledged, by packet id.
///
/// libmosquitto reports a QoS 0 publish as complete (`on_publish`) once it is written and a
/// QoS 1/2 one once acknowledged, through the same callback, with only the packet id. The
/// count of unacknowledged QoS 1/2 messages is what backpressure and a graceful stop's drain
/// wait on, so it must neither count a QoS 0 write as an acknowledgement (a drain would end
/// with messages still unacknowledged) nor lose an acknowledgement (backpressure would stall
/// for good). Guessing from counts does one or the other when QoS 0 packets are discarded
/// with a broken connection; the packet id tells them apart.
///
/// The completion can arrive (on the client's loop thread) before the publishing thread has
/// recorded the id it got back: the ledger keeps such an early completion until the
/// publisher records it. Pure state; the caller serialises access.
public struct PublishLedger: Sendable {
    private enum State: UInt8 {
        case none = 0
        /// QoS 1/2, recorded by its publisher, not yet acknowledged.
        case awaitingAcknowledgement
        /// A completion arrived before the publisher recorded this id.
        case completedEarly
        /// QoS 0, recorded; its write completion (if it ever comes) is not an acknowledgement.
        case qos0
    }

    private var states: [State] = Array(repeating: .none, count: 65_536)
    /// Payload bytes of each id awaiting acknowledgement.
    private var sizes: [UInt32] = Array(repeating: 0, count: 65_536)
    /// QoS 1/2 publishes recorded and not yet acknowledged.
    public private(set) var unacknowledged = 0
    /// Their payload bytes.
    public private(set) var unacknowledgedBytes = 0

    public init() {}

    /// The publisher got packet id `mid` back for a publish that was accepted (sent or
    /// queued). Returns whether a QoS 1/2 publish now counts as unacknowledged (false if its
    /// acknowledgement already came, or for QoS 0).
    ///
    /// Packet ids are 16 bits and libmosquitto hands them out in turn to every publish, so
    /// after 65 536 publishes an id can come back while an older QoS 1/2 message still holds
    /// it. The ledger then errs towards counting too few, never too many: a count that never
    /// comes down would stall backpressure for good.
    public mutating func published(mid: UInt16, qos: Int32, bytes: Int = 0) -> Bool {
        let i = Int(mid)
        switch states[i] {
        case .completedEarly:
            states[i] = .none
            return false
        case .awaitingAcknowledgement:
            return false // id reused while still awaited: keep the older one counted once
        case .none, .qos0:
            if qos > 0 {
                states[i] = .awaitingAcknowledgement
                unacknowledged += 1
                sizes[i] = UInt32(clamping: bytes)
                unacknowledgedBytes += Int(sizes[i])
                return true
            }
            states[i] = .qos0
            return false
        }
    }

    /// libmosquitto reported packet id `mid` complete. Returns whether it was the
    /// acknowledgement of a counted QoS 1/2 publish.
    public mutating func completed(mid: UInt16) -> Bool {
        acknowledgedSize(mid: mid) != nil
    }

    /// As `completed`, with the payload bytes of the acknowledged publish (nil: not one).
    public mutating func acknowledgedSize(mid: UInt16) -> Int? {
        let i = Int(mid)
        switch states[i] {
        case .awaitingAcknowledgement:
            states[i] = .none
            unacknowledged -= 1
            unacknowledgedBytes -= Int(sizes[i])
            return Int(sizes[i])
        case .qos0:
            states[i] = .none
            return nil
        case .none, .completedEarly:
            states[i] = .completedEarly
            return nil
        }
    }
}
