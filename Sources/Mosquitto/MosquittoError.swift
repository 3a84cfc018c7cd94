import CMosquitto

/// A libmosquitto call that failed, with the operation that was attempted so an operator
/// reading the log knows which link and step broke, not only the library's error text.
public struct MosquittoError: Error, CustomStringConvertible, Sendable, Equatable {
    /// libmosquitto's `MOSQ_ERR_*` code.
    public let code: Int32
    /// What the caller was doing, e.g. `connect 127.0.0.1:1883`.
    public let operation: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    public var description: String {
        "\(operation): \(String(cString: mosquitto_strerror(code))) (rc=\(code))"
    }

    /// `MOSQ_ERR_NO_CONN`: libmosquitto still queues QoS 1/2 publishes for after reconnect.
    public var isNotConnected: Bool { code == Int32(MOSQ_ERR_NO_CONN.rawValue) }
}

@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(MosquittoError) {
    if rc != Int32(MOSQ_ERR_SUCCESS.rawValue) {
        throw MosquittoError(code: rc, operation: operation())
    }
}

/// libmosquitto must be initialised once per process before any client exists.
enum MosquittoLibrary {
    static let initialised: Bool = {
        mosquitto_lib_init()
        return true
    }()
}
