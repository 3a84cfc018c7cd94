import CMosquitto

/// What became of a publish, in libmosquitto's meanings, so that no caller outside this
/// module interprets a `MOSQ_ERR_*` code. Returned by value, with no allocation on any path
/// the forwarder takes per message (a failure's `MosquittoError` is built only when asked).
public enum PublishOutcome: Sendable, Equatable {
    /// Handed to the connection (`MOSQ_ERR_SUCCESS`).
    case sent
    /// QoS 1/2 while the connection is down (or broke during the write): libmosquitto keeps
    /// it and sends it after the reconnect.
    case queued
    /// QoS 0 while the connection is down: dropped (`MOSQ_ERR_NO_CONN`).
    case notConnected
    /// Too large: beyond the broker's Maximum Packet Size (`MOSQ_ERR_OVERSIZE_PACKET`), or
    /// beyond what MQTT can carry at all (`MOSQ_ERR_PAYLOAD_SIZE`): dropped.
    case tooLarge(beyondBrokerMaximum: Bool)
    /// The request itself is unusable (topic, properties or QoS refused: `MOSQ_ERR_INVAL`,
    /// `MOSQ_ERR_MALFORMED_UTF8`, `MOSQ_ERR_PROTOCOL`, `MOSQ_ERR_DUPLICATE_PROPERTY`,
    /// `MOSQ_ERR_QOS_NOT_SUPPORTED`, …) or libmosquitto ran out of memory: dropped. The
    /// library's own code, kept for the log line (`failure`).
    case refused(code: Int32)

    /// Taken by libmosquitto: sent now, or kept for after the reconnect.
    @inlinable public var isAccepted: Bool {
        switch self {
        case .sent, .queued: true
        default: false
        }
    }

    /// libmosquitto's return code → its meaning. QoS 1/2 publishes that meet no connection
    /// are kept by libmosquitto; `MOSQ_ERR_ERRNO`, `…_CONN_LOST` and `…_TLS` after the message
    /// was accepted mean the immediate write failed because the connection just broke, which
    /// the caller maps to `MOSQ_ERR_NO_CONN` before asking.
    @inline(__always)
    static func of(_ rc: Int32, qos: Int32) -> PublishOutcome {
        switch rc {
        case Int32(MOSQ_ERR_SUCCESS.rawValue): .sent
        case Int32(MOSQ_ERR_NO_CONN.rawValue): qos > 0 ? .queued : .notConnected
        case Int32(MOSQ_ERR_OVERSIZE_PACKET.rawValue): .tooLarge(beyondBrokerMaximum: true)
        case Int32(MOSQ_ERR_PAYLOAD_SIZE.rawValue): .tooLarge(beyondBrokerMaximum: false)
        default: .refused(code: rc)
        }
    }

    /// Why the message was not taken, for a log line (nil if it was taken).
    public func failure(_ operation: String) -> MosquittoError? {
        switch self {
        case .sent, .queued: nil
        case .notConnected: MosquittoError(code: Int32(MOSQ_ERR_NO_CONN.rawValue), operation: operation)
        case .tooLarge(let broker):
            MosquittoError(code: Int32(broker ? MOSQ_ERR_OVERSIZE_PACKET.rawValue : MOSQ_ERR_PAYLOAD_SIZE.rawValue), operation: operation)
        case .refused(let code): MosquittoError(code: code, operation: operation)
        }
    }
}
