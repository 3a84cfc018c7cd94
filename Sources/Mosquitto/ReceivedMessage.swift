import CMosquitto

/// A message as libmosquitto hands it to the message callback. It borrows libmosquitto's
/// memory: valid only for the duration of the callback, so the forwarding hot path can
/// pass topic, payload and properties on without copying them.
public struct ReceivedMessage {
    /// NUL-terminated topic, owned by libmosquitto.
    @usableFromInline let topicPointer: UnsafePointer<CChar>
    public let payload: UnsafeRawBufferPointer
    public let qos: Int32
    public let retain: Bool
    /// v5 properties (`const mosquitto_property *`), nil for none.
    @usableFromInline let properties: OpaquePointer?

    init(topicPointer: UnsafePointer<CChar>, payload: UnsafeRawBufferPointer, qos: Int32, retain: Bool,
                properties: OpaquePointer?) {
        self.topicPointer = topicPointer
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }

    /// The topic as a Swift string (allocates; for the control plane, not the hot path).
    public var topic: String { String(cString: topicPointer) }

    /// The topic, borrowed for the duration of the callback (the hot path: no copy).
    @inlinable public var borrowedTopic: BorrowedTopic { BorrowedTopic(topicPointer) }

    /// Whether the message carries any v5 property.
    @inlinable public var hasProperties: Bool { properties != nil }

    /// Whether the message carries a user property named `key` (any value).
    public func hasUserProperty(_ key: UserPropertyKey) -> Bool {
        mesh_find_user_property(properties, key.cString, nil, 0) != 0
    }

    /// The value of the first user property named `key`, if it is shorter than 64 bytes
    /// (marker values are short; a longer one is not a marker). Nil without one.
    public func userPropertyValue(_ key: UserPropertyKey) -> String? {
        guard let properties else { return nil }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer -> String? in
            guard let base = buffer.baseAddress, mesh_find_user_property(properties, key.cString, base, 64) == 1 else { return nil }
            return String(cString: base)
        }
    }

    /// The payload copied out (for the control plane).
    public var payloadBytes: [UInt8] { Array(payload) }

    /// User properties in order, duplicates included (copies; for tests and diagnostics).
    public var userProperties: [(String, String)] {
        var result: [(String, String)] = []
        var cursor = properties
        var skipFirst = false
        while let current = cursor {
            var key: UnsafeMutablePointer<CChar>?
            var value: UnsafeMutablePointer<CChar>?
            guard let found = mosquitto_property_read_string_pair(current, Int32(mesh_prop_user_property), &key, &value, skipFirst) else { break }
            if let key, let value { result.append((String(cString: key), String(cString: value))) }
            free(key)
            free(value)
            cursor = found
            skipFirst = true
        }
        return result
    }

    /// A string property (content type, response topic), copied.
    public func stringProperty(_ identifier: Int32) -> String? {
        guard let properties else { return nil }
        var value: UnsafeMutablePointer<CChar>?
        guard mosquitto_property_read_string(properties, identifier, &value, false) != nil, let value else { return nil }
        defer { free(value) }
        return String(cString: value)
    }

    /// A 4-byte integer property (message expiry interval), if present.
    public func int32Property(_ identifier: Int32) -> UInt32? {
        guard let properties else { return nil }
        var value: UInt32 = 0
        guard mosquitto_property_read_int32(properties, identifier, &value, false) != nil else { return nil }
        return value
    }

    /// Correlation data, copied.
    public var correlationData: [UInt8]? {
        guard let properties else { return nil }
        var value: UnsafeMutableRawPointer?
        var length: UInt16 = 0
        guard mosquitto_property_read_binary(properties, Int32(mesh_prop_correlation_data), &value, &length, false) != nil,
              let value else { return nil }
        defer { free(value) }
        return Array(UnsafeRawBufferPointer(start: value, count: Int(length)))
    }
}

/// Property identifiers re-exported so callers need not import the C module.
public enum PropertyID {
    public static let contentType = Int32(mesh_prop_content_type)
    public static let responseTopic = Int32(mesh_prop_response_topic)
    public static let messageExpiryInterval = Int32(mesh_prop_message_expiry_interval)
    public static let payloadFormatIndicator = Int32(mesh_prop_payload_format_indicator)
    public static let correlationData = Int32(mesh_prop_correlation_data)
    public static let userProperty = Int32(mesh_prop_user_property)
}
