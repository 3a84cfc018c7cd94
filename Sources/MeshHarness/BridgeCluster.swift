import Foundation

/// N stock brokers joined by Mosquitto's native bridge (`topic # both 2`), the baseline
/// the mesh is measured against. Two brokers: one bridge. Three or more: a star, every
/// other broker bridged to broker 0 (the hub), which is the usual way to join more than
/// two brokers without loops (a full mesh of `#` bridges would circulate messages).
public final class BridgeCluster: Sendable {
    public let brokers: [BrokerProcess]
    public let directory: String

    public var hub: BrokerProcess { brokers[0] }
    /// The brokers that hold a bridge connection to the hub.
    public var leaves: ArraySlice<BrokerProcess> { brokers.dropFirst() }

    public init(nodes: [String], directory: String, brokerOptions: BrokerProcess.Options = .init()) {
        precondition(nodes.count >= 2, "a bridge needs two brokers")
        self.directory = directory
        var hubOptions = brokerOptions
        hubOptions.port = brokerOptions.port ?? Network.freePort()
        let hub = BrokerProcess(name: nodes[0], directory: "\(directory)/broker-\(nodes[0])", options: hubOptions)
        var all = [hub]
        for node in nodes.dropFirst() {
            var options = brokerOptions
            options.port = nil
            options.extraConfiguration += Self.bridgeConfiguration(name: node, hubPort: hub.port)
            all.append(BrokerProcess(name: node, directory: "\(directory)/broker-\(node)", options: options))
        }
        brokers = all
    }

    /// The bridge as an operator would write it for "every message everywhere": QoS 2
    /// both ways, a persistent bridge session, `try_private` so the hub never echoes a
    /// message back to the leaf it came from.
    static func bridgeConfiguration(name: String, hubPort: Int32) -> [String] {
        [
            "connection bridge-\(name)",
            "address 127.0.0.1:\(hubPort)",
            "topic # both 2",
            "cleansession false",
            "try_private true",
            "notifications false",
            "restart_timeout 1",
            "keepalive_interval 30",
        ]
    }

    /// Starts the hub first so the leaves' bridges connect at once.
    public func start() async throws {
        for b in brokers { try await b.start() }
    }

    public func stop() async {
        for b in brokers.reversed() { await b.stop() }
    }

    /// Selects the bridge connections (leaf process → hub port) in a socket snapshot.
    public func isInterBroker(_ c: TCPConnection) -> Bool {
        guard c.remotePort == hub.port else { return false }
        return leaves.contains { $0.pid == c.pid }
    }
}
