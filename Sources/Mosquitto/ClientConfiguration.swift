/// How one MQTT connection is made. A value, so links can be described, validated and
/// logged before anything touches the network.
public struct ClientConfiguration: Sendable {
    public enum ProtocolVersion: Sendable { case v311, v5 }

    /// TLS settings for a link that crosses an untrusted network.
    public struct TLS: Sendable, Equatable {
        public var caFile: String?
        public var caPath: String?
        public var certFile: String?
        public var keyFile: String?
        /// "tlsv1.2" or "tlsv1.3"; nil lets OpenSSL choose.
        public var version: String?
        /// Skip hostname verification (for test certificates only).
        public var insecure: Bool

        public init(caFile: String? = nil, caPath: String? = nil, certFile: String? = nil, keyFile: String? = nil,
                    version: String? = nil, insecure: Bool = false) {
            self.caFile = caFile
            self.caPath = caPath
            self.certFile = certFile
            self.keyFile = keyFile
            self.version = version
            self.insecure = insecure
        }
    }

    /// The Last Will: what the broker publishes when this connection dies uncleanly.
    public struct Will: Sendable, Equatable {
        public var topic: String
        public var payload: [UInt8]
        public var qos: Int32
        public var retain: Bool
        public init(topic: String, payload: [UInt8], qos: Int32, retain: Bool) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
        }
    }

    public var clientID: String
    public var host: String
    public var port: Int32
    public var protocolVersion: ProtocolVersion = .v5
    public var keepalive: Int32 = 30
    /// false = resume (or create) a persistent session.
    public var cleanStart: Bool = true
    /// v5 session expiry in seconds; `UInt32.max` never expires. Sent whenever > 0: with a
    /// clean start it makes a new session that outlives the connection.
    public var sessionExpiry: UInt32 = 0
    public var username: String?
    public var password: String?
    public var will: Will?
    /// v5 receive maximum we announce: how many QoS>0 messages the broker may have in flight to us.
    public var receiveMaximum: UInt16 = 65535
    /// v5 send maximum: how many QoS>0 messages we keep in flight to the broker. libmosquitto
    /// defaults to 20, which caps a forwarding link at 20 messages per round trip; the
    /// broker's own receive maximum (CONNACK) still applies when smaller.
    public var sendMaximum: UInt16 = 65535
    public var reconnectDelay: (min: UInt32, max: UInt32) = (1, 5)
    public var tls: TLS?
    /// Seconds a connection attempt may take up to its CONNACK; set, connects never block the
    /// loop thread and an attempt still unanswered after this long is started over. Nil:
    /// blocking connects (fine for the local broker). A host whose packets are silently
    /// dropped holds a blocking connect for the kernel's SYN retries (about 2 minutes), and
    /// after the network heals the next retransmission may be a minute away.
    public var connectTimeout: Double?
    /// Milliseconds between turns of an idle loop: `ClientEvents.loopTurn` runs at least
    /// this often.
    public var loopTurnInterval: Int32 = 1000

    public init(clientID: String, host: String, port: Int32) {
        self.clientID = clientID
        self.host = host
        self.port = port
    }

    /// `host:port` for logs.
    public var endpoint: String { "\(host):\(port)" }
}
