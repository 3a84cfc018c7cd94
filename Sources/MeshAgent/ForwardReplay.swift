import Foundation
import Logging
import MeshCore
import Mosquitto

/// The local link's replay buffer and the replays it performs (the subscribe race, see
/// `ReplayBuffer`). Used only on the local link's loop thread — recording each message after
/// routing it, replaying before routing the next — so the buffer needs no lock, and a
/// replay always reaches a peer before anything routed by the interest that asked for it.
/// The confinement is checked (debug builds) by `LoopConfined`.
final class ForwardReplay: Sendable {
    /// What a replay needs of a message beyond its topic.
    struct Body {
        let payload: [UInt8]
        let qos: Int32
        /// The message's own properties, copied as a forward carries them (nil: none).
        let properties: PropertyList?
        /// It carried a mark that is not a peer's: replayed prefixed only (`Forwarder.message`).
        let prefixedOnly: Bool
    }

    /// What `ReplayBuffer` counts for a message's properties: libmosquitto does not say how
    /// large a property list is, and a replayed message's properties are rare and small.
    static let propertiesEstimate = 256

    /// What changes, touched only on the local link's loop thread.
    private struct State {
        var buffer: ReplayBuffer<Body>
        var reportedEvictedEarly = 0
        var lastGaugeUpdate = 0.0
    }

    private let state: LoopConfined<State>
    /// Fixed at start (read off the loop thread too, by the local link's init).
    let isEnabled: Bool
    private let window: Double
    private let margin: Double
    private let forwardPrefix: String
    /// This agent run's origin mark, for replays to peers it delivers to directly.
    private let originToken: String
    private let routing: RoutingTable
    private let metrics: MeshMetrics
    private let logger: Logger
    private let exceededThrottle = LogThrottle()

    init(configuration: AgentConfiguration, routing: RoutingTable, metrics: MeshMetrics, logger: Logger) {
        let buffer = ReplayBuffer<Body>(window: configuration.replayWindow, byteLimit: configuration.replayMaxBytes)
        isEnabled = buffer.isEnabled
        window = buffer.window
        state = LoopConfined(State(buffer: buffer))
        margin = configuration.replayMargin
        forwardPrefix = configuration.forwardPrefix
        originToken = configuration.originToken
        self.routing = routing
        self.metrics = metrics
        self.logger = logger
    }

    /// Keeps a non-retained message the local link just routed (retained ones go to every
    /// peer already). `properties`: the copy the forward made, if any, reused.
    func record(_ m: ReceivedMessage, topic: String, sentTo: PeerSet, properties: PropertyList?, prefixedOnly: Bool = false) {
        guard isEnabled, !m.retain else { return }
        var props = properties
        if props == nil, m.hasProperties { props = Forwarder.copyForForward(m, logger: logger) }
        let size = m.payload.count + topic.utf8.count + (props == nil ? 0 : Self.propertiesEstimate)
        let body = Body(payload: Array(m.payload), qos: m.qos, properties: props, prefixedOnly: prefixedOnly)
        state.withValue { $0.buffer.append(time: Date().timeIntervalSince1970, topic: topic, size: size, sentTo: sentTo, body: body) }
    }

    /// Sends each request's peer what it missed, oldest first.
    func perform(_ requests: [ReplayRequest]) {
        for request in requests {
            guard let peer = routing.link(request.peer) else { continue }
            let outcome = state.withValue { s in
                s.buffer.replay(request, margin: margin) { entry in send(entry, to: peer) }
            }
            if outcome.replayed > 0 {
                logger.debug("replayed messages for a peer's new interest", metadata: ["peer": "\(peer.endpoint)", "messages": "\(outcome.replayed)"])
            }
            if outcome.windowExceeded {
                metrics.replayWindowExceeded.increment()
                let (log, n) = exceededThrottle.shouldLog()
                if log {
                    logger.warning("a peer's new interest reaches back further than the replay buffer holds; a message published after its subscriber's SUBACK may have been missed (raise --replay-window or --replay-max-bytes)",
                                   metadata: ["peer": "\(peer.endpoint)", "window_seconds": "\(window)", "occurrence": "\(n)"])
                }
            }
        }
    }

    /// A turn of the local link's loop: replays waiting with no message to carry them, the
    /// window moved on, gauges (at most every 250 ms).
    func turn() {
        guard isEnabled else { return }
        let requests = routing.takeReplays()
        if !requests.isEmpty { perform(requests) }
        let now = Date().timeIntervalSince1970
        state.withValue { s in
            guard now - s.lastGaugeUpdate >= 0.25 else { return }
            s.lastGaugeUpdate = now
            s.buffer.expire(now: now)
            metrics.replayBufferBytes.set(s.buffer.bytes)
            metrics.replayBufferMessages.set(s.buffer.count)
            if s.buffer.evictedEarly > s.reportedEvictedEarly {
                metrics.replayEvictedEarly.increment(by: s.buffer.evictedEarly - s.reportedEvictedEarly)
                s.reportedEvictedEarly = s.buffer.evictedEarly
            }
        }
    }

    /// A copy of `properties` with the forward's sequence number added; nil if that failed.
    private static func numbered(_ properties: PropertyList?, _ sequence: String) -> PropertyList? {
        guard let list = try? PropertyList.copy(of: properties),
              (try? list.addUserProperty(Forwarder.sequenceMarker, sequence)) != nil else { return nil }
        return list
    }

    private func send(_ entry: ReplayBuffer<Body>.Entry, to peer: PeerLink) {
        let body = entry.body
        var properties = body.properties
        var topic = forwardPrefix + entry.topic
        var direct = false
        if !body.prefixedOnly, peer.deliversDirect, let list = try? PropertyList.copy(of: body.properties),
           (try? Forwarder.marked(list, token: originToken)) != nil {
            // Directly, like the forward it replaces (`Forwarder.forward`): own topic, marked, unnumbered.
            properties = list
            topic = entry.topic
            direct = true
        } else if body.qos > 0 {
            // Numbered like every QoS 1/2 forward (`Forwarder.sequenceMarker`).
            let number = peer.forwardSequence.add(1, ordering: .relaxed).oldValue
            properties = Self.numbered(body.properties, peer.sequenceSource + String(number, radix: 36)) ?? body.properties
        }
        let outcome = body.payload.withUnsafeBytes { payload in
            peer.client.publish(topic: topic, payload: payload, qos: body.qos, retain: false, properties: properties)
        }
        switch outcome {
        case .sent:
            if direct { peer.metrics.forwardedDirect.increment() }
            peer.metrics.forwardedMessages.increment()
            peer.metrics.forwardedBytes.increment(by: body.payload.count)
            peer.metrics.replayed.increment()
        case .queued:
            peer.metrics.held.increment()
            peer.metrics.replayed.increment()
        case .notConnected, .tooLarge, .refused:
            peer.metrics.dropped.increment()
            logger.error("replayed message not forwarded", metadata: ["peer": "\(peer.endpoint)", "reason": "\(outcome.failure("replay").map { "\($0)" } ?? "\(outcome)")"])
        }
    }
}
