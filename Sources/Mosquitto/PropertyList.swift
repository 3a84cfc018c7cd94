import CMosquitto

/// An owned MQTT v5 property list (`mosquitto_property *`) for publishing. Building one is
/// the slow path; the forwarder reuses what it received via `copyForRepublish`.
public final class PropertyList: @unchecked Sendable {
    // Owned; freed exactly once in deinit. Mutated only by the builder methods before
    // the list is shared, which is why @unchecked Sendable is sound here.
    private(set) var pointer: OpaquePointer?

    public init() {}

    private init(taking pointer: OpaquePointer?) { self.pointer = pointer }

    deinit { mosquitto_property_free_all(&pointer) }

    public func addUserProperty(_ key: String, _ value: String) throws(MosquittoError) {
        try check(mosquitto_property_add_string_pair(&pointer, Int32(mesh_prop_user_property), key, value), "add user property")
    }

    /// Adds a user property under one of the mesh's keys (no conversion of the key).
    public func addUserProperty(_ key: UserPropertyKey, _ value: String) throws(MosquittoError) {
        try check(mosquitto_property_add_string_pair(&pointer, Int32(mesh_prop_user_property), key.cString, value), "add user property")
    }

    public func addString(_ identifier: Int32, _ value: String) throws(MosquittoError) {
        try check(mosquitto_property_add_string(&pointer, identifier, value), "add string property \(identifier)")
    }

    public func addInt32(_ identifier: Int32, _ value: UInt32) throws(MosquittoError) {
        try check(mosquitto_property_add_int32(&pointer, identifier, value), "add int32 property \(identifier)")
    }

    public func addByte(_ identifier: Int32, _ value: UInt8) throws(MosquittoError) {
        try check(mosquitto_property_add_byte(&pointer, identifier, value), "add byte property \(identifier)")
    }

    public func addInt16(_ identifier: Int32, _ value: UInt16) throws(MosquittoError) {
        try check(mosquitto_property_add_int16(&pointer, identifier, value), "add int16 property \(identifier)")
    }

    public func addTopicAlias(_ alias: UInt16) throws(MosquittoError) {
        try addInt16(Int32(mesh_prop_topic_alias), alias)
    }

    /// A list holding only a Topic Alias: what a forward by alias carries when the message
    /// itself has no properties (built once per alias and reused).
    public static func topicAlias(_ alias: UInt16) throws(MosquittoError) -> PropertyList {
        let list = PropertyList()
        try list.addInt16(Int32(mesh_prop_topic_alias), alias)
        return list
    }

    public func addBinary(_ identifier: Int32, _ value: [UInt8]) throws(MosquittoError) {
        let rc = value.withUnsafeBytes { mosquitto_property_add_binary(&pointer, identifier, $0.baseAddress, UInt16(value.count)) }
        try check(rc, "add binary property \(identifier)")
    }

    /// What `copyForRepublish(of:…)` found besides the copy.
    public struct RepublishCopy {
        /// The copied list (possibly empty).
        public let list: PropertyList
        /// Whether a user property named like the stripped marker was there.
        public let markerFound: Bool
        /// The value of the first user property named like the captured key (if shorter than
        /// 128 bytes); nil: none.
        public let captured: String?
    }

    /// The publish-relevant properties of a received message (expiry as received, so it
    /// keeps counting down; user properties in order), without a user property named
    /// `marker` (reported in `markerFound`) or any whose key starts with `reservedPrefix`,
    /// reading in the same pass the value of the first one named `capturing`.
    public static func copyForRepublish(of message: ReceivedMessage, stripping marker: UserPropertyKey? = nil,
                                        reservedPrefix: UserPropertyKey? = nil,
                                        capturing captureKey: UserPropertyKey? = nil) throws(MosquittoError) -> RepublishCopy {
        var found = false
        var captured: String?
        let list = try copyForRepublish(message.properties, strippingMarker: marker?.cString, reservedPrefix: reservedPrefix?.cString,
                                        markerFound: &found, capturing: captureKey?.cString, captured: &captured)
        return RepublishCopy(list: list, markerFound: found, captured: captured)
    }

    /// A copy of `list` (the copy a forward made, reused for a replay) that can be added to;
    /// an empty list for nil.
    public static func copy(of list: PropertyList?) throws(MosquittoError) -> PropertyList {
        var ignored = false
        return try copyForRepublish(list?.pointer, strippingMarker: nil, markerFound: &ignored)
    }

    /// The publish-relevant properties of a received message (expiry as received, so it
    /// keeps counting down; user properties in order), without any user property named
    /// `markerKey` (`markerFound` says whether one was there) or whose key starts with
    /// `reservedPrefix`.
    static func copyForRepublish(_ received: OpaquePointer?, strippingMarker markerKey: UnsafePointer<CChar>?,
                                        reservedPrefix: UnsafePointer<CChar>? = nil,
                                        markerFound: inout Bool) throws(MosquittoError) -> PropertyList {
        var ignored: String?
        return try copyForRepublish(received, strippingMarker: markerKey, reservedPrefix: reservedPrefix, markerFound: &markerFound,
                                    capturing: nil, captured: &ignored)
    }

    /// As above, and in the same pass the value of the first user property named
    /// `captureKey` (if shorter than 128 bytes) into `captured` (nil: none).
    static func copyForRepublish(_ received: OpaquePointer?, strippingMarker markerKey: UnsafePointer<CChar>?,
                                        reservedPrefix: UnsafePointer<CChar>?, markerFound: inout Bool,
                                        capturing captureKey: UnsafePointer<CChar>?, captured: inout String?) throws(MosquittoError) -> PropertyList {
        let capacity = 128
        var out: OpaquePointer?
        var found = false
        var gotValue = false
        var value: String?
        let rc = withUnsafeTemporaryAllocation(of: CChar.self, capacity: capacity) { buffer in
            let rc = mesh_copy_publish_properties(received, &out, markerKey, reservedPrefix, &found, captureKey, buffer.baseAddress, capacity, &gotValue)
            if gotValue { value = String(cString: buffer.baseAddress!) }
            return rc
        }
        markerFound = found
        captured = value
        try check(rc, "copy message properties")
        return PropertyList(taking: out)
    }
}
