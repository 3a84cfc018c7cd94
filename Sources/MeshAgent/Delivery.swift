/// How this agent's forwards reach a peer broker (`--delivery`).
public enum Delivery: String, Sendable, CaseIterable {
    /// `forward/<topic>` on the peer broker, republished there by the peer's agent, which
    /// drops copies resent after a link cut (by their `mesh:n` number): the promised design,
    /// needing no trust in user properties.
    case prefixed
    /// `<topic>` itself on the peer broker, marked with this agent's origin token in a
    /// `mesh:o` user property, which the peer's agent never forwards: the receiving broker
    /// handles the message once instead of three times (in from the link, out to its agent,
    /// in again), and its agent does no work for it. What clients see: MQTT 5 subscribers get
    /// the `mesh:o` property; a retained message is stored with it; a QoS 1 forward resent
    /// after a link cut may be delivered twice (no agent in between to drop the copy).
    /// Only to peers whose agents advertise a token (this release and later); others get
    /// prefixed forwards.
    case direct
}
