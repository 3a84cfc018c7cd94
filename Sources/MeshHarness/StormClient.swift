import Mosquitto
import Synchronization

/// A client that subscribes and unsubscribes fresh filters as fast as the broker answers
/// (at most `window` SUBSCRIBEs unanswered): a subscription storm, for the log-line
/// benchmark and the storm test.
public final class StormClient: Sendable {
    public let client: MQTTClient
    private let connectedFlag = Atomic<Bool>(false)
    private let subacks = Atomic<Int>(0)
    private let sentCount = Atomic<Int>(0)

    public init(id: String, port: Int32) throws {
        var c = ClientConfiguration(clientID: id, host: "127.0.0.1", port: port)
        c.reconnectDelay = (1, 1)
        let box = HarnessBox<StormClient>()
        var events = ClientEvents()
        events.connected = { rc, _ in box.value?.connectedFlag.store(rc == 0, ordering: .relaxed) }
        events.subscribed = { _, _ in box.value?.subacks.add(1, ordering: .relaxed) }
        client = try MQTTClient(configuration: c, events: events)
        box.value = self
    }

    /// SUBSCRIBE + UNSUBSCRIBE pairs sent so far.
    public var sent: Int { sentCount.load(ordering: .relaxed) }

    public func connect() async throws {
        _ = try client.start()
        try await waitUntil(timeout: .seconds(10), "storm client connect") { self.connectedFlag.load(ordering: .relaxed) }
    }

    /// Subscribes and unsubscribes `storm/<label>/dev/<k>/temp` for `seconds`; bounded in time.
    public func storm(seconds: Double, label: Int, window: Int = 100) async throws {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: .nanoseconds(Int64(seconds * 1e9)))
        var k = 0
        while clock.now < end {
            while k - subacks.load(ordering: .relaxed) >= window {
                guard clock.now < end.advanced(by: .seconds(10)) else { throw HarnessError("storm client \(label): SUBACKs stalled") }
                try await Task.sleep(for: .microseconds(200))
            }
            let filter = "storm/\(label)/dev/\(k)/temp"
            _ = try client.subscribe(filter, qos: Int32(k % 3))
            _ = try client.unsubscribe(filter)
            k += 1
            sentCount.add(1, ordering: .relaxed)
            if k % 64 == 0 { await Task.yield() }
        }
    }

    public func close() { client.close() }
}
