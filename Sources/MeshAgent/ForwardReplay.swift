import Foundation
import Logging
import MeshCore
import Mosquitto

/// The local link's replay buffer and the replays it performs (the subscribe race, see
/// `ReplayBuffer`). Used only on the local link's loop thread — recording each message after
/// routing it, replaying before routing the next — so the buffer needs no lock, and a
/// replay always reaches a peer before anything routed by the interest that asked for it.
/// The confinement is checked (debug builds) as swift-nio's `NIOLoopBound` checks its loop.
final class ForwardReplay: @unchecked Sendable {
    /// What a replay needs of a message beyond its topic.
    struct Body {
        let payload: [UInt8]
        let qos: Int32
        /// The message's own properties, copied as a forward carries them (nil: none).
        let properties: PropertyList?
    }

    /// What `ReplayBuffer` counts for a message's properties: libmosquitto does not say how
    /// large a property list is, and a replayed message's properties are rare and small.
    static let propertiesEstimate = 256

    private var buffer: ReplayBuffer<Body>
    private let margin: Double
    private let forwardPrefix: String
    private let routing: RoutingTable
    private let metrics: MeshMetrics
    private let logger: Logger
    private let exceededThrottle = LogThrottle()
    private var reportedEvictedEarly = 0
    private var lastGaugeUpdate = 0.0
    private var owner: pthread_t?

    init(configuration: AgentConfiguration, routing: RoutingTable, metrics: MeshMetrics, logger: Logger) {
        buffer = ReplayBuffer(window: configuration.replayWindow, byteLimit: configuration.replayMaxBytes)
        margin = configuration.replayMargin
        forwardPrefix = configuration.forwardPrefix
        self.routing = routing
        self.metrics = metrics
        self.logger = logger
    }

    var isEnabled: Bool { buffer.isEnabled }

    @inline(__always)
    private func checkConfinement() {
        #if DEBUG
        let me = pthread_self()
        if let owner {
            assert(pthread_equal(owner, me) != 0, "ForwardReplay used off the local link's loop thread")
        } else {
            owner = me
        }
        #endif
    }

    /// Keeps a non-retained message the local link just routed (retained ones go to every
    /// peer already). `properties`: the copy the forward made, if any, reused.
    func record(_ m: ReceivedMessage, topic: String, sentTo: PeerSet, properties: PropertyList?) {
        guard buffer.isEnabled, !m.retain else { return }
        checkConfinement()
        var props = properties
        if props == nil, m.properties != nil { props = LocalLink.copyForForward(m, logger: logger) }
        let size = m.payload.count + topic.utf8.count + (props == nil ? 0 : Self.propertiesEstimate)
        buffer.append(time: Date().timeIntervalSince1970, topic: topic, size: size, sentTo: sentTo,
                      body: Body(payload: Array(m.payload), qos: m.qos, properties: props))
    }

    /// Sends each request's peer what it missed, oldest first.
    func perform(_ requests: [ReplayRequest]) {
        checkConfinement()
        for request in requests {
            guard let peer = routing.link(request.peer) else { continue }
            let outcome = buffer.replay(request, margin: margin) { entry in
                send(entry, to: peer)
            }
            if outcome.replayed > 0 {
                logger.debug("replayed messages for a peer's new interest", metadata: ["peer": "\(peer.endpoint)", "messages": "\(outcome.replayed)"])
            }
            if outcome.windowExceeded {
                metrics.replayWindowExceeded.increment()
                let (log, n) = exceededThrottle.shouldLog()
                if log {
                    logger.warning("a peer's new interest reaches back further than the replay buffer holds; a message published after its subscriber's SUBACK may have been missed (raise --replay-window or --replay-max-bytes)",
                                   metadata: ["peer": "\(peer.endpoint)", "window_seconds": "\(buffer.window)", "occurrence": "\(n)"])
                }
            }
        }
    }

    /// A turn of the local link's loop: replays waiting with no message to carry them, the
    /// window moved on, gauges (at most every 250 ms).
    func turn() {
        guard buffer.isEnabled else { return }
        checkConfinement()
        let requests = routing.takeReplays()
        if !requests.isEmpty { perform(requests) }
        let now = Date().timeIntervalSince1970
        guard now - lastGaugeUpdate >= 0.25 else { return }
        lastGaugeUpdate = now
        buffer.expire(now: now)
        metrics.replayBufferBytes.set(buffer.bytes)
        metrics.replayBufferMessages.set(buffer.count)
        if buffer.evictedEarly > reportedEvictedEarly {
            metrics.replayEvictedEarly.increment(by: buffer.evictedEarly - reportedEvictedEarly)
            reportedEvictedEarly = buffer.evictedEarly
        }
    }

    /// A copy of `properties` with the forward's sequence number added; nil if that failed.
    private static func numbered(_ properties: PropertyList?, _ sequence: String) -> PropertyList? {
        var ignored = false
        guard let list = try? PropertyList.copyForRepublish(properties?.pointer, strippingMarker: nil, markerFound: &ignored),
              (try? list.addUserProperty(LocalLink.sequenceMarker, sequence)) != nil else { return nil }
        return list
    }

    private func send(_ entry: ReplayBuffer<Body>.Entry, to peer: PeerLink) {
        let body = entry.body
        var properties = body.properties
        if body.qos > 0 {
            // Numbered like every QoS 1/2 forward (`LocalLink.sequenceMarker`).
            let number = peer.forwardSequence.add(1, ordering: .relaxed).oldValue
            properties = Self.numbered(body.properties, peer.sequenceSource + String(number, radix: 36)) ?? body.properties
        }
        let rc = (forwardPrefix + entry.topic).withCString { topic in
            body.payload.withUnsafeBytes { payload in
                peer.client.publish(topic: topic, payload: payload, qos: body.qos, retain: false, properties: properties?.pointer)
            }
        }
        switch MQTTClient.outcome(rc, qos: body.qos) {
        case .sent:
            peer.metrics.forwardedMessages.increment()
            peer.metrics.forwardedBytes.increment(by: body.payload.count)
            peer.metrics.replayed.increment()
        case .held:
            peer.metrics.held.increment()
            peer.metrics.replayed.increment()
        case .dropped:
            peer.metrics.dropped.increment()
            logger.error("replayed message not forwarded", metadata: ["peer": "\(peer.endpoint)", "reason": "\(MosquittoError(code: rc, operation: "replay"))"])
        }
    }
}
